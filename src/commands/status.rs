//! `runner status`: the runs on disk.

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
    print!(
        "{}",
        reproduce::status(&ResultsLayout::new(results), name.as_deref(), &here)
    );
    Ok(Outcome::Success)
}
