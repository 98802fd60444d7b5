//! `runner sweep`: train every cell of an experiment, print the table, write the report.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::config::DeviceChoice;
use crate::report::{Metric, ReportOptions};
use crate::store::{ResultsLayout, Status};
use crate::sweep::{self, progress, Progress, SweepOptions};

use super::flags::{ExperimentFile, ResultsDir};
use super::interrupt::install_interrupt_handler;
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub experiment: ExperimentFile,
    #[command(flatten)]
    pub select: Select,
    /// Override the number of epochs of every variant (for a quick try).
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Rerun cells that are done already (the earlier result moves to .history/).
    #[arg(long)]
    pub force: bool,
    /// Rerun only the cells that failed.
    #[arg(long, conflicts_with = "force")]
    pub retry_failed: bool,
    /// Do not write the report (runner report) at the end of the sweep.
    #[arg(long)]
    pub no_report: bool,
    /// Print only the final table.
    #[arg(long, short)]
    pub quiet: bool,
    /// Train on "cpu", "cuda", "cuda:N" or "auto" (a GPU when this build has CUDA and one is
    /// present). Default: the experiment file's `device`, else auto.
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<DeviceChoice>,
    /// Decode every image again each epoch and run the full network, instead of reusing
    /// decoded images (results/.cache/images) and cached outputs of the frozen layers
    /// (results/.cache/features). The results are identical; this only costs time.
    #[arg(long)]
    pub no_cache: bool,
    /// Memory for cached features (and for decoded images when they cannot be cached on
    /// disk), e.g. 4GiB or 512MiB; past it features are read from disk. Default: half the
    /// available memory.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_memory: Option<u64>,
    /// Cells trained at once; the CPU threads are divided between them.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: u64,
    #[command(flatten)]
    pub slurm: SlurmFlags,
}

/// `--slurm`: submit the cells to a Slurm cluster instead of training them here.
#[derive(Debug, clap::Args)]
pub struct SlurmFlags {
    /// Submit one Slurm job array (a task per cell that needs running) instead of training
    /// here, and return; the experiment's [slurm] table sets the jobs' resources.
    #[arg(long, conflicts_with = "jobs")]
    pub slurm: bool,
    /// With --slurm: follow the jobs to the end, print the table, exit as a local sweep would.
    #[arg(long, requires = "slurm")]
    pub wait: bool,
    /// With --slurm: the partition (overrides [slurm] partition).
    #[arg(long, requires = "slurm", value_name = "NAME")]
    pub partition: Option<String>,
    /// With --slurm: each task's time limit, as sbatch takes it (overrides [slurm] time).
    #[arg(long, requires = "slurm", value_name = "TIME")]
    pub time: Option<String>,
    /// With --slurm: tasks running at once (overrides [slurm] max_parallel).
    #[arg(long, requires = "slurm", value_name = "N")]
    pub max_parallel: Option<u32>,
}

/// Which cells to run, and where their results go.
#[derive(Debug, clap::Args)]
#[command(mut_arg("results", |a| a.help("Directory for results and generated data sets")))]
pub struct Select {
    /// Run only this variant (repeat for several).
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    /// Run only this seed (repeat for several).
    #[arg(long = "seed", value_name = "N")]
    pub seeds: Vec<u64>,
    #[command(flatten)]
    pub results: ResultsDir,
}

