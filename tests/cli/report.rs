use std::path::{Path, PathBuf};

use super::*;

/// A writable copy of the fixed results in tests/fixtures/report/ (reports are written inside).
fn fixture_results(dir: &Path) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let to = dir.join("results");
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/results"),
        &to,
    );
    to
}

fn stdout(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).to_string()
}

fn stderr(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).to_string()
}

#[test]
fn report_after_a_sweep_writes_markdown_html_csv_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    runner()
        .args(["sweep", "--quiet"])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let out = runner()
        .arg("report")
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let text = stdout(&out);
    assert!(
        text.contains("baseline feature_extraction")
            && text.contains("fine_tuning_aug vs feature_extraction"),
        "{text}"
    );
    // The sweep wrote the layout without code states (or with one): find the report either way.
    let report = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.ends_with("tiny") {
                p
            } else {
                p.join("tiny")
            }
        })
        .map(|p| p.join("report"))
        .find(|p| p.is_dir())
        .expect("a report directory");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("| feature_extraction | 2 |"), "{md}");
    assert!(
        md.contains("Every cell finished; none is left out."),
        "{md}"
    );
    assert!(md.contains("`runner reproduce "), "{md}");
    let csv = std::fs::read_to_string(report.join("summary.csv")).unwrap();
    assert!(csv.starts_with("variant,metric,n,mean,std,ci_low,ci_high,baseline,"));
    assert_eq!(
        csv.lines().count(),
        1 + 2 * 6,
        "two variants x six metrics\n{csv}"
    );
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("<img alt=\"Validation accuracy per epoch"));
    assert!(!html.contains("src=\"http") && !html.contains("<link") && !html.contains("<script"));
    // Two overview figures, one per variant, one per cell; each as PNG and SVG.
    let plots: Vec<String> = std::fs::read_dir(report.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(plots.len(), 2 * (2 + 2 + 4), "{plots:?}");
    let png = image::open(report.join("plots/overlay-val-acc.png")).unwrap();
    assert!(png.width() >= 640 && png.height() >= 320);
    let svg = std::fs::read_to_string(report.join("plots/final-val-acc.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("feature_extraction"));
}

#[test]
fn report_of_a_code_state_against_another() {
    let dir = tempfile::tempdir().unwrap();
    let results = fixture_results(dir.path());
    let out = runner()
        .args([
            "report",
            "fixture",
            "--commit",
            "3f2a",
            "--against",
            "1a2b3c4",
            "--results",
        ])
        .arg(&results)
        .assert()
        .success();
    let text = stdout(&out);
    assert!(
        text.starts_with("fixture at 3f2a9c1: 3 variants, baseline baseline"),
        "{text}"
    );
    assert!(
        text.contains("fine_tune at 3f2a9c1 vs fine_tune at 1a2b3c4: no winner."),
        "{text}"
    );
    assert!(text.contains("3 cells not finished or missing"), "{text}");
    let md = std::fs::read_to_string(results.join("3f2a9c1/fixture/report/report.md")).unwrap();
    assert!(
        md.contains(
            "| fine_tune seed 0 | done | done | changed: config, code, environment (rustc) |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| wider_head | 0.680 | diverged (epoch 2/3) | running (epoch 2/3) |"),
        "{md}"
    );
    // Nothing was written into the other code state.
    assert!(!results.join("1a2b3c4/fixture/report").exists());
}

#[test]
fn report_errors_name_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let results = fixture_results(dir.path());
    let cases: [(&[&str], &str); 4] = [
        (
            &["report", "fixture", "--commit", "999"],
            "error: --commit 999: experiment \"fixture\" has no results for that code state under",
        ),
        (
            &["report", "nothing"],
            "error: no results for experiment \"nothing\" under",
        ),
        (
            &["report", "fixture", "--baseline", "nope"],
            "error: --baseline nope: experiment \"fixture\" has no variant of that name (variants: baseline, fine_tune, wider_head)",
        ),
        (
            &["compare", "-e", "fixture", "baseline", "nope"],
            "error: experiment \"fixture\" has no variant \"nope\" in",
        ),
    ];
    for (args, message) in cases {
        let out = runner()
            .args(args)
            .arg("--results")
            .arg(&results)
            .assert()
            .code(1);
        assert!(
            stderr(&out).starts_with(message),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn compare_two_variants_and_two_runs_in_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let results = fixture_results(dir.path());
    let out = runner()
        .args([
            "compare",
            "-e",
            "fixture",
            "fine_tune",
            "baseline",
            "--results",
        ])
        .arg(&results)
        .assert()
        .success();
    let text = stdout(&out);
    assert!(
        text.starts_with("fine_tune vs baseline (fixture, "),
        "{text}"
    );
    assert!(
        text.contains("final val accuracy  0.735 ± 0.021 [0.544, 0.926]"),
        "{text}"
    );
    assert!(
        text.contains("left out: fine_tune seed 2: failed at epoch 1 of 3"),
        "{text}"
    );
    assert!(text.contains("fine_tune is better than baseline"), "{text}");

    let cell = |state: &str, variant: &str, seed: &str| {
        results.join(state).join("fixture").join(variant).join(seed)
    };
    let out = runner()
        .arg("compare")
        .arg(cell("3f2a9c1", "fine_tune", "seed-0"))
        .arg(cell("1a2b3c4", "fine_tune", "seed-0"))
        .assert()
        .success();
    let text = stdout(&out);
    assert!(
        text.contains("Inputs differ: config, code, environment (rustc)."),
        "{text}"
    );
    assert!(text.contains("val acc A − B"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("3 ") && l.ends_with("+0.060")),
        "{text}"
    );
}
