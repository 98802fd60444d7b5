//! `run.json`: what was run, how it ended, and everything needed to understand the result.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::CellConfig;
pub use crate::plan::KeyComponents;
use crate::train::EpochMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Done,
    Failed,
    Diverged,
    Interrupted,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Diverged => "diverged",
            Status::Interrupted => "interrupted",
        };
        f.write_str(s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    pub dir: PathBuf,
    pub files: usize,
    pub classes: Vec<String>,
    /// Files left out under `on_bad_image = "skip"`, with the reason.
    pub skipped: Vec<SkippedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsRecord {
    pub source: Option<PathBuf>,
    /// SHA-256 of the file (a run-key component).
    pub sha256: Option<String>,
    /// The file's format as read (safetensors, Keras HDF5, PyTorch zip or legacy).
    #[serde(default)]
    pub format: Option<String>,
    /// The published hash the file was verified against before use, e.g. `md5:6d6bbae1...`.
    #[serde(default)]
    pub verified: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParameterCounts {
    pub trainable: usize,
    pub frozen: usize,
}

/// The pretraining stage a cell's weights came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageUse {
    /// The stage's run key (also `key.stage`).
    pub key: String,
    /// The checkpoint the conv base was read from, and its SHA-256 (also `weights.sha256`).
    pub checkpoint: PathBuf,
    pub checkpoint_sha256: String,
    /// The stage's resolved configuration, so that `reproduce` can train it again.
    pub stage: crate::config::Stage,
}

/// Where the code came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// False when the runner was started outside a git work tree (then the other fields are null/empty).
    pub in_git_repo: bool,
    pub commit: Option<String>,
    pub branch: Option<String>,
    /// Tracked files differ from the commit, or untracked (not ignored) files exist.
    pub dirty: bool,
    /// SHA-256 of the diff against the commit (tracked changes + untracked file contents, large
    /// untracked files by their hash), when dirty.
    pub diff_sha256: Option<String>,
    /// Untracked, not ignored files, relative to the repository root (the run's inputs left out).
    pub untracked: Vec<String>,
    /// Where the diff is stored, relative to the results directory (`<code-state>/code.diff`),
    /// when dirty: one file per code state, shared by its cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_file: Option<String>,
}

/// The machine and software a run used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub runner_version: String,
    pub rustc: String,
    pub engine: String,
    pub device: String,
    pub cpu: String,
    pub threads: usize,
    pub os: String,
    /// The CPU kernels that ran: absent in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Kernels>,
}

/// The identity of the CPU kernels a run used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernels {
    /// The instruction set the matrix kernels dispatched to (`cpu::kernel_isa`).
    pub isa: String,
    /// Whether this CPU is covered by the bitwise guarantee (x86-64 with FMA).
    pub bitwise_portable: bool,
    /// Hash of the sources that compute the layers (build.rs's `RUNNER_KERNEL_HASH`).
    pub source_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// SHA-256 over the key components: the identity of this result.
    #[serde(default)]
    pub run_key: Option<String>,
    #[serde(default)]
    pub key: Option<KeyComponents>,
    /// `<commit12>`, `<commit12>-dirty-<diff8>` or `no-git`: the results folder it is filed under.
    #[serde(default)]
    pub code_state: Option<String>,
    #[serde(default)]
    pub provenance: Option<Provenance>,
    #[serde(default)]
    pub environment: Option<Environment>,
    /// Sources of nondeterminism that remain (none on the CPU).
    #[serde(default)]
    pub nondeterminism: Vec<String>,
    pub experiment: String,
    pub experiment_file: PathBuf,
    pub variant: String,
    pub seed: u64,
    pub status: Status,
    /// Why the cell failed, diverged or stopped.
    pub message: Option<String>,
    pub runner_version: String,
    pub engine: String,
    /// "cpu" or "cuda:N".
    pub device: String,
    /// What the device is (GPU name, compute capability, driver and library versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_info: Option<crate::model::DeviceInfo>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub epochs_completed: usize,
    /// The last finished epoch's metrics.
    pub last: Option<EpochMetrics>,
    pub trainable_layers: Vec<String>,
    pub parameters: ParameterCounts,
    /// SHA-256 over the frozen parameters as the cell built them (from `weights`, the stage's
    /// checkpoint or the seed). The cell stores only its trained parameters; `runner
    /// export-model` rebuilds the frozen ones and checks them against this hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_sha256: Option<String>,
    pub weights: WeightsRecord,
    pub train: Option<SplitRecord>,
    pub validation: Option<SplitRecord>,
    /// The fully resolved configuration of the cell (defaults filled in).
    pub config: CellConfig,
    /// The pretraining stage the cell's conv base comes from (`weights = { stage = ... }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<StageUse>,
    /// Whether training and validation ran from cached frozen-prefix outputs (an execution
    /// detail with identical results: not part of the run key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_cache: Option<FeatureCacheRecord>,
    /// The Slurm job that trained the cell, when it ran in one (an execution detail: not part
    /// of the run key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmJob>,
}

