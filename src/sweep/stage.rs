//! Stages that run before the cells: `[pretrain]` trains the experiment's network on its own
//! (source) data set once, and every cell that names it loads that checkpoint's conv base.
//!
//! A stage is content-addressed like a cell: its key is a SHA-256 over its resolved
//! configuration (architecture and head included), its data set's fingerprint, its seed, the code
//! state and the runner version. Its files live at
//! `<results>/<code-state>/.stages/<name>-<key12>/` (`model.safetensors`, `metrics.csv`,
//! `stage.json`), under a lock file so that two sweeps train it once (the second waits, then
//! reuses it). It is trained in `<name>-<key12>.partial/`, which holds the metrics and a
//! resumable checkpoint after every finished epoch (the cells' checkpoint format), so a sweep
//! that is killed or interrupted resumes the stage from its last finished epoch; the directory is
//! renamed when the stage is complete. A stage whose directory exists is never trained again; one
//! whose checkpoint no longer matches its recorded hash is an error, never silently retrained.

mod trainer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::files::{STAGE_MODEL, STAGE_RECORD};
pub use super::inputs::StageOutcome;
use super::inputs::{open_data, PreparedData};
use super::SweepOptions;
use crate::base::lock::CellLock;
use crate::config::{Experiment, Stage};
use crate::dataset::ImageCache;
use crate::model::weights::file_sha256;
use crate::model::OpenDevice;
pub use crate::plan::StageKey;
use crate::plan::StagePlan;
use crate::provenance::CodeState;
use crate::store::record::{Environment, Provenance, SplitRecord};
use crate::store::{lock_path, ResultsLayout};
use crate::train::EpochMetrics;

/// `stage.json`: what the stage was, what it was trained on, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    pub stage_key: String,
    pub key: StageKey,
    pub code_state: String,
    pub provenance: Provenance,
    pub environment: Environment,
    pub runner_version: String,
    /// Class folder names, in label order.
    pub classes: Vec<String>,
    pub train: SplitRecord,
    pub validation: SplitRecord,
    pub metrics: Vec<EpochMetrics>,
    pub checkpoint_sha256: String,
    pub started_at: String,
    pub finished_at: String,
    pub seconds: f64,
    pub stage: Stage,
}

/// `<results>/<code-state>/.stages/<name>-<key12>`.
pub fn stage_dir(results: &ResultsLayout, code_state: &str, name: &str, key: &str) -> PathBuf {
    results
        .root
        .join(code_state)
        .join(".stages")
        .join(format!("{name}-{}", &key[..12]))
}

/// A stage that is not trained yet, where training it was not asked for (`runner why`).
#[derive(Debug, thiserror::Error)]
#[error(
    "the [{stage}] stage has not been trained yet (it would be in {}); `runner sweep` trains it \
     before the cells that load it",
    dir.display()
)]
pub struct StageNotTrained {
    pub stage: String,
    pub dir: PathBuf,
}

/// A stage stopped by the user (Ctrl-C) while it was training: its finished epochs are kept in
/// `partial` for the next sweep to resume, and no cell ran.
#[derive(Debug)]
pub struct StageInterrupted {
    pub stage: String,
    pub epoch: usize,
    /// Finished epochs kept (metrics and checkpoint) in `partial`.
    pub kept: usize,
    pub partial: PathBuf,
    /// Stopped while another sweep held the stage's lock (this one trained nothing).
    pub waiting: bool,
}

impl std::fmt::Display for StageInterrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (stage, epoch, partial) = (&self.stage, self.epoch, self.partial.display());
        if self.waiting {
            return write!(
                f,
                "stopped while another sweep trains the {stage} stage (in {partial}); that \
                 sweep goes on; no cell was trained"
            );
        }
        match self.kept {
            0 => write!(
                f,
                "the {stage} stage stopped during epoch {epoch}, before any epoch had finished; \
                 `runner sweep` trains it from the start; no cell was trained"
            ),
            kept => write!(
                f,
                "the {stage} stage stopped during epoch {epoch}; its {kept} finished epoch{} \
                 kept in {partial}, and `runner sweep` resumes it from there; no cell was trained",
                if kept == 1 { " is" } else { "s are" }
            ),
        }
    }
}

impl std::error::Error for StageInterrupted {}

/// How `ensure` gets the stage: found on disk or trained, given by the caller, or only found.
#[derive(Clone, Copy)]
pub enum Training<'a> {
    /// Train it (or resume it) on the sweep's device, stopping after the current batch when
    /// `stop` becomes true (`StageInterrupted`).
    On {
        device: &'a OpenDevice,
        stop: &'a AtomicBool,
    },
    /// Use this stage, found and checked by the caller: `reproduce` verifies a run's stage
    /// checkpoint against the run's record and trains only the cell from it.
    Stored(&'a StageOutcome),
    /// Do not: answer `StageNotTrained`.
    Never,
}

