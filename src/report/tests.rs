//! Snapshot tests of the report formats on the fixed results in tests/fixtures/report/: two code
//! states of an experiment `fixture` with finished, failed, diverged, running, interrupted and
//! missing cells.

use std::path::PathBuf;

use super::export::{self, Exporter};
use super::*;

/// Relative, so that paths in the snapshots do not depend on where the repository is.
const FIXTURE: &str = "tests/fixtures/report/results";

fn args() -> ReportOptions {
    ReportOptions {
        experiment: Some("fixture".into()),
        commit: None,
        against: Some("1a2b3c4".into()),
        baseline: None,
        metric: Metric::FinalValAcc,
        results: PathBuf::from(FIXTURE),
    }
}

fn exported(exporter: &dyn Exporter) -> String {
    let report = build(&args()).unwrap();
    let figures = plots::all(&report.results, &report.analysis).unwrap();
    String::from_utf8(exporter.export(&report, &figures).unwrap()).unwrap()
}

#[test]
fn markdown_report() {
    insta::assert_snapshot!(exported(&export::markdown::Markdown));
}

#[test]
fn summary_csv() {
    insta::assert_snapshot!(exported(&export::csv::Csv));
}

#[test]
fn html_report_structure() {
    let html = exported(&export::html::Html);
    // The figures' bytes are checked elsewhere; here the page's structure.
    let mut elided = String::new();
    for (i, part) in html.split("data:image/png;base64,").enumerate() {
        if i > 0 {
            elided.push_str("data:image/png;base64,...");
            let end = part.find('"').unwrap();
            assert!(end > 100, "an embedded PNG");
            elided.push_str(&part[end..]);
        } else {
            elided.push_str(part);
        }
    }
    assert!(
        !elided.contains("src=\"http") && !elided.contains("href=\"http"),
        "no external resources"
    );
    insta::assert_snapshot!(elided);
}

#[test]
fn the_latest_code_state_is_reported_by_default_and_commit_selects_another() {
    let r = build(&ReportOptions {
        against: None,
        ..args()
    })
    .unwrap();
    assert_eq!(r.code_state, "3f2a9c1");
    let older = build(&ReportOptions {
        against: None,
        commit: Some("1a2b3c4e5f60".into()),
        ..args()
    })
    .unwrap();
    assert_eq!(older.code_state, "1a2b3c4");
    assert_eq!(older.results.variants, ["baseline", "fine_tune"]);
}
