//! The `[pretrain]` stage across processes: `reproduce` with and without training it again,
//! `kill -9` and resume, Ctrl-C.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::pretrain::{reduced_demo, sha256, stage_dirs};
use super::resume::metrics;
use super::*;

/// The sweep of one cell that loads the stage: the stage, then `feature_extraction` seed 0.
const ONE_CELL: [&str; 5] = [
    "--variant",
    "feature_extraction",
    "--seed",
    "0",
    "--no-report",
];

fn sweep_one_cell(exp: &Path, results: &Path) -> String {
    let out = runner()
        .arg("sweep")
        .args(ONE_CELL)
        .arg(exp)
        .arg("--results")
        .arg(results)
        .assert()
        .success();
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

fn spawn_sweep(exp: &Path, results: &Path) -> Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("sweep")
        .args(ONE_CELL)
        .arg(exp)
        .arg("--results")
        .arg(results)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for the stage's `.partial` directory to hold a checkpoint and `epochs` finished epochs.
fn wait_for_stage_epochs(results: &Path, epochs: usize) -> (PathBuf, usize) {
    let started = Instant::now();
    loop {
        let partial = find_code_state_dir(results)
            .and_then(|state| std::fs::read_dir(state.join(".stages")).ok())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".partial"));
        if let Some(p) = partial.filter(|p| p.join("checkpoint.safetensors").exists()) {
            let rows = std::fs::read_to_string(p.join("metrics.csv"))
                .map(|t| t.lines().count().saturating_sub(1))
                .unwrap_or(0);
            if rows >= epochs {
                return (p, rows);
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the stage wrote no checkpoint for {epochs} epochs in its .partial directory"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file of a directory with its SHA-256 and modification time.
fn snapshot(dir: &Path) -> Vec<(String, String, SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let p = e.path();
            let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                sha256(&p),
                mtime,
            )
        })
        .collect();
    files.sort();
    files
}

fn reproduce(cell: &Path, results: &Path, extra: &[&str], code: i32) -> String {
    let out = runner()
        .arg("reproduce")
        .arg(cell)
        .args(extra)
        .arg("--results")
        .arg(results)
        .assert()
        .code(code);
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

#[test]
fn reproduce_checks_the_stored_stage_and_deep_trains_and_compares_it() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let exp = reduced_demo(dir.path(), 2, 20);
    sweep_one_cell(&exp, &results);
    let stage = stage_dirs(&results).remove(0);
    let checkpoint = stage.join("model.safetensors");
    let recorded = sha256(&checkpoint);
    let before = snapshot(&stage);
    let cell = cell_dir(&results, "mini_demo", "feature_extraction", 0);

    // The stored stage is checked by hash, and only the cell trains.
    let out = reproduce(&cell, &results, &[], 0);
    assert!(out.contains("REPRODUCED: all 8 epochs match"), "{out}");
    assert!(!out.contains("pretrain stage: training"), "{out}");
    assert!(
        out.contains("pretrain stage: not trained again")
            && out.contains(&checkpoint.display().to_string()),
        "{out}"
    );
    assert_eq!(snapshot(&stage), before, "the stage is untouched");

    // --deep trains the stage again in scratch and compares it before the cell.
    let out = reproduce(&cell, &results, &["--deep"], 0);
    assert!(out.contains("pretrain stage: training"), "{out}");
    assert!(
        out.contains(
            "pretrain stage REPRODUCED: all 2 epochs match (tolerance 0) and the checkpoint is \
             byte-identical"
        ),
        "{out}"
    );
    assert!(out.contains("REPRODUCED: all 8 epochs match"), "{out}");
    assert_eq!(snapshot(&stage), before, "the stage is untouched");

    // A changed stage checkpoint is a changed input: both hashes and the path are named.
    let mut bytes = std::fs::read(&checkpoint).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&checkpoint, &bytes).unwrap();
    let out = reproduce(&cell, &results, &[], 4);
    let now = sha256(&checkpoint);
    assert!(
        out.contains("NOT REPRODUCIBLE")
            && out.contains(&format!(
                "the pretrain stage checkpoint {} changed: SHA-256 {now} now, {recorded} when \
                 the run used it",
                checkpoint.display()
            )),
        "{out}"
    );
    assert!(!out.contains("pretrain stage: training"), "{out}");

    std::fs::remove_file(&checkpoint).unwrap();
    let out = reproduce(&cell, &results, &["--deep"], 4);
    assert!(
        out.contains(&format!(
            "the pretrain stage checkpoint {} is missing (the run used SHA-256 {recorded})",
            checkpoint.display()
        )),
        "{out}"
    );
    assert!(!out.contains("pretrain stage: training"), "{out}");

    // A changed image of the stage's data set changes the stage's key: named, nothing trained.
    let victim = results.join("datasets");
    let victim = std::fs::read_dir(&victim)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("train/rings/0000.png"))
        .find(|p| p.exists())
        .unwrap();
    let mut img = image::open(&victim).unwrap().to_rgb8();
    img.put_pixel(0, 0, image::Rgb([1, 2, 3]));
    img.save(&victim).unwrap();
    let out = reproduce(&cell, &results, &["--deep"], 4);
    assert!(
        out.contains("pretraining stage changed")
            && out.contains("the pretrain stage's data set changed"),
        "{out}"
    );
    assert!(!out.contains("pretrain stage: training"), "{out}");
}

