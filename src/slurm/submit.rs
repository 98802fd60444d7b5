//! `runner sweep --slurm`: prepare once, write the submission, submit the stage job, the array
//! and the report job; with `--wait`, follow them to the end.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::{cell_jobs, job_name, jobs, Submission};
use crate::config::{Cell, Experiment, SlurmSettings};
use crate::plan::Plan;
use crate::provenance::CodeState;
use crate::store::{partial_dir, read_record, Status};
use crate::sweep::{self, CellResult, SweepOptions};

/// What `submit` did.
pub struct Submitted {
    /// The submission's directory and description; `None` when nothing needed submitting.
    pub submission: Option<(PathBuf, Submission)>,
    /// Cells left out because they are done (or failed earlier), and because a job of theirs is
    /// pending or running.
    pub skipped: usize,
    pub active: usize,
    /// The skipped cells that failed or diverged earlier, each with why and what to do.
    pub failed_earlier: Vec<(Cell, String)>,
}

/// The flags of `runner sweep` that shape a submission beyond the sweep options.
pub struct Request<'a> {
    pub experiment: &'a Experiment,
    pub options: &'a SweepOptions,
    pub settings: SlurmSettings,
    /// `--cache-memory` as given (tasks otherwise take half of their node's memory).
    pub cache_memory: Option<u64>,
    pub report: bool,
}

/// Prepare and submit the cells of `req` that are neither done nor pending nor running.
pub fn submit(req: Request<'_>) -> anyhow::Result<Submitted> {
    jobs::require_client()?;
    let options = req.options;
    let plan = Plan::new(req.experiment, options.epochs)?;
    let experiment = &plan.experiment;
    let cells = sweep::select_cells(&plan, options)?;
    let mut failed_earlier = Vec::new();
    let (code, mut todo, stage_needed, skipped) =
        match sweep::prepare(&plan, &cells, options, sweep::stage::Training::Never) {
            Ok(inputs) => {
                let mut todo = Vec::new();
                let mut skipped = 0;
                for cell in &cells {
                    match sweep::skip_reason(&plan, cell, &inputs, options) {
                        Some((reason, status)) => {
                            options.progress.line(&format!(
                                "{} / seed {}: {reason}",
                                cell.cell.variant, cell.cell.seed
                            ));
                            if matches!(status, Some(Status::Failed | Status::Diverged)) {
                                failed_earlier.push((cell.cell.clone(), reason));
                            }
                            skipped += 1;
                        }
                        None => todo.push(cell.cell.clone()),
                    }
                }
                (inputs.code, todo, false, skipped)
            }
            Err(e) if e.is::<sweep::stage::StageNotTrained>() => {
                let code = CodeState::read_excluding(
                    &experiment.base_dir,
                    &sweep::input_paths(experiment, &options.results),
                )?;
                let todo = cells.iter().map(|c| c.cell.clone()).collect();
                (code, todo, true, 0)
            }
            Err(e) => return Err(e),
        };
    if let Some(warning) = &code.warning {
        eprintln!("{warning}");
    }
    code.store_diff(&options.results)?;
    // Cells with a job still pending or running under this code state are not submitted again.
    let active: BTreeSet<(String, u64)> = cell_jobs(&options.results, Some(&experiment.name))?
        .into_iter()
        .filter(|j| j.job.active() && j.code_state == code.dir_name)
        .map(|j| (j.cell.variant, j.cell.seed))
        .collect();
    let before = todo.len();
    todo.retain(|c| !active.contains(&(c.variant.clone(), c.seed)));
    let active = before - todo.len();
    if todo.is_empty() {
        return Ok(Submitted {
            submission: None,
            skipped,
            active,
            failed_earlier,
        });
    }

    let workdir = std::env::current_dir().context("cannot read the working directory")?;
    let id = format!(
        "{}-{}",
        crate::base::clock::now().replace([':', '-'], ""),
        std::process::id()
    );
    let dir = options
        .results
        .root
        .join(&code.dir_name)
        .join(".slurm")
        .join(&id);
    let dir = workdir.join(dir);
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create {}", dir.join("logs").display()))?;
    copy_binary(&dir.join("runner"))?;
    let mut sub = Submission {
        id,
        experiment: experiment.clone(),
        epochs: options.epochs,
        device: options.device,
        no_cache: !options.image_cache,
        cache_memory: req.cache_memory,
        force: options.force,
        retry_failed: options.retry_failed,
        results: options.results.root.clone(),
        workdir: workdir.clone(),
        code: code.provenance.clone(),
        code_state: code.dir_name.clone(),
        cells: todo,
        settings: req.settings,
        stage_job: None,
        array_job: None,
        report_job: None,
        submitted_at: crate::base::clock::now(),
    };
    sub.save(&dir)?;
    match submit_jobs(&dir, &mut sub, stage_needed, req.report) {
        Ok(()) => {}
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.context("nothing was submitted"));
        }
    }
    sub.save(&dir)?;
    Ok(Submitted {
        submission: Some((dir, sub)),
        skipped,
        active,
        failed_earlier,
    })
}

