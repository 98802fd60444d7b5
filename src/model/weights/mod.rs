//! Conv-base weights for a network: read from a file in any supported format, checked against
//! the architecture, and handed over under the runner's names, or nothing (seeded random
//! initialisation).
//!
//! Inside the runner a parameter is `<keras layer>.weight` (OIHW for convolutions, (out, in) for
//! dense layers) and `<keras layer>.bias`. Each format has its own reader that returns tensors
//! under those names: safetensors (the runner's own checkpoints, or torchvision/timm `features.N`
//! names), Keras HDF5 (`layer_names` / `weight_names` attributes, HWIO kernels) and PyTorch `.pth`
//! (zip or the legacy pre-1.6 format). Known names such as `keras:vgg16-imagenet` resolve to a
//! cached file whose published hash is checked before use. This module never downloads: that is
//! `runner weights fetch` (`fetch.rs`), run by the user.

mod fetch;
mod import;
mod keras_h5;
pub mod known;
mod pickle;
mod safetensors;
mod torch_pth;
pub mod trained;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use md5::Md5;
use sha2::{Digest, Sha256};

use super::arch::{Architecture, LayerKind};
use crate::base::hash::hex;
use crate::config::Weights;

pub use fetch::{fetch, DownloadProgress};
pub use import::{import, Imported};
pub use known::{Expected, KnownWeights, KNOWN};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// (`error` is not a `source`: the message says it, once.)
    #[error("{}: cannot read weights: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: SHA-256 is {actual} but the experiment expects {expected}; the file is not the one the experiment names (re-download it, or update model.weights.sha256)", path.display())]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}: {what} is {actual} but {name} is published with {expected}; the file is damaged or not the official one: delete it and run `runner weights fetch {name}`", path.display())]
    KnownHashMismatch {
        path: PathBuf,
        name: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{}: not a {format} file the runner can read: {message}", path.display())]
    Format {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("{}: unknown weights format (first bytes {magic}); supported: safetensors, Keras HDF5 (.h5), PyTorch (.pth, zip or legacy)", path.display())]
    UnknownFormat { path: PathBuf, magic: String },
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
    #[error("{}: tensor \"{name}\" is not a trainable parameter of this network (it trains: {trainable}); the file comes from a cell that trained other layers", path.display())]
    NotTrainable {
        path: PathBuf,
        name: String,
        trainable: String,
    },
    #[error("{}: a cell's trained layers only, without the frozen ones (\"{name}\" is not there); `runner export-model <the cell's directory> -o model.safetensors` writes the complete model, which can serve as weights", path.display())]
    TrainedOnly { path: PathBuf, name: String },
    #[error("weights \"{name}\": {message}")]
    Unavailable { name: String, message: String },
    #[error("weights \"{name}\" are not downloaded: fetch {url} and save it as {} (or run `runner weights fetch {name}`, which also checks its {hash})", path.display())]
    NotDownloaded {
        name: String,
        url: String,
        path: PathBuf,
        hash: String,
    },
    #[error("downloading {url}: {message}")]
    Download { url: String, message: String },
}

impl WeightsError {
    fn format(path: &Path, format: WeightsFormat, message: impl ToString) -> Self {
        WeightsError::Format {
            path: path.into(),
            format: format.describe(),
            message: message.to_string(),
        }
    }
}

/// The on-disk formats the runner reads, told apart by their first bytes (not the file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightsFormat {
    Safetensors,
    KerasH5,
    /// `torch.save` since PyTorch 1.6: a zip archive holding `data.pkl` and one file per storage.
    TorchZip,
    /// `torch.save` before PyTorch 1.6: pickles followed by raw storages.
    TorchLegacy,
}

impl WeightsFormat {
    pub fn describe(self) -> &'static str {
        match self {
            WeightsFormat::Safetensors => "safetensors",
            WeightsFormat::KerasH5 => "Keras HDF5",
            WeightsFormat::TorchZip => "PyTorch (zip)",
            WeightsFormat::TorchLegacy => "PyTorch (legacy)",
        }
    }

    /// Sniff the format from the first bytes of `path`.
    pub fn detect(path: &Path) -> Result<Self, WeightsError> {
        let mut head = [0u8; 16];
        let n = read_prefix(path, &mut head)?;
        let head = &head[..n];
        if head.starts_with(b"\x89HDF\r\n\x1a\n") {
            Ok(WeightsFormat::KerasH5)
        } else if head.starts_with(b"PK\x03\x04") {
            Ok(WeightsFormat::TorchZip)
        } else if head.starts_with(&[0x80]) && head.get(2) == Some(&0x8a) {
            // Pickle protocol >= 2 whose first object is a LONG1: the legacy magic number.
            Ok(WeightsFormat::TorchLegacy)
        } else if n >= 9 && head[8] == b'{' {
            // 8-byte little-endian header length, then the JSON header.
            Ok(WeightsFormat::Safetensors)
        } else {
            let magic = head.iter().map(|b| format!("{b:02x}")).collect::<String>();
            Err(WeightsError::UnknownFormat {
                path: path.into(),
                magic,
            })
        }
    }
}

