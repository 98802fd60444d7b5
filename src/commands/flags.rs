//! Arguments several commands share: the results directory, the experiment file with the
//! embedded demo as its default, and the value parser of `--metric`.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use crate::config::Experiment;
use crate::report::Metric;

/// `--results DIR`. A command whose help says more about it sets its own wording with
/// `mut_arg("results", ...)`.
#[derive(Debug, Clone, clap::Args)]
pub struct ResultsDir {
    /// The results directory.
    #[arg(long = "results", value_name = "DIR", default_value = "results")]
    pub results: PathBuf,
}

/// The optional experiment file; without it, the embedded demo.
#[derive(Debug, Clone, clap::Args)]
pub struct ExperimentFile {
    /// The experiment file (TOML). Default: the embedded demo.
    pub experiment: Option<PathBuf>,
}

impl ExperimentFile {
    /// Load the file, or the embedded demo.
    pub fn load(&self) -> anyhow::Result<Experiment> {
        crate::plan::load_or_demo(self.experiment.as_deref())
    }
}

/// Parses a metric by its name (`final-val-acc`, ...); the help lists each with what it measures.
pub fn metric_parser() -> impl TypedValueParser<Value = Metric> {
    PossibleValuesParser::new(Metric::ALL.map(|m| PossibleValue::new(m.name()).help(m.about())))
        .try_map(|name| {
            Metric::ALL
                .into_iter()
                .find(|m| m.name() == name)
                .ok_or("unknown metric")
        })
}
