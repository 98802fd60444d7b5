//! Exit codes that tell the truth about the matrix, and a results directory that fills up or is
//! read-only: a sweep exits 0 only when every selected cell is done; a full disk stops the sweep
//! with one message naming the file and leaves the cell resumable; a finished matrix on a
//! read-only file system is reported done. File-system tests mount a small tmpfs (root only) and
//! skip, saying why, where that is not possible.

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// The tiny experiment with `epochs` epochs per cell, plus `extra`.
fn experiment(dir: &Path, epochs: usize, extra: &str) -> PathBuf {
    let exp = tiny_experiment(dir, extra);
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Run a sweep to its end: its exit code and its stdout and stderr together.
fn sweep(exp: &Path, results: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = spawn_sweep(exp, results, args).wait_with_output().unwrap();
    (out.status.code(), text(&out))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `.partial` directory of a cell once it holds a finished epoch and its checkpoint.
fn wait_for_checkpoint(results: &Path, variant: &str, seed: u64) -> PathBuf {
    let started = Instant::now();
    loop {
        if let Some(code_state) = find_code_state_dir(results) {
            let partial = code_state
                .join("tiny")
                .join(variant)
                .join(format!("seed-{seed}.partial"));
            if partial.join("checkpoint.safetensors").exists() {
                return partial;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. "64m") at `at`; None (after saying why) where this process
    /// may not mount (not root, or no such capability in a container).
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(at.to_path_buf())),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs at {} (it needs root): {}",
                    at.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn remount(&self, options: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "mount -o remount,{options} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fill the file system holding `path` but for `free` pages of 4 KiB: room for the cell's small
/// files (metrics.csv, run.json: a page or two each), none for its checkpoint (six pages), so
/// that the write that fails is the checkpoint's and a `failed` record could still be written.
fn fill(path: &Path, free: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let page = [0u8; 4096];
    while f.write_all(&page).is_ok() {}
    let _ = f.sync_all();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(free * 4096) / 4096 * 4096)
        .unwrap();
}

/// The disk fills while a cell trains: the sweep stops at once (the next cell does not start)
/// with one message that names the file and says the cause once, exits 1, and leaves the cell
/// resumable (its record still says `running`, not `failed`). With room again, a plain rerun
/// resumes it from its checkpoint.
#[test]
fn a_full_disk_stops_the_sweep_with_one_message_and_leaves_the_cell_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let Some(_tmpfs) = Tmpfs::mount(&results, "64m") else {
        return;
    };
    let exp = experiment(dir.path(), 100, "");
    let child = spawn_sweep(&exp, &results, &["--variant", "fine_tuning_aug"]);
    let partial = wait_for_checkpoint(&results, "fine_tuning_aug", 0);
    let filler = results.join("filler");
    fill(&filler, 3);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        stderr
            .matches("No space left on device (os error 28)")
            .count(),
        1,
        "the cause is said once:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("error: cannot write {}/", partial.display()))
            && stderr.contains("the sweep stopped")
            && stderr.contains("resumes from its last checkpoint"),
        "{stderr}"
    );
    let record = read_json(&partial.join("run.json"));
    assert_eq!(record["status"], "running", "not marked failed");
    assert!(
        !partial.with_file_name("seed-1.partial").exists(),
        "the next cell did not start"
    );

    std::fs::remove_file(&filler).unwrap();
    let (code, log) = sweep(
        &exp,
        &results,
        &["--variant", "fine_tuning_aug", "--no-report"],
    );
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("resuming after epoch"), "{log}");
    assert!(
        log.contains("every cell of the selected matrix is done"),
        "{log}"
    );
}

/// A results directory on a read-only file system whose selected cells are all done: the sweep
/// takes no lock and writes nothing it needs, says every cell is done, and exits 0.
#[test]
fn a_read_only_results_directory_of_done_cells_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let Some(tmpfs) = Tmpfs::mount(&results, "64m") else {
        return;
    };
    let exp = experiment(dir.path(), 2, "");
    let args = ["--variant", "feature_extraction"];
    let (code, log) = sweep(&exp, &results, &args);
    assert_eq!(code, Some(0), "{log}");
    tmpfs.remount("ro");
    let (code, log) = sweep(&exp, &results, &args);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(log.matches("skipped: done already").count(), 2, "{log}");
    assert!(
        log.contains("every cell of the selected matrix is done"),
        "{log}"
    );
}

