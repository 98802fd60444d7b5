//! The matrix: prepare every input once (data sets, weights), then train each cell in turn,
//! recording its outcome. A cell that fails or diverges does not stop the sweep; an interrupt does.

pub mod cache;
pub mod cell;
pub mod prepare;
pub mod progress;
pub mod schedule;
pub mod stage;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::config::{Cell, Experiment};
use crate::store::{ResultsLayout, Status};
use crate::train::EpochMetrics;
pub use prepare::data_dirs;
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
    /// Rerun cells that are done already.
    pub force: bool,
    /// Run only the cells that failed.
    pub retry_failed: bool,
    /// `--device`: overrides the experiment file's `device`.
    pub device: Option<crate::config::DeviceChoice>,
    /// Reuse decoded images (`dataset::image_cache`). Off (`--no-cache`), every image is decoded
    /// again each time it is used, as in the notebook.
    pub image_cache: bool,
    /// Where the input is deterministic, train and validate from cached frozen-prefix outputs
    /// (`train::features`). Off (`--no-cache`), the full network runs every epoch.
    pub feature_cache: bool,
    /// Bytes of cached images and features that may be held in memory; past it features are
    /// read from disk, and images decoded again from their files.
    pub cache_memory: u64,
    /// Cells run at once.
    pub jobs: usize,
}

/// How one cell ended.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub cell: Cell,
    /// How the cell's run ended; `None` when it was skipped.
    pub status: Option<Status>,
    /// Why it was not run.
    pub skipped: Option<String>,
    /// Where its files are (the final directory, or `.partial` when unfinished).
    pub dir: PathBuf,
    pub last: Option<EpochMetrics>,
    pub seconds: f64,
    pub message: Option<String>,
}

/// The cells of `experiment` selected by `options`, in matrix order.
pub fn select_cells(experiment: &Experiment, options: &SweepOptions) -> anyhow::Result<Vec<Cell>> {
    for v in &options.variants {
        experiment.require_variant(v)?;
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

/// Run the selected cells of `experiment`, `options.jobs` at a time. Stops early (marking the
/// cell `interrupted`) when `stop` becomes true; during a pretraining stage, that is the error
/// `stage::StageInterrupted`, and no cell runs.
pub fn run(
    experiment: &Experiment,
    options: &SweepOptions,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<CellResult>> {
    let cells = select_cells(experiment, options)?;
    let device = open_device(experiment, options)?;
    options
        .progress
        .line(&format!("device: {}", device.info.describe()));
    let training = stage::Training::On {
        device: &device,
        stop: stop.as_ref(),
    };
    let inputs = prepare::prepare(experiment, &cells, options, training)?;
    if let Some(warning) = &inputs.code.warning {
        eprintln!("{warning}");
    }
    if options.jobs > 1 && cells.len() > 1 {
        return schedule::run_parallel(experiment, &cells, inputs, &device, options, stop.clone());
    }
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
        let result = cell::run_cell(experiment, variant, cell, &inputs, &device, options, stop)?;
        options.progress.line(&progress::cell_summary(&result));
        let interrupted = result.status == Some(Status::Interrupted);
        results.push(result);
        if interrupted {
            break;
        }
    }
    Ok(results)
}

/// The device the sweep trains on: `--device`, else the experiment file's `device`.
pub fn open_device(
    experiment: &Experiment,
    options: &SweepOptions,
) -> anyhow::Result<crate::model::OpenDevice> {
    let (choice, origin) = match options.device {
        Some(d) => (d, "--device".to_string()),
        None => (
            experiment.device,
            format!("{}: device", experiment.file.display()),
        ),
    };
    crate::model::device::open(choice).with_context(|| format!("{origin} = \"{choice}\""))
}
