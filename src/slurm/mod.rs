//! Running a sweep on a Slurm cluster: one job array, one task per cell that needs running.
//!
//! The submit host prepares once (plans, hashes the data, verifies the weights, finds the stage)
//! and writes a submission under `<results>/<code-state>/.slurm/<id>/`: `submission.json` (the
//! resolved experiment, the code state, the cells by array index, the job ids), a copy of the
//! runner binary, and `logs/`. Every task runs that binary (`runner slurm-task`), which runs the
//! ordinary sweep path for its one cell (locks, resume, records), so a cell is the same cell
//! wherever it runs. `jobs` wraps the Slurm commands, `submit` submits and follows, `task` is what
//! runs on the nodes.

pub mod jobs;
pub mod status;
pub mod submit;
pub mod task;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::base::fs::write_atomic;
use crate::config::{Cell, DeviceChoice, Experiment, SlurmSettings};
use crate::store::record::Provenance;
use crate::store::ResultsLayout;

/// The file a submission is described by.
pub const SUBMISSION_FILE: &str = "submission.json";

/// What was submitted: everything a task needs to run its cell exactly as the submit host
/// planned it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub id: String,
    pub experiment: Experiment,
    pub epochs: Option<usize>,
    pub device: Option<DeviceChoice>,
    pub no_cache: bool,
    pub cache_memory: Option<u64>,
    pub force: bool,
    pub retry_failed: bool,
    /// The results directory as given (tasks run in `workdir`).
    pub results: PathBuf,
    /// The directory tasks run in: the submit host's working directory.
    pub workdir: PathBuf,
    /// The code state the cells are filed under.
    pub code: Provenance,
    pub code_state: String,
    /// The cells, by array task index.
    pub cells: Vec<Cell>,
    pub settings: SlurmSettings,
    #[serde(default)]
    pub stage_job: Option<String>,
    #[serde(default)]
    pub array_job: Option<String>,
    #[serde(default)]
    pub report_job: Option<String>,
    pub submitted_at: String,
}

impl Submission {
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        write_atomic(
            &dir.join(SUBMISSION_FILE),
            &serde_json::to_vec_pretty(self)?,
        )
    }

    /// The submission in `dir`; an error that says the directory must be shared when it cannot
    /// be read.
    pub fn load(dir: &Path) -> anyhow::Result<Submission> {
        let path = dir.join(SUBMISSION_FILE);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read the submission {} on this node: the results directory must be on a \
                 file system every node sees (NFS, Lustre, ...) at the same path",
                path.display()
            )
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("{}: unreadable", path.display()))
    }

    /// The log of array task `index`.
    pub fn cell_log(dir: &Path, index: usize) -> PathBuf {
        dir.join("logs").join(format!("cell-{index}.out"))
    }
}

/// The job name every job of an experiment carries (squeue filters by it).
pub fn job_name(experiment: &str) -> String {
    format!("runner:{experiment}")
}

/// Every submission of `experiment` (of every experiment: `None`) under the results directory,
/// with its directory.
pub fn submissions(
    results: &ResultsLayout,
    experiment: Option<&str>,
) -> Vec<(PathBuf, Submission)> {
    let mut found = Vec::new();
    let Ok(states) = std::fs::read_dir(&results.root) else {
        return found;
    };
    for state in states.flatten() {
        let Ok(subs) = std::fs::read_dir(state.path().join(".slurm")) else {
            continue;
        };
        for sub in subs.flatten() {
            let dir = sub.path();
            if let Ok(s) = Submission::load(&dir) {
                if experiment.is_none_or(|e| s.experiment.name == e) {
                    found.push((dir, s));
                }
            }
        }
    }
    found.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    found
}

/// A cell's job as squeue sees it now: which submission, and its state.
#[derive(Debug, Clone)]
pub struct CellJob {
    pub experiment: String,
    pub cell: Cell,
    pub job: jobs::JobState,
    pub log: PathBuf,
    /// The code state the submission files its cells under.
    pub code_state: String,
    /// Finished and planned epochs of a running cell, from its `.partial` record.
    pub epochs: Option<(usize, usize)>,
}

/// The array tasks of `experiment` (of all: `None`) that squeue knows, newest submission last.
pub fn cell_jobs(
    results: &ResultsLayout,
    experiment: Option<&str>,
) -> anyhow::Result<Vec<CellJob>> {
    let subs = submissions(results, experiment);
    if subs.is_empty() {
        return Ok(vec![]);
    }
    let mut names: Vec<String> = subs
        .iter()
        .map(|(_, s)| job_name(&s.experiment.name))
        .collect();
    names.sort();
    names.dedup();
    let listed = jobs::squeue(&names.join(","))?;
    let mut out = Vec::new();
    for (dir, sub) in &subs {
        let Some(array) = &sub.array_job else {
            continue;
        };
        for job in listed.iter().filter(|j| &j.array_job == array) {
            let Some(index) = job.task else { continue };
            if let Some(cell) = sub.cells.get(index as usize) {
                out.push(CellJob {
                    experiment: sub.experiment.name.clone(),
                    cell: cell.clone(),
                    job: job.clone(),
                    log: Submission::cell_log(dir, index as usize),
                    code_state: sub.code_state.clone(),
                    epochs: None,
                });
            }
        }
    }
    Ok(out)
}