/// A failed cell is not done: every plain rerun skips it and exits 3, naming the cell, why, and
/// `--retry-failed`; `--retry-failed` resumes it from its checkpoint (not from epoch 1) and
/// then the sweep exits 0.
#[test]
fn a_failed_cell_makes_reruns_exit_3_until_retry_failed_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), 100, "");
    let results = dir.path().join("results");
    let args = ["--variant", "fine_tuning_aug", "--seed", "0", "--no-report"];
    let mut child = spawn_sweep(&exp, &results, &args);
    let partial = wait_for_checkpoint(&results, "fine_tuning_aug", 0);
    child.kill().unwrap();
    child.wait().unwrap();
    // As a cell that failed (e.g. an image that stopped decoding) records itself.
    let record_path = partial.join("run.json");
    let mut record = read_json(&record_path);
    record["status"] = "failed".into();
    record["message"] = "a cause that has been fixed since".into();
    std::fs::write(&record_path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();

    for _ in 0..2 {
        let (code, log) = sweep(&exp, &results, &args);
        assert_eq!(code, Some(3), "{log}");
        assert!(
            log.contains("1 cell(s) not done:")
                && log.contains("fine_tuning_aug / seed 0: failed earlier")
                && log.contains("--retry-failed"),
            "{log}"
        );
    }
    let (code, log) = sweep(&exp, &results, &[&args[..], &["--retry-failed"]].concat());
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("resuming after epoch"), "{log}");
    assert_eq!(
        read_json(&partial.with_file_name("seed-0").join("run.json"))["status"],
        "done"
    );
}

/// A diverged cell is not done either: the sweep that finds it diverged and every rerun that
/// skips it exit 3 and say so.
#[test]
fn a_diverged_cell_makes_every_rerun_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(
        dir.path(),
        2,
        "[[variants]]\nname = \"exploding\"\ntraining.learning_rate = 1e30\n",
    );
    let results = dir.path().join("results");
    let args = ["--variant", "exploding", "--seed", "0", "--no-report"];
    let (code, log) = sweep(&exp, &results, &args);
    assert_eq!(code, Some(3), "{log}");
    let (code, log) = sweep(&exp, &results, &args);
    assert_eq!(code, Some(3), "{log}");
    assert!(
        log.contains("exploding / seed 0: diverged already") && log.contains("--force"),
        "{log}"
    );
}

/// `--retry-failed` runs only failed cells: a cell it leaves out that was never run is not done,
/// and the sweep says so (exit 6) rather than succeeding.
#[test]
fn retry_failed_over_cells_never_run_does_not_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), 1, "");
    let results = dir.path().join("results");
    let (code, log) = sweep(
        &exp,
        &results,
        &[
            "--variant",
            "feature_extraction",
            "--seed",
            "0",
            "--retry-failed",
        ],
    );
    assert_eq!(code, Some(6), "{log}");
    assert!(
        log.contains("feature_extraction / seed 0: not run: --retry-failed runs only failed cells"),
        "{log}"
    );
}

/// A missing weights file or data directory: the error says the system's cause once, and names
/// where the setting is written — the base section when every variant shares it, the variant
/// that sets it otherwise — instead of blaming the first variant that uses it.
#[test]
fn input_errors_name_where_the_setting_is_written_and_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), 1, "");
    let shared_weights = std::fs::read_to_string(&exp).unwrap().replace(
        "weights = \"none\"",
        "weights = { file = \"missing.safetensors\" }",
    );
    std::fs::write(&exp, &shared_weights).unwrap();
    let results = dir.path().join("results");
    let (code, log) = sweep(&exp, &results, &[]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("tiny.toml: [model] weights (every variant's): ")
            && log.contains("missing.safetensors: cannot read weights: No such file or directory")
            && !log.contains("variant \"feature_extraction\""),
        "{log}"
    );
    assert_eq!(log.matches("(os error 2)").count(), 1, "{log}");

    let own_weights = experiment(
        dir.path(),
        1,
        "[[variants]]\nname = \"pretrained\"\nmodel.weights = { file = \"mine.safetensors\" }\n",
    );
    let (code, log) = sweep(&own_weights, &results, &["--variant", "pretrained"]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("tiny.toml: model.weights of variant \"pretrained\": "),
        "{log}"
    );

    let text = std::fs::read_to_string(&exp).unwrap();
    let data = text.replace(
        "[dataset.synthetic]",
        "train_dir = \"nothing/train\"\nvalidation_dir = \"nothing/validation\"\n\n[unused]",
    );
    let start = data.find("[unused]").unwrap();
    let end = data.find("[model]").unwrap();
    let data = format!("{}{}", &data[..start], &data[end..]).replace(
        "weights = { file = \"missing.safetensors\" }",
        "weights = \"none\"",
    );
    std::fs::write(&exp, data).unwrap();
    let (code, log) = sweep(&exp, &results, &[]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("tiny.toml: [dataset] (every variant's): ")
            && log.contains("nothing/train")
            && !log.contains("variant \"feature_extraction\""),
        "{log}"
    );
}
