//! Reports across seeds: what an experiment's cells say per variant, against a baseline variant
//! and against another code state, as `report.md`, a self-contained `report.html`, `summary.csv`
//! and figures, written to `<results>/<code-state>/<experiment>/report/`.
//!
//! The stages: [`locate`] the experiment directory for a code state, [`load`] its cells,
//! [`analysis`] (numbers from [`stats`]), [`plots`], then [`export`] to bytes and write them.
//! A report never trains, never changes a cell, and never averages a cell that did not finish.

pub mod analysis;
pub mod compare;
pub mod export;
pub mod format;
pub mod load;
pub mod locate;
pub mod plots;
pub mod stats;

use std::path::{Path, PathBuf};

use crate::base::fs::write_atomic;
use crate::config;

pub use analysis::{Analysis, Metric};
pub use load::{Declared, ExperimentResults};

/// Everything one report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The code state's label: its folder name, or `unkeyed` for results written before code states.
    pub code_state: String,
    /// The experiment directory as shown to the user (`results/3f2a9c1/demo`); cell paths and
    /// `runner reproduce` commands are built from it.
    pub location: String,
    pub results: ExperimentResults,
    pub analysis: Analysis,
    pub against: Option<compare::Against>,
}

/// What `runner report` reports: an experiment at one code state, optionally against another.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The experiment: its file (TOML), or its name as in results/. Default: the embedded demo.
    pub experiment: Option<String>,
    /// The code state: a commit (or a prefix of one), or a results folder name. Default: the one
    /// with the latest finished cell.
    pub commit: Option<String>,
    /// Another code state to compare with.
    pub against: Option<String>,
    /// The variant the others are compared with. Default: the experiment's first variant.
    pub baseline: Option<String>,
    /// The metric of the comparisons and verdicts.
    pub metric: Metric,
    pub results: PathBuf,
}

/// What `runner compare A B` compares: two variants of an experiment, or two run directories.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// A variant name, or a run directory.
    pub a: String,
    /// The variant or run directory to compare A with (differences are A − B).
    pub b: String,
    /// The experiment of the two variants: its file (TOML) or name. Default: the embedded demo.
    pub experiment: Option<String>,
    /// The code state (commit or results folder name). Default: the latest.
    pub commit: Option<String>,
    /// The metric of the verdict.
    pub metric: Metric,
    pub results: PathBuf,
}

/// The experiment a command names: its name and, when a file is at hand, its order of variants
/// and seeds.
fn resolve_experiment(arg: Option<&str>) -> anyhow::Result<(String, Option<Declared>)> {
    let experiment = match arg {
        None => crate::plan::parse(crate::config::DEMO_TOML, Path::new("experiments/demo.toml"))?,
        Some(a) if Path::new(a).is_file() => crate::plan::load(Path::new(a))?,
        Some(a) if a.ends_with(".toml") => {
            anyhow::bail!("experiment file {a} does not exist (give an experiment file or an experiment name)")
        }
        Some(name) => return Ok((name.to_string(), None)),
    };
    Ok((experiment.name.clone(), Some(declared_by(&experiment))))
}

fn declared_by(e: &config::Experiment) -> Declared {
    Declared {
        variants: e.variants.iter().map(|v| v.name.clone()).collect(),
        seeds: e.seeds.clone(),
        source: format!("`{}`", e.file.display()),
    }
}

/// Without a file, the records may name one: use its order if it still exists and is the same
/// experiment.
fn declared_by_records(dir: &Path, name: &str) -> Option<Declared> {
    let results = load::load(dir, name, None).ok()?;
    let file = results
        .cells
        .iter()
        .find_map(|c| c.record.experiment_file.clone())?;
    let experiment = crate::plan::load(&file).ok()?;
    (experiment.name == name).then(|| declared_by(&experiment))
}

