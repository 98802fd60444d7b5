//! `runner why`: which inputs of a cell's run key changed since its last run.

use std::path::PathBuf;

use crate::reproduce;
use crate::store::ResultsLayout;

use super::flags::ResultsDir;
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
pub struct WhyArgs {
    /// The experiment file.
    pub experiment: PathBuf,
    #[arg(long, value_name = "NAME")]
    pub variant: String,
    #[arg(long, value_name = "N")]
    pub seed: u64,
    #[command(flatten)]
    pub results: ResultsDir,
}

pub fn run(args: WhyArgs) -> anyhow::Result<Outcome> {
    let experiment = crate::plan::load(&args.experiment)?;
    print!(
        "{}",
        reproduce::why(
            &experiment,
            &args.variant,
            args.seed,
            &ResultsLayout::new(args.results.results)
        )?
    );
    Ok(Outcome::Success)
}
