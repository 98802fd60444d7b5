//! `runner report`: write a report of an experiment at one code state.

use crate::report::{self, Metric, ReportOptions};

use super::flags::{metric_parser, ResultsDir};
use super::outcome::Outcome;

#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("results", |a| a.help("Results directory")))]
pub struct ReportArgs {
    /// The experiment: its file (TOML), or its name as in results/. Default: the embedded demo.
    pub experiment: Option<String>,
    /// The code state to report: a commit (or a prefix of one), or a results folder name such as
    /// 3f2a9c1-dirty-0badf00d or no-git. Default: the one with the latest finished cell.
    #[arg(long, value_name = "C")]
    pub commit: Option<String>,
    /// Also compare with another code state: which cells changed and why (run-key components),
    /// and the change of each variant's metric with its interval.
    #[arg(long, value_name = "C2")]
    pub against: Option<String>,
    /// The variant the others are compared with. Default: the experiment's first variant.
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
    /// The metric of the comparisons and verdicts (summary.csv has every metric).
    #[arg(long, value_name = "METRIC", default_value = "final-val-acc", value_parser = metric_parser())]
    pub metric: Metric,
    #[command(flatten)]
    pub results: ResultsDir,
}

pub fn run(args: ReportArgs) -> anyhow::Result<Outcome> {
    report::run_report(&ReportOptions {
        experiment: args.experiment,
        commit: args.commit,
        against: args.against,
        baseline: args.baseline,
        metric: args.metric,
        results: args.results.results,
    })?;
    Ok(Outcome::Success)
}
