//! From loaded cells to the numbers of the report: per-variant summaries over seeds and paired
//! comparisons against a baseline variant, with the sentence that says what they allow.
//!
//! Only cells for which [`CellRun::included`] holds enter the numbers; every other cell is listed
//! with the reason. Comparisons pair seeds: a seed counts only where both variants finished it.

use std::collections::BTreeMap;

use crate::train::EpochMetrics;

use super::load::{CellRun, ExperimentResults};
use super::stats::{self, Interval, Paired, Summary, CONFIDENCE};

/// A per-cell quantity computed from its metrics; [`Metric::about`] says what each measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    FinalValAcc,
    BestValAcc,
    FinalValLoss,
    BestValLoss,
    EpochsToBest,
    TrainSeconds,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::FinalValAcc,
        Metric::BestValAcc,
        Metric::FinalValLoss,
        Metric::BestValLoss,
        Metric::EpochsToBest,
        Metric::TrainSeconds,
    ];

    /// Each metric's name on the command line and what it measures, in the order of [`Self::ALL`].
    const NAMES: [(&'static str, &'static str); 6] = [
        ("final-val-acc", "Validation accuracy after the last epoch"),
        (
            "best-val-acc",
            "Highest validation accuracy over the epochs",
        ),
        ("final-val-loss", "Validation loss after the last epoch"),
        ("best-val-loss", "Lowest validation loss over the epochs"),
        (
            "epochs-to-best",
            "The (first) epoch with the highest validation accuracy",
        ),
        (
            "train-seconds",
            "Wall-clock seconds of all epochs, validation included",
        ),
    ];

    /// The name on the command line (`--metric final-val-acc`).
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize].0
    }

    /// What the metric measures, in one line.
    pub fn about(self) -> &'static str {
        Self::NAMES[self as usize].1
    }

    /// The column name in summary.csv.
    pub fn key(self) -> &'static str {
        match self {
            Metric::FinalValAcc => "final_val_acc",
            Metric::BestValAcc => "best_val_acc",
            Metric::FinalValLoss => "final_val_loss",
            Metric::BestValLoss => "best_val_loss",
            Metric::EpochsToBest => "epochs_to_best",
            Metric::TrainSeconds => "train_seconds",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::FinalValAcc => "final val accuracy",
            Metric::BestValAcc => "best val accuracy",
            Metric::FinalValLoss => "final val loss",
            Metric::BestValLoss => "best val loss",
            Metric::EpochsToBest => "epochs to best",
            Metric::TrainSeconds => "training time (s)",
        }
    }

    /// Which direction is better, where there is one.
    pub fn higher_is_better(self) -> Option<bool> {
        match self {
            Metric::FinalValAcc | Metric::BestValAcc => Some(true),
            Metric::FinalValLoss | Metric::BestValLoss => Some(false),
            Metric::EpochsToBest | Metric::TrainSeconds => None,
        }
    }

    /// Decimals shown for this metric.
    pub fn decimals(self) -> usize {
        match self {
            Metric::FinalValAcc | Metric::BestValAcc => 3,
            Metric::FinalValLoss | Metric::BestValLoss => 4,
            Metric::EpochsToBest | Metric::TrainSeconds => 1,
        }
    }

    /// The value for one cell's metrics; `None` without epochs.
    pub fn of(self, m: &[EpochMetrics]) -> Option<f64> {
        let last = m.last()?;
        Some(match self {
            Metric::FinalValAcc => last.val_acc,
            Metric::FinalValLoss => last.val_loss,
            Metric::BestValAcc => m
                .iter()
                .map(|e| e.val_acc)
                .fold(f64::NEG_INFINITY, f64::max),
            Metric::BestValLoss => m.iter().map(|e| e.val_loss).fold(f64::INFINITY, f64::min),
            Metric::EpochsToBest => {
                // The first epoch reaching the best accuracy (Keras's EarlyStopping picks the first too).
                let mut best = m[0];
                for e in m {
                    if e.val_acc > best.val_acc {
                        best = *e;
                    }
                }
                best.epoch as f64
            }
            Metric::TrainSeconds => m.iter().map(|e| e.seconds).sum(),
        })
    }
}

