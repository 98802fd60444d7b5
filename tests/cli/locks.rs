//! Cell locks between sweeps: overlapping sweeps, a sweep killed with -9, a lock held or left by
//! a sweep on another host sharing the results directory, and what `runner status` says.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::*;

/// The tiny experiment with `epochs` epochs per cell.
fn experiment(dir: &Path, epochs: usize) -> PathBuf {
    let exp = tiny_experiment(dir, "");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("epochs = 2", &format!("epochs = {epochs}"));
    std::fs::write(&exp, text).unwrap();
    exp
}

fn spawn_sweep(exp: &Path, results: &Path, args: &[&str]) -> Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("sweep")
        .args(args)
        .arg(exp)
        .arg("--results")
        .arg(results)
        .arg("--no-report")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sweep(exp: &Path, results: &Path, args: &[&str]) -> String {
    let out = spawn_sweep(exp, results, args).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A sweep that finds a cell held by another sweep: it exits 6 (not every cell is done) and says
/// which cell and what to do. Returns its stdout and stderr.
fn sweep_held(exp: &Path, results: &Path, args: &[&str]) -> String {
    let out = spawn_sweep(exp, results, args).wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(6), "{text}");
    assert!(
        text.contains("cell(s) not done:") && text.contains("rerun when that sweep has ended"),
        "{text}"
    );
    text
}

fn status(results: &Path) -> String {
    let out = runner()
        .arg("status")
        .arg("--results")
        .arg(results)
        .assert()
        .success();
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

/// The row of `runner status` for a cell, and the line under it (the lock's holder).
fn status_of(results: &Path, variant: &str, seed: u64) -> (String, String) {
    let text = status(results);
    let lines: Vec<&str> = text.lines().collect();
    let i = lines
        .iter()
        .position(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.contains(&variant) && words.contains(&seed.to_string().as_str())
        })
        .unwrap_or_else(|| panic!("no {variant} / {seed} in\n{text}"));
    (
        lines[i].to_string(),
        lines.get(i + 1).unwrap_or(&"").trim().to_string(),
    )
}

/// Wait until `found` returns something (a file a sweep writes), at most two minutes.
fn wait_for<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(t) = found() {
            return t;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `.partial` directory of a cell once it holds at least one finished epoch.
fn training(results: &Path, variant: &str, seed: u64) -> Option<PathBuf> {
    let partial = find_code_state_dir(results)?
        .join("tiny")
        .join(variant)
        .join(format!("seed-{seed}.partial"));
    let rows = std::fs::read_to_string(partial.join("metrics.csv"))
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0);
    (rows >= 1 && partial.join("checkpoint.safetensors").exists()).then_some(partial)
}

/// A sweep of one cell, killed with -9 after its first epoch: returns the cell's `.partial`
/// directory and the pid the sweep had.
fn killed_sweep(exp: &Path, results: &Path, args: &[&str]) -> (PathBuf, u32) {
    let mut child = spawn_sweep(exp, results, args);
    let partial = wait_for("training did not start", || {
        training(results, args[1], args[3].parse().unwrap())
    });
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert_eq!(read_json(&partial.join("run.json"))["status"], "running");
    (partial, pid)
}

/// Two sweeps over the same results, the second started while the first is inside a cell:
/// every cell is trained once, by one of them, and the other skips it.
#[test]
fn two_overlapping_sweeps_train_each_cell_once() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), 100);
    let results = dir.path().join("results");
    let a = spawn_sweep(&exp, &results, &[]);
    // The first sweep holds its first cell's lock and is training it.
    let first = wait_for("the first sweep did not start training", || {
        training(&results, "feature_extraction", 0)
    });
    assert!(first.with_file_name("seed-0.lock").exists());
    let b = spawn_sweep(&exp, &results, &[]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    // The second found the first cell held: not every cell was done when it ended (exit 6);
    // the first may have found one of the second's cells held too.
    assert_eq!(b.status.code(), Some(6), "{out}");
    assert!(matches!(a.status.code(), Some(0 | 6)), "{out}");
    // A cell starts training (fresh or resumed) with this line.
    assert_eq!(
        out.matches(" frozen parameters, ").count(),
        4,
        "each of the 4 cells trains exactly once:\n{out}"
    );
    assert!(
        out.contains("skipped: being trained by another sweep (pid "),
        "the sweeps overlapped:\n{out}"
    );
    for variant in ["feature_extraction", "fine_tuning_aug"] {
        for seed in [0, 1] {
            let cell = cell_dir(&results, "tiny", variant, seed);
            assert_eq!(read_json(&cell.join("run.json"))["status"], "done");
            assert!(!cell.with_file_name(format!("seed-{seed}.lock")).exists());
        }
    }
    // Once both have ended, a rerun finds every cell done.
    assert!(sweep(&exp, &results, &[]).contains("every cell of the selected matrix is done"));
}

