//! The matrix: prepare every input once (data sets, weights), then train each cell in turn,
//! recording its outcome. A cell that fails or diverges does not stop the sweep; an interrupt does.

pub mod progress;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::config::{Cell, CellConfig, DataSource, DatasetConfig, Experiment, Variant};
use crate::dataset::batches::Split;
use crate::dataset::{synthetic, Data};
use crate::model::arch::Architecture;
use crate::model::weights::{self, LoadedWeights};
use crate::model::{freeze, Network};
use crate::store::record::{ParameterCounts, SkippedFile, SplitRecord, WeightsRecord};
use crate::store::{CellWriter, ResultsLayout, RunRecord, Status};
use crate::train::{EpochMetrics, Fit, FitOutcome, KerasOptimizer, Observer, Running};
pub use progress::Progress;

/// What to run and where to write it.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub results: ResultsLayout,
    /// Run only these variants (all when empty).
    pub variants: Vec<String>,
    /// Run only these seeds (all when empty).
    pub seeds: Vec<u64>,
    /// Override every variant's `training.epochs` (e.g. for a quick try).
    pub epochs: Option<usize>,
    pub progress: Progress,
}

/// How one cell ended.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub cell: Cell,
    pub status: Status,
    /// Where its files are (the final directory, or `.partial` when unfinished).
    pub dir: PathBuf,
    pub last: Option<EpochMetrics>,
    pub seconds: f64,
    pub message: Option<String>,
}

/// The cells of `experiment` selected by `options`, in matrix order.
pub fn select_cells(experiment: &Experiment, options: &SweepOptions) -> anyhow::Result<Vec<Cell>> {
    let names: Vec<&str> = experiment
        .variants
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    for v in &options.variants {
        if !names.contains(&v.as_str()) {
            bail!(
                "{}: no variant named \"{v}\" (variants: {})",
                experiment.file.display(),
                names.join(", ")
            );
        }
    }
    for s in &options.seeds {
        if !experiment.seeds.contains(s) {
            let seeds: Vec<String> = experiment.seeds.iter().map(u64::to_string).collect();
            bail!(
                "{}: seed {s} is not in the experiment's seeds ({})",
                experiment.file.display(),
                seeds.join(", ")
            );
        }
    }
    Ok(experiment
        .cells()
        .into_iter()
        .filter(|c| options.variants.is_empty() || options.variants.contains(&c.variant))
        .filter(|c| options.seeds.is_empty() || options.seeds.contains(&c.seed))
        .collect())
}

/// Inputs shared between cells, loaded once per sweep.
struct Inputs {
    data: BTreeMap<String, Data>,
    weights: BTreeMap<String, LoadedWeights>,
}

fn key<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("configuration serializes")
}

/// The part of a dataset config that determines the decoded images (not batching or augmentation).
fn data_key(d: &DatasetConfig) -> String {
    key(&(&d.source, d.image_size, d.on_bad_image))
}

/// Open every data set and weights file the selected cells need, before any training starts,
/// so that a missing directory or file is reported at once.
fn prepare(
    experiment: &Experiment,
    cells: &[Cell],
    options: &SweepOptions,
) -> anyhow::Result<Inputs> {
    let mut inputs = Inputs {
        data: BTreeMap::new(),
        weights: BTreeMap::new(),
    };
    let device = crate::model::cpu();
    for cell in cells {
        let variant = experiment
            .variant(&cell.variant)
            .expect("selected cells exist");
        let cfg = &variant.config;
        let dk = data_key(&cfg.dataset);
        if let std::collections::btree_map::Entry::Vacant(slot) = inputs.data.entry(dk) {
            let (train, validation) = data_dirs(&cfg.dataset.source, &options.results)?;
            if let DataSource::Synthetic(_) = cfg.dataset.source {
                options.progress.line(&format!(
                    "synthetic data set: {}",
                    train.parent().unwrap_or(&train).display()
                ));
            }
            let data = Data::open(&cfg.dataset, &train, &validation).with_context(|| {
                format!(
                    "variant \"{}\" of {}",
                    variant.name,
                    experiment.file.display()
                )
            })?;
            options.progress.line(&format!(
                "data: {} training and {} validation images, classes {:?}",
                data.train.len(),
                data.validation.len(),
                data.train.class_names
            ));
            slot.insert(data);
        }
        let wk = key(&cfg.model.weights);
        if let std::collections::btree_map::Entry::Vacant(slot) = inputs.weights.entry(wk) {
            let arch = architecture(cfg)?;
            let loaded = weights::load(&cfg.model.weights, &arch, &device).with_context(|| {
                format!(
                    "variant \"{}\" of {}: model.weights",
                    variant.name,
                    experiment.file.display()
                )
            })?;
            slot.insert(loaded);
        }
    }
    Ok(inputs)
}

/// The (train, validation) directories of a data source, generating a synthetic set if needed.
pub fn data_dirs(
    source: &DataSource,
    results: &ResultsLayout,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    Ok(match source {
        DataSource::Directories { train, validation } => (train.clone(), validation.clone()),
        DataSource::Synthetic(spec) => synthetic::ensure(spec, &results.datasets_dir())?,
    })
}

fn architecture(cfg: &CellConfig) -> anyhow::Result<Architecture> {
    let [h, w] = cfg.dataset.image_size;
    Ok(Architecture::build(&cfg.model, h as usize, w as usize)?)
}

