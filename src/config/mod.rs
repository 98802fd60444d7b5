//! Experiment files, stage one: the file as written (`spec`, `parse`) and the typed configuration
//! it resolves to (`Experiment`, `CellConfig`, ...); `plan` does stage two (resolve and check).
//!
//! Everything downstream (data, model, training, store) consumes the resolved types defined here,
//! never the raw TOML. Errors name the file, the line and the dotted key.
//!
//! - `spec` (+ `forms`, `value_de`): the file as written, deserialized with messages in the
//!   user's terms; unknown keys are errors.
//! - `parse`: stage one. TOML text -> spec, each `[[variants]]` entry deep-merged over the base.
//! - `locate`: dotted key paths and the line each one is written on.
//! - `hash`: the canonical hash of a resolved cell configuration (a run-key component).

pub mod after_training;
mod augmentation;
mod device;
mod forms;
pub mod hash;
pub mod locate;
pub mod parse;
pub mod spec;
#[cfg(test)]
mod tests;
mod value_de;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use after_training::{EvaluatedModel, EvaluationSettings, MlflowSettings};
pub use device::DeviceChoice;
pub use spec::{
    Activation, AugmentStep, ConvInit, Factor, FillMode, FlipMode, HeadSpec, Interpolation,
    OnBadImage, Preprocessing, ShuffleMode, SlurmSettings, SyntheticSpec, SyntheticTask,
    KNOWN_WEIGHTS, STAGES,
};

/// The name of the single variant of an experiment without `[[variants]]`.
pub const DEFAULT_VARIANT: &str = "default";

/// A parsed, validated experiment: the matrix axes and each variant's fully resolved configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// `name` from the file, or the file stem.
    pub name: String,
    pub description: Option<String>,
    /// The experiment file as given (for messages); `base_dir` is its parent, against which paths resolve.
    pub file: PathBuf,
    pub base_dir: PathBuf,
    pub seeds: Vec<u64>,
    pub variants: Vec<Variant>,
    /// The `device` key: where to train unless `--device` says otherwise. Not part of any run
    /// key (see `model::device`).
    #[serde(default)]
    pub device: DeviceChoice,
    /// The `[pretrain]` stage, when the file declares one.
    #[serde(default)]
    pub pretrain: Option<Stage>,
    /// The `[slurm]` table: job resources for `runner sweep --slurm`. Not part of any run key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<spec::SlurmSettings>,
    /// The `[mlflow]` table: where `runner sweep` logs as it goes. Not part of any run key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowSettings>,
    /// The `[evaluation]` table: the test set every cell is evaluated on when a sweep ends. Not
    /// part of any run key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationSettings>,
}

/// A training stage that runs before the cells that load its weights (`[pretrain]`): the
/// experiment's network trained from scratch on its own data set, with a head of one output per
/// class. Its configuration has the shape of a cell's (all layers train, random weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The name cells use in `weights = { stage = "..." }`.
    pub name: String,
    pub seed: u64,
    pub config: CellConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    pub description: Option<String>,
    pub config: CellConfig,
}

/// One point of the matrix. New axes are new fields here (and in `Experiment::cells`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub variant: String,
    pub seed: u64,
}

/// Everything that determines a cell's training except the seed: defaults filled in, paths absolute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellConfig {
    pub dataset: DatasetConfig,
    pub model: ModelConfig,
    pub training: TrainingConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetConfig {
    pub source: DataSource,
    /// (height, width)
    pub image_size: [u32; 2],
    pub batch_size: usize,
    pub shuffle: ShuffleMode,
    pub preprocessing: Preprocessing,
    pub on_bad_image: OnBadImage,
    pub augmentation: Vec<AugmentStep>,
    /// The known data set whose fetched copy `source` names (`dataset.known`); the configuration
    /// hash then holds this name instead of the cache's location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    Directories { train: PathBuf, validation: PathBuf },
    Synthetic(SyntheticSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: String,
    pub channels: [usize; 5],
    pub weights: Weights,
    pub conv_init: ConvInit,
    pub head: HeadSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    /// Seeded random initialisation (Glorot uniform kernels, zero biases).
    None,
    /// A known name such as "keras:vgg16-imagenet".
    Named(String),
    File {
        path: PathBuf,
        sha256: Option<String>,
    },
    /// The conv base of the experiment's stage of this name (its head is not used).
    Stage(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    pub epochs: usize,
    pub optimizer: Optimizer,
    pub freeze: FreezeRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Optimizer {
    Adam {
        learning_rate: f64,
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
    },
    Rmsprop {
        learning_rate: f64,
        rho: f64,
        momentum: f64,
        epsilon: f64,
        centered: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FreezeRule {
    /// Keras default: every layer trains.
    AllTrainable,
    /// Layers from this one on (model order) train; earlier ones are frozen.
    TrainableFrom(String),
    /// Layers matching any glob are frozen; the rest train.
    Freeze(Vec<String>),
    /// Layers matching any glob train; the rest are frozen.
    Train(Vec<String>),
}

impl Experiment {
    /// The matrix, variants-major: every seed of the first variant, then the next variant.
    pub fn cells(&self) -> Vec<Cell> {
        self.variants
            .iter()
            .flat_map(|v| {
                self.seeds.iter().map(move |&seed| Cell {
                    variant: v.name.clone(),
                    seed,
                })
            })
            .collect()
    }

    /// The stage a cell configuration loads its weights from, if any.
    pub fn stage_of(&self, cfg: &CellConfig) -> Option<&Stage> {
        match &cfg.model.weights {
            Weights::Stage(name) => self.pretrain.as_ref().filter(|s| &s.name == name),
            _ => None,
        }
    }

    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }

    /// The variant named `name`, or an error naming the file and listing the variants.
    pub fn require_variant(&self, name: &str) -> anyhow::Result<&Variant> {
        self.variant(name).ok_or_else(|| {
            let names: Vec<&str> = self.variants.iter().map(|v| v.name.as_str()).collect();
            anyhow::anyhow!(
                "{}: no variant named \"{name}\" (variants: {})",
                self.file.display(),
                names.join(", ")
            )
        })
    }
}

/// The demo experiment, embedded so that `runner sweep` works anywhere, offline.
pub const DEMO_TOML: &str = include_str!("../../experiments/demo.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the experiment file: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    /// `file:line: dotted.key: message`; syntax errors have an empty `key` and show as
    /// `file:line: message`.
    #[error(
        "{}{}: {}{message}",
        file.display(),
        line.map(|l| format!(":{l}")).unwrap_or_default(),
        if key.is_empty() { String::new() } else { format!("{key}: ") }
    )]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
}
