//! The network as a description: layer names, kinds, shapes and parameter counts, in model order.
//!
//! Pure data, no tensors: freeze masks, summaries and weight loading all read this one list, so a
//! layer name is written in exactly one place. Names follow Keras (`block1_conv1` ... `block5_pool`,
//! then `flatten`, `dense`, `dense_1`, ...).

use crate::config::ModelConfig;

/// Convolutions per VGG16 block.
const VGG16_BLOCKS: [usize; 5] = [2, 2, 3, 3, 3];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// 3x3 "same" convolution + ReLU, input channels -> output channels.
    Conv {
        in_channels: usize,
        out_channels: usize,
    },
    /// 2x2 max pooling, stride 2, "valid" (floor).
    Pool,
    Flatten,
    /// Dense + activation (ReLU for hidden layers; the last one outputs the logit).
    Dense {
        inputs: usize,
        units: usize,
        relu: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub name: String,
    pub kind: LayerKind,
    /// Output shape without the batch axis, Keras order (H, W, C) or (features,).
    pub output: Vec<usize>,
}

impl Layer {
    pub fn params(&self) -> usize {
        match self.kind {
            LayerKind::Conv {
                in_channels,
                out_channels,
            } => 9 * in_channels * out_channels + out_channels,
            LayerKind::Dense { inputs, units, .. } => inputs * units + units,
            LayerKind::Pool | LayerKind::Flatten => 0,
        }
    }

    pub fn has_weights(&self) -> bool {
        self.params() > 0
    }

    /// True for the layers of the pretrained convolutional base (`block*`).
    pub fn in_conv_base(&self) -> bool {
        matches!(self.kind, LayerKind::Conv { .. } | LayerKind::Pool)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Architecture {
    /// Input (height, width, channels).
    pub input: [usize; 3],
    pub layers: Vec<Layer>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchError {
    #[error("unknown architecture \"{0}\" (known: vgg16)")]
    UnknownArchitecture(String),
    #[error("input {h}x{w} is too small: VGG's five 2x2 poolings need at least 32x32")]
    InputTooSmall { h: usize, w: usize },
}

impl Architecture {
    /// The VGG-style network of `model` on `height` x `width` RGB input, with its binary
    /// classification head (one logit).
    pub fn build(model: &ModelConfig, height: usize, width: usize) -> Result<Self, ArchError> {
        Self::build_classifier(model, height, width, 1)
    }

    /// The same network with `outputs` logits: 1 for a binary task, one per class otherwise
    /// (e.g. a pretraining stage's multi-class source task).
    pub fn build_classifier(
        model: &ModelConfig,
        height: usize,
        width: usize,
        outputs: usize,
    ) -> Result<Self, ArchError> {
        if model.architecture != "vgg16" {
            return Err(ArchError::UnknownArchitecture(model.architecture.clone()));
        }
        if height < 32 || width < 32 {
            return Err(ArchError::InputTooSmall {
                h: height,
                w: width,
            });
        }
        let mut layers = Vec::new();
        let (mut h, mut w, mut c) = (height, width, 3);
        for (b, (&convs, &out)) in VGG16_BLOCKS.iter().zip(model.channels.iter()).enumerate() {
            for i in 1..=convs {
                layers.push(Layer {
                    name: format!("block{}_conv{}", b + 1, i),
                    kind: LayerKind::Conv {
                        in_channels: c,
                        out_channels: out,
                    },
                    output: vec![h, w, out],
                });
                c = out;
            }
            h /= 2;
            w /= 2;
            layers.push(Layer {
                name: format!("block{}_pool", b + 1),
                kind: LayerKind::Pool,
                output: vec![h, w, c],
            });
        }
        let mut features = h * w * c;
        layers.push(Layer {
            name: "flatten".into(),
            kind: LayerKind::Flatten,
            output: vec![features],
        });
        let mut dense_names = (0..).map(|i| {
            if i == 0 {
                "dense".to_string()
            } else {
                format!("dense_{i}")
            }
        });
        for &units in &model.head.units {
            layers.push(Layer {
                name: dense_names.next().expect("infinite"),
                kind: LayerKind::Dense {
                    inputs: features,
                    units,
                    relu: true,
                },
                output: vec![units],
            });
            features = units;
        }
        layers.push(Layer {
            name: dense_names.next().expect("infinite"),
            kind: LayerKind::Dense {
                inputs: features,
                units: outputs,
                relu: false,
            },
            output: vec![outputs],
        });
        Ok(Architecture {
            input: [height, width, 3],
            layers,
        })
    }

    pub fn layer_names(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.name.as_str()).collect()
    }

    /// The names of the conv-base layers (what a "notop" weights file holds).
    pub fn conv_base_names(&self) -> Vec<&str> {
        self.layers
            .iter()
            .filter(|l| l.in_conv_base())
            .map(|l| l.name.as_str())
            .collect()
    }

    pub fn total_params(&self) -> usize {
        self.layers.iter().map(Layer::params).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeadSpec, Weights};

    fn vgg16() -> ModelConfig {
        ModelConfig {
            architecture: "vgg16".into(),
            channels: [64, 128, 256, 512, 512],
            weights: Weights::None,
            conv_init: crate::config::ConvInit::GlorotUniform,
            head: HeadSpec::default(),
        }
    }

    /// Numbers from Keras's `model.summary()` for the notebook's model (keras-notebook-semantics.md, section 3).
    #[test]
    fn vgg16_at_150_matches_keras_parameter_counts() {
        let arch = Architecture::build(&vgg16(), 150, 150).unwrap();
        let base: usize = arch
            .layers
            .iter()
            .filter(|l| l.in_conv_base())
            .map(Layer::params)
            .sum();
        assert_eq!(base, 14_714_688);
        assert_eq!(arch.total_params(), 16_812_353);
        let pool5 = arch
            .layers
            .iter()
            .find(|l| l.name == "block5_pool")
            .unwrap();
        assert_eq!(pool5.output, vec![4, 4, 512]);
        let block5: usize = arch
            .layers
            .iter()
            .filter(|l| l.name.starts_with("block5_conv"))
            .map(Layer::params)
            .sum();
        assert_eq!(block5 + 2_097_665, 9_177_089);
        assert_eq!(arch.layer_names().len(), 18 + 3);
        assert_eq!(&arch.layer_names()[18..], &["flatten", "dense", "dense_1"]);
    }

    #[test]
    fn odd_sizes_floor_like_keras() {
        let arch = Architecture::build(&vgg16(), 150, 150).unwrap();
        let pools: Vec<usize> = arch
            .layers
            .iter()
            .filter(|l| l.kind == LayerKind::Pool)
            .map(|l| l.output[0])
            .collect();
        assert_eq!(pools, vec![75, 37, 18, 9, 4]);
        assert!(matches!(
            Architecture::build(&vgg16(), 31, 64),
            Err(ArchError::InputTooSmall { .. })
        ));
    }
}