/// Run the selected cells of `experiment`. Stops early (marking the cell `interrupted`) when
/// `stop` becomes true.
pub fn run(
    experiment: &Experiment,
    options: &SweepOptions,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<CellResult>> {
    let cells = select_cells(experiment, options)?;
    let inputs = prepare(experiment, &cells, options)?;
    let mut results = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let variant = experiment
            .variant(&cell.variant)
            .expect("selected cells exist");
        options.progress.line(&format!(
            "[{}/{}] {} / {} / seed {}",
            i + 1,
            cells.len(),
            experiment.name,
            cell.variant,
            cell.seed
        ));
        let result = run_cell(experiment, variant, cell, &inputs, options, stop)?;
        options.progress.line(&progress::cell_summary(&result));
        let interrupted = result.status == Status::Interrupted;
        results.push(result);
        if interrupted {
            break;
        }
    }
    Ok(results)
}

/// Train one cell. Errors while training are recorded as a `failed` cell; only errors writing
/// the results themselves are returned.
fn run_cell(
    experiment: &Experiment,
    variant: &Variant,
    cell: &Cell,
    inputs: &Inputs,
    options: &SweepOptions,
    stop: &AtomicBool,
) -> anyhow::Result<CellResult> {
    let started = Instant::now();
    let mut cfg = variant.config.clone();
    if let Some(e) = options.epochs {
        cfg.training.epochs = e;
    }
    let data = &inputs.data[&data_key(&cfg.dataset)];
    let loaded = &inputs.weights[&key(&cfg.model.weights)];
    let arch = architecture(&cfg)?;
    let mask = freeze::trainable_mask(&cfg.training.freeze, &arch).map_err(anyhow::Error::msg)?;
    let trainable_layers = arch
        .layers
        .iter()
        .zip(&mask)
        .filter(|(l, &t)| t && l.has_weights())
        .map(|(l, _)| l.name.clone())
        .collect();
    let device = crate::model::cpu();
    let network = Network::new(arch, cfg.model.conv_init, mask, loaded, cell.seed, &device)?;
    let (trainable, frozen) = network.parameter_counts();
    let record = RunRecord {
        experiment: experiment.name.clone(),
        experiment_file: experiment.file.clone(),
        variant: cell.variant.clone(),
        seed: cell.seed,
        status: Status::Running,
        message: None,
        runner_version: env!("CARGO_PKG_VERSION").into(),
        engine: format!("candle {}", candle_version()),
        device: "cpu".into(),
        started_at: crate::store::record::now(),
        finished_at: None,
        epochs_completed: 0,
        last: None,
        trainable_layers,
        parameters: ParameterCounts { trainable, frozen },
        weights: WeightsRecord {
            source: loaded.source.clone(),
            sha256: loaded.sha256.clone(),
        },
        train: Some(split_record(&data.train)),
        validation: Some(split_record(&data.validation)),
        config: cfg.clone(),
    };
    let dir = options.results.cell_dir(&experiment.name, cell);
    let mut writer = CellWriter::start(dir, record)?;
    options.progress.line(&format!(
        "  {trainable} trainable / {frozen} frozen parameters, {} epochs, writing {}",
        cfg.training.epochs,
        writer.work_dir().display()
    ));
    let outcome = (|| -> anyhow::Result<FitOutcome> {
        let mut optimizer = KerasOptimizer::new(cfg.training.optimizer, network.trainable_vars())?;
        let fit = Fit {
            network: &network,
            optimizer: &mut optimizer,
            train: &data.train,
            validation: &data.validation,
            dataset: &cfg.dataset,
            epochs: cfg.training.epochs,
            seed: cell.seed,
            stop,
        };
        let mut observer = CellObserver {
            writer: &mut writer,
            progress: &options.progress,
            bar: None,
        };
        let outcome = fit.run(&mut observer);
        observer.finish_bar();
        outcome
    })();
    let (status, message) = match outcome {
        Ok(FitOutcome::Completed) => (Status::Done, None),
        Ok(FitOutcome::Diverged { epoch, batch, loss }) => (
            Status::Diverged,
            Some(format!(
                "loss became {loss} in epoch {epoch}, batch {batch}"
            )),
        ),
        Ok(FitOutcome::Interrupted { epoch }) => (
            Status::Interrupted,
            Some(format!(
                "stopped by the user during epoch {epoch}; {} finished epochs kept",
                writer.metrics().len()
            )),
        ),
        Err(e) => (Status::Failed, Some(format!("{e:#}"))),
    };
    let last = writer.metrics().last().copied();
    let dir = writer.finish(status, message.clone())?;
    Ok(CellResult {
        cell: cell.clone(),
        status,
        dir,
        last,
        seconds: started.elapsed().as_secs_f64(),
        message,
    })
}

fn split_record(split: &Split) -> SplitRecord {
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

fn candle_version() -> &'static str {
    "0.11"
}

struct CellObserver<'a> {
    writer: &'a mut CellWriter,
    progress: &'a Progress,
    bar: Option<indicatif::ProgressBar>,
}

impl CellObserver<'_> {
    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for CellObserver<'_> {
    fn on_epoch_start(&mut self, epoch: usize, batches: usize) {
        self.finish_bar();
        self.bar =
            self.progress
                .epoch_bar(epoch, self.writer.record.config.training.epochs, batches);
    }

    fn on_batch(&mut self, _epoch: usize, _batch: usize, running: &Running) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "loss {:.4} acc {:.4}",
                running.loss(),
                running.accuracy()
            ));
            bar.inc(1);
        }
    }

    fn on_epoch_end(&mut self, m: &EpochMetrics) -> anyhow::Result<()> {
        self.finish_bar();
        self.writer.epoch(m)?;
        self.progress.line(&progress::epoch_line(
            m,
            self.writer.record.config.training.epochs,
        ));
        Ok(())
    }
}
