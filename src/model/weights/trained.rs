//! A cell's trained parameters: the layers training changed, and nothing else.
//!
//! A finished cell keeps `trained.safetensors` (its final parameters) and
//! `best-trained.safetensors` (those of its best validation epoch). Each holds only the trainable
//! parameters, under the runner's names and layout (`<keras layer>.weight` / `.bias`, as in a
//! complete model file), so a feature-extraction cell at VGG16 widths stores its 2.1 million head
//! parameters, not the 14.7 million frozen ones it shares with every other cell built from the
//! same base. The frozen layers are what the cell was built from (a weights file, a pretraining
//! stage's checkpoint, or the seed); `frozen_hash` identifies them, so that `runner export-model`
//! can rebuild the complete model and prove that it rebuilt the same frozen layers.
//!
//! This module writes to the path it is given; where the files go and how they get there
//! atomically is the store's business.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use super::{WeightsError, WeightsFormat};
use crate::model::Network;

/// The final epoch's trained parameters.
pub const TRAINED_FILE: &str = "trained.safetensors";
/// The trained parameters of the epoch with the best validation accuracy.
pub const BEST_TRAINED_FILE: &str = "best-trained.safetensors";

/// Whether `path` is named like a cell's trained-parameter file, which cannot serve as the
/// weights of a network on its own (its frozen layers are not in it).
pub fn is_trained_file(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n == TRAINED_FILE || n == BEST_TRAINED_FILE)
}

/// Write `network`'s trainable parameters (and only those) to `path` as safetensors.
pub fn save(network: &Network, path: &Path) -> candle_core::Result<()> {
    let mut tensors = HashMap::new();
    for (name, var) in network.trainable_vars() {
        tensors.insert(name, var.as_tensor().to_device(&Device::Cpu)?);
    }
    candle_core::safetensors::save(&tensors, path)
}

/// Set `network`'s trainable parameters from the trained-parameter file at `path`. The file must
/// hold exactly those parameters, each with its shape: a file from a cell that trained other
/// layers is refused, naming the tensor, rather than half applied.
pub fn load_into(path: &Path, network: &Network) -> Result<(), WeightsError> {
    let format = |e: candle_core::Error| WeightsError::format(path, WeightsFormat::Safetensors, e);
    let mut all: BTreeMap<String, Tensor> = match std::fs::read(path) {
        Ok(bytes) => candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(format)?
            .into_iter()
            .collect(),
        Err(source) => {
            return Err(WeightsError::Io {
                path: path.into(),
                error: source,
            })
        }
    };
    let vars = network.trainable_vars();
    let trainable: BTreeSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(extra) = all.keys().find(|n| !trainable.contains(n.as_str())) {
        return Err(WeightsError::NotTrainable {
            path: path.into(),
            name: extra.clone(),
            trainable: trainable.iter().copied().collect::<Vec<_>>().join(", "),
        });
    }
    let available = all.keys().cloned().collect::<Vec<_>>().join(", ");
    for (name, var) in &vars {
        let t = all.remove(name).ok_or_else(|| WeightsError::Missing {
            path: path.into(),
            name: name.clone(),
            available: available.clone(),
        })?;
        if t.dims() != var.as_tensor().dims() {
            return Err(WeightsError::Shape {
                path: path.into(),
                name: name.clone(),
                expected: var.as_tensor().dims().to_vec(),
                actual: t.dims().to_vec(),
            });
        }
        t.to_dtype(var.as_tensor().dtype())
            .and_then(|t| t.to_device(network.device()))
            .and_then(|t| var.set(&t))
            .map_err(format)?;
    }
    Ok(())
}

/// SHA-256 over `network`'s frozen parameters: each one's name, shape and little-endian bytes,
/// in name order. Equal hashes mean bitwise-equal frozen layers, however they were obtained
/// (weights file, stage checkpoint or seeded initialisation).
pub fn frozen_hash(network: &Network) -> candle_core::Result<String> {
    let trainable: BTreeSet<String> = network
        .trainable_vars()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut hasher = Sha256::new();
    for (name, t) in network.named_parameters()? {
        if trainable.contains(&name) {
            continue;
        }
        hasher.update(format!("{name} {:?}\n", t.dims()).as_bytes());
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        hasher.update(&bytes);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
