//! `runner status`: what Slurm says of the cells of submitted sweeps.

use super::{cell_jobs, CellJob};
use crate::store::{partial_dir, read_record, ResultsLayout};

/// The job each submitted cell has now: its pending or running one, else its newest. `None`
/// when nothing was submitted; an error only when submissions exist and squeue cannot be asked.
pub fn current_jobs(
    results: &ResultsLayout,
    experiment: Option<&str>,
) -> anyhow::Result<Vec<CellJob>> {
    if super::submissions(results, experiment).is_empty() {
        return Ok(vec![]);
    }
    let all = cell_jobs(results, experiment)?;
    let mut out: Vec<CellJob> = Vec::new();
    for job in all {
        let same = |j: &CellJob| {
            j.experiment == job.experiment && j.cell == job.cell && j.code_state == job.code_state
        };
        match out.iter_mut().find(|j| same(j)) {
            // Submissions come oldest first: a newer job replaces an older one unless the older
            // one is still active.
            Some(slot) if !slot.job.active() || job.job.active() => *slot = job,
            Some(_) => {}
            None => out.push(job),
        }
    }
    for job in &mut out {
        if job.job.state == "RUNNING" {
            job.epochs = epochs(results, job);
        }
    }
    Ok(out)
}

/// Finished and planned epochs of the cell's unfinished run, from its `.partial` record.
fn epochs(results: &ResultsLayout, job: &CellJob) -> Option<(usize, usize)> {
    let dir = partial_dir(&results.cell_dir(&job.code_state, &job.experiment, &job.cell));
    let record = read_record(&dir)?;
    Some((record.epochs_completed, record.config.training.epochs))
}

/// One line for a cell's job: `running (job 12_3 on node n1, epoch 2/10)`, `pending (job 12_4, Priority)`,
/// `failed (job 12_5; log ...)`.
pub fn describe(job: &CellJob) -> String {
    let j = &job.job;
    let state = j.state.to_lowercase();
    match j.state.as_str() {
        "RUNNING" | "COMPLETING" | "CONFIGURING" => match job.epochs {
            Some((done, total)) => format!(
                "{state} (job {} on node {}, epoch {done}/{total})",
                j.display_id(),
                j.node
            ),
            None => format!("{state} (job {} on node {})", j.display_id(), j.node),
        },
        "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "SUSPENDED" => {
            format!("{state} (job {}, {})", j.display_id(), j.reason)
        }
        _ => format!(
            "{state} (job {}; log {})",
            j.display_id(),
            job.log.display()
        ),
    }
}
