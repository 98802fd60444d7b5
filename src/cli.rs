//! The command line: parse it, run the command, turn its [`Outcome`] into the exit code.
//!
//! The commands and their arguments are in `commands`; the exit codes in
//! [`commands::outcome`](crate::commands::outcome).

use std::process::ExitCode;

use clap::Parser;

use crate::commands::{self, Cli, Command, Outcome};

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            Outcome::Error.into()
        }
    }
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Sweep(args) => commands::sweep::run(args),
        Command::AugmentPreview(args) => commands::augment_preview::run(args),
        Command::Cache(args) => commands::cache::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Why(args) => commands::why::run(args),
        Command::Reproduce(args) => commands::reproduce::run(args),
        Command::Device(args) => commands::device::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Summary(args) => commands::summary::run(args),
        Command::Weights(command) => commands::weights::run(command),
        Command::Hash(args) => commands::hash::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Compare(args) => commands::compare::run(args),
        Command::ExportModel(args) => commands::export_model::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::BenchSweep(args) => commands::bench_sweep::run(args),
        Command::Fetch(args) => commands::fetch::run(args),
        Command::Cancel(args) => commands::cancel::run(args),
        Command::SlurmTask(args) => commands::slurm_task::run(args),
        Command::Export(command) => commands::export_mlflow::run(command),
    }
}