/// One variant over its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantStats {
    pub name: String,
    /// Seeds whose cells enter the numbers.
    pub seeds: Vec<u64>,
    /// Seeds left out, with why (`failed at epoch 2 of 6: ...`).
    pub excluded: Vec<(u64, String)>,
    pub summaries: BTreeMap<Metric, Option<Summary>>,
}

/// One variant against the baseline on one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub variant: String,
    pub metric: Metric,
    /// Seeds both variants finished.
    pub seeds: Vec<u64>,
    /// variant - baseline, paired by seed; `None` without a common seed.
    pub paired: Option<Paired>,
    /// The paired t-test p-value after Holm's correction over this metric's comparisons.
    pub p_holm: Option<f64>,
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub baseline: String,
    /// The baseline was named (`--baseline`), not taken as the first variant.
    pub baseline_chosen: bool,
    /// The metric the verdicts and the headline table use.
    pub metric: Metric,
    pub variants: Vec<VariantStats>,
    /// For every metric, one comparison per non-baseline variant, in variant order.
    pub comparisons: BTreeMap<Metric, Vec<Comparison>>,
}

impl Analysis {
    pub fn variant(&self, name: &str) -> Option<&VariantStats> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// Values of `metric` for the included cells of `variant`, by seed.
pub fn values(results: &ExperimentResults, variant: &str, metric: Metric) -> BTreeMap<u64, f64> {
    results
        .cells_of(variant)
        .filter(|c| c.included())
        .filter_map(|c| metric.of(&c.metrics).map(|v| (c.seed, v)))
        .collect()
}

/// Summaries and comparisons. `baseline` defaults to the first variant in the experiment's order;
/// naming a variant that does not exist is an error naming the ones that do.
pub fn analyse(
    results: &ExperimentResults,
    baseline: Option<&str>,
    metric: Metric,
) -> anyhow::Result<Analysis> {
    let baseline_arg = baseline;
    let baseline = match baseline {
        Some(b) if results.variants.iter().any(|v| v == b) => b.to_string(),
        Some(b) => anyhow::bail!(
            "--baseline {b}: experiment \"{}\" has no variant of that name (variants: {})",
            results.experiment,
            results.variants.join(", ")
        ),
        None => results.variants.first().cloned().ok_or_else(|| {
            anyhow::anyhow!("experiment \"{}\" has no variants", results.experiment)
        })?,
    };
    let variants = results
        .variants
        .iter()
        .map(|name| {
            let cells: Vec<&CellRun> = results.cells_of(name).collect();
            VariantStats {
                name: name.clone(),
                seeds: cells
                    .iter()
                    .filter(|c| c.included())
                    .map(|c| c.seed)
                    .collect(),
                excluded: cells
                    .iter()
                    .filter(|c| !c.included())
                    .map(|c| (c.seed, c.why_excluded()))
                    .collect(),
                summaries: Metric::ALL
                    .iter()
                    .map(|&m| {
                        let xs: Vec<f64> = values(results, name, m).into_values().collect();
                        (m, stats::summarize(&xs))
                    })
                    .collect(),
            }
        })
        .collect();
    let mut comparisons = BTreeMap::new();
    for m in Metric::ALL {
        comparisons.insert(m, compare_all(results, &baseline, m));
    }
    Ok(Analysis {
        baseline_chosen: baseline_arg.is_some(),
        baseline,
        metric,
        variants,
        comparisons,
    })
}

fn compare_all(results: &ExperimentResults, baseline: &str, metric: Metric) -> Vec<Comparison> {
    let base = values(results, baseline, metric);
    let mut out: Vec<Comparison> = results
        .variants
        .iter()
        .filter(|v| v.as_str() != baseline)
        .map(|variant| {
            let other = values(results, variant, metric);
            let seeds: Vec<u64> = other
                .keys()
                .filter(|s| base.contains_key(s))
                .copied()
                .collect();
            let a: Vec<f64> = seeds.iter().map(|s| other[s]).collect();
            let b: Vec<f64> = seeds.iter().map(|s| base[s]).collect();
            Comparison {
                variant: variant.clone(),
                metric,
                seeds,
                paired: stats::paired(&a, &b, stats::BOOTSTRAP_SEED),
                p_holm: None,
                verdict: String::new(),
            }
        })
        .collect();
    let adjusted = stats::holm(
        &out.iter()
            .map(|c| c.paired.as_ref().and_then(|p| p.p))
            .collect::<Vec<_>>(),
    );
    let family = adjusted.iter().filter(|p| p.is_some()).count();
    for (c, p) in out.iter_mut().zip(adjusted) {
        c.p_holm = p;
        c.verdict = verdict(c, baseline, family);
    }
    out
}

/// Significance level of the Holm-adjusted paired t-test.
pub const ALPHA: f64 = 1.0 - CONFIDENCE;

/// The sentence under a comparison. A winner is named only when at least two seeds are paired,
/// both the t-interval and the bootstrap interval of the difference exclude zero, and the
/// Holm-adjusted p-value is below [`ALPHA`]; otherwise it says which condition failed.
pub fn verdict(c: &Comparison, baseline: &str, family: usize) -> String {
    let v = &c.variant;
    let d = c.metric.decimals();
    let Some(p) = &c.paired else {
        return format!("{v} vs {baseline}: no seed finished by both; nothing to compare.");
    };
    if p.n < 2 {
        return format!(
            "{v} vs {baseline}: only {} paired seed ({}); no winner can be called from fewer than 2.",
            p.n,
            seed_list(&c.seeds)
        );
    }
    let fmt_iv = |i: Interval| format!("[{:+.d$}, {:+.d$}]", i.lo, i.hi);
    let (Some(ci), Some(boot)) = (p.diff.ci, p.bootstrap) else {
        return format!("{v} vs {baseline}: intervals undefined; no winner.");
    };
    let pct = (CONFIDENCE * 100.0).round();
    if p.t.is_none() {
        return format!(
            "{v} vs {baseline}: the difference is {:+.d$} on every one of the {} seeds (no spread, so no test); no winner is called.",
            p.mean_diff, p.n
        );
    }
    if ci.covers(0.0) || boot.covers(0.0) {
        let which = if ci.covers(0.0) { ci } else { boot };
        let name = if ci.covers(0.0) {
            "t-interval"
        } else {
            "bootstrap interval"
        };
        return format!(
            "{v} vs {baseline}: no winner. The {pct}% {name} of the difference {} covers zero, so the difference ({:+.d$}) is within seed noise over {} seeds.",
            fmt_iv(which),
            p.mean_diff,
            p.n
        );
    }
    match c.p_holm {
        Some(adj) if adj < ALPHA => {}
        adj => {
            return format!(
                "{v} vs {baseline}: no winner after Holm's correction over {family} comparisons (adjusted p = {}), although the {pct}% intervals {} exclude zero.",
                adj.map(format_p).unwrap_or_else(|| "undefined".into()),
                fmt_iv(ci)
            );
        }
    }
    let higher = p.mean_diff > 0.0;
    let what = c.metric.label();
    let better = match c.metric.higher_is_better() {
        Some(h) if h == higher => format!("{v} is better than {baseline}"),
        Some(_) => format!("{baseline} is better than {v}"),
        None => format!("{v} differs from {baseline}"),
    };
    // A single comparison needs no correction: say plain p then.
    let p_name = if family > 1 { "Holm-adjusted p" } else { "p" };
    format!(
        "{better}: {what} {} by {:.d$} ({pct}% t-interval {}, bootstrap {}, {p_name} = {}, {} seeds).",
        if higher { "higher" } else { "lower" },
        p.mean_diff.abs(),
        fmt_iv(ci),
        fmt_iv(boot),
        format_p(c.p_holm.unwrap_or(f64::NAN)),
        p.n
    )
}

/// A p-value with three significant digits, or `< 0.001`.
pub fn format_p(p: f64) -> String {
    if p.is_nan() {
        "n/a".into()
    } else if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

pub fn seed_list(seeds: &[u64]) -> String {
    if seeds.is_empty() {
        return "none".into();
    }
    let s: Vec<String> = seeds.iter().map(u64::to_string).collect();
    format!(
        "seed{} {}",
        if seeds.len() == 1 { "" } else { "s" },
        s.join(", ")
    )
}

#[cfg(test)]
mod tests;
