//! `summary.csv`: one row per variant and metric, with the comparison against the baseline,
//! numbers unrounded for further analysis (6 decimals) and empty where undefined.

use super::Exporter;
use crate::report::analysis::Metric;
use crate::report::plots::Figure;
use crate::report::Report;

pub struct Csv;

pub const HEADER: [&str; 18] = [
    "variant",
    "metric",
    "n",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "baseline",
    "paired_n",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "bootstrap_low",
    "bootstrap_high",
    "p_value",
    "p_holm",
    "seeds",
    "excluded",
];

impl Exporter for Csv {
    fn file_name(&self) -> &'static str {
        "summary.csv"
    }

    fn export(&self, report: &Report, _figures: &[Figure]) -> anyhow::Result<Vec<u8>> {
        let a = &report.analysis;
        let num = |x: Option<f64>| x.map(|x| format!("{x:.6}")).unwrap_or_default();
        let mut w = ::csv::Writer::from_writer(Vec::new());
        w.write_record(HEADER)?;
        for v in &a.variants {
            let seeds: Vec<String> = v.seeds.iter().map(u64::to_string).collect();
            let excluded: Vec<String> = v
                .excluded
                .iter()
                .map(|(s, why)| format!("seed {s}: {why}"))
                .collect();
            for m in Metric::ALL {
                let s = v.summaries.get(&m).copied().flatten();
                let c = a
                    .comparisons
                    .get(&m)
                    .and_then(|cs| cs.iter().find(|c| c.variant == v.name));
                let p = c.and_then(|c| c.paired.as_ref());
                let is_baseline = v.name == a.baseline;
                w.write_record([
                    v.name.clone(),
                    m.key().to_string(),
                    s.map(|s| s.n).unwrap_or(0).to_string(),
                    num(s.map(|s| s.mean)),
                    num(s.and_then(|s| s.std)),
                    num(s.and_then(|s| s.ci).map(|i| i.lo)),
                    num(s.and_then(|s| s.ci).map(|i| i.hi)),
                    if is_baseline {
                        String::new()
                    } else {
                        a.baseline.clone()
                    },
                    c.map(|c| c.seeds.len().to_string()).unwrap_or_default(),
                    num(p.map(|p| p.mean_diff)),
                    num(p.and_then(|p| p.diff.ci).map(|i| i.lo)),
                    num(p.and_then(|p| p.diff.ci).map(|i| i.hi)),
                    num(p.and_then(|p| p.bootstrap).map(|i| i.lo)),
                    num(p.and_then(|p| p.bootstrap).map(|i| i.hi)),
                    num(p.and_then(|p| p.p)),
                    num(c.and_then(|c| c.p_holm)),
                    seeds.join(" "),
                    excluded.join("; "),
                ])?;
            }
        }
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
    }
}
