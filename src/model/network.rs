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
        self.arch
            .layers
            .iter()
            .zip(&self.trainable)
            .take_while(|(layer, &trains)| !trains || !layer.has_weights())
            .count()
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
        let x = if start == 0 {
            self.input_tensor(features, batch)?
        } else {
            // Layer outputs are described in Keras order (H, W, C); the engine holds NCHW.
            match self.arch.layers[start - 1].output.as_slice() {
                &[h, w, c] => Tensor::from_slice(features, (batch, c, h, w), &self.device)?,
                &[n] => Tensor::from_slice(features, (batch, n), &self.device)?,
                other => unreachable!("layer outputs are 1-D or 3-D, not {other:?}"),
            }
        };
        self.run_layers(x, start, self.arch.layers.len(), mode)?
            .squeeze(1)
    }

    /// SHA-256 over the names, shapes and bytes of the parameters of layers `..end`: what their
    /// output depends on besides the input (weights file or seeded initialisation alike).
    pub fn prefix_parameter_hash(&self, end: usize) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
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
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeadSpec, ModelConfig, Optimizer, Weights};
    use crate::train::loss::bce_with_logits;
    use crate::train::KerasOptimizer;

    fn arch() -> Architecture {
        let model = ModelConfig {
            architecture: "vgg16".into(),
            channels: [4, 4, 8, 8, 8],
            weights: Weights::None,
            conv_init: crate::config::ConvInit::GlorotUniform,
            head: HeadSpec {
                units: vec![8],
                ..HeadSpec::default()
            },
        };
        Architecture::build(&model, 32, 32).unwrap()
    }

    fn trainable_from(arch: &Architecture, name: &str) -> Vec<bool> {
        let start = arch.layers.iter().position(|l| l.name == name).unwrap();
        (0..arch.layers.len()).map(|i| i >= start).collect()
    }

    fn batch(n: usize) -> (Vec<f32>, Vec<f32>) {
        let mut rng = crate::base::rng::stream(99, "test-batch");
        let images = (0..n * 32 * 32 * 3)
            .map(|_| crate::base::rng::uniform_f32(&mut rng, 0.0, 1.0))
            .collect();
        let labels = (0..n).map(|i| (i % 2) as f32).collect();
        (images, labels)
    }

    #[test]
    fn frozen_parameters_stay_bitwise_unchanged_and_trainable_ones_move() {
        let arch = arch();
        let mask = trainable_from(&arch, "block5_conv1");
        let net = Network::new(
            arch,
            ConvInit::GlorotUniform,
            mask,
            &LoadedWeights::default(),
            1,
            &Device::Cpu,
        )
        .unwrap();
        let before = net.named_parameters().unwrap();
        let vars = net.trainable_vars();
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names.len(),
            2 * 5,
            "block5_conv1..3, dense, dense_1: weight and bias each"
        );
        assert!(names
            .iter()
            .all(|n| n.starts_with("block5_") || n.starts_with("dense")));
        let adam = Optimizer::Adam {
            learning_rate: 1e-2,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        };
        let mut opt = KerasOptimizer::new(adam, vars).unwrap();
        let (images, labels) = batch(4);
        let y = Tensor::from_slice(&labels, 4, &Device::Cpu).unwrap();
        for _ in 0..3 {
            let loss = bce_with_logits(&net.forward(&images, 4, Mode::Train).unwrap(), &y).unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        let after = net.named_parameters().unwrap();
        for (name, t0) in &before {
            let a: Vec<f32> = t0.flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = after[name].flatten_all().unwrap().to_vec1().unwrap();
            let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
            let trains = name.starts_with("block5_conv") || name.starts_with("dense");
            // Biases start at zero and every trainable weight gets a gradient here, so all move.
            assert_eq!(
                !same, trains,
                "{name}: trainable = {trains}, but changed = {}",
                !same
            );
        }
    }

    #[test]
    fn frozen_network_builds_no_autograd_graph() {
        let arch = arch();
        let n = arch.layers.len();
        let (images, _) = batch(2);
        let frozen = Network::new(
            arch.clone(),
            ConvInit::GlorotUniform,
            vec![false; n],
            &LoadedWeights::default(),
            0,
            &Device::Cpu,
        )
        .unwrap();
        assert!(!frozen.forward(&images, 2, Mode::Train).unwrap().track_op());
        let head_only = Network::new(
            arch.clone(),
            ConvInit::GlorotUniform,
            trainable_from(&arch, "dense"),
            &LoadedWeights::default(),
            0,
            &Device::Cpu,
        )
        .unwrap();
        assert!(head_only
            .forward(&images, 2, Mode::Train)
            .unwrap()
            .track_op());
        assert!(!head_only
            .forward(&images, 2, Mode::Eval)
            .unwrap()
            .track_op());
        assert_eq!(head_only.parameter_counts().0, 8 * 8 + 8 + 8 + 1);
    }

    /// The seam the feature cache relies on: the suffix run on prefix outputs computed one image
    /// at a time gives bitwise the logits and gradients of the full network on the whole batch.
    #[test]
    fn suffix_on_prefix_outputs_equals_the_full_network_bitwise() {
        let arch = arch();
        for first in ["block5_conv1", "dense"] {
            let mask = trainable_from(&arch, first);
            let net = Network::new(
                arch.clone(),
                ConvInit::HeUniform,
                mask,
                &LoadedWeights::default(),
                4,
                &Device::Cpu,
            )
            .unwrap();
            let end = net.frozen_prefix_len();
            assert_eq!(arch.layers[end].name, first);
            let (images, labels) = batch(4);
            let per_image = 32 * 32 * 3;
            let features: Vec<f32> = images
                .chunks(per_image)
                .flat_map(|img| net.forward_prefix(img, 1, end).unwrap())
                .collect();
            assert_eq!(features.len(), 4 * net.prefix_output_len(end));
            let y = Tensor::from_slice(&labels, 4, &Device::Cpu).unwrap();
            let run = |logits: Tensor| {
                let loss = bce_with_logits(&logits, &y).unwrap();
                let grads = loss.backward().unwrap();
                let bits = |t: &Tensor| -> Vec<u32> {
                    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                    v.iter().map(|x| x.to_bits()).collect()
                };
                let mut out = vec![bits(&logits)];
                for (_, var) in net.trainable_vars() {
                    out.push(bits(grads.get(var.as_tensor()).unwrap()));
                }
                out
            };
            let full = run(net.forward(&images, 4, Mode::Train).unwrap());
            let cached = run(net.forward_from(end, &features, 4, Mode::Train).unwrap());
            assert_eq!(full, cached, "{first}");
        }
    }

    #[test]
    fn initialisation_depends_on_seed_only() {
        let arch = arch();
        let n = arch.layers.len();
        let p = |seed| {
            Network::new(
                arch.clone(),
                ConvInit::HeUniform,
                vec![true; n],
                &LoadedWeights::default(),
                seed,
                &Device::Cpu,
            )
            .unwrap()
            .named_parameters()
            .unwrap()
        };
        let flat = |m: &BTreeMap<String, Tensor>, k: &str| -> Vec<f32> {
            m[k].flatten_all().unwrap().to_vec1().unwrap()
        };
        let (a, b, c) = (p(5), p(5), p(6));
        assert_eq!(
            flat(&a, "block3_conv2.weight"),
            flat(&b, "block3_conv2.weight")
        );
        assert_ne!(
            flat(&a, "block3_conv2.weight"),
            flat(&c, "block3_conv2.weight")
        );
        assert!(flat(&a, "dense.bias").iter().all(|&x| x == 0.0));
    }
}
