//! The experiment file as written: plain, validated serde types (stage one of two).
//!
//! Every table rejects unknown keys so that a typo can never silently change an experiment.
//! Defaults are the notebook's (see `experiments/reference.toml`, which documents each key once).
//! Nothing here touches the file system or resolves paths: that is `resolve`'s job.
//! The values that take several forms (`optimizer`, `weights`, augmentation steps, factors) have
//! hand-written `Deserialize` impls in `forms.rs`, so that a wrong form gets a message listing the
//! accepted ones instead of serde's "data did not match any variant".

use serde::{Deserialize, Serialize};

/// Top level of an experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Experiment name; defaults to the file stem. Used in result paths.
    #[serde(default)]
    pub name: Option<String>,
    /// Free text shown in reports.
    #[serde(default)]
    pub description: Option<String>,
    /// Seeds axis of the matrix.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// "cpu", "cuda", "cuda:N" or "auto" (default): where to train; `--device` overrides it.
    #[serde(default)]
    pub device: super::DeviceChoice,
    /// Absent only when every variant brings its own data source; validation says what is missing.
    #[serde(default)]
    pub dataset: DatasetSpec,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub training: TrainingSpec,
    /// Variants axis of the matrix. Each variant may override any key of `dataset`, `model`, `training`.
    /// When empty, the experiment has one implicit variant named "default".
    #[serde(default)]
    pub variants: Vec<VariantSpec>,
    /// `[pretrain]`: a stage that trains the experiment's network on a source task first; cells
    /// load its conv base with `model.weights = { stage = "pretrain" }`.
    #[serde(default)]
    pub pretrain: Option<PretrainSpec>,
    /// `[slurm]`: how `runner sweep --slurm` submits the cells. Never part of a run key.
    #[serde(default)]
    pub slurm: Option<SlurmSettings>,
    /// `[mlflow]`: log each cell to an MLflow tracking server while the sweep runs. Never part
    /// of a run key.
    #[serde(default)]
    pub mlflow: Option<super::after_training::MlflowSettings>,
    /// `[evaluation]`: evaluate every cell on a test set at the end of a sweep. Never part of a
    /// run key.
    #[serde(default)]
    pub evaluation: Option<super::after_training::EvaluationSpec>,
}

/// `[slurm]`: the resources each job asks for (`runner sweep --slurm`; flags override them).
/// Where a cell runs does not change what it is: none of this enters a run key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub qos: Option<String>,
    /// Time limit of one task, in sbatch's form ("30", "1:00:00", "2-00:00:00").
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub cpus_per_task: Option<u32>,
    /// Memory per task, in sbatch's form ("8G").
    #[serde(default)]
    pub mem: Option<String>,
    /// GPUs per task (`--gres=gpu:N`); such tasks train with `--device cuda`.
    #[serde(default)]
    pub gpus_per_task: Option<u32>,
    /// Tasks of the array running at once (`--array=...%N`).
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// Seconds before the time limit at which a task is told to stop after its batch, keep its
    /// checkpoint and be requeued (`--signal=B:USR1@N`). Default 120.
    #[serde(default)]
    pub signal_seconds: Option<u32>,
    /// More sbatch options, passed as they are (e.g. ["--constraint=avx2"]).
    #[serde(default)]
    pub extra: Vec<String>,
}

/// `[pretrain]`: the network of `[model]` (architecture, channels, conv_init) trained from
/// scratch, with a head of one output per class, on its own data set. Trained once per
/// configuration and reused by every cell that names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainSpec {
    /// The stage's run seed (initialisation and shuffling), independent of the experiment's seeds.
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Hidden layers of the stage's head (its output layer has one unit per class).
    #[serde(default)]
    pub head: Option<HeadSpec>,
    /// `[pretrain.dataset]`: the keys of `[dataset]`. Its data source (`synthetic`, or
    /// `train_dir` + `validation_dir`) is its own; `image_size`, `batch_size`, `shuffle`,
    /// `preprocessing` and `on_bad_image` default to those of `[dataset]`; no augmentation
    /// unless it lists some. Kept as a table here and merged in `parse`.
    #[serde(default)]
    pub dataset: Option<toml::Table>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// `[[variants]]`: a name and partial overrides (deep-merged over the base tables before validation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub dataset: Option<toml::Table>,
    #[serde(default)]
    pub model: Option<toml::Table>,
    #[serde(default)]
    pub training: Option<toml::Table>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Directory with one sub-folder per class (Keras `image_dataset_from_directory`). Relative to the experiment file.
    #[serde(default)]
    pub train_dir: Option<String>,
    #[serde(default)]
    pub validation_dir: Option<String>,
    /// Generate a deterministic synthetic data set instead of reading `train_dir`/`validation_dir`.
    #[serde(default)]
    pub synthetic: Option<SyntheticSpec>,
    /// A known data set that `runner fetch` downloads into the cache (e.g. "cats-and-dogs-filtered"),
    /// instead of `train_dir`/`validation_dir`.
    #[serde(default)]
    pub known: Option<String>,
    /// [height, width] every image is resized to.
    #[serde(default = "default_image_size")]
    pub image_size: [u32; 2],
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub shuffle: ShuffleMode,
    #[serde(default)]
    pub preprocessing: Preprocessing,
    #[serde(default)]
    pub on_bad_image: OnBadImage,
    /// Ordered augmentation steps, applied to training batches only.
    #[serde(default)]
    pub augmentation: Vec<AugmentStep>,
}

