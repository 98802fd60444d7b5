//! `runner summary`: a Keras-style summary of each variant's model.

use super::flags::ExperimentFile;
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub experiment: ExperimentFile,
    /// Only this variant.
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
}

pub fn run(args: SummaryArgs) -> anyhow::Result<Outcome> {
    let experiment = args.experiment.load()?;
    print!(
        "{}",
        crate::plan::summary(&experiment, args.variant.as_deref())?
    );
    Ok(Outcome::Success)
}
