//! `runner export mlflow`: the cells on disk as runs of an MLflow tracking server.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::bail;

use crate::reproduce::{find_runs, FoundRun};
use crate::store::ResultsLayout;
use crate::track::mlflow::{run_status, Client};

use super::flags::ResultsDir;
use super::outcome::Outcome;

/// Where `runner export` sends cells.
#[derive(Debug, clap::Subcommand)]
pub enum ExportCommand {
    /// Create or update one MLflow run per cell (all code states) in an MLflow experiment named
    /// after the runner's experiment.
    ///
    /// Params are the cell's resolved configuration, metrics its epochs (step = epoch), tags its
    /// run key, code state, commit, variant, seed, device and status; metrics.csv and run.json
    /// are uploaded as artifacts when the server serves them. A run is found again by its
    /// `runner.run_key` tag: exporting again creates no duplicates, and brings a run exported
    /// while its cell trained up to date. Nothing on disk changes.
    Mlflow(MlflowArgs),
}

#[derive(Debug, clap::Args)]
pub struct MlflowArgs {
    /// An experiment file or name (default: every experiment in the results directory).
    pub experiment: Option<String>,
    /// The tracking server, e.g. http://127.0.0.1:5000 (default: $MLFLOW_TRACKING_URI).
    #[arg(long, value_name = "URI")]
    pub tracking_uri: Option<String>,
    /// The MLflow experiment to log into (default: the runner experiment's name).
    #[arg(long, value_name = "NAME")]
    pub mlflow_experiment: Option<String>,
    #[command(flatten)]
    pub results: ResultsDir,
}

pub fn run(command: ExportCommand) -> anyhow::Result<Outcome> {
    let ExportCommand::Mlflow(args) = command;
    let uri = match args
        .tracking_uri
        .or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok())
    {
        Some(uri) => uri,
        None => bail!(
            "no tracking server: give --tracking-uri http://HOST:PORT (or set MLFLOW_TRACKING_URI)"
        ),
    };
    let client = Client::new(&uri)?;
    let name = match args.experiment {
        Some(e) if Path::new(&e).is_file() => Some(crate::plan::load(Path::new(&e))?.name),
        other => other,
    };
    let layout = ResultsLayout::new(&args.results.results);
    let runs = latest_per_key(find_runs(&layout, name.as_deref()));
    if runs.is_empty() {
        bail!(
            "no cells{} under {}: run `runner sweep` first, or give --results",
            name.map(|n| format!(" of experiment {n}"))
                .unwrap_or_default(),
            layout.root.display()
        );
    }
    let mut experiments: BTreeMap<String, String> = BTreeMap::new();
    let (mut created, mut updated) = (0, 0);
    let mut skipped_note = None;
    for found in &runs {
        let target = args
            .mlflow_experiment
            .clone()
            .unwrap_or_else(|| found.record.experiment.clone());
        let id = match experiments.get(&target) {
            Some(id) => id.clone(),
            None => {
                let id = client.experiment(&target)?;
                experiments.insert(target.clone(), id.clone());
                id
            }
        };
        let exported = client.export_cell(&id, &found.dir, &found.record)?;
        println!(
            "{} {}/{}/seed-{} ({}): run {}, {} metric values logged",
            if exported.created {
                "created"
            } else {
                "updated"
            },
            target,
            found.record.variant,
            found.record.seed,
            run_status(found.record.status),
            exported.run_id,
            exported.metrics_logged
        );
        if exported.created {
            created += 1;
        } else {
            updated += 1;
        }
        skipped_note = skipped_note.or(exported.artifacts_skipped);
    }
    if let Some(note) = skipped_note {
        println!("artifacts not uploaded: {note}");
    }
    println!(
        "exported {} cells to {uri}: {created} runs created, {updated} updated",
        runs.len()
    );
    Ok(Outcome::Success)
}

/// One run per run key: a cell rerun under the same key (`--force`) has its newest record.
fn latest_per_key(runs: Vec<FoundRun>) -> Vec<FoundRun> {
    let mut by_key: BTreeMap<String, FoundRun> = BTreeMap::new();
    let mut order = Vec::new();
    for run in runs {
        let Some(key) = run.record.run_key.clone() else {
            continue;
        };
        match by_key.get(&key) {
            Some(old) if old.record.started_at >= run.record.started_at => {}
            _ => {
                if !by_key.contains_key(&key) {
                    order.push(key.clone());
                }
                by_key.insert(key, run);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|k| by_key.remove(&k))
        .collect()
}