impl Default for DatasetSpec {
    fn default() -> Self {
        DatasetSpec {
            train_dir: None,
            validation_dir: None,
            synthetic: None,
            known: None,
            image_size: default_image_size(),
            batch_size: default_batch_size(),
            shuffle: ShuffleMode::default(),
            preprocessing: Preprocessing::default(),
            on_bad_image: OnBadImage::default(),
            augmentation: Vec::new(),
        }
    }
}

fn default_image_size() -> [u32; 2] {
    [256, 256]
}
fn default_batch_size() -> usize {
    32
}

/// `[dataset.synthetic]`: the generated two-class shapes data set (see `dataset::synthetic`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    /// Generator seed (independent of the run seeds: the data set is the same for every cell).
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_train_per_class")]
    pub train_per_class: usize,
    #[serde(default = "default_validation_per_class")]
    pub validation_per_class: usize,
    /// Side of the generated square images in pixels (they are then resized to `image_size` by the loader).
    #[serde(default = "default_synthetic_size")]
    pub size: u32,
    /// Which classes the set shows. Left out of the serialized form when it is the default, so
    /// that configuration hashes written before the key existed stay the same.
    #[serde(default, skip_serializing_if = "SyntheticTask::is_target")]
    pub task: SyntheticTask,
}

/// The class sets the synthetic generator can produce (see `dataset::synthetic`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyntheticTask {
    /// Two classes: checkered squares and plain squares (the demo's target task).
    #[default]
    Target,
    /// Nine classes of other shapes and textures (plain discs, triangles, rings, crosses and
    /// hexagons; striped, dotted, checkered and grid-filled discs), none of them a square: a
    /// related but different task to pretrain on.
    Source,
}

impl SyntheticTask {
    pub fn is_target(&self) -> bool {
        *self == SyntheticTask::Target
    }
}

fn default_train_per_class() -> usize {
    200
}
fn default_validation_per_class() -> usize {
    100
}
fn default_synthetic_size() -> u32 {
    64
}

/// How the training set is reordered each epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShuffleMode {
    /// Keras semantics: one global permutation at load time, then each epoch a streaming
    /// shuffle buffer of `8 * batch_size` elements over it.
    #[default]
    Keras,
    /// An independent full permutation every epoch.
    Full,
    /// File order (class, path). For debugging only.
    None,
}

/// How pixel values (0..255 RGB after resize) are turned into network input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preprocessing {
    /// x / 255: what the notebook does.
    #[default]
    Rescale,
    /// RGB->BGR, minus the ImageNet means [103.939, 116.779, 123.68], no scaling: what the Keras weights expect.
    Caffe,
    /// x / 255, minus mean (0.485, 0.456, 0.406), divided by std (0.229, 0.224, 0.225), RGB: what torchvision weights expect.
    Torch,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadImage {
    /// Stop the run with an error naming the file (Keras behaviour).
    #[default]
    Error,
    /// Skip the file and record it in the run's output.
    Skip,
}

pub use super::augmentation::{AugmentStep, Factor, FillMode, FlipMode, Interpolation};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Only "vgg16" (13 convolutions in 5 blocks, Keras layer names) for now.
    #[serde(default = "default_architecture")]
    pub architecture: String,
    /// Output channels of blocks 1..5. VGG16's are [64, 128, 256, 512, 512]; smaller values make a
    /// "mini" VGG with the same layer names (the demo uses one).
    #[serde(default = "default_channels")]
    pub channels: [usize; 5],
    /// Where the conv-base weights come from: "none" (seeded random init), a known name such as
    /// "keras:vgg16-imagenet", or `{ file = "...", sha256 = "..." }`.
    #[serde(default)]
    pub weights: WeightsSpec,
    /// How convolution kernels that `weights` does not provide are initialised.
    #[serde(default)]
    pub conv_init: ConvInit,
    #[serde(default)]
    pub head: HeadSpec,
}

