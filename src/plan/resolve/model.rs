//! The `[model]` section of a cell: channels, head and where its weights come from.

use super::Ctx;
use crate::config::spec::{ModelSpec, WeightsSpec, STAGES};
use crate::config::{ConfigError, ModelConfig, Weights};

/// VGG16's block widths, which every pretrained VGG16 checkpoint has.
const VGG16_CHANNELS: [usize; 5] = [64, 128, 256, 512, 512];

impl Ctx<'_> {
    pub(super) fn model(&self, m: &ModelSpec) -> Result<ModelConfig, ConfigError> {
        if m.channels.contains(&0) {
            return Err(self.err(
                "model.channels",
                format!(
                    "every block needs at least 1 channel, found {:?}",
                    m.channels
                ),
            ));
        }
        if m.head.units.contains(&0) {
            return Err(self.err(
                "model.head.units",
                format!(
                    "every dense layer needs at least 1 unit, found {:?}",
                    m.head.units
                ),
            ));
        }
        let weights = match &m.weights {
            WeightsSpec::Named(name) if name == "none" => Weights::None,
            WeightsSpec::Named(name) => {
                if m.channels != VGG16_CHANNELS {
                    return Err(self.err(
                        self.pick(&["model.weights", "model.channels"], "model.channels"),
                        format!(
                            "pretrained weights {name:?} need VGG16's channels {VGG16_CHANNELS:?}, \
                             found {:?}; remove channels or set weights = \"none\"",
                            m.channels
                        ),
                    ));
                }
                Weights::Named(name.clone())
            }
            WeightsSpec::File { file, sha256 } => {
                let path = self.path("model.weights.file", file)?;
                let sha256 = match sha256 {
                    Some(digest)
                        if digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()) =>
                    {
                        Some(digest.to_ascii_lowercase())
                    }
                    Some(digest) => {
                        return Err(self.err(
                            "model.weights.sha256",
                            format!(
                                "expected 64 hexadecimal digits (the file's SHA-256), found \
                                 {digest:?}"
                            ),
                        ))
                    }
                    None => None,
                };
                Weights::File { path, sha256 }
            }
            WeightsSpec::Stage { stage } => {
                if !STAGES.contains(&stage.as_str()) {
                    return Err(self.err(
                        "model.weights.stage",
                        format!(
                            "unknown stage {stage:?} (stages: {}); write {{ stage = \"pretrain\" }} \
                             and declare a [pretrain] table",
                            STAGES.join(", ")
                        ),
                    ));
                }
                let Some(declared) = self.stage.filter(|s| &s.name == stage) else {
                    return Err(self.err(
                        "model.weights.stage",
                        format!(
                            "the experiment has no [{stage}] table; add one (see \
                             experiments/reference.toml) or choose other weights"
                        ),
                    ));
                };
                let trained = &declared.config.model;
                if m.architecture != trained.architecture || m.channels != trained.channels {
                    return Err(self.err(
                        self.pick(&["model.channels", "model.architecture"], "model.weights"),
                        format!(
                            "the {stage} stage trains {} with channels {:?} (from [model]); a cell \
                             that loads its weights needs the same, found {} with {:?}",
                            trained.architecture, trained.channels, m.architecture, m.channels
                        ),
                    ));
                }
                Weights::Stage(stage.clone())
            }
        };
        Ok(ModelConfig {
            architecture: m.architecture.clone(),
            channels: m.channels,
            weights,
            conv_init: m.conv_init,
            head: m.head.clone(),
        })
    }
}