#[test]
fn a_stage_killed_with_kill_9_resumes_and_ends_bitwise_identical() {
    let dir = tempfile::tempdir().unwrap();
    let exp = reduced_demo(dir.path(), 6, 20);
    let reference = dir.path().join("reference");
    sweep_one_cell(&exp, &reference);

    let results = dir.path().join("results");
    let mut child = spawn_sweep(&exp, &results);
    let (partial, _) = wait_for_stage_epochs(&results, 2);
    // kill -9: no chance to clean up.
    assert!(std::process::Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let _ = child.wait();
    assert_eq!(
        stage_dirs(&results),
        vec![partial.clone()],
        "no finished stage"
    );
    assert!(
        !code_state_dir(&results).join("mini_demo").exists(),
        "no cell ran"
    );

    let resumed = sweep_one_cell(&exp, &results);
    assert!(
        resumed.contains("pretrain stage: resuming after epoch"),
        "{resumed}"
    );
    let stages = stage_dirs(&results);
    let expected = stage_dirs(&reference);
    assert_eq!(
        stages.len(),
        1,
        "the .partial directory became the stage: {stages:?}"
    );
    assert_eq!(
        stages[0].file_name(),
        expected[0].file_name(),
        "same stage key"
    );
    assert_eq!(metrics(&stages[0]), metrics(&expected[0]));
    assert_eq!(
        std::fs::read(stages[0].join("model.safetensors")).unwrap(),
        std::fs::read(expected[0].join("model.safetensors")).unwrap(),
        "the checkpoint is bitwise identical to an uninterrupted run's"
    );
    assert!(!stages[0].join("checkpoint.safetensors").exists());
    assert_eq!(
        metrics(&cell_dir(&results, "mini_demo", "feature_extraction", 0)),
        metrics(&cell_dir(&reference, "mini_demo", "feature_extraction", 0))
    );
}

#[test]
fn ctrl_c_during_the_stage_stops_after_the_batch_and_the_next_sweep_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let exp = reduced_demo(dir.path(), 8, 20);
    let results = dir.path().join("results");
    let child = spawn_sweep(&exp, &results);
    let (partial, at_signal) = wait_for_stage_epochs(&results, 1);
    assert!(std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let kept = std::fs::read_to_string(partial.join("metrics.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    // After the current batch: at most the epoch running at the signal finished meanwhile.
    assert!(kept <= at_signal + 1 && kept < 8, "{kept} epochs kept");
    assert!(
        stderr.contains("stopping after the current batch")
            && stderr.contains(&format!(
                "interrupted: the pretrain stage stopped during epoch {}; its {kept} finished \
                 epoch",
                kept + 1
            ))
            && stderr.contains(&format!("kept in {}", partial.display()))
            && stderr.contains("no cell was trained"),
        "{stderr}"
    );
    assert_eq!(
        stage_dirs(&results),
        vec![partial.clone()],
        "no finished stage"
    );
    assert!(partial.join("checkpoint.safetensors").exists());
    assert!(
        !code_state_dir(&results).join("mini_demo").exists(),
        "no cell ran"
    );

    let resumed = sweep_one_cell(&exp, &results);
    assert!(
        resumed.contains(&format!("pretrain stage: resuming after epoch {kept}")),
        "{resumed}"
    );
    assert_eq!(
        read_json(&cell_dir(&results, "mini_demo", "feature_extraction", 0).join("run.json"))
            ["status"],
        "done"
    );
}

/// A sweep waiting for another sweep to train the stage: one Ctrl-C stops it at once (exit 130,
/// saying so) instead of waiting for the stage to finish; the other sweep goes on.
#[test]
fn ctrl_c_while_waiting_for_another_sweeps_stage_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let exp = reduced_demo(dir.path(), 60, 20);
    let results = dir.path().join("results");
    let mut trainer = spawn_sweep(&exp, &results);
    let (partial, _) = wait_for_stage_epochs(&results, 1);
    let waiter = spawn_sweep(&exp, &results);
    // The waiter is waiting once it has said so; give it the time to get there.
    std::thread::sleep(Duration::from_secs(3));
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &waiter.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = waiter.wait_with_output().unwrap();
    let waited = signalled.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(
        stdout.contains("being trained by another sweep")
            && stderr.contains(&format!(
                "interrupted: stopped while another sweep trains the pretrain stage (in {})",
                partial.display()
            )),
        "{stdout}{stderr}"
    );
    assert!(
        trainer.try_wait().unwrap().is_none(),
        "the waiter stopped before the stage was trained (in {waited:?})"
    );
    trainer.kill().unwrap();
    trainer.wait().unwrap();
}
