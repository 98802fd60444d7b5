//! Training a stage in its `.partial` directory: metrics and a resumable checkpoint after every
//! finished epoch (the cells' checkpoint, `train::checkpoint`: trainable parameters, optimizer
//! state and epoch; the shuffle and augmentation streams derive from the seed and the epoch, so
//! there is no generator state to save), so that a sweep killed or interrupted during the stage
//! resumes it from its last finished epoch and ends bitwise where an uninterrupted one ends. The
//! finished stage is renamed into place.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Context};

use super::{Located, StageInterrupted, StageOutcome, StageRecord};
use crate::base::fs::{io_error_of, remove_temporaries, write_atomic, write_atomic_with};
use crate::config::Stage;
use crate::model::arch::Architecture;
use crate::model::weights::{file_sha256, LoadedWeights};
use crate::model::{Network, OpenDevice};
use crate::provenance::CodeState;
use crate::store::{metrics_csv, partial_dir, read_metrics};
use crate::sweep::files::{RESUME_CHECKPOINT, STAGE_MODEL, STAGE_RECORD};
use crate::sweep::inputs::split_record;
use crate::sweep::progress::{self, Progress};
use crate::sweep::SweepOptions;
use crate::train::{checkpoint, EpochMetrics, Fit, FitOutcome, KerasOptimizer, Observer};

const METRICS: &str = "metrics.csv";

/// One stage to train, under its lock.
pub(super) struct StageRun<'a> {
    pub stage: &'a Stage,
    pub located: Located,
    pub code: &'a CodeState,
    pub device: &'a OpenDevice,
    /// The sweep's interrupt flag: checked after every batch.
    pub stop: &'a AtomicBool,
    pub options: &'a SweepOptions,
}

pub(super) fn train_stage(run: StageRun<'_>) -> anyhow::Result<StageOutcome> {
    let StageRun {
        stage,
        located,
        code,
        device,
        stop,
        options,
    } = run;
    let Located {
        components,
        key,
        dir,
        prepared,
    } = located;
    let started = Instant::now();
    let started_at = crate::base::clock::now();
    let cfg = &stage.config;
    let data = &prepared.data;
    let classes = data.train.class_names.clone();
    let [h, w] = cfg.dataset.image_size;
    // The stage trains where the cells train (the sweep's device); its checkpoint is the same on
    // any device to float32 rounding (see model::device).
    let fresh = || -> anyhow::Result<(Network, KerasOptimizer)> {
        let arch =
            Architecture::build_classifier(&cfg.model, h as usize, w as usize, classes.len())?;
        let layers = arch.layers.len();
        let network = Network::new(
            arch,
            cfg.model.conv_init,
            vec![true; layers],
            &LoadedWeights::default(),
            stage.seed,
            &device.device,
        )?;
        let optimizer = KerasOptimizer::new(cfg.training.optimizer, network.trainable_vars())?;
        Ok((network, optimizer))
    };
    options.progress.line(&format!(
        "{} stage: training on {} classes ({} training, {} validation images), {} epochs, key {}",
        stage.name,
        classes.len(),
        data.train.len(),
        data.validation.len(),
        cfg.training.epochs,
        &key[..12]
    ));
    let partial = partial_dir(&dir);
    let (network, mut optimizer, metrics) =
        start_or_resume(&partial, fresh, &options.progress, &stage.name)?;
    let first_epoch = metrics.len() + 1;
    let progress = options.progress.for_stage();
    let bar_name = format!("{} stage", stage.name);
    let mut observer = StageObserver {
        progress: &progress,
        name: &bar_name,
        epochs: cfg.training.epochs,
        metrics,
        metrics_path: partial.join(METRICS),
        bar: progress::EpochBar::default(),
    };
    let resume_path = partial.join(RESUME_CHECKPOINT);
    let outcome = Fit {
        network: &network,
        optimizer: &mut optimizer,
        train: &data.train,
        validation: &data.validation,
        dataset: &cfg.dataset,
        epochs: cfg.training.epochs,
        seed: stage.seed,
        stop,
        first_epoch,
        checkpoint: Some(&resume_path),
        // Every layer trains: there is no frozen prefix to cache.
        features: Default::default(),
        lockstep: None,
    }
    .run(&mut observer);
    observer.bar.close();
    match outcome? {
        FitOutcome::Completed => {}
        FitOutcome::Diverged { epoch, batch, loss } => bail!(
            "the {} stage diverged: loss became {loss} in epoch {epoch}, batch {batch}; lower \
             pretrain.learning_rate",
            stage.name
        ),
        FitOutcome::Interrupted { epoch } => {
            // Fit checkpoints right after each epoch's metrics and stops only between batches,
            // so every kept metrics row has its checkpoint.
            return Err(StageInterrupted {
                stage: stage.name.clone(),
                epoch,
                kept: observer.metrics.len(),
                partial,
                waiting: false,
            }
            .into());
        }
    }

    write_atomic_with(&partial.join(STAGE_MODEL), |tmp| {
        network.save_safetensors(tmp).map_err(|e| io_error_of(&e))
    })?;
    let checkpoint_sha256 = file_sha256(&partial.join(STAGE_MODEL))?;
    write_atomic(&partial.join(METRICS), &metrics_csv(&observer.metrics)?)?;
    let record = StageRecord {
        name: stage.name.clone(),
        stage_key: key.clone(),
        key: components,
        code_state: code.dir_name.clone(),
        provenance: code.provenance.clone(),
        environment: code.environment.clone(),
        runner_version: env!("CARGO_PKG_VERSION").into(),
        classes,
        train: split_record(&data.train),
        validation: split_record(&data.validation),
        metrics: observer.metrics.clone(),
        checkpoint_sha256: checkpoint_sha256.clone(),
        started_at,
        finished_at: crate::base::clock::now(),
        seconds: started.elapsed().as_secs_f64(),
        stage: stage.clone(),
    };
    write_atomic(
        &partial.join(STAGE_RECORD),
        &serde_json::to_vec_pretty(&record)?,
    )?;
    // Temporaries a killed writer left are not carried into the finished stage.
    remove_temporaries(&partial);
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("cannot move {} to {}", partial.display(), dir.display()))?;
    // Removed only now: a crash before the rename still finds it and resumes from the last epoch.
    // A leftover copy after a crash here is harmless (nothing reads it in a finished stage).
    let _ = std::fs::remove_file(dir.join(RESUME_CHECKPOINT));
    let last = observer.metrics.last().copied();
    options.progress.line(&format!(
        "{} stage: trained in {:.0} s{}, checkpoint {}",
        stage.name,
        started.elapsed().as_secs_f64(),
        last.map(|m| format!(", val_acc {:.3}", m.val_acc))
            .unwrap_or_default(),
        dir.join(STAGE_MODEL).display()
    ));
    Ok(StageOutcome {
        key,
        checkpoint: dir.join(STAGE_MODEL),
        dir,
        checkpoint_sha256,
        trained: true,
        last,
    })
}

