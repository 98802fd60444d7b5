//! One cell: decide whether it runs (new), resumes (an unfinished run of the same key), or is
//! skipped (done already, failed earlier, or being trained by another process); then train it.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::prepare::{architecture, data_key, run_key, weights_key, Inputs};
use super::progress::{self, Progress};
use super::{CellResult, SweepOptions};
use crate::config::{Cell, Experiment, Variant};
use crate::dataset::batches::Split;
use crate::model::weights::trained::{self, BEST_TRAINED_FILE, TRAINED_FILE};
use crate::model::{freeze, Network, OpenDevice};
use crate::store::lock::CellLock;
use crate::store::record::{
    Environment, ParameterCounts, SkippedFile, SplitRecord, StageUse, WeightsRecord,
};
use crate::store::{
    lock_path, partial_dir, read_record, write_atomic, write_atomic_with, CellWriter, RunRecord,
    Status,
};
use crate::train::{checkpoint, EpochMetrics, Fit, FitOutcome, KerasOptimizer, Observer, Running};

const CHECKPOINT: &str = "checkpoint.safetensors";

/// What to do with a cell, given what is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run,
    /// Continue the unfinished run in `.partial` after its last checkpointed epoch.
    Resume {
        after_epoch: usize,
    },
    Skip(String),
}

/// What is on disk for a cell: the finished record, and the unfinished one with its checkpoint epoch.
#[derive(Debug, Default)]
pub struct OnDisk {
    pub finished: Option<RunRecord>,
    pub partial: Option<(RunRecord, Option<usize>)>,
}

/// The decision, apart from any I/O (so it can be tested without a model).
pub fn decide(on_disk: &OnDisk, key: &str, force: bool, retry_failed: bool) -> Action {
    let same = |r: &RunRecord| r.run_key.as_deref() == Some(key);
    let finished = on_disk.finished.as_ref().filter(|r| same(r));
    let partial = on_disk.partial.as_ref().filter(|(r, _)| same(r));
    if retry_failed {
        return match partial {
            Some((r, _)) if r.status == Status::Failed => Action::Run,
            _ => Action::Skip("not a failed cell (--retry-failed runs only those)".into()),
        };
    }
    if force {
        return Action::Run;
    }
    if let Some(r) = finished {
        return Action::Skip(format!("{} already (run key {})", r.status, &key[..12]));
    }
    match partial {
        Some((r, _)) if r.status == Status::Failed => {
            Action::Skip("failed earlier; --retry-failed reruns failed cells".into())
        }
        Some((_, Some(epoch))) if *epoch >= 1 => Action::Resume {
            after_epoch: *epoch,
        },
        _ => Action::Run,
    }
}

fn on_disk(final_dir: &Path) -> OnDisk {
    let partial = partial_dir(final_dir);
    let checkpoint_epoch = || -> Option<usize> {
        let path = partial.join(CHECKPOINT);
        let all = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).ok()?;
        Some(all.get("meta/epoch")?.to_vec1::<i64>().ok()?[0] as usize)
    };
    OnDisk {
        finished: read_record(final_dir),
        partial: read_record(&partial).map(|r| (r, checkpoint_epoch())),
    }
}