fn read_prefix(path: &Path, buf: &mut [u8]) -> Result<usize, WeightsError> {
    let io = |source| WeightsError::Io {
        path: path.into(),
        error: source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).map_err(io)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Weights ready to be placed in a network, and where they came from.
#[derive(Debug, Default)]
pub struct LoadedWeights {
    pub tensors: HashMap<String, Tensor>,
    /// SHA-256 of the file, whatever hash was used to verify it.
    pub sha256: Option<String>,
    pub source: Option<PathBuf>,
    pub format: Option<WeightsFormat>,
    /// The published hash the file was checked against, e.g. `md5:6d6bbae1...` for the Keras
    /// file; `sha256:...` for a file given with `sha256`; `None` when nothing was checked.
    pub verified: Option<String>,
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

/// The Keras name of each convolution with its index in torchvision's `features` Sequential:
/// every convolution is followed by a ReLU and every block by a pooling layer, each taking an
/// index (so 0, 2, pool 4, 5, 7, pool 9, 10, ...).
pub fn torchvision_feature_indices(arch: &Architecture) -> Vec<(usize, &str)> {
    let mut index = 0;
    let mut out = Vec::new();
    for layer in arch.layers.iter().filter(|l| l.in_conv_base()) {
        match layer.kind {
            LayerKind::Conv { .. } => {
                out.push((index, layer.name.as_str()));
                index += 2;
            }
            _ => index += 1,
        }
    }
    out
}

/// Resolve `weights` for `arch`: every conv-base parameter must be present with the right shape;
/// head parameters are taken when present (e.g. in a model `runner export-model` wrote from a
/// previous run).
pub fn load(
    weights: &Weights,
    arch: &Architecture,
    device: &Device,
) -> Result<LoadedWeights, WeightsError> {
    match weights {
        Weights::None => Ok(LoadedWeights::default()),
        Weights::Named(name) => {
            let known = known::lookup(name).ok_or_else(|| WeightsError::Unavailable {
                name: name.clone(),
                message: format!(
                    "not a known name (known: {})",
                    KNOWN.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                ),
            })?;
            let path = known.locate(&known::Env::from_process())?;
            let hashes = hash_file(&path)?;
            known.verify(&path, &hashes)?;
            let mut loaded = load_checked(&path, arch, device)?;
            loaded.sha256 = Some(hashes.sha256);
            loaded.verified = Some(known.expected.to_string());
            Ok(loaded)
        }
        Weights::File { path, sha256 } => {
            let hashes = hash_file(path)?;
            if let Some(expected) = sha256 {
                if !expected.eq_ignore_ascii_case(&hashes.sha256) {
                    return Err(WeightsError::HashMismatch {
                        path: path.clone(),
                        expected: expected.clone(),
                        actual: hashes.sha256,
                    });
                }
            }
            let mut loaded = load_checked(path, arch, device).map_err(|e| match e {
                WeightsError::Missing { path, name, .. } if trained::is_trained_file(&path) => {
                    WeightsError::TrainedOnly { path, name }
                }
                e => e,
            })?;
            loaded.verified = sha256.as_ref().map(|s| format!("sha256:{s}"));
            loaded.sha256 = Some(hashes.sha256);
            Ok(loaded)
        }
        // The sweep trains the stage and loads its checkpoint with `load_conv_base`.
        Weights::Stage(name) => Err(WeightsError::Unavailable {
            name: format!("stage {name}"),
            message: "a stage's weights exist only once the sweep has trained it".into(),
        }),
    }
}

/// The conv base of the checkpoint at `path` (a runner checkpoint whose head may have another
/// shape, e.g. a pretraining stage's multi-class head): every conv-base tensor of `arch` must be
/// there; head tensors are left out, so the head starts fresh.
pub fn load_conv_base(
    path: &Path,
    arch: &Architecture,
    device: &Device,
) -> Result<LoadedWeights, WeightsError> {
    let hashes = hash_file(path)?;
    let (format, mut all) = read_any(path, arch, device)?;
    let conv_base = arch.conv_base_names();
    all.retain(|name, _| {
        let layer = name.rsplit_once('.').map_or(name.as_str(), |(l, _)| l);
        conv_base.contains(&layer)
    });
    Ok(LoadedWeights {
        tensors: select(path, all, arch)?,
        sha256: Some(hashes.sha256),
        source: Some(path.to_path_buf()),
        format: Some(format),
        verified: None,
    })
}

/// Read `path` (any supported format) and keep the tensors `arch` uses, checking their shapes.
/// The file is not hashed: callers that name a file by its SHA-256 check it first.
pub fn load_checked(
    path: &Path,
    arch: &Architecture,
    device: &Device,
) -> Result<LoadedWeights, WeightsError> {
    let (format, all) = read_any(path, arch, device)?;
    let tensors = select(path, all, arch)?;
    Ok(LoadedWeights {
        tensors,
        sha256: None,
        source: Some(path.to_path_buf()),
        format: Some(format),
        verified: None,
    })
}

/// Every tensor of `path` that the reader for its format can name in the runner's convention
/// (`block1_conv1.weight`, ... OIHW; `dense.weight` (out, in)), as f32 on `device`.
/// `arch` supplies the layer order for formats whose names are positional (torchvision's
/// `features.N`); tensors the runner cannot name are left out.
pub fn read_any(
    path: &Path,
    arch: &Architecture,
    device: &Device,
) -> Result<(WeightsFormat, BTreeMap<String, Tensor>), WeightsError> {
    let format = WeightsFormat::detect(path)?;
    let raw = match format {
        WeightsFormat::Safetensors => safetensors::read(path, device)?,
        WeightsFormat::KerasH5 => keras_h5::read(path, device)?,
        WeightsFormat::TorchZip => torch_pth::read_zip(path, device)?,
        WeightsFormat::TorchLegacy => torch_pth::read_legacy(path, device)?,
    };
    let renamed = to_runner_names(raw, arch);
    let mut out = BTreeMap::new();
    for (name, t) in renamed {
        let t = t
            .to_dtype(DType::F32)
            .map_err(|e| WeightsError::format(path, format, e))?;
        out.insert(name, t);
    }
    Ok((format, out))
}

/// Rename torchvision/timm `features.N.{weight,bias}` (with an optional `module.` prefix from
/// `DataParallel`) to Keras layer names; names already in the runner's convention pass through;
/// anything else (classifier, timm's `pre_logits`/`head`) is dropped.
fn to_runner_names(raw: BTreeMap<String, Tensor>, arch: &Architecture) -> BTreeMap<String, Tensor> {
    let by_index: HashMap<usize, &str> = torchvision_feature_indices(arch).into_iter().collect();
    let runner_names: Vec<String> = parameter_shapes(arch).into_iter().map(|(n, _)| n).collect();
    let mut out = BTreeMap::new();
    for (name, tensor) in raw {
        let bare = name.strip_prefix("module.").unwrap_or(&name);
        if let Some(rest) = bare.strip_prefix("features.") {
            let renamed = rest.split_once('.').and_then(|(i, suffix)| {
                let layer = by_index.get(&i.parse::<usize>().ok()?)?;
                matches!(suffix, "weight" | "bias").then(|| format!("{layer}.{suffix}"))
            });
            if let Some(renamed) = renamed {
                out.insert(renamed, tensor);
            }
        } else if runner_names.iter().any(|n| n == bare) {
            out.insert(bare.to_string(), tensor);
        }
    }
    out
}

/// Keep the parameters of `arch`: conv-base ones must all be there, head ones are optional.
fn select(
    path: &Path,
    mut all: BTreeMap<String, Tensor>,
    arch: &Architecture,
) -> Result<HashMap<String, Tensor>, WeightsError> {
    let available = all.keys().cloned().collect::<Vec<_>>().join(", ");
    let conv_base = arch.conv_base_names();
    let mut tensors = HashMap::new();
    for (name, shape) in parameter_shapes(arch) {
        let layer = name.rsplit_once('.').map(|(l, _)| l).unwrap_or(&name);
        match all.remove(&name) {
            Some(t) if t.dims() != shape.as_slice() => {
                return Err(WeightsError::Shape {
                    path: path.into(),
                    name,
                    expected: shape,
                    actual: t.dims().to_vec(),
                });
            }
            Some(t) => {
                tensors.insert(name, t);
            }
            None if conv_base.contains(&layer) => {
                return Err(WeightsError::Missing {
                    path: path.into(),
                    name,
                    available: if available.is_empty() {
                        "no tensor with a VGG16 layer name".into()
                    } else {
                        available
                    },
                });
            }
            None => {}
        }
    }
    Ok(tensors)
}

/// Hex digests of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHashes {
    pub sha256: String,
    pub md5: String,
}

/// SHA-256 and MD5 of a file in one streamed pass (MD5 because Keras publishes its files' MD5).
pub fn hash_file(path: &Path) -> Result<FileHashes, WeightsError> {
    let io = |source| WeightsError::Io {
        path: path.into(),
        error: source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hashes = Hashes::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hashes.update(&buf[..n]);
    }
    Ok(hashes.finish())
}

/// Hex SHA-256 of a file, streamed (`base::hash::sha256_file`), its error naming the file as a
/// weights file.
pub fn file_sha256(path: &Path) -> Result<String, WeightsError> {
    crate::base::hash::sha256_file(path)
        .map(|(digest, _)| digest)
        .map_err(|source| WeightsError::Io {
            path: path.into(),
            error: source,
        })
}

/// Incremental SHA-256 + MD5, for hashing while downloading.
#[derive(Default)]
pub(crate) struct Hashes {
    sha256: Sha256,
    md5: Md5,
}

impl Hashes {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.md5.update(bytes);
    }

    pub(crate) fn finish(self) -> FileHashes {
        FileHashes {
            sha256: hex(&self.sha256.finalize()),
            md5: hex(&self.md5.finalize()),
        }
    }
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
