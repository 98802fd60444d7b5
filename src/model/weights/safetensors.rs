//! safetensors files: the runner's own checkpoints (`block1_conv1.weight`, ...) and timm's
//! `vgg16.tv_in1k` (`features.N.weight`, ...). The names are sorted out by the caller.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::{WeightsError, WeightsFormat};

pub fn read(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let all = candle_core::safetensors::load(path, device)
        .map_err(|e| WeightsError::format(path, WeightsFormat::Safetensors, e))?;
    Ok(all.into_iter().collect())
}
