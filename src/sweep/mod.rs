//! The matrix: plan the experiment, prepare every input once (data sets, weights, stages), then
//! train each cell in turn, recording its outcome. A cell that fails or diverges does not stop the
//! sweep; an interrupt does.
//!
//! From the bottom up: `inputs` (what the cells share), `files` (the checkpoint names),
//! `feature_cache` (a cell's cached frozen-layer outputs), `stage` (the `[pretrain]` stage),
//! `cell` (decide, train, record one cell), `schedule` (`--jobs`); `progress` prints.

mod cell;
mod feature_cache;
pub mod files;
mod inputs;
mod lockstep;
pub mod progress;
mod schedule;
pub mod stage;

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::base::memory::MemoryBudget;
use crate::config::{Cell, Experiment};
use crate::model::weights;
use crate::plan::{CellPlan, Plan};
use crate::provenance::CodeState;
use crate::store::{ResultsLayout, Status};
use crate::train::features::FeatureCache;
use crate::train::EpochMetrics;
pub use cell::{run_cell, skip_reason};
pub use inputs::{data_dirs, fingerprint, image_cache, input_paths, Inputs, PreparedData};
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
    /// The code state to file cells under, as recorded when a Slurm submission was prepared;
    /// `None`: read it from the work tree.
    pub pinned_code: Option<crate::store::record::Provenance>,
}

/// How one cell ended.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub cell: Cell,
    /// How the cell's run ended; `None` when it was skipped.
    pub status: Option<Status>,
    /// Why it was not run.
    pub skipped: Option<String>,
    /// For a skipped cell, the status it has on disk under its run key (None: none that counts,
    /// e.g. another sweep holds it).
    pub skipped_status: Option<Status>,
    /// Where its files are (the final directory, or `.partial` when unfinished).
    pub dir: PathBuf,
    pub last: Option<EpochMetrics>,
    pub seconds: f64,
    pub message: Option<String>,
}

/// The directories of the cells that have a record after this sweep (trained now or earlier):
/// the cells an end-of-sweep step such as the MLflow report upload applies to.
pub fn recorded_dirs(results: &[CellResult]) -> Vec<std::path::PathBuf> {
    results
        .iter()
        .filter(|r| r.status_now().is_some())
        .map(|r| r.dir.clone())
        .collect()
}

impl CellResult {
    /// The status the cell has after this sweep, whether it ran now or earlier.
    pub fn status_now(&self) -> Option<Status> {
        self.status.or(self.skipped_status)
    }

    /// Why the cell is not done after this sweep, and what to do; None when it is done.
    pub fn not_done(&self) -> Option<String> {
        const DIVERGED: &str =
            "change its training settings (e.g. a lower learning rate); `--force` reruns it";
        let message = || {
            self.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        };
        let why = match (self.status_now(), &self.skipped) {
            (Some(Status::Done), _) => return None,
            (Some(Status::Diverged), Some(reason)) => format!("{reason}; {DIVERGED}"),
            (_, Some(reason)) => reason.clone(),
            (Some(Status::Failed), None) => format!(
                "failed{}; fix the cause, then `runner sweep --retry-failed` resumes it",
                message()
            ),
            (Some(Status::Diverged), None) => format!("diverged{}; {DIVERGED}", message()),
            (_, None) => "interrupted; `runner sweep` resumes it".to_string(),
        };
        Some(why)
    }
}

/// The cells of `plan` selected by `options`, in matrix order.
pub fn select_cells(plan: &Plan, options: &SweepOptions) -> anyhow::Result<Vec<CellPlan>> {
    let experiment = &plan.experiment;
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
    Ok(plan
        .cells
        .iter()
        .filter(|c| options.variants.is_empty() || options.variants.contains(&c.cell.variant))
        .filter(|c| options.seeds.is_empty() || options.seeds.contains(&c.cell.seed))
        .cloned()
        .collect())
}

