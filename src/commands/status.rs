//! `runner status`: the runs on disk, and what Slurm says of submitted cells.

use std::path::Path;

use crate::reproduce;
use crate::store::ResultsLayout;

use super::flags::ResultsDir;
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// An experiment file or name (default: all experiments).
    pub experiment: Option<String>,
    #[command(flatten)]
    pub results: ResultsDir,
    /// Print JSON (one object per cell) for scripts.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StatusArgs) -> anyhow::Result<Outcome> {
    let results = args.results.results;
    let name = match args.experiment {
        Some(e) if Path::new(&e).is_file() => Some(crate::plan::load(Path::new(&e))?.name),
        other => other,
    };
    let here = crate::provenance::CodeState::read_excluding(
        Path::new("."),
        std::slice::from_ref(&results),
    )?
    .dir_name;
    let layout = ResultsLayout::new(results);
    let jobs = crate::slurm::status::current_jobs(&layout, name.as_deref());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json(&layout, name.as_deref(), &jobs)?)?
        );
        return Ok(Outcome::Success);
    }
    print!("{}", reproduce::status(&layout, name.as_deref(), &here));
    match jobs {
        Ok(jobs) => {
            for j in &jobs {
                println!(
                    "slurm: {} / {} / seed {} [{}]: {}",
                    j.experiment,
                    j.cell.variant,
                    j.cell.seed,
                    j.code_state,
                    crate::slurm::status::describe(j)
                );
            }
        }
        Err(e) => eprintln!("warning: the Slurm jobs cannot be listed: {e:#}"),
    }
    Ok(Outcome::Success)
}

/// `--json`: every run on disk with its status, and its Slurm job when it has one; cells whose
/// job has not started yet too.
fn json(
    layout: &ResultsLayout,
    experiment: Option<&str>,
    jobs: &anyhow::Result<Vec<crate::slurm::CellJob>>,
) -> anyhow::Result<serde_json::Value> {
    use serde_json::json;
    let jobs = match jobs {
        Ok(j) => j.as_slice(),
        Err(e) => anyhow::bail!("the Slurm jobs cannot be listed: {e:#}"),
    };
    let settings = crate::base::lock::Settings::from_env().unwrap_or_default();
    let job_json = |j: &crate::slurm::CellJob| {
        json!({
            "id": j.job.display_id(),
            "state": j.job.state,
            "node": j.job.node,
            "reason": j.job.reason,
            "log": j.log,
        })
    };
    let mut cells = Vec::new();
    let mut matched = vec![false; jobs.len()];
    for r in reproduce::find_runs(layout, experiment) {
        let rec = &r.record;
        let (status, lock) = crate::store::lock_status::shown_status(&r.dir, rec.status, &settings);
        let state = rec.code_state.clone().unwrap_or_default();
        let job = jobs.iter().position(|j| {
            j.experiment == rec.experiment
                && j.cell.variant == rec.variant
                && j.cell.seed == rec.seed
                && j.code_state == state
        });
        if let Some(i) = job {
            matched[i] = true;
        }
        cells.push(json!({
            "code_state": state,
            "experiment": rec.experiment,
            "variant": rec.variant,
            "seed": rec.seed,
            "status": status,
            "epochs": rec.epochs_completed,
            "val_acc": rec.last.map(|m| m.val_acc),
            "run_key": rec.run_key,
            "dir": r.dir,
            "message": rec.message,
            "lock": lock,
            "job": job.map(|i| job_json(&jobs[i])),
        }));
    }
    for (j, _) in jobs.iter().zip(&matched).filter(|(_, m)| !**m) {
        cells.push(json!({
            "code_state": j.code_state,
            "experiment": j.experiment,
            "variant": j.cell.variant,
            "seed": j.cell.seed,
            "status": j.job.state.to_lowercase(),
            "job": job_json(j),
        }));
    }
    Ok(serde_json::Value::Array(cells))
}
