//! `runner export-model`: write a cell's complete model as safetensors.

use std::path::PathBuf;

use crate::export::{export, trained_file};
use crate::store::ResultsLayout;

use super::flags::ResultsDir;
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
#[command(mut_arg("results", |a| a.help("The results directory (to find run keys)")))]
pub struct ExportArgs {
    /// A run directory (results/<code>/<experiment>/<variant>/seed-<n>) or a run key (prefix).
    pub run: String,
    /// Export the epoch with the best validation accuracy (best-trained.safetensors) instead of
    /// the last one.
    #[arg(long)]
    pub best: bool,
    /// The model file to write: safetensors with Keras layer names (`block1_conv1.weight`, ...).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    /// The weights file the cell was built from, when it is no longer where run.json says; it
    /// must have the SHA-256 the cell recorded.
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
    #[command(flatten)]
    pub results: ResultsDir,
}

pub fn run(args: ExportArgs) -> anyhow::Result<Outcome> {
    let found = crate::reproduce::locate(&ResultsLayout::new(&args.results.results), &args.run)?;
    let exported = export(
        &found.dir,
        &found.record,
        args.best,
        args.base.as_deref(),
        &args.output,
    )?;
    println!(
        "wrote {}: {} parameters, {} trained ({}), {} frozen from {}; SHA-256 {}",
        args.output.display(),
        exported.trained + exported.frozen,
        exported.trained,
        found.dir.join(trained_file(args.best)).display(),
        exported.frozen,
        exported.base,
        exported.sha256
    );
    Ok(Outcome::Success)
}
