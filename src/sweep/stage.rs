//! Stages that run before the cells: `[pretrain]` trains the experiment's network on its own
//! (source) data set once, and every cell that names it loads that checkpoint's conv base.
//!
//! A stage is content-addressed like a cell: its key is a SHA-256 over its resolved
//! configuration (architecture and head included), its data set's fingerprint, its seed, the code
//! state and the runner version. Its files live at
//! `<results>/<code-state>/.stages/<name>-<key12>/` (`model.safetensors`, `metrics.csv`,
//! `stage.json`), written into a temporary sibling and renamed when complete, under a lock file
//! so that two sweeps train it once (the second waits, then reuses it). A stage whose directory
//! exists is never trained again; one whose checkpoint no longer matches its recorded hash is an
//! error, never silently retrained.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::prepare::{open_data, CodeState, PreparedData};
use super::progress::{self, Progress};
use super::SweepOptions;
use crate::config::{Experiment, Stage};
use crate::dataset::ImageCache;
use crate::model::arch::Architecture;
use crate::model::weights::{sha256_file, LoadedWeights};
use crate::model::Network;
use crate::store::lock::CellLock;
use crate::store::record::{Environment, Provenance, SplitRecord};
use crate::store::{lock_path, metrics_csv, sha256_hex, write_atomic, ResultsLayout};
use crate::train::{EpochMetrics, Fit, FitOutcome, KerasOptimizer, Observer};

const RECORD: &str = "stage.json";
const CHECKPOINT: &str = "model.safetensors";

/// A stage ready for the cells: its key and its checkpoint.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub key: String,
    pub dir: PathBuf,
    pub checkpoint: PathBuf,
    pub checkpoint_sha256: String,
    /// Whether this call trained it (false: found on disk).
    pub trained: bool,
    /// The last epoch's metrics on the stage's own validation set.
    pub last: Option<EpochMetrics>,
}

/// The components of a stage's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageKey {
    /// Canonical hash of the stage's resolved configuration (as a cell's, `config::hash`).
    pub config: String,
    /// Root hash of the stage's data set manifests.
    pub dataset: String,
    pub code: String,
    pub seed: u64,
}

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