pub fn run(args: SweepArgs) -> anyhow::Result<Outcome> {
    let file = args.experiment.experiment.clone();
    let experiment = args.experiment.load()?;
    crate::evaluate::cells::check_test_dir(&experiment)?;
    let stop = install_interrupt_handler();
    let progress = if args.quiet {
        Progress::Quiet
    } else {
        Progress::detect()
    };
    let results_root = args.select.results.results.clone();
    let options = SweepOptions {
        results: ResultsLayout::new(args.select.results.results),
        variants: args.select.variants,
        seeds: args.select.seeds,
        epochs: args.epochs,
        progress,
        force: args.force,
        retry_failed: args.retry_failed,
        device: args.device,
        image_cache: !args.no_cache,
        feature_cache: !args.no_cache,
        cache_memory: args
            .cache_memory
            .unwrap_or_else(crate::base::memory::default_memory_budget),
        jobs: args.jobs as usize,
        pinned_code: None,
    };
    if args.slurm.slurm {
        let flags = args.slurm;
        let mut settings = experiment.slurm.clone().unwrap_or_default();
        settings.partition = flags.partition.or(settings.partition);
        settings.time = flags.time.or(settings.time);
        settings.max_parallel = flags.max_parallel.or(settings.max_parallel);
        let request = crate::slurm::submit::Request {
            experiment: &experiment,
            options: &options,
            settings,
            cache_memory: args.cache_memory,
            report: !args.no_report,
        };
        return run_slurm(request, flags.wait, args.quiet);
    }
    let results = match sweep::run(&experiment, &options, &stop) {
        Ok(results) => results,
        Err(e) => match e.downcast_ref::<sweep::stage::StageInterrupted>() {
            Some(stopped) => {
                eprintln!("interrupted: {stopped}");
                return Ok(Outcome::Interrupted);
            }
            None => return Err(e),
        },
    };
    println!("\n{}", progress::summary_table(&results));
    if !stop.load(Ordering::SeqCst) {
        if let Some(settings) = &experiment.evaluation {
            let dirs: Vec<PathBuf> = results.iter().map(|r| r.dir.clone()).collect();
            crate::evaluate::cells::evaluate_and_tell(settings, &dirs)?;
        }
    }
    if !args.no_report && !stop.load(Ordering::SeqCst) {
        write_sweep_report(file.as_deref(), &results, results_root);
        if let Some(settings) = &experiment.mlflow {
            let dirs = sweep::recorded_dirs(&results);
            crate::track::live::upload_sweep_report(settings, &experiment.name, &dirs);
        }
    }
    if results
        .iter()
        .any(|r| r.status == Some(Status::Interrupted))
        || stop.load(Ordering::SeqCst)
    {
        eprintln!("interrupted: finished epochs are kept in the cells' .partial directories");
        return Ok(Outcome::Interrupted);
    }
    Ok(matrix_outcome(&results))
}

/// A sweep succeeds only when every cell of the selected matrix is done, whether this sweep
/// trained it or an earlier one did: a script that reruns until exit 0 must not stop with cells
/// missing. The cells that are not done are listed, each with why and what to do.
fn matrix_outcome(results: &[sweep::CellResult]) -> Outcome {
    outcome_of(results, false, false)
}

/// [`matrix_outcome`], also counting cells this process did not see end: `failed_elsewhere`
/// (failed earlier, already listed) and `pending_elsewhere` (still queued or training elsewhere).
fn outcome_of(
    results: &[sweep::CellResult],
    failed_elsewhere: bool,
    pending_elsewhere: bool,
) -> Outcome {
    let not_done: Vec<(&sweep::CellResult, String)> = results
        .iter()
        .filter_map(|r| r.not_done().map(|why| (r, why)))
        .collect();
    if not_done.is_empty() && !failed_elsewhere && !pending_elsewhere {
        println!("every cell of the selected matrix is done");
        return Outcome::Success;
    }
    if !not_done.is_empty() {
        eprintln!("{} cell(s) not done:", not_done.len());
    }
    for (r, why) in &not_done {
        eprintln!("  {} / seed {}: {why}", r.cell.variant, r.cell.seed);
    }
    let failed = not_done
        .iter()
        .any(|(r, _)| matches!(r.status_now(), Some(Status::Failed | Status::Diverged)));
    if failed || failed_elsewhere {
        Outcome::CellsFailed
    } else {
        Outcome::CellsPending
    }
}

