//! What a report says, as headings, paragraphs, tables and figure slots, independent of format.
//!
//! Text uses backticks for code (commands, paths, hashes); each format renders them its own way.

use crate::base::format::thousands;
use crate::report::analysis::{format_p, Analysis, Metric};
use crate::report::compare::{Against, Change};
use crate::report::format::{short, summary_cell, NA};
use crate::report::load::{CellRun, CellState, ExperimentResults};
use crate::report::locate::UNKEYED;
use crate::report::plots::FigureKind;
use crate::report::stats::{BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED};
use crate::report::Report;

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub title: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Heading(String),
    Paragraph(String),
    Bullets(Vec<String>),
    Table(Table),
    /// Where the figures of this kind go.
    Figures(FigureKind),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn epochs(n: usize) -> String {
    format!("{n} epoch{}", if n == 1 { "" } else { "s" })
}

fn code(s: impl AsRef<str>) -> String {
    format!("`{}`", s.as_ref())
}

/// What a cell shows in the overview grid.
fn cell_text(c: &CellRun) -> String {
    let mut s = if c.included() {
        format!(
            "{:.3}",
            Metric::FinalValAcc.of(&c.metrics).unwrap_or(f64::NAN)
        )
    } else {
        match c.state {
            CellState::Missing => "missing".to_string(),
            CellState::Unreadable => "unreadable".to_string(),
            state => match c.record.epochs_planned {
                Some(p) => format!("{state} (epoch {}/{p})", c.metrics.len()),
                None => format!("{state} (epoch {})", c.metrics.len()),
            },
        }
    };
    if let Some(p) = &c.pending {
        s.push_str(&format!(" · newer run {}", p.state));
        if let Some(planned) = p.record.epochs_planned {
            s.push_str(&format!(" (epoch {}/{planned})", p.metrics.len()));
        }
    }
    s
}

pub fn document(report: &Report) -> Document {
    let r = &report.results;
    let a = &report.analysis;
    let mut blocks = Vec::new();

    let done = r.cells.iter().filter(|c| c.included()).count();
    let state = if report.code_state == UNKEYED {
        "not keyed by code state".to_string()
    } else {
        format!("code state {}", code(&report.code_state))
    };
    let mut intro = format!(
        "Results in {} ({state}{}): {} variants × {} seeds, {done} of {} cells finished and included.",
        code(&report.location),
        provenance_note(r.cells.iter()),
        r.variants.len(),
        r.seeds.len(),
        r.cells.len()
    );
    let why = if a.baseline_chosen {
        "chosen with `--baseline`".to_string()
    } else {
        format!("the first variant in {}", r.order_source)
    };
    intro.push_str(&format!(
        " Baseline: {} ({why}). Verdicts use the {}.",
        code(&a.baseline),
        a.metric.label()
    ));
    blocks.push(Block::Paragraph(intro));

    across_seeds(&mut blocks, a);
    comparisons(&mut blocks, a);
    blocks.push(Block::Heading("Figures".into()));
    blocks.push(Block::Figures(FigureKind::Overview));
    cells(&mut blocks, r);
    test_sets(&mut blocks, r);
    if let Some(against) = &report.against {
        against_blocks(&mut blocks, report, against);
    }
    blocks.push(Block::Heading("Per variant".into()));
    blocks.push(Block::Figures(FigureKind::Variant));
    blocks.push(Block::Heading("Per cell".into()));
    blocks.push(Block::Paragraph(
        "Training red, validation blue, as in the notebook.".into(),
    ));
    blocks.push(Block::Figures(FigureKind::Cell));
    method(&mut blocks);
    runs(&mut blocks, report);
    let title = if report.code_state == UNKEYED {
        format!("Report: {}", r.experiment)
    } else {
        format!("Report: {} at {}", r.experiment, report.code_state)
    };
    Document { title, blocks }
}

