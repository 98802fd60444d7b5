//! `runner reproduce`: re-run a past cell and check its inputs and metrics.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::DeviceChoice;
use crate::reproduce::{self, Verdict};
use crate::store::ResultsLayout;
use crate::sweep::Progress;

use super::flags::ResultsDir;
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
#[command(mut_arg("results", |a| a.help("The results directory (to find run keys and generated data)")))]
pub struct ReproduceArgs {
    /// A run directory (results/<code>/<experiment>/<variant>/seed-<n>) or a run key (prefix).
    pub run: String,
    /// Largest absolute difference accepted in any metric (CPU runs reproduce exactly: 0).
    #[arg(long, default_value_t = 0.0)]
    pub tolerance: f64,
    /// Device to train on (default: the one the run was recorded on).
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<DeviceChoice>,
    /// Also train the run's [pretrain] stage again (in a scratch directory) and compare its
    /// metrics and checkpoint bytes with the stored stage, before training the cell from it.
    /// Without it, the stored stage checkpoint is checked by hash and only the cell trains.
    #[arg(long)]
    pub deep: bool,
    #[command(flatten)]
    pub results: ResultsDir,
}

/// The long help of `runner reproduce`, with its exit codes.
pub fn long_about() -> String {
    format!(
        "Re-run a past cell and check it: every input first (data files, weights, code), then the \
         metrics of a fresh training run against the recorded ones.\n\n\
         Exit code {}: reproduced; {}: an input changed (nothing trained); {}: the metrics differ.",
        Outcome::Success.code(),
        Outcome::InputsChanged.code(),
        Outcome::MetricsDiffer.code()
    )
}

pub fn run(args: ReproduceArgs) -> anyhow::Result<Outcome> {
    let tolerance = args.tolerance;
    let layout = ResultsLayout::new(args.results.results);
    let found = reproduce::locate(&layout, &args.run)?;
    println!(
        "reproducing {} (run key {})",
        found.dir.display(),
        found.record.run_key.as_deref().unwrap_or("none")
    );
    let scratch = tempfile_dir(&layout)?;
    let verdict = reproduce::reproduce(
        &found,
        &layout,
        scratch.path(),
        tolerance,
        args.device,
        args.deep,
        Progress::detect(),
    );
    let verdict = verdict?;
    Ok(match verdict {
        Verdict::Reproduced { epochs } => {
            println!("REPRODUCED: all {epochs} epochs match (tolerance {tolerance})");
            Outcome::Success
        }
        Verdict::InputsChanged(what) => {
            println!("NOT REPRODUCIBLE: inputs changed since the run:");
            what.iter().for_each(|w| println!("  {w}"));
            Outcome::InputsChanged
        }
        Verdict::MetricsDiffer(what) => {
            println!("MISMATCH: the metrics differ (tolerance {tolerance}):");
            what.iter().take(20).for_each(|w| println!("  {w}"));
            Outcome::MetricsDiffer
        }
    })
}

/// A scratch directory beside the results (same file system), removed when dropped.
pub fn tempfile_dir(layout: &ResultsLayout) -> anyhow::Result<ScratchDir> {
    std::fs::create_dir_all(&layout.root)?;
    let path = layout
        .root
        .join(format!(".reproduce-{}", std::process::id()));
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(ScratchDir(path))
}

/// A directory removed (with its contents) when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Create `path` (and its parents), to be removed when the value is dropped.
    pub fn create(path: PathBuf) -> anyhow::Result<ScratchDir> {
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