/// Where a stage's files are (or will be), and what its key is made of.
pub struct Located {
    pub components: StageKey,
    pub key: String,
    pub dir: PathBuf,
    /// The stage's data set, opened and fingerprinted (its hash is part of the key).
    pub prepared: PreparedData,
}

/// Open and fingerprint the stage's data set and compute its key and directory, without looking
/// at what is stored there.
pub fn locate(
    experiment: &Experiment,
    planned: &StagePlan,
    code: &CodeState,
    images: &ImageCache,
    options: &SweepOptions,
) -> anyhow::Result<Located> {
    let stage = &planned.stage;
    let context = || format!("[{}] of {}", stage.name, experiment.file.display());
    let prepared =
        open_data(&stage.config.dataset, false, images, options).with_context(context)?;
    let (components, key) = planned.key(&prepared.hash, &code.hash);
    let dir = stage_dir(&options.results, &code.dir_name, &stage.name, &key);
    Ok(Located {
        components,
        key,
        dir,
        prepared,
    })
}

/// Find the stage's checkpoint, or train it as `training` allows (waiting for another sweep that
/// is training it, resuming an unfinished one). Prints one line saying which.
pub fn ensure(
    experiment: &Experiment,
    planned: &StagePlan,
    code: &CodeState,
    images: &ImageCache,
    training: Training<'_>,
    options: &SweepOptions,
) -> anyhow::Result<StageOutcome> {
    let trainer = match training {
        Training::Stored(found) => return Ok(found.clone()),
        Training::On { device, stop } => Some((device, stop)),
        Training::Never => None,
    };
    let stage = &planned.stage;
    let context = || format!("[{}] of {}", stage.name, experiment.file.display());
    let located = locate(experiment, planned, code, images, options)?;
    let (key, dir) = (located.key.clone(), located.dir.clone());
    let mut announced = false;
    loop {
        if let Some(found) = finished(&dir, &key)? {
            options.progress.line(&reused_line(stage, &found));
            return Ok(found);
        }
        let Some((device, stop)) = trainer else {
            return Err(StageNotTrained {
                stage: stage.name.clone(),
                dir,
            }
            .into());
        };
        match CellLock::acquire(&lock_path(&dir))? {
            Ok(_lock) => {
                // Another sweep may have finished it between the check and the lock.
                if let Some(found) = finished(&dir, &key)? {
                    options.progress.line(&reused_line(stage, &found));
                    return Ok(found);
                }
                let run = trainer::StageRun {
                    stage,
                    located,
                    code,
                    device,
                    stop,
                    options,
                };
                return match trainer::train_stage(run) {
                    // An interrupt is not a failure of the experiment file: it goes up as it is,
                    // for the command to exit 130.
                    Err(e) if e.is::<StageInterrupted>() => Err(e),
                    other => other.with_context(context),
                };
            }
            Err(held) => {
                // A Ctrl-C while waiting stops this sweep now, not when the other one is done.
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(StageInterrupted {
                        stage: stage.name.clone(),
                        epoch: 0,
                        kept: 0,
                        partial: crate::store::partial_dir(&dir),
                        waiting: true,
                    }
                    .into());
                }
                if !announced {
                    options.progress.line(&format!(
                        "{} stage: being trained by another sweep ({held}); waiting for it",
                        stage.name
                    ));
                    announced = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn reused_line(stage: &Stage, found: &StageOutcome) -> String {
    format!(
        "{} stage: reusing {} (key {}{})",
        stage.name,
        found.checkpoint.display(),
        &found.key[..12],
        found
            .last
            .map(|m| format!(", val_acc {:.3}", m.val_acc))
            .unwrap_or_default()
    )
}

/// The finished stage in `dir`, checked against its record; `None` when there is none.
pub fn finished(dir: &Path, key: &str) -> anyhow::Result<Option<StageOutcome>> {
    let Ok(bytes) = std::fs::read(dir.join(STAGE_RECORD)) else {
        return Ok(None);
    };
    let record: StageRecord = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{}: unreadable stage record",
            dir.join(STAGE_RECORD).display()
        )
    })?;
    let checkpoint = dir.join(STAGE_MODEL);
    let actual = file_sha256(&checkpoint)?;
    if record.stage_key != key || actual != record.checkpoint_sha256 {
        bail!(
            "{}: the stage checkpoint does not match its record (SHA-256 {actual}, recorded {}); \
             delete {} to train the stage again",
            checkpoint.display(),
            record.checkpoint_sha256,
            dir.display()
        );
    }
    Ok(Some(StageOutcome {
        key: key.to_string(),
        dir: dir.to_path_buf(),
        checkpoint,
        checkpoint_sha256: actual,
        trained: false,
        last: record.metrics.last().copied(),
    }))
}