/// Load one code state of an experiment.
fn load_state(
    results_root: &Path,
    name: &str,
    plan: Option<&Declared>,
    commit: Option<&str>,
) -> anyhow::Result<(locate::CodeState, ExperimentResults)> {
    let states = locate::code_states(results_root, name)?;
    let state = locate::choose(&states, commit, results_root, name)?.clone();
    let plan = plan
        .cloned()
        .or_else(|| declared_by_records(&state.dir, name));
    let results = load::load(&state.dir, name, plan.as_ref())?;
    Ok((state, results))
}

/// Build the report `args` ask for (no files written).
pub fn build(args: &ReportOptions) -> anyhow::Result<Report> {
    let (name, plan) = resolve_experiment(args.experiment.as_deref())?;
    let (state, results) = load_state(&args.results, &name, plan.as_ref(), args.commit.as_deref())?;
    let analysis = analysis::analyse(&results, args.baseline.as_deref(), args.metric)?;
    let against = match &args.against {
        None => None,
        Some(c2) => {
            let (other, there) = load_state(&args.results, &name, plan.as_ref(), Some(c2))?;
            if other.dir == state.dir {
                anyhow::bail!(
                    "--against {c2} names the code state being reported ({}); give another one",
                    state.label
                );
            }
            Some(compare::against(
                &results,
                &state.label,
                &there,
                &other.label,
                &other.dir.display().to_string(),
                args.metric,
            ))
        }
    };
    Ok(Report {
        code_state: state.label.clone(),
        location: state.dir.display().to_string(),
        results,
        analysis,
        against,
    })
}

/// Write `report` and its figures into `dir` (created if needed). Returns the files written.
pub fn write(
    report: &Report,
    figures: &[plots::Figure],
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", plots_dir.display()))?;
    let mut written = Vec::new();
    for f in figures {
        for (ext, bytes) in [("png", f.png.as_slice()), ("svg", f.svg.as_bytes())] {
            let path = plots_dir.join(format!("{}.{ext}", f.name));
            write_atomic(&path, bytes)?;
            written.push(path);
        }
    }
    for exporter in export::all() {
        let path = dir.join(exporter.file_name());
        write_atomic(&path, &exporter.export(report, figures)?)?;
        written.push(path);
    }
    Ok(written)
}

/// `runner report`: build, draw, write; print where it went and the verdicts.
pub fn run_report(args: &ReportOptions) -> anyhow::Result<()> {
    let report = build(args)?;
    let figures = plots::all(&report.results, &report.analysis)?;
    let dir = report.results.dir.join("report");
    write(&report, &figures, &dir)?;
    let a = &report.analysis;
    println!(
        "{} at {}: {} variants, baseline {}",
        report.results.experiment,
        report.code_state,
        a.variants.len(),
        a.baseline
    );
    for c in a.comparisons.get(&a.metric).into_iter().flatten() {
        println!("  {}", c.verdict);
    }
    if let Some(x) = &report.against {
        println!("against {}:", x.other);
        for d in &x.deltas {
            println!("  {}", d.comparison.verdict);
        }
    }
    let left_out: usize = a.variants.iter().map(|v| v.excluded.len()).sum();
    if left_out > 0 {
        println!("  {left_out} cells not finished or missing (listed in the report)");
    }
    println!(
        "report: {} ({} figures; report.html is self-contained)",
        dir.join("report.md").display(),
        figures.len()
    );
    Ok(())
}

/// `runner compare A B`.
pub fn run_compare(args: &CompareOptions) -> anyhow::Result<()> {
    let (a, b) = (Path::new(&args.a), Path::new(&args.b));
    let text = if a.is_dir() && b.is_dir() {
        compare::runs_text(a, b)?
    } else if a.is_dir() != b.is_dir() {
        let (dir, other) = if a.is_dir() { (a, b) } else { (b, a) };
        anyhow::bail!(
            "{} is a directory but {} is not: give two run directories or two variant names",
            dir.display(),
            other.display()
        );
    } else {
        let (name, plan) = resolve_experiment(args.experiment.as_deref())?;
        let (_, results) = load_state(&args.results, &name, plan.as_ref(), args.commit.as_deref())?;
        compare::variants_text(&results, &args.a, &args.b, args.metric)?
    };
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests;
