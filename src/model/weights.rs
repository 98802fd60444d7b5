//! Loading conv-base weights for a network: from a safetensors file (verified by SHA-256), or
//! nothing (seeded random initialisation). Tensor names are `<keras layer>.weight` (OIHW for
//! convolutions, (out, in) for dense layers) and `<keras layer>.bias`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use super::arch::{Architecture, LayerKind};
use crate::config::Weights;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}: cannot read weights: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: SHA-256 is {actual} but the experiment expects {expected}; the file is not the one the experiment names (re-download it, or update model.weights.sha256)", path.display())]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}: not a safetensors file: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: tensor \"{name}\" is missing (the file has: {available})", path.display())]
    Missing {
        path: PathBuf,
        name: String,
        available: String,
    },
    #[error("{}: tensor \"{name}\" has shape {actual:?}, the model needs {expected:?}", path.display())]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("weights \"{name}\": {message}")]
    Unavailable { name: String, message: String },
}

/// Weights ready to be placed in a network, and the SHA-256 of the file they came from.
#[derive(Debug, Default)]
pub struct LoadedWeights {
    pub tensors: HashMap<String, Tensor>,
    pub sha256: Option<String>,
    pub source: Option<PathBuf>,
}

/// The (name, shape) of every parameter of `arch`, in model order, in this crate's layout.
pub fn parameter_shapes(arch: &Architecture) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for layer in &arch.layers {
        match layer.kind {
            LayerKind::Conv {
                in_channels,
                out_channels,
            } => {
                out.push((
                    format!("{}.weight", layer.name),
                    vec![out_channels, in_channels, 3, 3],
                ));
                out.push((format!("{}.bias", layer.name), vec![out_channels]));
            }
            LayerKind::Dense { inputs, units, .. } => {
                out.push((format!("{}.weight", layer.name), vec![units, inputs]));
                out.push((format!("{}.bias", layer.name), vec![units]));
            }
            LayerKind::Pool | LayerKind::Flatten => {}
        }
    }
    out
}

/// Resolve `weights` for `arch`: every conv-base parameter must be present with the right shape;
/// head parameters are taken when present (e.g. a checkpoint of a previous run).
pub fn load(
    weights: &Weights,
    arch: &Architecture,
    device: &Device,
) -> Result<LoadedWeights, WeightsError> {
    match weights {
        Weights::None => Ok(LoadedWeights::default()),
        Weights::Named(name) => Err(WeightsError::Unavailable {
            name: name.clone(),
            message: "pretrained ImageNet weights are not bundled and this build cannot read the original \
                      HDF5/.pth files yet; convert them to a safetensors file with tensors named \
                      block1_conv1.weight (OIHW), block1_conv1.bias, ... and set \
                      model.weights = { file = \"...\", sha256 = \"...\" }, or use weights = \"none\""
                .into(),
        }),
        Weights::File { path, sha256 } => load_file(path, sha256.as_deref(), arch, device),
    }
}

fn load_file(
    path: &Path,
    expected: Option<&str>,
    arch: &Architecture,
    device: &Device,
) -> Result<LoadedWeights, WeightsError> {
    let actual = sha256_file(path)?;
    if let Some(expected) = expected {
        if !expected.eq_ignore_ascii_case(&actual) {
            return Err(WeightsError::HashMismatch {
                path: path.into(),
                expected: expected.into(),
                actual,
            });
        }
    }
    let all = candle_core::safetensors::load(path, device).map_err(|e| WeightsError::Format {
        path: path.into(),
        message: e.to_string(),
    })?;
    let mut available: Vec<&String> = all.keys().collect();
    available.sort();
    let available = available
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut tensors = HashMap::new();
    let conv_base: Vec<&str> = arch
        .layers
        .iter()
        .filter(|l| l.in_conv_base())
        .map(|l| l.name.as_str())
        .collect();
    for (name, shape) in parameter_shapes(arch) {
        let layer = name.rsplit_once('.').map(|(l, _)| l).unwrap_or(&name);
        match all.get(&name) {
            Some(t) if t.dims() != shape.as_slice() => {
                return Err(WeightsError::Shape {
                    path: path.into(),
                    name,
                    expected: shape,
                    actual: t.dims().to_vec(),
                });
            }
            Some(t) => {
                let t = t
                    .to_dtype(candle_core::DType::F32)
                    .map_err(|e| WeightsError::Format {
                        path: path.into(),
                        message: e.to_string(),
                    })?;
                tensors.insert(name, t);
            }
            None if conv_base.contains(&layer) => {
                return Err(WeightsError::Missing {
                    path: path.into(),
                    name,
                    available,
                });
            }
            None => {}
        }
    }
    Ok(LoadedWeights {
        tensors,
        sha256: Some(actual),
        source: Some(path.to_path_buf()),
    })
}

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, WeightsError> {
    let io = |source| WeightsError::Io {
        path: path.into(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
