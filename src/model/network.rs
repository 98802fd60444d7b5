//! The network with its parameters: frozen ones as plain tensors (no gradient is ever tracked
//! for them or for anything computed only from them), trainable ones as candle `Var`s.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

use super::arch::{Architecture, LayerKind};
use super::init::glorot_uniform;
use super::layers;
use super::weights::{parameter_shapes, LoadedWeights};
use crate::config::ConvInit;

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
        conv_init: ConvInit,
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
                } => match conv_init {
                    ConvInit::GlorotUniform => (9 * in_channels, 9 * out_channels),
                    // He uniform is Glorot's formula without the fan-out term.
                    ConvInit::HeUniform => (9 * in_channels, 0),
                },
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

    /// Logits for `images` (`batch` NHWC images of the architecture's input size): shape (batch,)
    /// for a head of one unit, (batch, outputs) otherwise (`squeeze` keeps an axis longer than 1).
    pub fn forward(&self, images: &[f32], batch: usize, mode: Mode) -> Result<Tensor> {
        let x = self.input_tensor(images, batch)?;
        self.run_layers(x, 0, self.arch.layers.len(), mode)?
            .squeeze(1)
    }

    /// How many leading layers are frozen: the prefix whose output depends only on the input
    /// image and the frozen parameters, never on training. Layers without parameters (pooling,
    /// flatten) count as frozen whatever their flag says: nothing of theirs trains.
    pub fn frozen_prefix_len(&self) -> usize {
        frozen_prefix_len(&self.arch, &self.trainable)
    }

    /// The output of layers `..end` for `batch` NHWC images, without gradients, flattened per
    /// image in the engine's layout (what `forward_from(end, ..)` takes back).
    ///
    /// The layers run exactly as in `forward` (the frozen path builds no autograd graph in either
    /// mode), so `forward_from(end, forward_prefix(x, end))` equals `forward(x)` bit for bit on
    /// the CPU, as long as each image's result does not depend on the rest of its batch.
    pub fn forward_prefix(&self, images: &[f32], batch: usize, end: usize) -> Result<Vec<f32>> {
        let x = self.input_tensor(images, batch)?;
        self.run_layers(x, 0, end, Mode::Eval)?
            .flatten_all()?
            .to_vec1()
    }

    /// Values per image of the output of layers `..end` (the input itself for 0).
    pub fn prefix_output_len(&self, end: usize) -> usize {
        match end {
            0 => self.arch.input.iter().product(),
            n => self.arch.layers[n - 1].output.iter().product(),
        }
    }

    /// Logits, shape (batch,), from layer `start` on, given the output of layers `..start` as
    /// `forward_prefix` returns it (`batch` images, `prefix_output_len(start)` values each).
    pub fn forward_from(
        &self,
        start: usize,
        features: &[f32],
        batch: usize,
        mode: Mode,
    ) -> Result<Tensor> {
        let x = self.output_tensor(start, features, batch)?;
        self.run_layers(x, start, self.arch.layers.len(), mode)?
            .squeeze(1)
    }

    /// The output of layers `..end` given that of layers `..start` (`start <= end`), both as
    /// `forward_prefix` returns them, without gradients: only layers `start..end` run, exactly
    /// as `forward_prefix(images, end)` runs them, so the result is the same bits.
    pub fn forward_between(
        &self,
        start: usize,
        end: usize,
        features: &[f32],
        batch: usize,
    ) -> Result<Vec<f32>> {
        let x = self.output_tensor(start, features, batch)?;
        self.run_layers(x, start, end, Mode::Eval)?
            .flatten_all()?
            .to_vec1()
    }

    /// The engine's tensor for the output of layers `..start` as `forward_prefix` flattens it
    /// (the input images for 0).
    fn output_tensor(&self, start: usize, features: &[f32], batch: usize) -> Result<Tensor> {
        if start == 0 {
            return self.input_tensor(features, batch);
        }
        // Layer outputs are described in Keras order (H, W, C); the engine holds NCHW.
        match self.arch.layers[start - 1].output.as_slice() {
            &[h, w, c] => Tensor::from_slice(features, (batch, c, h, w), &self.device),
            &[n] => Tensor::from_slice(features, (batch, n), &self.device),
            other => unreachable!("layer outputs are 1-D or 3-D, not {other:?}"),
        }
    }

    /// SHA-256 over the names, shapes and bytes of the parameters of layers `..end`: what their
    /// output depends on besides the input (weights file or seeded initialisation alike).
    pub fn prefix_parameter_hash(&self, end: usize) -> Result<String> {
        Ok(self
            .prefix_parameter_hashes(end)?
            .pop()
            .unwrap_or_else(|| hex_digest(sha2::Sha256::default())))
    }

    /// `prefix_parameter_hash(k)` for every `k` in `1..=end`, in one pass over the parameters.
    pub fn prefix_parameter_hashes(&self, end: usize) -> Result<Vec<String>> {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        let mut out = Vec::with_capacity(end);
        for (layer, params) in self.arch.layers[..end].iter().zip(&self.params) {
            hasher.update(format!("layer {} {:?}\n", layer.name, layer.kind).as_bytes());
            if let Some(lp) = params {
                for (suffix, p) in [("weight", &lp.weight), ("bias", &lp.bias)] {
                    let t = p.tensor();
                    hasher.update(format!("{suffix} {:?} {:?}\n", t.dims(), t.dtype()).as_bytes());
                    let values = t.flatten_all()?.to_vec1::<f32>()?;
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    hasher.update(&bytes);
                }
            }
            out.push(hex_digest(hasher.clone()));
        }
        Ok(out)
    }

    fn input_tensor(&self, images: &[f32], batch: usize) -> Result<Tensor> {
        let [h, w, c] = self.arch.input;
        let x = Tensor::from_slice(images, (batch, h, w, c), &self.device)?;
        x.permute((0, 3, 1, 2))?.contiguous()
    }

    /// Layers `start..end` on `x` (NCHW, or (batch, features) after `flatten`).
    fn run_layers(&self, mut x: Tensor, start: usize, end: usize, mode: Mode) -> Result<Tensor> {
        let range = self.arch.layers[start..end].iter();
        for (layer, params) in range.zip(&self.params[start..end]) {
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
        Ok(x)
    }

    /// The conv base's output (after the last pooling layer) for `batch` NHWC images, as NHWC
    /// `(batch, h, w, c)` like Keras's `conv_base.predict`, without gradients. For checking
    /// loaded weights against a reference implementation.
    pub fn conv_base_output(&self, images: &[f32], batch: usize) -> Result<Tensor> {
        let [h, w, c] = self.arch.input;
        let x = Tensor::from_slice(images, (batch, h, w, c), &self.device)?;
        let mut x = x.permute((0, 3, 1, 2))?.contiguous()?;
        for (layer, params) in self.arch.layers.iter().zip(&self.params) {
            x = match (layer.kind, params) {
                (LayerKind::Conv { .. }, Some(lp)) => layers::conv3x3_relu(
                    &x,
                    &lp.weight.tensor().detach(),
                    &lp.bias.tensor().detach(),
                )?,
                (LayerKind::Pool, _) => layers::max_pool_2x2(&x)?,
                _ => break,
            };
        }
        x.permute((0, 2, 3, 1))?.contiguous()
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

    /// Save the conv base's parameters only, like a Keras "notop" weights file.
    pub fn save_conv_base(&self, path: &Path) -> Result<()> {
        let base = self.arch.conv_base_names();
        let map: std::collections::HashMap<String, Tensor> = self
            .named_parameters()?
            .into_iter()
            .filter(|(name, _)| base.iter().any(|b| name.split('.').next() == Some(*b)))
            .collect();
        candle_core::safetensors::save(&map, path)
    }

    /// Save every parameter as safetensors (names as in `named_parameters`).
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let map: std::collections::HashMap<String, Tensor> =
            self.named_parameters()?.into_iter().collect();
        candle_core::safetensors::save(&map, path)
    }
}

/// How many leading layers of `arch` are frozen when `trainable` says which train (see
/// `Network::frozen_prefix_len`): known from the plan, before any network is built.
pub fn frozen_prefix_len(arch: &Architecture, trainable: &[bool]) -> usize {
    arch.layers
        .iter()
        .zip(trainable)
        .take_while(|(layer, &trains)| !trains || !layer.has_weights())
        .count()
}

fn hex_digest(hasher: sha2::Sha256) -> String {
    use sha2::Digest;
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests;
