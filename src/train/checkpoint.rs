//! Resumable checkpoints: after each finished epoch, the trainable parameters, the optimizer's
//! state and the epoch, in one safetensors file written atomically.
//!
//! No random-generator state needs saving: every random stream of a run is derived from the seed
//! and the epoch (shuffle) or the epoch and sample (augmentation), so restarting at epoch e+1
//! draws exactly what an uninterrupted run would have drawn.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Tensor};

use super::KerasOptimizer;
use crate::base::fs::{io_error_of, write_atomic_with};
use crate::model::Network;

const PARAM: &str = "param/";
const OPTIM: &str = "optim/";
const EPOCH: &str = "meta/epoch";
const ITERATIONS: &str = "meta/iterations";

/// What a checkpoint restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The last finished epoch (1-based).
    pub epoch: usize,
}

/// Write the state after `epoch` finished epochs to `path` (`write_atomic`'s temporary file and
/// rename).
pub fn save(
    path: &Path,
    epoch: usize,
    network: &Network,
    optimizer: &KerasOptimizer,
) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, var) in network.trainable_vars() {
        tensors.insert(
            format!("{PARAM}{name}"),
            var.as_tensor().to_device(&device)?,
        );
    }
    for (name, t) in optimizer.state() {
        tensors.insert(format!("{OPTIM}{name}"), t.to_device(&device)?);
    }
    tensors.insert(EPOCH.into(), Tensor::new(&[epoch as i64], &device)?);
    tensors.insert(
        ITERATIONS.into(),
        Tensor::new(&[optimizer.iterations as i64], &device)?,
    );
    // A failure is a `WriteError` naming `path`, with the OS error (disk full...) kept.
    write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(&tensors, tmp).map_err(|e| io_error_of(&e))
    })
}

/// Load `path` into `network`'s trainable parameters and `optimizer`'s state.
pub fn load(
    path: &Path,
    network: &Network,
    optimizer: &mut KerasOptimizer,
) -> anyhow::Result<Restored> {
    let device = network.device().clone();
    let all = candle_core::safetensors::load(path, &device)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let scalar = |k: &str| -> anyhow::Result<i64> {
        let t = all
            .get(k)
            .ok_or_else(|| anyhow::anyhow!("{}: no {k}", path.display()))?;
        Ok(t.to_vec1::<i64>()?[0])
    };
    let epoch = scalar(EPOCH)? as usize;
    let iterations = scalar(ITERATIONS)? as u64;
    for (name, var) in network.trainable_vars() {
        let t = all
            .get(&format!("{PARAM}{name}"))
            .ok_or_else(|| anyhow::anyhow!("{}: parameter {name} is missing", path.display()))?;
        anyhow::ensure!(
            t.dims() == var.as_tensor().dims(),
            "{}: parameter {name} has the wrong shape",
            path.display()
        );
        var.set(t)?;
    }
    let state: BTreeMap<String, Tensor> = all
        .iter()
        .filter_map(|(k, t)| k.strip_prefix(OPTIM).map(|n| (n.to_string(), t.clone())))
        .collect();
    optimizer
        .restore(&state, iterations)
        .with_context(|| format!("{}", path.display()))?;
    Ok(Restored { epoch })
}
