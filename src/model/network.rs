//! The network with its parameters: frozen ones as plain tensors (no gradient is ever tracked
//! for them or for anything computed only from them), trainable ones as candle `Var`s.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

use super::arch::{Architecture, LayerKind};
use super::init::glorot_uniform;
use super::layers;
use super::weights::{parameter_shapes, LoadedWeights};

pub type Result<T> = candle_core::Result<T>;

enum Param {
    Frozen(Tensor),
    Trainable(Var),
}

impl Param {
    fn tensor(&self) -> &Tensor {
        match self {
            Param::Frozen(t) => t,
            Param::Trainable(v) => v.as_tensor(),
        }
    }
}

struct LayerParams {
    weight: Param,
    bias: Param,
}

/// Whether gradients are needed: training builds the autograd graph from the first trainable
/// layer on; evaluation builds none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

pub struct Network {
    arch: Architecture,
    trainable: Vec<bool>,
    params: Vec<Option<LayerParams>>,
    device: Device,
}

impl Network {
    /// Build the network: parameters from `weights` where present, otherwise Glorot-uniform
    /// kernels from the seed's per-name streams and zero biases; `trainable[i]` says whether
    /// layer i trains.
    pub fn new(
        arch: Architecture,
        trainable: Vec<bool>,
        weights: &LoadedWeights,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        assert_eq!(
            trainable.len(),
            arch.layers.len(),
            "one trainable flag per layer"
        );
        let shapes: BTreeMap<String, Vec<usize>> = parameter_shapes(&arch).into_iter().collect();
        let mut params = Vec::with_capacity(arch.layers.len());
        for (layer, &trains) in arch.layers.iter().zip(&trainable) {
            let (fan_in, fan_out) = match layer.kind {
                LayerKind::Conv {
                    in_channels,
                    out_channels,
                } => (9 * in_channels, 9 * out_channels),
                LayerKind::Dense { inputs, units, .. } => (inputs, units),
                LayerKind::Pool | LayerKind::Flatten => {
                    params.push(None);
                    continue;
                }
            };
            let make = |suffix: &str| -> Result<Param> {
                let name = format!("{}.{suffix}", layer.name);
                let shape = &shapes[&name];
                let t = match weights.tensors.get(&name) {
                    Some(t) => t.to_device(device)?,
                    None if suffix == "weight" => {
                        let count = shape.iter().product();
                        Tensor::from_vec(
                            glorot_uniform(seed, &name, count, fan_in, fan_out),
                            shape.as_slice(),
                            device,
                        )?
                    }
                    None => Tensor::zeros(shape.as_slice(), DType::F32, device)?,
                };
                Ok(if trains {
                    Param::Trainable(Var::from_tensor(&t)?)
                } else {
                    Param::Frozen(t)
                })
            };
            params.push(Some(LayerParams {
                weight: make("weight")?,
                bias: make("bias")?,
            }));
        }
        Ok(Network {
            arch,
            trainable,
            params,
            device: device.clone(),
        })
    }

    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits, shape (batch,), for `images`: `batch` NHWC images of the architecture's input size.
    pub fn forward(&self, images: &[f32], batch: usize, mode: Mode) -> Result<Tensor> {
        let [h, w, c] = self.arch.input;
        let x = Tensor::from_slice(images, (batch, h, w, c), &self.device)?;
        let mut x = x.permute((0, 3, 1, 2))?.contiguous()?;
        for (layer, params) in self.arch.layers.iter().zip(&self.params) {
            let p = |p: &Param| match mode {
                Mode::Train => p.tensor().clone(),
                Mode::Eval => p.tensor().detach(),
            };
            x = match (layer.kind, params) {
                (LayerKind::Conv { .. }, Some(lp)) => {
                    layers::conv3x3_relu(&x, &p(&lp.weight), &p(&lp.bias))?
                }
                (LayerKind::Dense { relu, .. }, Some(lp)) => {
                    layers::dense(&x, &p(&lp.weight), &p(&lp.bias), relu)?
                }
                (LayerKind::Pool, _) => layers::max_pool_2x2(&x)?,
                (LayerKind::Flatten, _) => layers::flatten_channels_last(&x)?,
                (_, None) => unreachable!("layers with weights always have parameters"),
            };
        }
        x.squeeze(1)
    }

    /// The trainable variables with their names (`<layer>.weight`, `<layer>.bias`), in model order.
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (layer, params) in self.arch.layers.iter().zip(&self.params) {
            if let Some(lp) = params {
                for (suffix, p) in [("weight", &lp.weight), ("bias", &lp.bias)] {
                    if let Param::Trainable(v) = p {
                        out.push((format!("{}.{suffix}", layer.name), v.clone()));
                    }
                }
            }
        }
        out
    }

    /// Every parameter by name (a snapshot: later training does not change the returned tensors).
    pub fn named_parameters(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (layer, params) in self.arch.layers.iter().zip(&self.params) {
            if let Some(lp) = params {
                out.insert(format!("{}.weight", layer.name), lp.weight.tensor().copy()?);
                out.insert(format!("{}.bias", layer.name), lp.bias.tensor().copy()?);
            }
        }
        Ok(out)
    }

    /// (trainable, frozen) parameter counts.
    pub fn parameter_counts(&self) -> (usize, usize) {
        let mut counts = (0, 0);
        for (layer, &trains) in self.arch.layers.iter().zip(&self.trainable) {
            if trains {
                counts.0 += layer.params();
            } else {
                counts.1 += layer.params();
            }
        }
        counts
    }

    pub fn trainable_mask(&self) -> &[bool] {
        &self.trainable
    }

    /// Save every parameter as safetensors (names as in `named_parameters`).
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let map: std::collections::HashMap<String, Tensor> =
            self.named_parameters()?.into_iter().collect();
        candle_core::safetensors::save(&map, path)
    }
}
