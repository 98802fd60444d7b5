//! Comparisons: an experiment at two code states (`runner report --against`), and two variants
//! or two run directories side by side in the terminal (`runner compare`).
//!
//! Why a cell changed is read from its run key's components (config, dataset, weights, code) and
//! the recorded environment; records without them say so instead of guessing.

use std::path::Path;

use super::analysis::{self, format_p, values, Comparison, Metric};
use super::load::{self, CellRun, CellState, ExperimentResults};
use super::stats::{self, Summary};

/// What differs between a cell here and the same cell (variant, seed) at the other code state.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Same run key and environment: the same inputs, so the results should agree.
    Unchanged,
    /// The components that differ: `config`, `dataset`, `weights`, `code`, `environment (rustc, cpu)`.
    Changed(Vec<String>),
    /// Records too old to tell.
    Unknown(String),
    OnlyHere,
    OnlyThere,
    /// Neither side has the cell.
    MissingBoth,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CellChange {
    pub variant: String,
    pub seed: u64,
    /// The cell's state here and there (`done`, `failed`, `missing`, ...).
    pub here: String,
    pub there: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub variant: String,
    pub here: Option<Summary>,
    pub there: Option<Summary>,
    /// here - there, paired by seed; the verdict names both code states.
    pub comparison: Comparison,
}

/// An experiment compared with itself at another code state.
#[derive(Debug, Clone, PartialEq)]
pub struct Against {
    pub other: String,
    pub other_location: String,
    pub metric: Metric,
    pub cells: Vec<CellChange>,
    pub deltas: Vec<Delta>,
}

/// Why two records of the same cell differ.
pub fn change(here: &CellRun, there: &CellRun) -> Change {
    match (here.state, there.state) {
        (CellState::Missing, CellState::Missing) => return Change::MissingBoth,
        (_, CellState::Missing) => return Change::OnlyHere,
        (CellState::Missing, _) => return Change::OnlyThere,
        _ => {}
    }
    let (Some(a), Some(b)) = (&here.record.key, &there.record.key) else {
        return Change::Unknown("no run key recorded".into());
    };
    let mut parts = Vec::new();
    if a.config != b.config {
        parts.push("config".to_string());
    }
    if a.dataset != b.dataset {
        parts.push("dataset".to_string());
    }
    if a.weights != b.weights {
        parts.push("weights".to_string());
    }
    if a.code != b.code {
        parts.push("code".to_string());
    }
    match (&here.record.environment, &there.record.environment) {
        (Some(x), Some(y)) => {
            let fields = [
                ("runner_version", x.runner_version == y.runner_version),
                ("rustc", x.rustc == y.rustc),
                ("engine", x.engine == y.engine),
                ("device", x.device == y.device),
                ("cpu", x.cpu == y.cpu),
                ("threads", x.threads == y.threads),
                ("os", x.os == y.os),
            ];
            let differ: Vec<&str> = fields.iter().filter(|f| !f.1).map(|f| f.0).collect();
            if !differ.is_empty() {
                parts.push(format!("environment ({})", differ.join(", ")));
            }
        }
        (None, None) => {}
        _ => parts.push("environment (recorded on one side only)".to_string()),
    }
    if parts.is_empty() {
        Change::Unchanged
    } else {
        Change::Changed(parts)
    }
}

/// `done` for an included cell, else its state (`done` without metrics reads `unreadable`).
fn state_word(c: &CellRun) -> String {
    match c.state {
        CellState::Done if !c.included() => "unreadable".to_string(),
        state => state.to_string(),
    }
}

/// Compare `here` with `there` (the same experiment at another code state) on `metric`.
pub fn against(
    here: &ExperimentResults,
    here_label: &str,
    there: &ExperimentResults,
    there_label: &str,
    there_location: &str,
    metric: Metric,
) -> Against {
    let mut variants = here.variants.clone();
    for v in &there.variants {
        if !variants.contains(v) {
            variants.push(v.clone());
        }
    }
    let mut seeds = here.seeds.clone();
    for s in &there.seeds {
        if !seeds.contains(s) {
            seeds.push(*s);
        }
    }
    let missing = |v: &str, s: u64| load::CellRun::missing(v, s);
    let mut cells = Vec::new();
    for v in &variants {
        for &s in &seeds {
            let a = here.cell(v, s).cloned().unwrap_or_else(|| missing(v, s));
            let b = there.cell(v, s).cloned().unwrap_or_else(|| missing(v, s));
            let change = change(&a, &b);
            if change == Change::MissingBoth {
                continue;
            }
            cells.push(CellChange {
                variant: v.clone(),
                seed: s,
                here: state_word(&a),
                there: state_word(&b),
                change,
            });
        }
    }
    let mut deltas: Vec<Delta> = variants
        .iter()
        .map(|v| {
            let a = values(here, v, metric);
            let b = values(there, v, metric);
            let common: Vec<u64> = a.keys().filter(|s| b.contains_key(s)).copied().collect();
            let xs: Vec<f64> = common.iter().map(|s| a[s]).collect();
            let ys: Vec<f64> = common.iter().map(|s| b[s]).collect();
            Delta {
                variant: v.clone(),
                here: stats::summarize(&a.values().copied().collect::<Vec<_>>()),
                there: stats::summarize(&b.values().copied().collect::<Vec<_>>()),
                comparison: Comparison {
                    variant: format!("{v} at {here_label}"),
                    metric,
                    seeds: common,
                    paired: stats::paired(&xs, &ys, stats::BOOTSTRAP_SEED),
                    p_holm: None,
                    verdict: String::new(),
                },
            }
        })
        .collect();
    let adjusted = stats::holm(
        &deltas
            .iter()
            .map(|d| d.comparison.paired.as_ref().and_then(|p| p.p))
            .collect::<Vec<_>>(),
    );
    let family = adjusted.iter().filter(|p| p.is_some()).count();
    for (d, p) in deltas.iter_mut().zip(adjusted) {
        d.comparison.p_holm = p;
        let base = format!("{} at {there_label}", d.variant);
        d.comparison.verdict = analysis::verdict(&d.comparison, &base, family);
    }
    Against {
        other: there_label.to_string(),
        other_location: there_location.to_string(),
        metric,
        cells,
        deltas,
    }
}

