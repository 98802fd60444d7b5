//! `runner compare A B`: two variants of an experiment, or two run directories, in the terminal.

use crate::report::{self, CompareOptions, Metric};

use super::flags::{metric_parser, ResultsDir};
use super::outcome::Outcome;

#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("results", |a| a.help("Results directory")))]
pub struct CompareArgs {
    /// A variant name, or a run directory (…/<variant>/seed-<n>).
    pub a: String,
    /// The variant or run directory to compare A with (differences are A − B).
    pub b: String,
    /// The experiment of the two variants: its file (TOML) or name. Default: the embedded demo.
    #[arg(long, short = 'e', value_name = "EXPERIMENT")]
    pub experiment: Option<String>,
    /// The code state (commit or results folder name). Default: the latest.
    #[arg(long, value_name = "C")]
    pub commit: Option<String>,
    /// The metric of the verdict.
    #[arg(long, value_name = "METRIC", default_value = "final-val-acc", value_parser = metric_parser())]
    pub metric: Metric,
    #[command(flatten)]
    pub results: ResultsDir,
}

pub fn run(args: CompareArgs) -> anyhow::Result<Outcome> {
    report::run_compare(&CompareOptions {
        a: args.a,
        b: args.b,
        experiment: args.experiment,
        commit: args.commit,
        metric: args.metric,
        results: args.results.results,
    })?;
    Ok(Outcome::Success)
}