/// Decide and, unless skipped, train one cell. Training errors are recorded as a `failed` cell;
/// only errors writing the results themselves are returned.
pub fn run_cell(
    experiment: &Experiment,
    variant: &Variant,
    cell: &Cell,
    inputs: &Inputs,
    device: &OpenDevice,
    options: &SweepOptions,
    stop: &AtomicBool,
) -> anyhow::Result<CellResult> {
    let started = Instant::now();
    let mut cfg = variant.config.clone();
    if let Some(e) = options.epochs {
        cfg.training.epochs = e;
    }
    let prepared = &inputs.data[&data_key(&cfg.dataset)];
    let loaded = &inputs.weights[&weights_key(&cfg)];
    let (components, key) = run_key(
        &cfg,
        experiment,
        prepared,
        loaded,
        &inputs.code,
        cell.seed,
        inputs.stage_key(&cfg),
    );
    let final_dir = options
        .results
        .cell_dir(&inputs.code.dir_name, &experiment.name, cell);
    let skipped = |reason: String, dir: PathBuf| CellResult {
        cell: cell.clone(),
        status: None,
        skipped: Some(reason),
        dir,
        last: None,
        seconds: 0.0,
        message: None,
    };
    let _lock = match CellLock::acquire(&lock_path(&final_dir))? {
        Ok(lock) => lock,
        Err(held) => {
            return Ok(skipped(
                format!("being trained by another sweep ({held})"),
                final_dir,
            ))
        }
    };
    let action = decide(
        &on_disk(&final_dir),
        &key,
        options.force,
        options.retry_failed,
    );
    if let Action::Skip(reason) = action {
        let last = read_record(&final_dir).and_then(|r| r.last);
        return Ok(CellResult {
            last,
            ..skipped(reason, final_dir)
        });
    }

    let data = &prepared.data;
    let arch = architecture(&cfg)?;
    let mask = freeze::trainable_mask(&cfg.training.freeze, &arch).map_err(anyhow::Error::msg)?;
    let trainable_layers = arch
        .layers
        .iter()
        .zip(&mask)
        .filter(|(l, &t)| t && l.has_weights())
        .map(|(l, _)| l.name.clone())
        .collect();
    let network = Network::new(
        arch,
        cfg.model.conv_init,
        mask,
        loaded,
        cell.seed,
        &device.device,
    )?;
    let mut optimizer = KerasOptimizer::new(cfg.training.optimizer, network.trainable_vars())?;
    let (trainable, frozen) = network.parameter_counts();
    let frozen_sha256 = trained::frozen_hash(&network)?;
    let cache = super::cache::for_cell(
        &network,
        &cfg,
        options.feature_cache,
        prepared,
        inputs,
        &options.progress,
        stop,
    );
    let record = RunRecord {
        run_key: Some(key.clone()),
        key: Some(components),
        code_state: Some(inputs.code.dir_name.clone()),
        provenance: Some(inputs.code.provenance.clone()),
        environment: Some(Environment {
            device: device.info.kind.clone(),
            ..inputs.code.environment.clone()
        }),
        nondeterminism: device.info.nondeterminism(),
        experiment: experiment.name.clone(),
        experiment_file: experiment.file.clone(),
        variant: cell.variant.clone(),
        seed: cell.seed,
        status: Status::Running,
        message: None,
        runner_version: env!("CARGO_PKG_VERSION").into(),
        engine: inputs.code.environment.engine.clone(),
        device: device.info.kind.clone(),
        device_info: Some(device.info.clone()),
        started_at: crate::store::record::now(),
        finished_at: None,
        epochs_completed: 0,
        last: None,
        trainable_layers,
        parameters: ParameterCounts { trainable, frozen },
        frozen_sha256: Some(frozen_sha256),
        weights: WeightsRecord {
            source: loaded.source.clone(),
            sha256: loaded.sha256.clone(),
            format: loaded.format.map(|f| f.describe().to_string()),
            verified: loaded.verified.clone(),
        },
        train: Some(split_record(&data.train)),
        validation: Some(split_record(&data.validation)),
        config: cfg.clone(),
        stage: experiment.stage_of(&cfg).and_then(|stage| {
            let outcome = inputs.stages.get(&stage.name)?;
            Some(StageUse {
                key: outcome.key.clone(),
                checkpoint: outcome.checkpoint.clone(),
                checkpoint_sha256: outcome.checkpoint_sha256.clone(),
                stage: stage.clone(),
            })
        }),
        feature_cache: Some(cache.record.clone()),
    };
    let (mut writer, first_epoch) = match action {
        Action::Resume { after_epoch } => {
            let writer = CellWriter::resume(final_dir, record, after_epoch)?;
            let restored = checkpoint::load(
                &writer.work_dir().join(CHECKPOINT),
                &network,
                &mut optimizer,
            )?;
            options.progress.line(&format!(
                "  resuming after epoch {} from {}",
                restored.epoch,
                writer.work_dir().display()
            ));
            (writer, restored.epoch + 1)
        }
        _ => (CellWriter::start(final_dir, record)?, 1),
    };
    let work = writer.work_dir().to_path_buf();
    write_atomic(
        &work.join("train.manifest.json"),
        &prepared.train_manifest.to_json(),
    )?;
    write_atomic(
        &work.join("validation.manifest.json"),
        &prepared.validation_manifest.to_json(),
    )?;
    inputs.code.store_diff(&options.results)?;
    options.progress.line(&format!(
        "  {trainable} trainable / {frozen} frozen parameters, {} epochs, run key {}, writing {}",
        cfg.training.epochs,
        &key[..12],
        work.display()
    ));
    let best = writer
        .metrics()
        .iter()
        .map(|m| m.val_acc)
        .fold(f64::NEG_INFINITY, f64::max);
    let checkpoint_path = work.join(CHECKPOINT);
    let outcome = {
        let fit = Fit {
            network: &network,
            optimizer: &mut optimizer,
            train: &data.train,
            validation: &data.validation,
            dataset: &cfg.dataset,
            epochs: cfg.training.epochs,
            seed: cell.seed,
            stop,
            first_epoch,
            checkpoint: Some(&checkpoint_path),
            features: cache.features(),
        };
        let mut observer = CellObserver {
            writer: &mut writer,
            progress: &options.progress,
            bar: progress::EpochBar::default(),
            best,
        };
        let outcome = fit.run(&mut observer);
        observer.bar.finish();
        outcome
    };
    let (status, message) = match outcome {
        Ok(FitOutcome::Completed) => (Status::Done, None),
        Ok(FitOutcome::Diverged { epoch, batch, loss }) => {
            (Status::Diverged, Some(format!("loss became {loss} in epoch {epoch}, batch {batch}")))
        }
        Ok(FitOutcome::Interrupted { epoch }) => (
            Status::Interrupted,
            Some(format!(
                "stopped by the user during epoch {epoch}; {} finished epochs kept, `runner sweep` resumes",
                writer.metrics().len()
            )),
        ),
        Err(e) => (Status::Failed, Some(format!("{e:#}"))),
    };
    if matches!(status, Status::Done | Status::Diverged) {
        save_trained(&network, &work.join(TRAINED_FILE))?;
        let _ = std::fs::remove_file(&checkpoint_path);
    }
    let last = writer.metrics().last().copied();
    let dir = writer.finish(status, message.clone())?;
    Ok(CellResult {
        cell: cell.clone(),
        status: Some(status),
        skipped: None,
        dir,
        last,
        seconds: started.elapsed().as_secs_f64(),
        message,
    })
}

