//! TensorBoard event files and the MLflow export, read back by TensorBoard's and MLflow's own
//! Python code (the PyPI packages, in the virtual environment scripts/py-venv.sh keeps under
//! target/).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::*;

/// The virtual environment's python, or None (after printing why) when it cannot be had.
fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/py-venv.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    if !out.status.success() {
        eprintln!(
            "skipped: no Python environment with tensorboard and mlflow: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Some(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

fn reference_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(name)
}

/// Run `tests/reference/read_tensorboard.py` on `cells` of the experiment folder `logdir`.
fn read_tensorboard(python: &Path, logdir: &Path, cells: &[PathBuf]) {
    let out = std::process::Command::new(python)
        .arg(reference_script("read_tensorboard.py"))
        .arg(logdir)
        .args(cells)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    eprintln!("{text}");
}

/// Start a sweep of `args` and kill it (-9) once cell `variant`/`seed` has two epochs in its
/// `.partial` folder and a checkpoint; returns that folder (its run.json says `running`).
fn sweep_killed_after_two_epochs(
    exp: &Path,
    results: &Path,
    args: &[&str],
    variant: &str,
    seed: u64,
) -> PathBuf {
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("sweep")
        .args(args)
        .arg(exp)
        .arg("--results")
        .arg(results)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let partial = loop {
        let found = find_code_state_dir(results)
            .map(|d| d.join(format!("tiny/{variant}/seed-{seed}.partial")));
        if let Some(p) = found.filter(|p| p.join("checkpoint.safetensors").exists()) {
            let rows = std::fs::read_to_string(p.join("metrics.csv"))
                .map(|t| t.lines().count() - 1)
                .unwrap_or(0);
            if rows >= 2 {
                break p;
            }
        }
        let finished = find_code_state_dir(results)
            .is_some_and(|d| d.join(format!("tiny/{variant}/seed-{seed}")).exists());
        assert!(!finished, "the cell finished before it could be killed");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(std::process::Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let _ = child.wait_with_output();
    assert_eq!(read_json(&partial.join("run.json"))["status"], "running");
    partial
}

#[test]
fn tensorboard_reads_every_cell_as_a_run_with_the_values_of_its_metrics() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    runner()
        .args(["sweep", "--quiet", "--no-report"])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let logdir = code_state_dir(&results).join("tiny");
    let cells = all_cells(&results);
    read_tensorboard(&python, &logdir, &cells);
}

#[test]
fn a_resumed_cell_s_events_say_what_its_metrics_say_with_no_step_twice() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exp = six_epochs(dir.path(), "");
    let args = ["--variant", "fine_tuning_aug", "--seed", "0", "--no-report"];
    let results = dir.path().join("results");
    let partial = sweep_killed_after_two_epochs(&exp, &results, &args, "fine_tuning_aug", 0);
    // As a crash between metrics.csv and the checkpoint leaves it: one epoch more in metrics.csv
    // and in the event file than the checkpoint covers. The resumed cell trains that epoch again.
    let metrics_path = partial.join("metrics.csv");
    let mut rows = runner::store::read_metrics(&metrics_path).unwrap();
    let mut extra = *rows.last().unwrap();
    extra.epoch += 1;
    extra.train_loss = 99.0;
    rows.push(extra);
    std::fs::write(&metrics_path, runner::store::metrics_csv(&rows).unwrap()).unwrap();
    let events = runner::track::tensorboard::events(&rows, 1e-3, 1.0);
    std::fs::write(
        partial.join(runner::track::tensorboard::EVENTS_FILE),
        events,
    )
    .unwrap();

    let out = runner()
        .arg("sweep")
        .args(args)
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("resuming after epoch"), "{stdout}");
    let cell = cell_dir(&results, "tiny", "fine_tuning_aug", 0);
    assert_eq!(
        runner::store::read_metrics(&cell.join("metrics.csv"))
            .unwrap()
            .len(),
        6
    );
    read_tensorboard(&python, &code_state_dir(&results).join("tiny"), &[cell]);
}

/// `mlflow server` on 127.0.0.1 with its own SQLite store and artifact folder, in its own
/// process group, stopped (the whole group) when dropped.
struct MlflowServer {
    child: std::process::Child,
    uri: String,
}