fn summary_text(s: Option<Summary>, d: usize) -> String {
    super::format::summary_cell(s, d)
}

/// Two variants of one experiment, every metric, in the terminal: `a` - `b` paired by seed.
pub fn variants_text(
    results: &ExperimentResults,
    a: &str,
    b: &str,
    primary: Metric,
) -> anyhow::Result<String> {
    for v in [a, b] {
        if !results.variants.iter().any(|x| x == v) {
            anyhow::bail!(
                "experiment \"{}\" has no variant \"{v}\" in {} (variants: {})",
                results.experiment,
                results.dir.display(),
                results.variants.join(", ")
            );
        }
    }
    let mut out = format!(
        "{a} vs {b} ({}, {}), difference {a} − {b} paired by seed\n\n",
        results.experiment,
        results.dir.display()
    );
    let rows: Vec<[String; 7]> = Metric::ALL
        .iter()
        .map(|&m| {
            let d = m.decimals();
            let xa = values(results, a, m);
            let xb = values(results, b, m);
            let common: Vec<u64> = xa.keys().filter(|s| xb.contains_key(s)).copied().collect();
            let p = stats::paired(
                &common.iter().map(|s| xa[s]).collect::<Vec<_>>(),
                &common.iter().map(|s| xb[s]).collect::<Vec<_>>(),
                stats::BOOTSTRAP_SEED,
            );
            let iv = |i: Option<stats::Interval>| {
                i.map(|i| format!("[{:+.d$}, {:+.d$}]", i.lo, i.hi))
                    .unwrap_or_else(|| "n/a".into())
            };
            [
                m.label().to_string(),
                summary_text(
                    stats::summarize(&xa.values().copied().collect::<Vec<_>>()),
                    d,
                ),
                summary_text(
                    stats::summarize(&xb.values().copied().collect::<Vec<_>>()),
                    d,
                ),
                common.len().to_string(),
                p.as_ref()
                    .map(|p| format!("{:+.d$}", p.mean_diff))
                    .unwrap_or_else(|| "n/a".into()),
                format!(
                    "{} boot {}",
                    iv(p.as_ref().and_then(|p| p.diff.ci)),
                    iv(p.as_ref().and_then(|p| p.bootstrap))
                ),
                p.as_ref()
                    .and_then(|p| p.p)
                    .map(format_p)
                    .unwrap_or_else(|| "n/a".into()),
            ]
        })
        .collect();
    let header = [
        "metric".to_string(),
        a.to_string(),
        b.to_string(),
        "pairs".to_string(),
        "difference".to_string(),
        "95% t-interval, bootstrap".to_string(),
        "p".to_string(),
    ];
    out.push_str(&columns(&header, &rows));
    for (v, who) in [(a, "left out"), (b, "left out")] {
        for c in results.cells_of(v).filter(|c| !c.included()) {
            out.push_str(&format!(
                "{who}: {v} seed {}: {}\n",
                c.seed,
                c.why_excluded()
            ));
        }
    }
    // The verdict for the chosen metric: a single comparison, so Holm leaves p as it is.
    let xa = values(results, a, primary);
    let xb = values(results, b, primary);
    let seeds: Vec<u64> = xa.keys().filter(|s| xb.contains_key(s)).copied().collect();
    let mut c = Comparison {
        variant: a.to_string(),
        metric: primary,
        paired: stats::paired(
            &seeds.iter().map(|s| xa[s]).collect::<Vec<_>>(),
            &seeds.iter().map(|s| xb[s]).collect::<Vec<_>>(),
            stats::BOOTSTRAP_SEED,
        ),
        seeds,
        p_holm: None,
        verdict: String::new(),
    };
    c.p_holm = c.paired.as_ref().and_then(|p| p.p);
    out.push_str(&format!("\n{}\n", analysis::verdict(&c, b, 1)));
    Ok(out)
}

