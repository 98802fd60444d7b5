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
        let mut rng = crate::rng::stream(99, "test-batch");
        let images = (0..n * 32 * 32 * 3)
            .map(|_| crate::rng::uniform_f32(&mut rng, 0.0, 1.0))
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
