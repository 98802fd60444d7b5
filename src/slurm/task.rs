//! What runs on a node: `runner slurm-task <submission> --stage | --cell | --report`. A cell task
//! runs the ordinary sweep path for its one cell (lock, resume, record), from the submission's
//! resolved experiment and code state.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};

use super::{jobs, Submission};
use crate::config::DeviceChoice;
use crate::plan::Plan;
use crate::report::{Metric, ReportOptions};
use crate::store::{ResultsLayout, Status};
use crate::sweep::{self, Progress, SweepOptions};

/// Which job of a submission this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Train (or find) the `[pretrain]` stage.
    Stage,
    /// Train the cell of this array task (`SLURM_ARRAY_TASK_ID`, or the given index).
    Cell(Option<usize>),
    /// Write the report.
    Report,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEnd {
    Done,
    /// The cell failed or diverged: the job ends FAILED.
    CellFailed,
    /// Stopped on Slurm's signal and requeued: the next run resumes from the checkpoint.
    Requeued,
    /// Stopped (scancel, Ctrl-C) with its finished epochs kept.
    Interrupted,
}

/// The sweep options of a task of `sub`.
pub fn options(sub: &Submission) -> SweepOptions {
    // A requeued task must resume, not start over: --force and --retry-failed apply to the
    // first run only.
    let first_run = crate::store::record::SlurmJob::from_env().is_none_or(|j| j.restarts == 0);
    let device = sub.device.or_else(|| {
        sub.settings
            .gpus_per_task
            .filter(|&n| n > 0)
            .map(|_| DeviceChoice::Cuda(0))
    });
    SweepOptions {
        results: ResultsLayout::new(sub.results.clone()),
        variants: vec![],
        seeds: vec![],
        epochs: sub.epochs,
        progress: Progress::Lines,
        force: sub.force && first_run,
        retry_failed: sub.retry_failed && first_run,
        device,
        image_cache: !sub.no_cache,
        feature_cache: !sub.no_cache,
        cache_memory: sub
            .cache_memory
            .unwrap_or_else(crate::base::memory::default_memory_budget),
        jobs: 1,
        pinned_code: Some(sub.code.clone()),
    }
}

/// Run the task `kind` of the submission in `dir`. `stop` stops training after the current
/// batch; `requeue` says the stop came from Slurm's signal before the time limit.
pub fn run(
    dir: &Path,
    kind: TaskKind,
    stop: &Arc<AtomicBool>,
    requeue: &AtomicBool,
) -> anyhow::Result<TaskEnd> {
    let sub = Submission::load(dir)?;
    std::env::set_current_dir(&sub.workdir).with_context(|| {
        format!(
            "cannot enter {}, where the sweep was submitted: it must be on a file system every \
             node sees",
            sub.workdir.display()
        )
    })?;
    let plan = Plan::new(&sub.experiment, sub.epochs)?;
    let mut options = options(&sub);
    match kind {
        TaskKind::Stage => {
            let device = sweep::open_device(&plan.experiment, &options)?;
            let training = sweep::stage::Training::On {
                device: &device,
                stop: stop.as_ref(),
            };
            let cells: Vec<_> = sub
                .cells
                .iter()
                .filter_map(|c| plan.cells.iter().find(|p| p.cell == *c).cloned())
                .collect();
            match sweep::prepare(&plan, &cells, &options, training) {
                Ok(_) => Ok(TaskEnd::Done),
                Err(e) if e.is::<sweep::stage::StageInterrupted>() => finish_interrupted(requeue),
                Err(e) => Err(e),
            }
        }
        TaskKind::Cell(index) => {
            let index = match index {
                Some(i) => i,
                None => std::env::var("SLURM_ARRAY_TASK_ID")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .context("SLURM_ARRAY_TASK_ID is not set: a cell task runs in a job array")?,
            };
            let Some(cell) = sub.cells.get(index) else {
                bail!("{}: no cell {index} in this submission", dir.display());
            };
            println!(
                "{} / {} / seed {} (array task {index} of submission {})",
                sub.experiment.name, cell.variant, cell.seed, sub.id
            );
            options.variants = vec![cell.variant.clone()];
            options.seeds = vec![cell.seed];
            let results = match sweep::run_plan(&plan, &options, stop) {
                Ok(r) => r,
                Err(e) if e.is::<sweep::stage::StageInterrupted>() => {
                    return finish_interrupted(requeue)
                }
                Err(e) => return Err(e),
            };
            for r in &results {
                println!("{}", sweep::progress::cell_summary(r));
            }
            if results
                .iter()
                .any(|r| matches!(r.status, Some(Status::Failed | Status::Diverged)))
            {
                return Ok(TaskEnd::CellFailed);
            }
            if stop.load(Ordering::SeqCst)
                || results
                    .iter()
                    .any(|r| r.status == Some(Status::Interrupted))
            {
                return finish_interrupted(requeue);
            }
            Ok(TaskEnd::Done)
        }
        TaskKind::Report => {
            let report = ReportOptions {
                experiment: Some(sub.experiment.name.clone()),
                commit: Some(sub.code_state.clone()),
                against: None,
                baseline: None,
                metric: Metric::FinalValAcc,
                results: sub.results.clone(),
            };
            // As at the end of a local sweep: [evaluation] first, so that the report shows
            // it, then the report, then the report into the cells' MLflow runs.
            let cells = super::submit::outcomes(dir, &sub, &Default::default());
            if let Some(settings) = &sub.experiment.evaluation {
                let dirs: Vec<_> = cells.iter().map(|r| r.dir.clone()).collect();
                crate::evaluate::cells::evaluate_and_tell(settings, &dirs)?;
            }
            crate::report::run_report(&report)?;
            if let Some(settings) = &sub.experiment.mlflow {
                let dirs = sweep::recorded_dirs(&cells);
                crate::track::live::upload_sweep_report(settings, &sub.experiment.name, &dirs);
            }
            Ok(TaskEnd::Done)
        }
    }
}

/// After a stop: requeue this job when the stop was Slurm's signal, so that it resumes.
fn finish_interrupted(requeue: &AtomicBool) -> anyhow::Result<TaskEnd> {
    if !requeue.load(Ordering::SeqCst) {
        return Ok(TaskEnd::Interrupted);
    }
    let id = std::env::var("SLURM_JOB_ID").context("SLURM_JOB_ID is not set")?;
    println!("stopped on Slurm's signal; requeueing job {id} to resume from the checkpoint");
    jobs::requeue(&id)?;
    Ok(TaskEnd::Requeued)
}