/// kill -9 leaves the lock file and a `running` record behind. On the same host the dead pid
/// makes the lock stale at once (no need to wait for the heartbeat timeout): `runner status`
/// shows the cell as `stale`, naming the pid, and the next sweep takes it over and resumes it.
#[test]
fn a_killed_sweep_shows_as_stale_and_the_next_sweep_resumes_its_cell() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), 100);
    let results = dir.path().join("results");
    let args = ["--variant", "feature_extraction", "--seed", "0"];
    let (partial, pid) = killed_sweep(&exp, &results, &args);
    let lock = partial.with_file_name("seed-0.lock");
    assert!(lock.exists(), "the killed sweep could not remove its lock");

    let out = runner()
        .env("RUNNER_LOCK_STALE_SECS", "100000")
        .arg("status")
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let row = text
        .lines()
        .find(|l| l.contains("feature_extraction"))
        .unwrap();
    assert!(
        row.contains(" stale ") && !row.contains("running"),
        "{text}"
    );
    assert!(
        text.contains(&format!("stale lock: pid {pid} on "))
            && text.contains(&format!(
                "; process {pid} is gone; the next sweep takes it over"
            )),
        "{text}"
    );

    let resumed = sweep(&exp, &results, &args);
    assert!(resumed.contains("resuming after epoch"), "{resumed}");
    let done = partial.with_file_name("seed-0");
    assert_eq!(read_json(&done.join("run.json"))["status"], "done");
    assert!(!lock.exists());
    assert!(status_of(&results, "feature_extraction", 0)
        .0
        .contains(" done "));
}

/// A lock written by a sweep on another host (its pid means nothing here): respected while its
/// heartbeat is fresh, stale once the heartbeat is older than the timeout, then taken over.
#[test]
fn a_lock_from_another_host_counts_by_its_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), 100);
    let results = dir.path().join("results");
    let args = ["--variant", "feature_extraction", "--seed", "0"];
    let (partial, _) = killed_sweep(&exp, &results, &args);
    let lock = partial.with_file_name("seed-0.lock");
    let foreign = r#"{"host":"node-elsewhere","pid":4242,"slurm_job_id":"777","acquired_at":"2026-01-01T00:00:00Z","token":"0123456789abcdef"}"#;
    std::fs::write(&lock, foreign).unwrap();

    // Fresh: the cell is being trained over there.
    let (row, holder) = status_of(&results, "feature_extraction", 0);
    assert!(row.contains(" running "), "{row}");
    assert!(
        holder.starts_with("held by pid 4242 on node-elsewhere, Slurm job 777, last heartbeat"),
        "{holder}"
    );
    let skipped = sweep_held(&exp, &results, &args);
    assert!(
        skipped.contains(
            "skipped: being trained by another sweep (pid 4242 on node-elsewhere, Slurm job 777"
        ),
        "{skipped}"
    );
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), foreign);
    assert_eq!(read_json(&partial.join("run.json"))["status"], "running");

    // Its heartbeat stopped ten minutes ago (the default timeout is five).
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(600))
        .unwrap();
    let (row, holder) = status_of(&results, "feature_extraction", 0);
    assert!(row.contains(" stale "), "{row}");
    // (10m, or 10m 1s on a slow machine)
    assert!(
        holder.starts_with(
            "stale lock: pid 4242 on node-elsewhere, Slurm job 777, last heartbeat 10m"
        ) && holder.contains("; no heartbeat for 10m")
            && holder.ends_with(" (stale after 5m); the next sweep takes it over"),
        "{holder}"
    );
    let taken = sweep(&exp, &results, &args);
    assert!(taken.contains("resuming after epoch"), "{taken}");
    assert_eq!(
        read_json(&partial.with_file_name("seed-0").join("run.json"))["status"],
        "done"
    );
    assert!(!lock.exists());
}