/// The Slurm job a cell ran in, from the variables Slurm sets in a job's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmJob {
    /// `SLURM_JOB_ID`: this task's own job id.
    pub job_id: String,
    /// `SLURM_ARRAY_JOB_ID` and `SLURM_ARRAY_TASK_ID`, for a task of a job array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_task_id: Option<u32>,
    /// `SLURMD_NODENAME`.
    #[serde(default)]
    pub node: String,
    /// `SLURM_RESTART_COUNT`: how often the task was requeued before this run (0 at first).
    #[serde(default)]
    pub restarts: u32,
}

impl SlurmJob {
    /// The job this process runs in, or `None` outside Slurm.
    pub fn from_env() -> Option<SlurmJob> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Some(SlurmJob {
            job_id: var("SLURM_JOB_ID")?,
            array_job_id: var("SLURM_ARRAY_JOB_ID"),
            array_task_id: var("SLURM_ARRAY_TASK_ID").and_then(|v| v.parse().ok()),
            node: var("SLURMD_NODENAME").unwrap_or_default(),
            restarts: var("SLURM_RESTART_COUNT")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    }
}

/// How a cell used the frozen-prefix feature cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureCacheRecord {
    /// Training batches came from the cache (only the layers after the prefix ran).
    pub used: bool,
    /// Why training did not use it: "augmentation", "disabled", "no frozen prefix",
    /// "memory budget".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Validation came from the cache (it is never augmented, so it can even when training cannot).
    #[serde(default)]
    pub validation: bool,
    /// The cache key of the prefix (`results/.cache/features/<key>/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The last layer of the cached prefix, e.g. `flatten` or `block4_pool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_layer: Option<String>,
}

impl RunRecord {
    #[cfg(test)]
    pub fn test_record() -> Self {
        use crate::config::*;
        RunRecord {
            slurm: None,
            run_key: None,
            key: None,
            code_state: None,
            provenance: None,
            environment: None,
            nondeterminism: vec![],
            experiment: "exp".into(),
            experiment_file: "exp.toml".into(),
            variant: "v".into(),
            seed: 0,
            status: Status::Running,
            message: None,
            runner_version: env!("CARGO_PKG_VERSION").into(),
            engine: "candle".into(),
            device: "cpu".into(),
            device_info: None,
            started_at: crate::base::clock::now(),
            finished_at: None,
            epochs_completed: 0,
            last: None,
            trainable_layers: vec![],
            parameters: ParameterCounts {
                trainable: 0,
                frozen: 0,
            },
            frozen_sha256: None,
            weights: WeightsRecord {
                source: None,
                sha256: None,
                format: None,
                verified: None,
            },
            train: None,
            validation: None,
            feature_cache: None,
            config: CellConfig {
                dataset: DatasetConfig {
                    source: DataSource::Directories {
                        train: "t".into(),
                        validation: "v".into(),
                    },
                    image_size: [32, 32],
                    batch_size: 4,
                    shuffle: ShuffleMode::Keras,
                    preprocessing: Preprocessing::Rescale,
                    on_bad_image: OnBadImage::Error,
                    augmentation: vec![],
                    known: None,
                },
                model: ModelConfig {
                    architecture: "vgg16".into(),
                    channels: [2, 2, 2, 2, 2],
                    weights: Weights::None,
                    conv_init: crate::config::ConvInit::GlorotUniform,
                    head: HeadSpec::default(),
                },
                training: TrainingConfig {
                    epochs: 1,
                    optimizer: Optimizer::Adam {
                        learning_rate: 1e-3,
                        beta_1: 0.9,
                        beta_2: 0.999,
                        epsilon: 1e-7,
                    },
                    freeze: FreezeRule::AllTrainable,
                },
            },
            stage: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// run.json must read back exactly: skip-if-done and `reproduce` depend on it.
    #[test]
    fn records_round_trip_through_json_for_every_shipped_experiment() {
        for name in ["demo", "lecture", "reference"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("experiments/{name}.toml"));
            let exp = crate::plan::load(&path).unwrap();
            for v in &exp.variants {
                let rec = RunRecord {
                    config: v.config.clone(),
                    ..RunRecord::test_record()
                };
                let json = serde_json::to_string(&rec).unwrap();
                let back: RunRecord = serde_json::from_str(&json)
                    .unwrap_or_else(|e| panic!("{name}/{}: {e}\n{json}", v.name));
                assert_eq!(back, rec);
            }
        }
    }
}
