//! Skip-if-done, kill-and-resume and determinism across processes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::*;

/// Metrics without the wall-clock column.
pub(super) fn metrics(cell: &Path) -> Vec<String> {
    std::fs::read_to_string(cell.join("metrics.csv"))
        .unwrap_or_else(|e| panic!("{}: {e}", cell.display()))
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

fn sweep(exp: &Path, results: &Path, args: &[&str]) -> String {
    let out = runner()
        .arg("sweep")
        .args(args)
        .arg(exp)
        .arg("--results")
        .arg(results)
        .assert()
        .success();
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

#[test]
fn a_second_sweep_skips_done_cells_and_force_reruns_them() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    sweep(&exp, &results, &["--seed", "0"]);
    let cell = cell_dir(&results, "tiny", "feature_extraction", 0);
    let before = std::fs::read(cell.join("run.json")).unwrap();
    let again = sweep(&exp, &results, &["--seed", "0"]);
    assert_eq!(again.matches("skipped: done already").count(), 2, "{again}");
    assert_eq!(
        std::fs::read(cell.join("run.json")).unwrap(),
        before,
        "a skipped cell is not touched"
    );
    let forced = sweep(
        &exp,
        &results,
        &["--seed", "0", "--force", "--variant", "feature_extraction"],
    );
    assert!(forced.contains("epoch 2/2"), "{forced}");
    let history: Vec<_> = std::fs::read_dir(cell.parent().unwrap().join(".history"))
        .unwrap()
        .collect();
    assert_eq!(history.len(), 1, "the replaced result is kept");
    // Changing a value changes the run key: the cell runs again.
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("learning_rate = 1e-3", "learning_rate = 2e-3");
    std::fs::write(&exp, text).unwrap();
    let changed = sweep(
        &exp,
        &results,
        &["--seed", "0", "--variant", "feature_extraction"],
    );
    assert!(
        changed.contains("epoch 2/2") && !changed.contains("skipped"),
        "{changed}"
    );
}

#[test]
fn a_killed_sweep_resumes_and_ends_with_the_same_metrics_as_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("epochs = 2", "epochs = 6");
    std::fs::write(&exp, text).unwrap();
    let args = ["--variant", "fine_tuning_aug", "--seed", "1"];

    let reference = dir.path().join("reference");
    sweep(&exp, &reference, &args);

    let results = dir.path().join("results");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("sweep")
        .args(args)
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let partial = loop {
        let found =
            find_code_state_dir(&results).map(|d| d.join("tiny/fine_tuning_aug/seed-1.partial"));
        if let Some(p) = found.filter(|p| p.join("checkpoint.safetensors").exists()) {
            let rows = std::fs::read_to_string(p.join("metrics.csv"))
                .map(|t| t.lines().count() - 1)
                .unwrap_or(0);
            if rows >= 2 {
                break p;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // kill -9: no chance to clean up.
    assert!(std::process::Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let _ = child.wait_with_output();
    let final_dir = partial.with_file_name("seed-1");
    assert!(!final_dir.exists(), "no half-written finished cell");
    assert_eq!(read_json(&partial.join("run.json"))["status"], "running");

    let resumed = sweep(&exp, &results, &args);
    assert!(resumed.contains("resuming after epoch"), "{resumed}");
    let uninterrupted = cell_dir(&reference, "tiny", "fine_tuning_aug", 1);
    assert_eq!(metrics(&final_dir), metrics(&uninterrupted));
    assert_eq!(read_json(&final_dir.join("run.json"))["status"], "done");
    assert!(!final_dir.join("checkpoint.safetensors").exists());
    for file in ["trained.safetensors", "best-trained.safetensors"] {
        assert!(
            std::fs::read(final_dir.join(file)).unwrap()
                == std::fs::read(uninterrupted.join(file)).unwrap(),
            "{file} differs from the uninterrupted run's"
        );
    }
}

#[test]
fn metrics_are_bitwise_identical_across_processes_and_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let run = |name: &str, threads: &str| -> String {
        let results = dir.path().join(name);
        runner()
            .env("RAYON_NUM_THREADS", threads)
            .args([
                "sweep",
                "--quiet",
                "--variant",
                "fine_tuning_aug",
                "--seed",
                "0",
            ])
            .arg(&exp)
            .arg("--results")
            .arg(&results)
            .assert()
            .success();
        std::fs::read_to_string(
            cell_dir(&results, "tiny", "fine_tuning_aug", 0).join("metrics.csv"),
        )
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect()
    };
    let one = run("one", "1");
    assert_eq!(one, run("two", "2"));
    assert_eq!(one, run("again", "1"));
}