/// The grid of cells: a number for each finished one, the state of every other.
fn cells(blocks: &mut Vec<Block>, r: &ExperimentResults) {
    blocks.push(Block::Heading("Cells".into()));
    blocks.push(Block::Paragraph(
        "Final validation accuracy of each finished cell; other cells show their state and how far they got.".into(),
    ));
    let mut header = vec!["variant".to_string()];
    header.extend(r.seeds.iter().map(|s| format!("seed {s}")));
    let rows = r
        .variants
        .iter()
        .map(|v| {
            let mut row = vec![v.clone()];
            row.extend(
                r.seeds
                    .iter()
                    .map(|&s| r.cell(v, s).map(cell_text).unwrap_or_default()),
            );
            row
        })
        .collect();
    blocks.push(Block::Table(Table { header, rows }));
}

/// `runner evaluate`'s results, one row per cell and test set; nothing when there are none.
fn test_sets(blocks: &mut Vec<Block>, r: &ExperimentResults) {
    let rows: Vec<Vec<String>> = r
        .variants
        .iter()
        .flat_map(|v| r.seeds.iter().filter_map(move |&s| r.cell(v, s)))
        .flat_map(|c| {
            c.evaluations.iter().map(move |e| {
                let m = &e.metrics;
                vec![
                    c.variant.clone(),
                    c.seed.to_string(),
                    code(&e.name),
                    e.model.clone(),
                    m.images.to_string(),
                    format!("{:.4}", m.accuracy),
                    format!("{:.4}", m.loss),
                    m.roc_auc.map_or(NA.to_string(), |v| format!("{v:.4}")),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    blocks.push(Block::Heading("Test sets".into()));
    blocks.push(Block::Paragraph(
        "Cells evaluated with `runner evaluate` on labelled test sets they never saw; per-class precision, recall, F1 and the confusion matrix are in each cell's `evaluation/` folder.".into(),
    ));
    let header = [
        "variant", "seed", "test set", "model", "images", "accuracy", "loss", "ROC AUC",
    ]
    .map(String::from)
    .to_vec();
    blocks.push(Block::Table(Table { header, rows }));
}

fn across_seeds(blocks: &mut Vec<Block>, a: &Analysis) {
    blocks.push(Block::Heading("Across seeds".into()));
    blocks.push(Block::Paragraph(
        "Mean ± sample standard deviation [95% Student-t interval of the mean] over the finished seeds; n counts them.".into(),
    ));
    let mut header = vec!["variant".to_string(), "n".to_string()];
    header.extend(Metric::ALL.iter().map(|m| m.label().to_string()));
    let rows = a
        .variants
        .iter()
        .map(|v| {
            let mut row = vec![v.name.clone(), v.seeds.len().to_string()];
            row.extend(
                Metric::ALL
                    .iter()
                    .map(|m| summary_cell(v.summaries.get(m).copied().flatten(), m.decimals())),
            );
            row
        })
        .collect();
    blocks.push(Block::Table(Table { header, rows }));
    let excluded: Vec<String> = a
        .variants
        .iter()
        .flat_map(|v| {
            v.excluded
                .iter()
                .map(move |(s, why)| format!("{} seed {s}: {why}", v.name))
        })
        .collect();
    if excluded.is_empty() {
        blocks.push(Block::Paragraph(
            "Every cell finished; none is left out.".into(),
        ));
    } else {
        blocks.push(Block::Paragraph(
            "Not included in the numbers above:".into(),
        ));
        blocks.push(Block::Bullets(excluded));
    }
}

/// ` · commit 3f2a9c1, clean` when the records agree; every distinct one otherwise.
fn provenance_note<'a>(cells: impl Iterator<Item = &'a CellRun>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for c in cells {
        if let Some(p) = &c.record.provenance {
            let s = match (&p.commit, p.dirty) {
                (Some(commit), true) => format!("commit {} with local changes", short(commit)),
                (Some(commit), false) => format!("commit {}, clean", short(commit)),
                (None, _) => "outside git".to_string(),
            };
            if !seen.contains(&s) {
                seen.push(s);
            }
        }
    }
    if seen.is_empty() {
        String::new()
    } else {
        format!("; {}", seen.join("; "))
    }
}

fn comparisons(blocks: &mut Vec<Block>, a: &Analysis) {
    let m = a.metric;
    let d = m.decimals();
    blocks.push(Block::Heading(format!(
        "Against the baseline: {}",
        m.label()
    )));
    let Some(cmp) = a.comparisons.get(&m).filter(|c| !c.is_empty()) else {
        blocks.push(Block::Paragraph(
            "Only one variant: nothing to compare.".into(),
        ));
        return;
    };
    blocks.push(Block::Paragraph(format!(
        "Difference variant − {} paired by seed, over the seeds both finished. p: two-sided paired t-test; Holm: adjusted over the {} comparisons below. summary.csv has the same for every metric.",
        code(&a.baseline),
        cmp.len()
    )));
    let header = [
        "variant",
        "paired seeds",
        "mean difference",
        "95% t-interval",
        "95% bootstrap",
        "p",
        "p (Holm)",
    ]
    .map(String::from)
    .to_vec();
    let rows = cmp
        .iter()
        .map(|c| match &c.paired {
            None => vec![
                c.variant.clone(),
                "0".into(),
                NA.into(),
                NA.into(),
                NA.into(),
                NA.into(),
                NA.into(),
            ],
            Some(p) => vec![
                c.variant.clone(),
                c.seeds
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                format!("{:+.d$}", p.mean_diff),
                p.diff
                    .ci
                    .map(|i| format!("[{:+.d$}, {:+.d$}]", i.lo, i.hi))
                    .unwrap_or_else(|| NA.into()),
                p.bootstrap
                    .map(|i| format!("[{:+.d$}, {:+.d$}]", i.lo, i.hi))
                    .unwrap_or_else(|| NA.into()),
                p.p.map(format_p).unwrap_or_else(|| NA.into()),
                c.p_holm.map(format_p).unwrap_or_else(|| NA.into()),
            ],
        })
        .collect();
    blocks.push(Block::Table(Table { header, rows }));
    blocks.push(Block::Bullets(
        cmp.iter().map(|c| c.verdict.clone()).collect(),
    ));
}

fn against_blocks(blocks: &mut Vec<Block>, report: &Report, against: &Against) {
    let d = against.metric.decimals();
    blocks.push(Block::Heading(format!(
        "Against code state {}",
        against.other
    )));
    blocks.push(Block::Paragraph(format!(
        "{} (here) compared with {} ({}): which cells changed and why, from the components of their run keys, and each variant's change in {} paired by seed.",
        code(&report.code_state),
        code(&against.other),
        code(&against.other_location),
        against.metric.label()
    )));
    let header = ["cell", "here", "there", "inputs"]
        .map(String::from)
        .to_vec();
    let rows = against
        .cells
        .iter()
        .map(|c| {
            let what = match &c.change {
                Change::Unchanged => "same run key and environment".to_string(),
                Change::Changed(parts) => format!("changed: {}", parts.join(", ")),
                Change::Unknown(why) => format!("unknown: {why}"),
                Change::OnlyHere | Change::OnlyThere | Change::MissingBoth => NA.to_string(),
            };
            vec![
                format!("{} seed {}", c.variant, c.seed),
                c.here.clone(),
                c.there.clone(),
                what,
            ]
        })
        .collect();
    blocks.push(Block::Table(Table { header, rows }));
    let header = [
        "variant",
        "here",
        "there",
        "paired seeds",
        "change (here − there)",
        "95% t-interval",
        "95% bootstrap",
        "p (Holm)",
    ]
    .map(String::from)
    .to_vec();
    let rows = against
        .deltas
        .iter()
        .map(|x| {
            let p = x.comparison.paired.as_ref();
            vec![
                x.variant.clone(),
                summary_cell(x.here, d),
                summary_cell(x.there, d),
                x.comparison.seeds.len().to_string(),
                p.map(|p| format!("{:+.d$}", p.mean_diff))
                    .unwrap_or_else(|| NA.into()),
                p.and_then(|p| p.diff.ci)
                    .map(|i| format!("[{:+.d$}, {:+.d$}]", i.lo, i.hi))
                    .unwrap_or_else(|| NA.into()),
                p.and_then(|p| p.bootstrap)
                    .map(|i| format!("[{:+.d$}, {:+.d$}]", i.lo, i.hi))
                    .unwrap_or_else(|| NA.into()),
                x.comparison
                    .p_holm
                    .map(format_p)
                    .unwrap_or_else(|| NA.into()),
            ]
        })
        .collect();
    blocks.push(Block::Table(Table { header, rows }));
    blocks.push(Block::Bullets(
        against
            .deltas
            .iter()
            .map(|x| x.comparison.verdict.clone())
            .collect(),
    ));
}

fn method(blocks: &mut Vec<Block>) {
    blocks.push(Block::Heading("Method".into()));
    blocks.push(Block::Bullets(vec![
        "Per variant over its n finished seeds: mean, sample standard deviation s (divisor n − 1), and the 95% Student-t interval mean ± t(0.975, n − 1) · s / √n.".into(),
        "Against the baseline, per seed both finished: d = variant − baseline. Paired t-test t = mean(d) / (s_d / √n), two-sided p from Student's t with n − 1 degrees of freedom; the t-interval of mean(d) as above.".into(),
        format!("Percentile bootstrap of mean(d): {} resamples of the n differences with replacement (ChaCha8 stream, seed {BOOTSTRAP_SEED}), the 2.5% and 97.5% quantiles of the resampled means. With few seeds it can take only a few values and comes out narrower than the t-interval; both must exclude zero.", thousands(BOOTSTRAP_RESAMPLES)),
        "Holm-Bonferroni: the m p-values sorted ascending, adjusted p(i) = max over j ≤ i of min(1, (m − j + 1) · p(j)).".into(),
        "A winner is named only with at least 2 paired seeds, both intervals excluding zero and a Holm-adjusted p below 0.05. Failed, diverged, interrupted, running and missing cells are listed, never averaged.".into(),
    ]));
}

fn runs(blocks: &mut Vec<Block>, report: &Report) {
    blocks.push(Block::Heading("Runs and how to reproduce them".into()));
    blocks.push(Block::Paragraph(
        "Hashes are shortened to 12 characters; run.json in each cell directory has them in full."
            .into(),
    ));
    let header = [
        "cell",
        "status",
        "commit",
        "dirty",
        "config",
        "dataset",
        "weights",
        "code",
        "reproduce",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = Vec::new();
    for cell in &report.results.cells {
        for c in std::iter::once(cell).chain(cell.pending.as_deref()) {
            let Some(rel) = &c.rel_dir else {
                rows.push(vec![
                    format!("{} seed {}", c.variant, c.seed),
                    "missing".into(),
                    NA.into(),
                    NA.into(),
                    NA.into(),
                    NA.into(),
                    NA.into(),
                    NA.into(),
                    NA.into(),
                ]);
                continue;
            };
            let rec = &c.record;
            let prov = rec.provenance.as_ref();
            let key = rec.key.as_ref();
            let hash = |h: Option<&str>| h.map(|h| code(short(h))).unwrap_or_else(|| NA.into());
            let weights = match key {
                Some(k) => match &k.weights {
                    Some(w) => code(short(w)),
                    None => "none (random init)".into(),
                },
                None => hash(rec.weights_sha256.as_deref()),
            };
            let dir = format!("{}/{}", report.location, rel.display());
            rows.push(vec![
                format!("{} seed {}", c.variant, c.seed),
                format!("{} ({})", c.state, epochs(c.metrics.len())),
                hash(prov.and_then(|p| p.commit.as_deref())),
                prov.map(|p| {
                    if p.dirty {
                        "yes".to_string()
                    } else {
                        "no".to_string()
                    }
                })
                .unwrap_or_else(|| NA.into()),
                hash(key.map(|k| k.config.as_str())),
                hash(key.map(|k| k.dataset.as_str())),
                weights,
                hash(key.map(|k| k.code.as_str())),
                code(format!("runner reproduce {dir}")),
            ]);
        }
    }
    blocks.push(Block::Table(Table { header, rows }));
}