/// Plan `experiment` (with `options.epochs`) and run the selected cells (`run_plan`).
pub fn run(
    experiment: &Experiment,
    options: &SweepOptions,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<CellResult>> {
    run_plan(&Plan::new(experiment, options.epochs)?, options, stop)
}

/// Run the selected cells of `plan`, `options.jobs` at a time. Stops early (marking the cell
/// `interrupted`) when `stop` becomes true; during a pretraining stage, that is the error
/// `stage::StageInterrupted`, and no cell runs.
pub fn run_plan(
    plan: &Plan,
    options: &SweepOptions,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<CellResult>> {
    let experiment = &plan.experiment;
    let cells = select_cells(plan, options)?;
    let device = open_device(experiment, options)?;
    // Cells that may train in lockstep run two at a time (`lockstep`); the view labels their
    // lines as it does with `--jobs`, and its ETA counts a pair as one lane.
    let serial = options.jobs <= 1 || cells.len() <= 1;
    let may_pair: Vec<(usize, usize)> = if serial {
        lockstep::pairs(&cells, &vec![true; cells.len()])
            .iter()
            .map(|p| (p.first, p.second))
            .collect()
    } else {
        Vec::new()
    };
    // The whole-matrix view, from here to the end of the sweep (a pretraining stage included).
    let live = options.progress.sweep(
        &experiment.name,
        &cells,
        options.jobs.clamp(1, cells.len().max(1)),
        &may_pair,
    );
    let options = &SweepOptions {
        progress: live.progress().clone(),
        ..options.clone()
    };
    options
        .progress
        .line(&format!("device: {}", device.info.describe()));
    let training = stage::Training::On {
        device: &device,
        stop: stop.as_ref(),
    };
    let mut inputs = prepare(plan, &cells, options, training)?;
    if let Some(warning) = &inputs.code.warning {
        eprintln!("{warning}");
    }
    inputs.tracker = experiment.mlflow.as_ref().and_then(|settings| {
        crate::track::live::Tracker::for_experiment(settings, &experiment.name)
    });
    let mut trains = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        let skipped = skip_reason(plan, cell, &inputs, options).is_some();
        if skipped {
            options.progress.expect_skipped(i);
        }
        trains.push(!skipped);
    }
    if options.feature_cache {
        inputs.prefix_ends = inputs::prefix_ends(
            cells
                .iter()
                .zip(&trains)
                .filter(|(_, &t)| t)
                .map(|(c, _)| c),
        );
    }
    if !serial {
        return schedule::run_parallel(plan, &cells, inputs, &device, options, stop.clone());
    }
    let pairs = lockstep::pairs(&cells, &trains);
    // Results in matrix order; a pair's second cell is trained with its first.
    let mut results: Vec<Option<CellResult>> = vec![None; cells.len()];
    for (i, cell) in cells.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if results[i].is_some() {
            continue;
        }
        let ended = match pairs.iter().find(|p| p.first == i) {
            Some(&pair) => {
                let both = (cell, &cells[pair.second]);
                let (a, b) = lockstep::run_pair(plan, both, pair, &inputs, &device, options, stop)?;
                results[pair.second] = b;
                results[i] = a;
                [Some(i), Some(pair.second)]
            }
            None => {
                let options = SweepOptions {
                    progress: options.progress.for_cell(i),
                    ..options.clone()
                };
                options.progress.cell_started();
                let result = run_cell(plan, cell, &inputs, &device, &options, None, stop)?;
                options.progress.cell_ended(&result);
                results[i] = Some(result);
                [Some(i), None]
            }
        };
        let interrupted = ended
            .into_iter()
            .flatten()
            .any(|k| matches!(&results[k], Some(r) if r.status == Some(Status::Interrupted)));
        if interrupted {
            break;
        }
    }
    Ok(results.into_iter().flatten().collect())
}

