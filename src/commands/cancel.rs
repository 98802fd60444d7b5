//! `runner cancel`: cancel an experiment's Slurm jobs (all, or some variants and seeds).

use crate::slurm::{self, jobs};
use crate::store::ResultsLayout;

use super::flags::ExperimentFile;
use super::outcome::Outcome;
use super::sweep::Select;

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub experiment: ExperimentFile,
    #[command(flatten)]
    pub select: Select,
}

pub fn run(args: CancelArgs) -> anyhow::Result<Outcome> {
    jobs::require_client()?;
    let experiment = args.experiment.load()?;
    for v in &args.select.variants {
        experiment.require_variant(v)?;
    }
    let results = ResultsLayout::new(args.select.results.results);
    let wanted = |variant: &str, seed: u64| {
        (args.select.variants.is_empty() || args.select.variants.iter().any(|v| v == variant))
            && (args.select.seeds.is_empty() || args.select.seeds.contains(&seed))
    };
    let mut ids: Vec<String> = slurm::cell_jobs(&results, Some(&experiment.name))?
        .into_iter()
        .filter(|j| j.job.active() && wanted(&j.cell.variant, j.cell.seed))
        .map(|j| {
            println!(
                "cancelling {} / seed {}: job {} ({})",
                j.cell.variant,
                j.cell.seed,
                j.job.display_id(),
                j.job.state.to_lowercase()
            );
            j.job.display_id()
        })
        .collect();
    // The whole experiment: its stage and report jobs too.
    if args.select.variants.is_empty() && args.select.seeds.is_empty() {
        let listed = jobs::squeue(&slurm::job_name(&experiment.name))?;
        for (_, sub) in slurm::submissions(&results, Some(&experiment.name)) {
            for id in [&sub.stage_job, &sub.report_job].into_iter().flatten() {
                if listed.iter().any(|j| &j.array_job == id && j.active()) {
                    ids.push(id.clone());
                }
            }
        }
    }
    if ids.is_empty() {
        println!("no pending or running jobs of {}", experiment.name);
        return Ok(Outcome::Success);
    }
    jobs::scancel(&ids)?;
    println!("cancelled {} job(s)", ids.len());
    Ok(Outcome::Success)
}