impl MlflowServer {
    fn start(python: &Path, dir: &Path) -> MlflowServer {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let log = std::fs::File::create(dir.join("mlflow-server.log")).unwrap();
        let child = std::process::Command::new(python)
            .args([
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--workers",
                "1",
            ])
            .args(["--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let server = MlflowServer {
            child,
            uri: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while !server.healthy() {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "mlflow server did not start: {}",
                std::fs::read_to_string(dir.join("mlflow-server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        server
    }

    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(self.uri.trim_start_matches("http://")) else {
            return false;
        };
        let _ = s.write_all(b"GET /health HTTP/1.0\r\n\r\n");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn export(uri: &str, results: &Path) -> assert_cmd::assert::Assert {
    runner()
        .args(["export", "mlflow", "tiny", "--tracking-uri", uri])
        .arg("--results")
        .arg(results)
        .assert()
}

/// Run `tests/reference/read_mlflow.py` against the server for `cells`.
fn read_mlflow(python: &Path, uri: &str, cells: &[PathBuf]) {
    read_mlflow_with(python, &[], uri, cells)
}

/// `read_mlflow` with the script's `options` (`--live`, `--report DIR`).
fn read_mlflow_with(python: &Path, options: &[&std::ffi::OsStr], uri: &str, cells: &[PathBuf]) {
    let out = std::process::Command::new(python)
        .arg(reference_script("read_mlflow.py"))
        .args(options)
        .args([uri, "tiny"])
        .args(cells)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    eprintln!("{text}");
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn mlflow_export_creates_one_run_per_cell_updates_a_running_one_and_duplicates_nothing() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exp = six_epochs(dir.path(), "");
    let results = dir.path().join("results");
    let seed0 = ["--variant", "fine_tuning_aug", "--seed", "0", "--no-report"];
    let running = sweep_killed_after_two_epochs(&exp, &results, &seed0, "fine_tuning_aug", 0);

    // No server: one clear error, and the results are as they were.
    let before = tree(&results);
    let down = format!("http://127.0.0.1:{}", free_port());
    let out = export(&down, &results).failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("cannot reach the MLflow tracking server") && stderr.contains(&down),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        tree(&results) == before,
        "a failed export changed the results"
    );

    let server_dir = dir.path().join("mlflow");
    std::fs::create_dir_all(&server_dir).unwrap();
    let server = MlflowServer::start(&python, &server_dir);

    // The killed cell is exported as it stands: RUNNING, its finished epochs.
    let out = export(&server.uri, &results).success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("1 runs created, 0 updated"), "{stdout}");
    read_mlflow(&python, &server.uri, std::slice::from_ref(&running));

    // It finishes, seed 1 trains; the next export updates the one and creates the other.
    runner()
        .args([
            "sweep",
            "--quiet",
            "--no-report",
            "--variant",
            "fine_tuning_aug",
        ])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let cells: Vec<PathBuf> = [0, 1]
        .map(|s| cell_dir(&results, "tiny", "fine_tuning_aug", s))
        .to_vec();
    let out = export(&server.uri, &results).success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("1 runs created, 1 updated"), "{stdout}");
    read_mlflow(&python, &server.uri, &cells);

    // Again: nothing new anywhere.
    let out = export(&server.uri, &results).success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("0 runs created, 2 updated"), "{stdout}");
    assert_eq!(
        stdout.matches(", 0 metric values logged").count(),
        2,
        "{stdout}"
    );
    read_mlflow(&python, &server.uri, &cells);
}

/// The tiny experiment (with `extra`) at 6 epochs a cell.
fn six_epochs(dir: &Path, extra: &str) -> PathBuf {
    let exp = tiny_experiment(dir, extra);
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("epochs = 2", "epochs = 6");
    std::fs::write(&exp, text).unwrap();
    exp
}

/// The four cells of the tiny experiment.
fn all_cells(results: &Path) -> Vec<PathBuf> {
    ["feature_extraction", "fine_tuning_aug"]
        .iter()
        .flat_map(|v| [0, 1].map(|s| cell_dir(results, "tiny", v, s)))
        .collect()
}

fn output(out: &assert_cmd::assert::Assert) -> (String, String) {
    let o = out.get_output();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A sweep of `exp` over every cell, with its report; `MLFLOW_TRACKING_URI` as `env` says.
fn sweep_all(exp: &Path, results: &Path, env: Option<&str>) -> assert_cmd::assert::Assert {
    let mut command = runner();
    command.arg("sweep").arg(exp).arg("--results").arg(results);
    match env {
        Some(uri) => command.env("MLFLOW_TRACKING_URI", uri),
        None => command.env_remove("MLFLOW_TRACKING_URI"),
    };
    command.assert().success()
}

#[test]
fn a_sweep_with_an_mlflow_table_logs_each_cell_as_it_trains_and_a_rerun_duplicates_nothing() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("mlflow");
    std::fs::create_dir_all(&server_dir).unwrap();
    let server = MlflowServer::start(&python, &server_dir);
    let exp = six_epochs(
        dir.path(),
        &format!("[mlflow]\ntracking_uri = \"{}\"\n", server.uri),
    );
    let results = dir.path().join("results");

    // While a cell trains, its run is RUNNING and has the epochs it finished.
    let seed0 = ["--variant", "fine_tuning_aug", "--seed", "0", "--no-report"];
    let running = sweep_killed_after_two_epochs(&exp, &results, &seed0, "fine_tuning_aug", 0);
    read_mlflow_with(
        &python,
        &["--live".as_ref()],
        &server.uri,
        std::slice::from_ref(&running),
    );

    // The sweep resumes that cell and trains the others: every run FINISHED with each epoch
    // once, metrics.csv, run.json and the report as artifacts.
    let (stdout, stderr) = output(&sweep_all(&exp, &results, None));
    assert!(
        stdout.contains("mlflow: logging to experiment \"tiny\""),
        "{stdout}"
    );
    assert!(!stderr.contains("MLflow"), "{stderr}");
    let cells = all_cells(&results);
    let report = code_state_dir(&results).join("tiny/report");
    let with_report = ["--report".as_ref(), report.as_os_str()];
    read_mlflow_with(&python, &with_report, &server.uri, &cells);

    // Again: every cell is done; nothing is created or logged twice.
    let (stdout, _) = output(&sweep_all(&exp, &results, None));
    assert!(!stdout.contains("(ended earlier)"), "{stdout}");
    read_mlflow_with(&python, &with_report, &server.uri, &cells);
}

#[test]
fn a_sweep_whose_mlflow_server_is_down_trains_warns_once_and_the_next_sweep_uploads_its_cells() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let down = format!("http://127.0.0.1:{}", free_port());
    let exp = tiny_experiment(
        dir.path(),
        &format!("[mlflow]\ntracking_uri = \"{down}\"\n"),
    );
    let results = dir.path().join("results");
    let started = Instant::now();
    let (_, stderr) = output(&sweep_all(&exp, &results, None));
    assert_eq!(
        stderr.matches("not logging to MLflow").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("runner export mlflow tiny --tracking-uri {down}")),
        "{stderr}"
    );
    assert!(!stderr.contains("logging stopped"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(300));
    let cells = all_cells(&results);
    for cell in &cells {
        assert_eq!(read_json(&cell.join("run.json"))["status"], "done");
    }

    // The server is up, and MLFLOW_TRACKING_URI (which overrides the file's) names it: the next
    // sweep trains nothing and uploads the cells it finds done.
    let server_dir = dir.path().join("mlflow");
    std::fs::create_dir_all(&server_dir).unwrap();
    let server = MlflowServer::start(&python, &server_dir);
    let (stdout, stderr) = output(&sweep_all(&exp, &results, Some(&server.uri)));
    assert_eq!(stdout.matches("(ended earlier)").count(), 4, "{stdout}");
    assert!(!stderr.contains("MLflow"), "{stderr}");
    let report = code_state_dir(&results).join("tiny/report");
    read_mlflow_with(
        &python,
        &["--report".as_ref(), report.as_os_str()],
        &server.uri,
        &cells,
    );
}
