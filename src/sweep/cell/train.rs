//! Training one cell: its network and optimizer (restored from the resume checkpoint when it
//! resumes), the epoch loop, and the trained layers it keeps.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::base::fs::{io_error_of, write_atomic_with};
use crate::model::weights::trained::{self, BEST_TRAINED_FILE};
use crate::model::weights::LoadedWeights;
use crate::model::{Network, OpenDevice};
use crate::plan::CellPlan;
use crate::store::{CellWriter, RunRecord};
use crate::sweep::feature_cache::CellCache;
use crate::sweep::files::RESUME_CHECKPOINT;
use crate::sweep::inputs::PreparedData;
use crate::sweep::progress::{self, Progress};
use crate::track::live::{Live, Tracker};
use crate::track::{self, tensorboard};
use crate::train::lockstep::Lockstep;
use crate::train::{checkpoint, EpochMetrics, Fit, FitOutcome, KerasOptimizer, Observer, Running};

/// A cell's network with its optimizer, ready to train.
pub(super) struct Trainee {
    pub network: Network,
    pub optimizer: KerasOptimizer,
}

impl Trainee {
    /// The cell's network from its planned architecture and trainable layers, with `loaded`
    /// weights, on the sweep's device.
    pub fn new(
        cell: &CellPlan,
        loaded: &LoadedWeights,
        device: &OpenDevice,
    ) -> anyhow::Result<Self> {
        let variant = &cell.variant;
        let network = Network::new(
            variant.architecture.clone(),
            variant.config.model.conv_init,
            variant.trainable.clone(),
            loaded,
            cell.cell.seed,
            &device.device,
        )?;
        let optimizer =
            KerasOptimizer::new(variant.config.training.optimizer, network.trainable_vars())?;
        Ok(Trainee { network, optimizer })
    }

    /// Open the cell's files: fresh, or (`resume_after`) its unfinished run with the network and
    /// optimizer restored from its resume checkpoint. Returns the writer and the first epoch to
    /// train.
    pub fn open(
        &mut self,
        final_dir: PathBuf,
        record: RunRecord,
        resume_after: Option<usize>,
        progress: &Progress,
    ) -> anyhow::Result<(CellWriter, usize)> {
        let Some(after_epoch) = resume_after else {
            return Ok((CellWriter::start(final_dir, record)?, 1));
        };
        let writer = CellWriter::resume(final_dir, record, after_epoch)?;
        write_events(&writer)?;
        let restored = checkpoint::load(
            &writer.work_dir().join(RESUME_CHECKPOINT),
            &self.network,
            &mut self.optimizer,
        )?;
        progress.line(&format!(
            "  resuming after epoch {} from {}",
            restored.epoch,
            writer.work_dir().display()
        ));
        Ok((writer, restored.epoch + 1))
    }

    /// Train from `first_epoch` on, recording every epoch through `writer` and keeping a resume
    /// checkpoint in its directory. The result is how training went (an error is a failed cell).
    #[allow(clippy::too_many_arguments)]
    pub fn fit(
        &mut self,
        cell: &CellPlan,
        prepared: &PreparedData,
        cache: &CellCache,
        writer: &mut CellWriter,
        first_epoch: usize,
        (progress, tracking): (&Progress, Option<(&Tracker, &mut Live)>),
        lockstep: Option<(&Lockstep, usize)>,
        stop: &AtomicBool,
    ) -> anyhow::Result<FitOutcome> {
        let cfg = &cell.variant.config;
        let data = &prepared.data;
        let work = writer.work_dir().to_path_buf();
        let best = writer
            .metrics()
            .iter()
            .map(|m| m.val_acc)
            .fold(f64::NEG_INFINITY, f64::max);
        let checkpoint_path = work.join(RESUME_CHECKPOINT);
        let fit = Fit {
            network: &self.network,
            optimizer: &mut self.optimizer,
            train: &data.train,
            validation: &data.validation,
            dataset: &cfg.dataset,
            epochs: cfg.training.epochs,
            seed: cell.cell.seed,
            stop,
            first_epoch,
            checkpoint: Some(&checkpoint_path),
            features: cache.features(),
            lockstep,
        };
        let mut observer = CellObserver {
            writer,
            progress,
            bar: progress::EpochBar::default(),
            best,
            tracking,
        };
        let outcome = fit.run(&mut observer);
        observer.bar.close();
        outcome
    }

    /// For a finished (or diverged) cell: keep its trained layers in `work`, in place of the
    /// resume checkpoint.
    pub fn keep_trained(&self, work: &Path) -> anyhow::Result<()> {
        save_trained(&self.network, &work.join(trained::TRAINED_FILE))?;
        let _ = std::fs::remove_file(work.join(RESUME_CHECKPOINT));
        Ok(())
    }
}

/// A cell keeps only what training changed: the frozen layers are rebuilt from the base it
/// records (`runner export-model`), so the cell does not store another copy of them.
fn save_trained(network: &Network, path: &Path) -> anyhow::Result<()> {
    write_atomic_with(path, |tmp| {
        trained::save(network, tmp).map_err(|e| io_error_of(&e))
    })
}

/// The cell's TensorBoard events, rewritten from its metrics (so they always agree, also after
/// a resume dropped epochs the checkpoint did not cover).
fn write_events(writer: &CellWriter) -> anyhow::Result<()> {
    let record = &writer.record;
    tensorboard::write(
        writer.work_dir(),
        writer.metrics(),
        track::learning_rate(&record.config.training.optimizer),
        tensorboard::unix_seconds(&record.started_at),
    )?;
    Ok(())
}

struct CellObserver<'a> {
    writer: &'a mut CellWriter,
    progress: &'a Progress,
    bar: progress::EpochBar,
    /// Best validation accuracy so far; `best-trained.safetensors` holds that epoch's trained
    /// parameters.
    best: f64,
    /// The cell's MLflow run (`[mlflow]`), logged as each epoch ends.
    tracking: Option<(&'a Tracker, &'a mut Live)>,
}

impl Observer for CellObserver<'_> {
    fn on_epoch_start(&mut self, epoch: usize, batches: usize) {
        let epochs = self.writer.record.config.training.epochs;
        self.bar.start(self.progress, "", epoch, epochs, batches);
    }

    fn on_batch(&mut self, _epoch: usize, _batch: usize, running: &Running) {
        self.bar.batch(running);
    }

    fn on_note(&mut self, text: &str) {
        self.progress.line(text);
    }

    fn on_epoch_end(&mut self, m: &EpochMetrics, network: &Network) -> anyhow::Result<()> {
        self.bar.finish();
        if m.val_acc > self.best {
            self.best = m.val_acc;
            save_trained(network, &self.writer.work_dir().join(BEST_TRAINED_FILE))?;
        }
        self.writer.epoch(m)?;
        write_events(self.writer)?;
        if let Some((tracker, live)) = &mut self.tracking {
            tracker.epoch(live, &self.writer.record, self.writer.metrics());
        }
        self.progress
            .epoch(m, self.writer.record.config.training.epochs);
        Ok(())
    }
}
