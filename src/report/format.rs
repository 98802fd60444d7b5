//! How a report writes its values: summaries across seeds, shortened hashes, "n/a".
//!
//! Shared by the report's formats and the terminal comparison (`runner compare`).

use crate::report::stats::Summary;

/// Shown where a value is not defined or not recorded.
pub const NA: &str = "n/a";

/// `mean ± std [lo, hi]`, `mean (n = 1)`, or n/a.
pub fn summary_cell(s: Option<Summary>, d: usize) -> String {
    match s {
        None => NA.to_string(),
        Some(s) => match (s.std, s.ci) {
            (Some(sd), Some(ci)) => {
                format!("{:.d$} ± {sd:.d$} [{:.d$}, {:.d$}]", s.mean, ci.lo, ci.hi)
            }
            _ => format!("{:.d$} (n = 1)", s.mean),
        },
    }
}

/// A hash shortened for tables (the full value is in run.json).
pub fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}