/// Initialiser for convolution kernels drawn at random (biases always start at zero; the dense
/// head always uses Keras's Glorot uniform).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvInit {
    /// Keras's default: U(-l, l) with l = sqrt(6 / (fan_in + fan_out)). Through 13 ReLU layers it
    /// shrinks the signal about twofold per layer, so a randomly initialised VGG gives nearly
    /// constant features.
    #[default]
    GlorotUniform,
    /// He et al. (2015): U(-l, l) with l = sqrt(6 / fan_in), which keeps the signal's scale
    /// through ReLU layers; what a random conv base needs to produce usable features.
    HeUniform,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            architecture: default_architecture(),
            channels: default_channels(),
            weights: WeightsSpec::default(),
            conv_init: ConvInit::default(),
            head: HeadSpec::default(),
        }
    }
}

fn default_architecture() -> String {
    "vgg16".to_string()
}
fn default_channels() -> [usize; 5] {
    [64, 128, 256, 512, 512]
}

/// Pretrained weights known by name (the model module knows where each comes from).
pub const KNOWN_WEIGHTS: &[&str] = &["keras:vgg16-imagenet", "torchvision:vgg16-imagenet"];

/// `Deserialize` is in `forms.rs`; only the names in `KNOWN_WEIGHTS` (and "none") are accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum WeightsSpec {
    /// "none" or a known name ("keras:vgg16-imagenet", "torchvision:vgg16-imagenet").
    Named(String),
    File {
        file: String,
        #[serde(default)]
        sha256: Option<String>,
    },
    /// `{ stage = "pretrain" }`: the conv base trained by the experiment's `[pretrain]` stage.
    Stage { stage: String },
}

/// The stages an experiment file can declare, by the name `weights = { stage = ... }` uses.
pub const STAGES: &[&str] = &["pretrain"];

impl Default for WeightsSpec {
    fn default() -> Self {
        WeightsSpec::Named("none".to_string())
    }
}

/// The new classifier on top of the conv base: Flatten, then Dense(units, activation) for each
/// entry of `units`, then Dense(1) with a sigmoid (binary classification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    #[serde(default = "default_head_units")]
    pub units: Vec<usize>,
    #[serde(default)]
    pub activation: Activation,
}

impl Default for HeadSpec {
    fn default() -> Self {
        HeadSpec {
            units: default_head_units(),
            activation: Activation::default(),
        }
    }
}

fn default_head_units() -> Vec<usize> {
    vec![256]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Layers from this one (in model order) onwards train; those before it are frozen.
    #[serde(default)]
    pub trainable_from: Option<String>,
    /// Glob patterns of layers to freeze (everything else trains).
    #[serde(default)]
    pub freeze: Option<Vec<String>>,
    /// Glob patterns of layers to train (everything else is frozen).
    #[serde(default)]
    pub train: Option<Vec<String>>,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        TrainingSpec {
            epochs: default_epochs(),
            optimizer: OptimizerSpec::default(),
            learning_rate: default_learning_rate(),
            trainable_from: None,
            freeze: None,
            train: None,
        }
    }
}

fn default_epochs() -> usize {
    10
}
fn default_learning_rate() -> f64 {
    1e-3
}

/// `optimizer = "adam"` or a table with parameters, e.g. `{ name = "rmsprop", rho = 0.9 }`; the
/// parameters a table leaves out take Keras's defaults. `Deserialize` is in `forms.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum OptimizerSpec {
    /// Keras `Adam` defaults: beta_1 0.9, beta_2 0.999, epsilon 1e-7 (added to the uncorrected sqrt(v)).
    Adam {
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
    },
    /// Keras `RMSprop` defaults: rho 0.9, momentum 0, epsilon 1e-7 (inside the sqrt), centered false.
    Rmsprop {
        rho: f64,
        momentum: f64,
        epsilon: f64,
        centered: bool,
    },
}

/// Keras's optimizer defaults (keras-notebook-semantics.md, gotcha G10).
pub(crate) const KERAS_BETA_1: f64 = 0.9;
pub(crate) const KERAS_BETA_2: f64 = 0.999;
pub(crate) const KERAS_EPSILON: f64 = 1e-7;
pub(crate) const KERAS_RHO: f64 = 0.9;

impl OptimizerSpec {
    /// Keras `Adam()` as `optimizer="adam"` builds it.
    pub fn adam() -> Self {
        OptimizerSpec::Adam {
            beta_1: KERAS_BETA_1,
            beta_2: KERAS_BETA_2,
            epsilon: KERAS_EPSILON,
        }
    }

    /// Keras `RMSprop()` as `optimizer="rmsprop"` builds it.
    pub fn rmsprop() -> Self {
        OptimizerSpec::Rmsprop {
            rho: KERAS_RHO,
            momentum: 0.0,
            epsilon: KERAS_EPSILON,
            centered: false,
        }
    }
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::adam()
    }
}

/// The optimizer names, as written in `optimizer = "..."` or `{ name = "..." }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerName {
    Adam,
    Rmsprop,
}