/// `--slurm`: submit, print the jobs, and with `--wait` follow them and exit as a local sweep.
///
/// Without `--wait` a successful submission exits 0: the cells train later, and `runner status`
/// follows them. Otherwise the exit code says what a local sweep's would: 3 when a cell failed or
/// diverged (in this submission or earlier), 6 when cells are still pending or running in jobs
/// submitted earlier, 0 only when every selected cell is done.
fn run_slurm(
    request: crate::slurm::submit::Request<'_>,
    wait: bool,
    quiet: bool,
) -> anyhow::Result<Outcome> {
    let submitted = crate::slurm::submit::submit(request)?;
    let Some((dir, sub)) = &submitted.submission else {
        println!(
            "nothing to submit: {} cell(s) done or failed earlier, {} pending or running",
            submitted.skipped, submitted.active
        );
        return Ok(slurm_outcome(&submitted, &[]));
    };
    let ids: Vec<String> = [
        sub.stage_job.as_ref().map(|j| format!("stage {j}")),
        sub.array_job
            .as_ref()
            .map(|j| format!("cells {j}_[0-{}]", sub.cells.len() - 1)),
        sub.report_job.as_ref().map(|j| format!("report {j}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    println!(
        "submitted {} cell(s) ({} skipped, {} pending or running): {}; logs in {}",
        sub.cells.len(),
        submitted.skipped,
        submitted.active,
        ids.join(", "),
        dir.join("logs").display()
    );
    if !wait {
        return Ok(Outcome::Success);
    }
    let results = crate::slurm::submit::follow(dir, sub, quiet)?;
    println!("\n{}", progress::summary_table(&results));
    Ok(slurm_outcome(&submitted, &results))
}

/// The outcome of a `--slurm` sweep that knows how its cells ended: those it followed
/// (`results`), those it skipped as failed earlier, and those left to jobs of earlier submissions.
fn slurm_outcome(
    submitted: &crate::slurm::submit::Submitted,
    results: &[sweep::CellResult],
) -> Outcome {
    for (cell, why) in &submitted.failed_earlier {
        eprintln!("{} / seed {}: {why}", cell.variant, cell.seed);
    }
    if submitted.active > 0 {
        eprintln!(
            "{} cell(s) still pending or running in jobs submitted earlier; `runner status` follows them",
            submitted.active
        );
    }
    outcome_of(
        results,
        !submitted.failed_earlier.is_empty(),
        submitted.active > 0,
    )
}

/// After a sweep, the report of the code state it ran under (when a cell has results). A report
/// that cannot be written is a warning: the sweep's own outcome decides the exit code.
pub fn write_sweep_report(file: Option<&Path>, results: &[sweep::CellResult], root: PathBuf) {
    let finished = results.iter().find(|r| r.last.is_some());
    let Some(state) = finished
        .and_then(|r| r.dir.ancestors().nth(3))
        .and_then(|d| d.file_name())
    else {
        return;
    };
    let options = ReportOptions {
        experiment: file.map(|f| f.display().to_string()),
        commit: Some(state.to_string_lossy().into_owned()),
        against: None,
        baseline: None,
        metric: Metric::FinalValAcc,
        results: root,
    };
    println!();
    if let Err(e) = crate::report::run_report(&options) {
        eprintln!("warning: the report could not be written: {e:#} (try `runner report`)");
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    crate::base::memory::parse_size(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cell;
    use crate::slurm::submit::Submitted;

    fn nothing_submitted(active: usize, failed: usize) -> Submitted {
        Submitted {
            submission: None,
            skipped: failed,
            active,
            failed_earlier: (0..failed)
                .map(|seed| {
                    let cell = Cell {
                        variant: "fine_tuning".into(),
                        seed: seed as u64,
                    };
                    (cell, "failed earlier".to_string())
                })
                .collect(),
        }
    }

    #[test]
    fn a_slurm_sweep_with_nothing_to_submit_exits_as_its_cells_stand() {
        assert_eq!(
            slurm_outcome(&nothing_submitted(0, 0), &[]),
            Outcome::Success
        );
        assert_eq!(
            slurm_outcome(&nothing_submitted(2, 0), &[]),
            Outcome::CellsPending,
            "cells still queued elsewhere are not done"
        );
        assert_eq!(
            slurm_outcome(&nothing_submitted(2, 1), &[]),
            Outcome::CellsFailed,
            "a cell that failed earlier needs a person"
        );
    }
}