pub(super) fn split_record(split: &Split) -> SplitRecord {
    SplitRecord {
        dir: split.root.clone(),
        files: split.len(),
        classes: split.class_names.clone(),
        skipped: split
            .skipped
            .iter()
            .map(|(path, reason)| SkippedFile {
                path: path.clone(),
                reason: reason.clone(),
            })
            .collect(),
    }
}

/// A cell keeps only what training changed: the frozen layers are rebuilt from the base it
/// records (`runner export-model`), so the cell does not store another copy of them.
fn save_trained(network: &Network, path: &Path) -> anyhow::Result<()> {
    write_atomic_with(path, |tmp| {
        trained::save(network, tmp).map_err(|e| std::io::Error::other(e.to_string()))
    })
}

struct CellObserver<'a> {
    writer: &'a mut CellWriter,
    progress: &'a Progress,
    bar: progress::EpochBar,
    /// Best validation accuracy so far; `best-trained.safetensors` holds that epoch's trained
    /// parameters.
    best: f64,
}

impl Observer for CellObserver<'_> {
    fn on_epoch_start(&mut self, epoch: usize, batches: usize) {
        let epochs = self.writer.record.config.training.epochs;
        self.bar.start(self.progress, epoch, epochs, batches);
    }

    fn on_batch(&mut self, _epoch: usize, _batch: usize, running: &Running) {
        self.bar.batch(running);
    }

    fn on_epoch_end(&mut self, m: &EpochMetrics, network: &Network) -> anyhow::Result<()> {
        self.bar.finish();
        if m.val_acc > self.best {
            self.best = m.val_acc;
            save_trained(network, &self.writer.work_dir().join(BEST_TRAINED_FILE))?;
        }
        self.writer.epoch(m)?;
        self.progress.line(&progress::epoch_line(
            m,
            self.writer.record.config.training.epochs,
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, status: Status) -> RunRecord {
        RunRecord {
            run_key: Some(key.into()),
            status,
            ..RunRecord::test_record()
        }
    }

    const K: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn done_cells_are_skipped_unless_forced_or_their_inputs_changed() {
        let done = OnDisk {
            finished: Some(rec(K, Status::Done)),
            partial: None,
        };
        assert!(
            matches!(decide(&done, K, false, false), Action::Skip(r) if r.starts_with("done already"))
        );
        assert_eq!(decide(&done, K, true, false), Action::Run);
        assert_eq!(decide(&done, OTHER, false, false), Action::Run);
        assert!(matches!(
            decide(
                &OnDisk {
                    finished: Some(rec(K, Status::Diverged)),
                    partial: None
                },
                K,
                false,
                false
            ),
            Action::Skip(_)
        ));
    }

    #[test]
    fn unfinished_cells_resume_from_their_checkpoint() {
        let interrupted = OnDisk {
            finished: None,
            partial: Some((rec(K, Status::Interrupted), Some(3))),
        };
        assert_eq!(
            decide(&interrupted, K, false, false),
            Action::Resume { after_epoch: 3 }
        );
        // A crashed run still says "running": it resumes too.
        let crashed = OnDisk {
            finished: None,
            partial: Some((rec(K, Status::Running), Some(1))),
        };
        assert_eq!(
            decide(&crashed, K, false, false),
            Action::Resume { after_epoch: 1 }
        );
        // Without a checkpoint, or with other inputs, or forced: start over.
        let no_ckpt = OnDisk {
            finished: None,
            partial: Some((rec(K, Status::Interrupted), None)),
        };
        assert_eq!(decide(&no_ckpt, K, false, false), Action::Run);
        assert_eq!(decide(&interrupted, OTHER, false, false), Action::Run);
        assert_eq!(decide(&interrupted, K, true, false), Action::Run);
    }

    #[test]
    fn failed_cells_wait_for_retry_failed_which_runs_only_them() {
        let failed = OnDisk {
            finished: None,
            partial: Some((rec(K, Status::Failed), Some(2))),
        };
        assert!(
            matches!(decide(&failed, K, false, false), Action::Skip(r) if r.contains("--retry-failed"))
        );
        assert_eq!(decide(&failed, K, false, true), Action::Run);
        assert!(matches!(
            decide(&OnDisk::default(), K, false, true),
            Action::Skip(_)
        ));
        assert!(matches!(
            decide(
                &OnDisk {
                    finished: Some(rec(K, Status::Done)),
                    partial: None
                },
                K,
                false,
                true
            ),
            Action::Skip(_)
        ));
    }
}