/// The key of `stage` trained on `data` by `code`.
pub fn stage_key(
    stage: &Stage,
    experiment_dir: &Path,
    data: &PreparedData,
    code: &CodeState,
) -> (StageKey, String) {
    let components = StageKey {
        config: crate::config::hash::config_hash(&stage.config, experiment_dir),
        dataset: data.hash.clone(),
        code: code.hash.clone(),
        seed: stage.seed,
    };
    let text = format!(
        "runner-stage-key-v1\nrunner {}\nstage {}\nconfig {}\ndataset {}\ncode {}\nseed {}\n",
        env!("CARGO_PKG_VERSION"),
        stage.name,
        components.config,
        components.dataset,
        components.code,
        components.seed
    );
    (components, sha256_hex(text.as_bytes()))
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

/// How `ensure` may get a stage that is not trained yet.
#[derive(Clone, Copy)]
pub enum Training<'a> {
    /// Train it on this device (the sweep's).
    On(&'a crate::model::OpenDevice),
    /// Train it on the device the options and experiment name.
    OpenDevice,
    /// Do not: answer `StageNotTrained`.
    Never,
}

/// Find the stage's checkpoint, or train it as `training` allows (waiting for another sweep that
/// is training it). Prints one line saying which.
pub fn ensure(
    experiment: &Experiment,
    stage: &Stage,
    code: &CodeState,
    images: &ImageCache,
    training: Training<'_>,
    options: &SweepOptions,
) -> anyhow::Result<StageOutcome> {
    let context = || format!("[{}] of {}", stage.name, experiment.file.display());
    let cfg = &stage.config;
    let prepared = open_data(&cfg.dataset, false, images, options).with_context(context)?;
    let (components, key) = stage_key(stage, &experiment.base_dir, &prepared, code);
    let dir = stage_dir(&options.results, &code.dir_name, &stage.name, &key);
    let mut announced = false;
    loop {
        if let Some(found) = finished(&dir, &key)? {
            options.progress.line(&reused_line(stage, &found));
            return Ok(found);
        }
        let device = match training {
            Training::On(device) => Some(device),
            Training::OpenDevice => None,
            Training::Never => {
                return Err(StageNotTrained {
                    stage: stage.name.clone(),
                    dir,
                }
                .into())
            }
        };
        match CellLock::acquire(&lock_path(&dir))? {
            Ok(_lock) => {
                // Another sweep may have finished it between the check and the lock.
                if let Some(found) = finished(&dir, &key)? {
                    options.progress.line(&reused_line(stage, &found));
                    return Ok(found);
                }
                return train_stage(
                    experiment, stage, prepared, components, key, dir, code, device, options,
                )
                .with_context(context);
            }
            Err(held) => {
                if !announced {
                    options.progress.line(&format!(
                        "{} stage: being trained by another sweep ({held}); waiting for it",
                        stage.name
                    ));
                    announced = true;
                }
                std::thread::sleep(Duration::from_millis(500));
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
fn finished(dir: &Path, key: &str) -> anyhow::Result<Option<StageOutcome>> {
    let Ok(bytes) = std::fs::read(dir.join(RECORD)) else {
        return Ok(None);
    };
    let record: StageRecord = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: unreadable stage record", dir.join(RECORD).display()))?;
    let checkpoint = dir.join(CHECKPOINT);
    let actual = sha256_file(&checkpoint)?;
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

#[allow(clippy::too_many_arguments)]
fn train_stage(
    experiment: &Experiment,
    stage: &Stage,
    prepared: PreparedData,
    components: StageKey,
    key: String,
    dir: PathBuf,
    code: &CodeState,
    device: Option<&crate::model::OpenDevice>,
    options: &SweepOptions,
) -> anyhow::Result<StageOutcome> {
    let started = Instant::now();
    let started_at = crate::store::record::now();
    let cfg = &stage.config;
    let data = &prepared.data;
    let classes = data.train.class_names.clone();
    let [h, w] = cfg.dataset.image_size;
    let arch = Architecture::build_classifier(&cfg.model, h as usize, w as usize, classes.len())?;
    let layers = arch.layers.len();
    // The stage trains where the cells train (on the sweep's device; opened here only for
    // commands that have none, such as `runner why`); its checkpoint is the same on any device
    // to float32 rounding (see model::device).
    let opened;
    let device = match device {
        Some(device) => device,
        None => {
            opened = super::open_device(experiment, options)?;
            &opened
        }
    };
    let network = Network::new(
        arch,
        cfg.model.conv_init,
        vec![true; layers],
        &LoadedWeights::default(),
        stage.seed,
        &device.device,
    )?;
    let mut optimizer = KerasOptimizer::new(cfg.training.optimizer, network.trainable_vars())?;
    options.progress.line(&format!(
        "{} stage: training on {} classes ({} training, {} validation images), {} epochs, key {}",
        stage.name,
        classes.len(),
        data.train.len(),
        data.validation.len(),
        cfg.training.epochs,
        &key[..12]
    ));
    // The stage is short and every cell waits for it, so it is not interruptible: a Ctrl-C
    // takes effect at the first cell (a second Ctrl-C exits at once, leaving no stage behind).
    let never = AtomicBool::new(false);
    let mut observer = StageObserver {
        progress: &options.progress,
        epochs: cfg.training.epochs,
        metrics: Vec::new(),
        bar: progress::EpochBar::default(),
    };
    let outcome = Fit {
        network: &network,
        optimizer: &mut optimizer,
        train: &data.train,
        validation: &data.validation,
        dataset: &cfg.dataset,
        epochs: cfg.training.epochs,
        seed: stage.seed,
        stop: &never,
        first_epoch: 1,
        checkpoint: None,
        // Every layer trains: there is no frozen prefix to cache.
        features: Default::default(),
    }
    .run(&mut observer);
    observer.bar.finish();
    match outcome? {
        FitOutcome::Completed => {}
        FitOutcome::Diverged { epoch, batch, loss } => bail!(
            "the {} stage diverged: loss became {loss} in epoch {epoch}, batch {batch}; lower \
             pretrain.learning_rate",
            stage.name
        ),
        FitOutcome::Interrupted { epoch } => {
            bail!("the {} stage stopped in epoch {epoch}", stage.name)
        }
    }

    let parent = dir.parent().unwrap_or(Path::new("."));
    let work = parent.join(format!(
        ".{}.partial-{}",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("cannot remove {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    network.save_safetensors(&work.join(CHECKPOINT))?;
    let checkpoint_sha256 = sha256_file(&work.join(CHECKPOINT))?;
    write_atomic(&work.join("metrics.csv"), &metrics_csv(&observer.metrics)?)?;
    let record = StageRecord {
        name: stage.name.clone(),
        stage_key: key.clone(),
        key: components,
        code_state: code.dir_name.clone(),
        provenance: code.provenance.clone(),
        environment: code.environment.clone(),
        runner_version: env!("CARGO_PKG_VERSION").into(),
        classes,
        train: super::cell::split_record(&data.train),
        validation: super::cell::split_record(&data.validation),
        metrics: observer.metrics.clone(),
        checkpoint_sha256: checkpoint_sha256.clone(),
        started_at,
        finished_at: crate::store::record::now(),
        seconds: started.elapsed().as_secs_f64(),
        stage: stage.clone(),
    };
    write_atomic(&work.join(RECORD), &serde_json::to_vec_pretty(&record)?)?;
    std::fs::rename(&work, &dir)
        .with_context(|| format!("cannot move {} to {}", work.display(), dir.display()))?;
    let last = observer.metrics.last().copied();
    options.progress.line(&format!(
        "{} stage: trained in {:.0} s{}, checkpoint {}",
        stage.name,
        started.elapsed().as_secs_f64(),
        last.map(|m| format!(", val_acc {:.3}", m.val_acc))
            .unwrap_or_default(),
        dir.join(CHECKPOINT).display()
    ));
    Ok(StageOutcome {
        key,
        checkpoint: dir.join(CHECKPOINT),
        dir,
        checkpoint_sha256,
        trained: true,
        last,
    })
}

struct StageObserver<'a> {
    progress: &'a Progress,
    epochs: usize,
    metrics: Vec<EpochMetrics>,
    bar: progress::EpochBar,
}

impl Observer for StageObserver<'_> {
    fn on_epoch_start(&mut self, epoch: usize, batches: usize) {
        self.bar.start(self.progress, epoch, self.epochs, batches);
    }

    fn on_batch(&mut self, _epoch: usize, _batch: usize, running: &crate::train::Running) {
        self.bar.batch(running);
    }

    fn on_epoch_end(&mut self, m: &EpochMetrics, _network: &Network) -> anyhow::Result<()> {
        self.bar.finish();
        self.metrics.push(*m);
        self.progress.line(&progress::epoch_line(m, self.epochs));
        Ok(())
    }
}