/// The runner binary, pinned: hard-linked where the results are on the same file system (a
/// rebuild writes a new file, so the link keeps the old one), else copied.
fn copy_binary(to: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the runner binary")?;
    if std::fs::hard_link(&exe, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(&exe, to)
        .with_context(|| format!("cannot copy {} to {}", exe.display(), to.display()))?;
    Ok(())
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

fn script(dir: &Path, kind: &str) -> String {
    format!(
        "#!/bin/sh\nexec {} slurm-task {} {kind}\n",
        quote(&dir.join("runner")),
        quote(dir)
    )
}

/// The options every job of the submission gets.
fn common(sub: &Submission) -> Vec<String> {
    let s = &sub.settings;
    let mut o = vec![
        format!("--job-name={}", job_name(&sub.experiment.name)),
        format!("--chdir={}", sub.workdir.display()),
    ];
    let mut opt = |flag: &str, v: &Option<String>| {
        if let Some(v) = v {
            o.push(format!("--{flag}={v}"));
        }
    };
    opt("partition", &s.partition);
    opt("account", &s.account);
    opt("qos", &s.qos);
    opt("time", &s.time);
    o.extend(s.extra.iter().cloned());
    o
}

/// The resources of a training job (stage or cell).
fn training(sub: &Submission) -> Vec<String> {
    let s = &sub.settings;
    let mut o = common(sub);
    if let Some(c) = s.cpus_per_task {
        o.push(format!("--cpus-per-task={c}"));
    }
    if let Some(m) = &s.mem {
        o.push(format!("--mem={m}"));
    }
    if let Some(g) = s.gpus_per_task.filter(|&g| g > 0) {
        o.push(format!("--gres=gpu:{g}"));
    }
    o
}

fn submit_jobs(
    dir: &Path,
    sub: &mut Submission,
    stage_needed: bool,
    report: bool,
) -> anyhow::Result<()> {
    let logs = dir.join("logs");
    let log = |name: &str| format!("--output={}", logs.join(name).display());
    let mut submitted: Vec<String> = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        if stage_needed {
            let mut o = training(sub);
            o.push(log("stage.out"));
            let id = jobs::sbatch(&o, &script(dir, "--stage"))?;
            submitted.push(id.clone());
            sub.stage_job = Some(id);
        }
        let n = sub.cells.len();
        let mut o = training(sub);
        let throttle = sub
            .settings
            .max_parallel
            .map(|m| format!("%{m}"))
            .unwrap_or_default();
        o.push(format!("--array=0-{}{throttle}", n - 1));
        o.push("--requeue".into());
        o.push(format!(
            "--signal=B:USR1@{}",
            sub.settings.signal_seconds.unwrap_or(120)
        ));
        o.push(log("cell-%a.out"));
        if let Some(stage) = &sub.stage_job {
            o.push(format!("--dependency=afterok:{stage}"));
        }
        let array = jobs::sbatch(&o, &script(dir, "--cell"))?;
        submitted.push(array.clone());
        sub.array_job = Some(array.clone());
        if report {
            let mut o = common(sub);
            o.push(log("report.out"));
            o.push(format!("--dependency=afterany:{array}"));
            let id = jobs::sbatch(&o, &script(dir, "--report"))?;
            submitted.push(id.clone());
            sub.report_job = Some(id);
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = jobs::scancel(&submitted);
    }
    result
}

/// Follow the submission's jobs until none is pending or running, printing how many cells are
/// done; then the cells' results as their records say.
pub fn follow(dir: &Path, sub: &Submission, quiet: bool) -> anyhow::Result<Vec<CellResult>> {
    let ids: BTreeSet<&String> = [&sub.stage_job, &sub.array_job, &sub.report_job]
        .into_iter()
        .flatten()
        .collect();
    let total = sub.cells.len();
    let mut shown = usize::MAX;
    // How each array task ended, by index.
    let mut ended = std::collections::BTreeMap::new();
    loop {
        let listed = jobs::squeue(&job_name(&sub.experiment.name))?;
        let ours: Vec<_> = listed
            .iter()
            .filter(|j| ids.contains(&j.array_job))
            .collect();
        let finished = ours
            .iter()
            .filter(|j| Some(&j.array_job) == sub.array_job.as_ref() && !j.active())
            .count();
        if finished != shown && !quiet {
            println!("cells done: {finished}/{total}");
            shown = finished;
        }
        if ours.iter().all(|j| !j.active()) {
            for j in &ours {
                if let (true, Some(t)) = (Some(&j.array_job) == sub.array_job.as_ref(), j.task) {
                    ended.insert(t as usize, j.state.clone());
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let results = outcomes(dir, sub, &ended);
    if !quiet {
        println!("cells done: {}/{total}", results.len());
    }
    Ok(results)
}

/// Each submitted cell as its record says (final directory, else `.partial`); a cell without
/// one whose task `ended` in a state other than COMPLETED failed before training.
pub fn outcomes(
    dir: &Path,
    sub: &Submission,
    ended: &std::collections::BTreeMap<usize, String>,
) -> Vec<CellResult> {
    let layout = crate::store::ResultsLayout::new(sub.workdir.join(&sub.results));
    sub.cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let log = Submission::cell_log(dir, i);
            let mut result = outcome(&layout, sub, cell, &log);
            if let Some(state) = ended.get(&i).filter(|s| *s != "COMPLETED") {
                if result.status.is_none() && state.starts_with("CANCELLED") {
                    // Someone cancelled it: nothing is wrong with the cell, it is just not done.
                    result.skipped = Some(format!(
                        "its task was cancelled before training; `runner sweep --slurm` submits it again (log: {})",
                        log.display()
                    ));
                } else if result.status.is_none() {
                    result.status = Some(crate::store::Status::Failed);
                    result.skipped = None;
                    result.message = Some(format!(
                        "the task ended {state} before training (log: {})",
                        log.display()
                    ));
                }
            }
            result
        })
        .collect()
}

fn outcome(
    layout: &crate::store::ResultsLayout,
    sub: &Submission,
    cell: &Cell,
    log: &Path,
) -> CellResult {
    let final_dir = layout.cell_dir(&sub.code_state, &sub.experiment.name, cell);
    let partial = partial_dir(&final_dir);
    let (dir, record) = match read_record(&final_dir) {
        Some(r) => (final_dir, Some(r)),
        None => (partial.clone(), read_record(&partial)),
    };
    // Training time across every run of the cell (requeues included), from its epochs' rows.
    let seconds = crate::store::read_metrics(&dir.join("metrics.csv"))
        .map(|rows| rows.iter().map(|m| m.seconds).sum())
        .unwrap_or(0.0);
    match record {
        Some(r) => CellResult {
            cell: cell.clone(),
            status: Some(r.status),
            skipped: None,
            skipped_status: None,
            dir,
            last: r.last,
            seconds,
            message: r.message.map(|m| format!("{m} (log: {})", log.display())),
        },
        None => CellResult {
            cell: cell.clone(),
            status: None,
            skipped: Some(format!("never started (log: {})", log.display())),
            skipped_status: None,
            dir,
            last: None,
            seconds: 0.0,
            message: None,
        },
    }
}