/// Open and fingerprint every data set and weights file the `cells` need, before any training
/// starts, so that a missing directory or file is reported at once (`run_plan` opens the device
/// first, so a device that cannot be used is reported before them).
///
/// A pretraining stage that is not trained yet is trained as `stages` says (or not at all).
pub fn prepare(
    plan: &Plan,
    cells: &[CellPlan],
    options: &SweepOptions,
    stages: stage::Training<'_>,
) -> anyhow::Result<Inputs> {
    let experiment = &plan.experiment;
    // Temporaries that killed sweeps left in the caches (only their own key's next write would
    // otherwise find them).
    crate::store::caches::remove_dead_temporaries(&options.results.cache_dir());
    let budget = Arc::new(MemoryBudget::new(options.cache_memory));
    let mut inputs = Inputs {
        data: BTreeMap::new(),
        weights: BTreeMap::new(),
        code: match &options.pinned_code {
            Some(p) => CodeState::pinned(p.clone(), &options.results)?,
            None => CodeState::read_excluding(
                &experiment.base_dir,
                &input_paths(experiment, &options.results),
            )?,
        },
        stages: BTreeMap::new(),
        features: FeatureCache::new(
            Some(options.results.cache_dir().join("features")),
            budget.clone(),
        ),
        images: image_cache(options, budget),
        tracker: None,
        prefix_ends: BTreeMap::new(),
    };
    let cpu = crate::model::cpu();
    for cell in cells {
        let variant = &cell.variant;
        let cfg = &variant.config;
        let data_context = || {
            written_at(experiment, &variant.name, "[dataset]", "dataset", |c| {
                c.dataset.source == cfg.dataset.source
            })
        };
        let weights_context = || {
            written_at(
                experiment,
                &variant.name,
                "[model] weights",
                "model.weights",
                |c| c.model.weights == cfg.model.weights,
            )
        };
        if let Entry::Vacant(slot) = inputs.data.entry(variant.data_key.clone()) {
            let prepared = inputs::open_data(&cfg.dataset, true, &inputs.images, options)
                .with_context(data_context)?;
            options.progress.line(&format!(
                "data: {} training and {} validation images, classes {:?}, hash {}",
                prepared.data.train.len(),
                prepared.data.validation.len(),
                prepared.data.train.class_names,
                &prepared.hash[..12]
            ));
            slot.insert(prepared);
        }
        if let Entry::Vacant(slot) = inputs.weights.entry(variant.weights_key.clone()) {
            let arch = &variant.architecture;
            let loaded = match plan.stage_of(variant) {
                Some(stage) => {
                    let outcome = stage::ensure(
                        experiment,
                        stage,
                        &inputs.code,
                        &inputs.images,
                        stages,
                        options,
                    )?;
                    let loaded = weights::load_conv_base(&outcome.checkpoint, arch, &cpu)
                        .with_context(weights_context)?;
                    inputs.stages.insert(stage.stage.name.clone(), outcome);
                    loaded
                }
                None => {
                    weights::load(&cfg.model.weights, arch, &cpu).with_context(weights_context)?
                }
            };
            slot.insert(loaded);
        }
    }
    Ok(inputs)
}

/// Where the setting of `variant` that `same` compares is written, for an error about it: the
/// base section (`base_key`) when every variant has it, else `variant_key` in the variants that
/// have it. A shared setting is not blamed on the first variant that uses it.
fn written_at(
    experiment: &Experiment,
    variant: &str,
    base_key: &str,
    variant_key: &str,
    same: impl Fn(&crate::config::CellConfig) -> bool,
) -> String {
    let file = experiment.file.display();
    let sharing: Vec<String> = experiment
        .variants
        .iter()
        .filter(|v| same(&v.config))
        .map(|v| format!("\"{}\"", v.name))
        .collect();
    if sharing.len() == experiment.variants.len() {
        return format!("{file}: {base_key} (every variant's)");
    }
    let names = if sharing.is_empty() {
        format!("\"{variant}\"")
    } else {
        sharing.join(", ")
    };
    let plural = if sharing.len() > 1 { "s" } else { "" };
    format!("{file}: {variant_key} of variant{plural} {names}")
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
