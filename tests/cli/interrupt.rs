use std::process::Stdio;
use std::time::{Duration, Instant};

use super::*;

/// SIGINT during training: the cell stops after the current batch, finished epochs stay in
/// `.partial` with status `interrupted`, the process exits 130, and no result appears under the
/// cell's final name.
#[test]
fn ctrl_c_keeps_finished_epochs_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("epochs = 2", "epochs = 500");
    std::fs::write(&exp, text).unwrap();
    let results = dir.path().join("results");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .args(["sweep", "--variant", "feature_extraction", "--seed", "0"])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let partial = loop {
        if let Some(dir) = std::fs::read_dir(&results).ok().and_then(|_| {
            let p = find_code_state_dir(&results)?;
            Some(p.join("tiny/feature_extraction/seed-0.partial"))
        }) {
            if dir.exists() {
                break dir;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    loop {
        let epochs = std::fs::read_to_string(partial.join("metrics.csv"))
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0);
        if epochs >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    let record = read_json(&partial.join("run.json"));
    assert_eq!(record["status"], "interrupted");
    let kept = record["epochs_completed"].as_u64().unwrap();
    assert!(kept >= 2);
    let rows = std::fs::read_to_string(partial.join("metrics.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(rows as u64, kept);
    assert!(!partial.with_file_name("seed-0").exists());
}

/// A second Ctrl-C exits at once with 130: here both come while the sweep is still generating
/// and decoding a large data set (the first would only stop it before training), and the
/// process exits without finishing that preparation.
#[test]
fn a_second_ctrl_c_exits_at_once_with_130() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("train_per_class = 12", "train_per_class = 3000")
        .replace("validation_per_class = 6", "validation_per_class = 1000");
    std::fs::write(&exp, text).unwrap();
    let results = dir.path().join("results");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .args(["sweep", "--variant", "feature_extraction", "--seed", "0"])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The data set is being generated: the handler is installed by then.
    let started = Instant::now();
    while !results.join("datasets").exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no data set");
        std::thread::sleep(Duration::from_millis(10));
    }
    let interrupt = || {
        let status = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    interrupt();
    std::thread::sleep(Duration::from_millis(300));
    interrupt();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(
        stderr.contains("interrupted again: exiting now"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("data: "),
        "it exited before the data set was ready:\n{stdout}"
    );
}