/// Two run directories (cells) side by side: per-epoch metrics and what differs in their keys.
pub fn runs_text(a: &Path, b: &Path) -> anyhow::Result<String> {
    let read = |dir: &Path| -> anyhow::Result<CellRun> {
        if !dir.join("run.json").is_file() && !dir.join("metrics.csv").is_file() {
            anyhow::bail!(
                "{} is not a run directory (it has neither run.json nor metrics.csv); give a results/.../<variant>/seed-<n> folder or two variant names",
                dir.display()
            );
        }
        let name = |p: Option<&std::ffi::OsStr>| {
            p.map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let variant = name(dir.parent().and_then(Path::file_name));
        let seed = load::parse_cell_dir_name(&name(dir.file_name()))
            .map(|s| s.0)
            .unwrap_or(0);
        Ok(load::read_cell(dir, dir.to_path_buf(), &variant, seed))
    };
    let (x, y) = (read(a)?, read(b)?);
    let mut out = format!(
        "A: {} ({})\nB: {} ({})\n",
        a.display(),
        describe(&x),
        b.display(),
        describe(&y)
    );
    out.push_str(&match change(&x, &y) {
        Change::Unchanged => "Inputs: same run key and environment.\n".to_string(),
        Change::Changed(parts) => format!("Inputs differ: {}.\n", parts.join(", ")),
        Change::Unknown(why) => format!("Inputs: cannot tell ({why}).\n"),
        Change::OnlyHere | Change::OnlyThere | Change::MissingBoth => String::new(),
    });
    out.push('\n');
    let epochs = x.metrics.len().max(y.metrics.len());
    let f = |m: Option<&crate::train::EpochMetrics>,
             g: fn(&crate::train::EpochMetrics) -> f64,
             d: usize| {
        m.map(|e| format!("{:.d$}", g(e)))
            .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<[String; 8]> = (0..epochs)
        .map(|i| {
            let (ea, eb) = (x.metrics.get(i), y.metrics.get(i));
            let delta = match (ea, eb) {
                (Some(p), Some(q)) => format!("{:+.3}", p.val_acc - q.val_acc),
                _ => "-".into(),
            };
            [
                (i + 1).to_string(),
                f(ea, |e| e.train_acc, 3),
                f(ea, |e| e.val_acc, 3),
                f(ea, |e| e.val_loss, 4),
                f(eb, |e| e.train_acc, 3),
                f(eb, |e| e.val_acc, 3),
                f(eb, |e| e.val_loss, 4),
                delta,
            ]
        })
        .collect();
    let header = [
        "epoch",
        "A train acc",
        "A val acc",
        "A val loss",
        "B train acc",
        "B val acc",
        "B val loss",
        "val acc A − B",
    ]
    .map(String::from);
    out.push_str(&columns(&header, &rows));
    Ok(out)
}

fn describe(c: &CellRun) -> String {
    let mut s = format!("{}, {} epochs", c.state, c.metrics.len());
    if let Some(p) = c
        .record
        .provenance
        .as_ref()
        .and_then(|p| p.commit.as_deref())
    {
        s.push_str(&format!(", commit {}", super::format::short(p)));
    }
    if let Some(m) = &c.record.message {
        s.push_str(&format!(": {m}"));
    }
    s
}

/// Left-aligned columns separated by two spaces.
fn columns<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in std::iter::once(header).chain(rows) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{Environment, KeyComponents};

    fn cell(config: &str, rustc: &str, keyed: bool) -> CellRun {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run.json"), r#"{"status":"done"}"#).unwrap();
        std::fs::write(
            dir.path().join("metrics.csv"),
            "epoch,train_loss,train_acc,val_loss,val_acc,seconds\n1,0.6,0.6,0.6,0.6,1\n",
        )
        .unwrap();
        let mut c = load::read_cell(dir.path(), "v/seed-0".into(), "v", 0);
        if keyed {
            c.record.key = Some(KeyComponents {
                config: config.into(),
                dataset: "d".into(),
                weights: None,
                code: "k".into(),
                seed: 0,
                stage: None,
            });
            c.record.environment = Some(Environment {
                runner_version: "0.1.0".into(),
                rustc: rustc.into(),
                engine: "candle".into(),
                device: "cpu".into(),
                cpu: "x".into(),
                threads: 2,
                os: "linux".into(),
                kernels: None,
            });
        }
        c
    }

    #[test]
    fn changes_name_the_run_key_components_that_differ() {
        let a = cell("c1", "1.95", true);
        assert_eq!(change(&a, &cell("c1", "1.95", true)), Change::Unchanged);
        assert_eq!(
            change(&a, &cell("c2", "1.94", true)),
            Change::Changed(vec!["config".into(), "environment (rustc)".into()])
        );
        assert_eq!(
            change(&a, &cell("c1", "1.95", false)),
            Change::Unknown("no run key recorded".into())
        );
        let mut gone = cell("c1", "1.95", true);
        gone.state = CellState::Missing;
        assert_eq!(change(&a, &gone), Change::OnlyHere);
        assert_eq!(change(&gone, &a), Change::OnlyThere);
        assert_eq!(change(&gone, &gone), Change::MissingBoth);
    }
}