/// The state to train from: the last checkpoint in `partial` with the metrics rows it covers, or,
/// when there is none (or it cannot be read), a fresh network in an emptied `partial`.
fn start_or_resume(
    partial: &Path,
    fresh: impl Fn() -> anyhow::Result<(Network, KerasOptimizer)>,
    progress: &Progress,
    name: &str,
) -> anyhow::Result<(Network, KerasOptimizer, Vec<EpochMetrics>)> {
    let resume_path = partial.join(RESUME_CHECKPOINT);
    if resume_path.exists() {
        let (network, mut optimizer) = fresh()?;
        let restored = checkpoint::load(&resume_path, &network, &mut optimizer).and_then(|r| {
            let rows = read_metrics(&partial.join(METRICS))?;
            resumed_rows(rows, r.epoch, partial)
        });
        match restored {
            Ok(rows) => {
                progress.line(&format!(
                    "{name} stage: resuming after epoch {} from {}",
                    rows.len(),
                    partial.display()
                ));
                return Ok((network, optimizer, rows));
            }
            Err(e) => progress.line(&format!(
                "warning: {name} stage: cannot resume ({e:#}); training it from the start"
            )),
        }
    }
    if partial.exists() {
        std::fs::remove_dir_all(partial)
            .with_context(|| format!("cannot clear {}", partial.display()))?;
    }
    std::fs::create_dir_all(partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let (network, optimizer) = fresh()?;
    Ok((network, optimizer, Vec::new()))
}

/// The metrics rows a checkpoint after `epoch` epochs covers. A crash between an epoch's metrics
/// and its checkpoint leaves one row more, which the resumed run recomputes exactly.
fn resumed_rows(
    mut rows: Vec<EpochMetrics>,
    epoch: usize,
    partial: &Path,
) -> anyhow::Result<Vec<EpochMetrics>> {
    anyhow::ensure!(
        rows.len() >= epoch,
        "{}: metrics.csv has {} epochs, the checkpoint {epoch}",
        partial.display(),
        rows.len()
    );
    rows.truncate(epoch);
    anyhow::ensure!(
        rows.iter().enumerate().all(|(i, m)| m.epoch == i + 1),
        "{}: metrics.csv does not number its epochs 1, 2, ...",
        partial.display()
    );
    Ok(rows)
}

struct StageObserver<'a> {
    progress: &'a Progress,
    /// Its bar's name in a sweep's view.
    name: &'a str,
    epochs: usize,
    /// Every finished epoch's metrics, the restored ones first.
    metrics: Vec<EpochMetrics>,
    metrics_path: PathBuf,
    bar: progress::EpochBar,
}

impl Observer for StageObserver<'_> {
    fn on_epoch_start(&mut self, epoch: usize, batches: usize) {
        self.bar
            .start(self.progress, self.name, epoch, self.epochs, batches);
    }

    fn on_batch(&mut self, _epoch: usize, _batch: usize, running: &crate::train::Running) {
        self.bar.batch(running);
    }

    /// Records the epoch in `.partial/metrics.csv` before `Fit` writes its checkpoint.
    fn on_epoch_end(&mut self, m: &EpochMetrics, _network: &Network) -> anyhow::Result<()> {
        self.bar.finish();
        self.metrics.push(*m);
        write_atomic(&self.metrics_path, &metrics_csv(&self.metrics)?)?;
        self.progress.epoch(m, self.epochs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 1.0,
            train_acc: 0.5,
            val_loss: 1.0,
            val_acc: 0.5,
            seconds: 0.1,
        }
    }

    #[test]
    fn a_resumed_stage_keeps_the_rows_its_checkpoint_covers() {
        let p = Path::new("s.partial");
        let rows = resumed_rows(vec![row(1), row(2), row(3)], 2, p).unwrap();
        assert_eq!(rows, vec![row(1), row(2)]);
        assert!(resumed_rows(vec![row(1)], 2, p).is_err());
        assert!(resumed_rows(vec![row(1), row(3)], 2, p).is_err());
    }
}
