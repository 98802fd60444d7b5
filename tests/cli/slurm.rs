//! `runner sweep --slurm` against a real single-node Slurm cluster, started by
//! scripts/slurm-dev.sh (installed from Debian's packages when root). Skips, saying why, only
//! where Slurm cannot be had.

use std::process::Command as Process;

use super::resume::metrics;
use super::*;

/// The cluster's SLURM_CONF, or `None` (with the reason printed) where Slurm cannot be started.
fn cluster() -> Option<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-dev.sh");
    let out = Process::new(&script).arg("start").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(2) => {
            eprintln!("skipped: Slurm cannot be had here: {stderr}");
            return None;
        }
        _ => panic!("scripts/slurm-dev.sh start failed: {stderr}"),
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let conf = stdout
        .lines()
        .find_map(|l| l.strip_prefix("export SLURM_CONF="))
        .expect("slurm-dev.sh prints SLURM_CONF")
        .to_string();
    Some(conf)
}

fn sweep(dir: &Path, conf: &str, exp: &Path, results: &str, args: &[&str]) -> (i32, String) {
    let out = runner()
        .current_dir(dir)
        .env("SLURM_CONF", conf)
        .arg("sweep")
        .arg(exp)
        .args(["--results", results])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_slurm_sweep_equals_a_local_one_and_resubmitting_submits_nothing() {
    let Some(conf) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("name = \"tiny\"", "name = \"tinyslurm\"");
    std::fs::write(&exp, text).unwrap();
    let (code, local) = sweep(dir.path(), &conf, &exp, "local", &["--no-report"]);
    assert_eq!(code, 0, "{local}");
    let (code, out) = sweep(dir.path(), &conf, &exp, "cluster", &["--slurm", "--wait"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cells done: 4/4"), "{out}");
    for variant in ["feature_extraction", "fine_tuning_aug"] {
        for seed in [0, 1] {
            let a = cell_dir(&dir.path().join("local"), "tinyslurm", variant, seed);
            let b = cell_dir(&dir.path().join("cluster"), "tinyslurm", variant, seed);
            assert_eq!(metrics(&a), metrics(&b), "{variant} seed {seed}");
            assert_eq!(
                std::fs::read(a.join("trained.safetensors")).unwrap(),
                std::fs::read(b.join("trained.safetensors")).unwrap(),
                "{variant} seed {seed}"
            );
            let rec = read_json(&b.join("run.json"));
            assert_eq!(rec["status"], "done");
            assert!(rec["slurm"]["job_id"].is_string(), "{rec}");
            assert!(rec["slurm"]["array_task_id"].is_u64(), "{rec}");
            assert_eq!(rec["slurm"]["restarts"], 0);
            assert_eq!(
                rec["run_key"],
                read_json(&a.join("run.json"))["run_key"],
                "where a cell runs is not part of its run key"
            );
        }
    }
    let state = code_state_dir(&dir.path().join("cluster"));
    assert!(state.join("tinyslurm/report/report.md").is_file(), "{out}");
    let (code, again) = sweep(dir.path(), &conf, &exp, "cluster", &["--slurm"]);
    assert_eq!(code, 0, "{again}");
    assert!(
        again.contains("nothing to submit: 4 cell(s) done"),
        "{again}"
    );
}

#[test]
fn sbatch_refusing_the_job_is_one_error_in_its_words_and_nothing_is_submitted() {
    let Some(conf) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let (code, out) = sweep(
        dir.path(),
        &conf,
        &exp,
        "results",
        &["--slurm", "--partition", "nosuchpartition", "--seed", "0"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("sbatch refused the job"), "{out}");
    assert!(out.contains("nothing was submitted"), "{out}");
    assert!(out.to_lowercase().contains("partition"), "{out}");
    let state = code_state_dir(&dir.path().join("results"));
    let subs = std::fs::read_dir(state.join(".slurm"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(subs, 0, "no submission is left behind");
}

#[test]
fn without_sbatch_on_path_the_error_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let out = runner()
        .current_dir(dir.path())
        .env("PATH", "/nonexistent")
        .arg("sweep")
        .arg(&exp)
        .arg("--slurm")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`sbatch` is not on PATH"), "{err}");
}

/// A Slurm command (scancel, scontrol) against the test cluster; panics with its words on failure.
fn slurm(conf: &str, program: &str, args: &[&str]) -> String {
    let out = Process::new(program)
        .env("SLURM_CONF", conf)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The array job id a `--slurm` run printed (`cells 123_[0-3]`).
fn array_job(out: &str) -> String {
    let at = out
        .find("cells ")
        .unwrap_or_else(|| panic!("no array job in {out}"))
        + 6;
    out[at..].split('_').next().unwrap().to_string()
}

/// `runner sweep FILE --results RESULTS --slurm --wait ARGS` in `dir`, started and left running,
/// its output piped.
fn spawn_wait(
    dir: &Path,
    conf: &str,
    file: &str,
    results: &str,
    args: &[&str],
) -> std::process::Child {
    Process::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(dir)
        .env("SLURM_CONF", conf)
        .args(["sweep", file, "--results", results, "--slurm", "--wait"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait (at most `limit` seconds) until `ready` holds, polling.
fn wait_until(limit: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(limit),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The submission under `results` once its jobs are all submitted (waits for it).
fn submitted(results: &Path) -> serde_json::Value {
    let read = || -> Option<serde_json::Value> {
        let state = find_code_state_dir(results)?;
        let sub = std::fs::read_dir(state.join(".slurm"))
            .ok()?
            .flatten()
            .next()?;
        let rec = serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(sub.path().join("submission.json")).ok()?,
        )
        .ok()?;
        rec["array_job"].is_string().then_some(rec)
    };
    wait_until(120, "the submission", || read().is_some());
    read().unwrap()
}

fn is_done(cell: &Path) -> bool {
    std::fs::read(cell.join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|r| r["status"] == "done")
}

#[test]
fn a_cancelled_task_is_the_only_cell_submitted_again() {
    let Some(conf) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("name = \"tiny\"", "name = \"slurmcancel\"")
        // The first array's other three cells must outlast the resubmitted one (the second
        // sweep exits 6 while they are queued or training): hundreds of epochs, seconds each.
        .replace("epochs = 2", "epochs = 400")
        // The cancelled cell must still be training when `scancel` reaches it: a few
        // milliseconds per epoch on cached features, so thousands of epochs are seconds.
        .replace(
            "training.freeze = [\"block*\"]",
            "training.freeze = [\"block*\"]\ntraining.epochs = 4000",
        );
    std::fs::write(&exp, text).unwrap();
    // One task at a time: the first cell is cancelled while it runs, the others wait.
    let (code, out) = sweep(
        dir.path(),
        &conf,
        &exp,
        "results",
        &["--slurm", "--max-parallel", "1", "--no-report"],
    );
    assert_eq!(code, 0, "{out}");
    let array = array_job(&out);
    let first = format!("{array}_0");
    let results = dir.path().join("results");
    // Training, not only started: its first epochs are written and it is not done.
    let training = |results: &Path| {
        find_code_state_dir(results).is_some_and(|_| {
            let cell = cell_dir(results, "slurmcancel", "feature_extraction", 0);
            let rows = std::fs::read_to_string(cell.with_file_name("seed-0.partial/metrics.csv"))
                .map(|t| t.lines().count())
                .unwrap_or(0);
            rows > 2 && !is_done(&cell)
        })
    };
    wait_until(60, "the first task to train", || training(&results));
    slurm(&conf, "scancel", &[&first]);
    wait_until(60, "the first task to be cancelled", || {
        slurm(
            &conf,
            "squeue",
            &["-h", "--states=all", "-j", &first, "-o", "%T"],
        )
        .trim()
            == "CANCELLED"
    });
    let cancelled = cell_dir(&results, "slurmcancel", "feature_extraction", 0);
    assert!(
        !is_done(&cancelled),
        "the first cell finished before it was cancelled"
    );
    let (code, again) = sweep(
        dir.path(),
        &conf,
        &exp,
        "results",
        &["--slurm", "--wait", "--no-report"],
    );
    // The other three cells are still queued or training in the first array: not done yet.
    assert_eq!(code, 6, "{again}");
    assert!(
        again.contains("3 cell(s) still pending or running"),
        "{again}"
    );
    assert!(again.contains("submitted 1 cell(s)"), "{again}");
    assert!(again.contains("cells done: 1/1"), "{again}");
    let cells: Vec<PathBuf> = ["feature_extraction", "fine_tuning_aug"]
        .iter()
        .flat_map(|v| [0, 1].map(|s| cell_dir(&results, "slurmcancel", v, s)))
        .collect();
    wait_until(180, "every cell to be done", || {
        cells.iter().all(|c| is_done(c))
    });
    // The cancelled cell (array index 0: the first of the matrix) ran in the second array.
    let rec = read_json(&cells[0].join("run.json"));
    assert_ne!(rec["slurm"]["array_job_id"], array.as_str(), "{rec}");
    for cell in &cells[1..] {
        let rec = read_json(&cell.join("run.json"));
        assert_eq!(rec["slurm"]["array_job_id"], array.as_str(), "{rec}");
    }
    let (code, last) = sweep(dir.path(), &conf, &exp, "results", &["--slurm"]);
    assert_eq!(code, 0, "{last}");
    assert!(last.contains("nothing to submit: 4 cell(s) done"), "{last}");
}

#[test]
fn a_requeued_task_resumes_from_its_checkpoint_with_the_same_metrics() {
    let Some(conf) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("name = \"tiny\"", "name = \"slurmrequeue\"")
        // Enough epochs that the task is still training when the test requeues it (tiny epochs
        // take milliseconds).
        .replace("epochs = 2", "epochs = 300");
    std::fs::write(&exp, text).unwrap();
    let only = ["--variant", "fine_tuning_aug", "--seed", "1", "--no-report"];
    let (code, local) = sweep(dir.path(), &conf, &exp, "local", &only);
    assert_eq!(code, 0, "{local}");
    // Followed with --wait through the requeue.
    let child = spawn_wait(dir.path(), &conf, "tiny.toml", "cluster", &only);
    let task = format!(
        "{}_0",
        submitted(&dir.path().join("cluster"))["array_job"]
            .as_str()
            .unwrap()
    );
    let results = dir.path().join("cluster");
    let partial = || {
        find_code_state_dir(&results)
            .map(|d| d.join("slurmrequeue/fine_tuning_aug/seed-1.partial"))
            .filter(|p| p.join("checkpoint.safetensors").exists())
    };
    wait_until(120, "a checkpoint of the running task", || {
        partial().is_some_and(|p| {
            std::fs::read_to_string(p.join("metrics.csv")).is_ok_and(|t| t.lines().count() > 2)
        })
    });
    // A running cell shows its epoch in `runner status`.
    let status = runner()
        .current_dir(dir.path())
        .env("SLURM_CONF", &conf)
        .args(["status", "slurmrequeue", "--results", "cluster"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains(&format!("running (job {task} on node ")),
        "{status}"
    );
    assert!(status.contains("/300)"), "{status}");
    slurm(&conf, "scontrol", &["requeue", &task]);
    // A requeued job waits 120 s to start again unless told otherwise.
    wait_until(60, "the requeued task to be pending", || {
        slurm(&conf, "squeue", &["-h", "-j", &task, "-o", "%T"]).trim() == "PENDING"
    });
    // Not `now`: slurmd refuses to launch a job again within the second its first run was killed
    // in ("Job credential revoked": credential times have one-second resolution), and the task
    // would end FAILED instead of resuming.
    slurm(
        &conf,
        "scontrol",
        &["update", &format!("jobid={task}"), "StartTime=now+2"],
    );
    let final_dir = cell_dir(&results, "slurmrequeue", "fine_tuning_aug", 1);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(is_done(&final_dir), "{text}");
    // The table shows the cell's training seconds (both runs), as a local sweep's does.
    let row = text
        .lines()
        .find(|l| l.starts_with("fine_tuning_aug ") && l.contains(" done "))
        .unwrap_or_else(|| panic!("{text}"));
    let seconds: f64 = row.split_whitespace().last().unwrap().parse().unwrap();
    assert!(seconds > 0.0, "{text}");
    let rec = read_json(&final_dir.join("run.json"));
    assert_eq!(rec["slurm"]["restarts"], 1, "{rec}");
    let reference = cell_dir(
        &dir.path().join("local"),
        "slurmrequeue",
        "fine_tuning_aug",
        1,
    );
    assert_eq!(metrics(&final_dir), metrics(&reference));
    assert_eq!(
        std::fs::read(final_dir.join("trained.safetensors")).unwrap(),
        std::fs::read(reference.join("trained.safetensors")).unwrap()
    );
    let state = code_state_dir(&results);
    let log = std::fs::read_dir(state.join(".slurm"))
        .unwrap()
        .flatten()
        .map(|d| d.path().join("logs/cell-0.out"))
        .next()
        .unwrap();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("resuming after epoch"), "{log}");
}

#[test]
fn a_cell_failing_on_bad_data_ends_failed_with_its_log_while_the_others_finish() {
    let Some(conf) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    super::errors::image_folders(&dir.path().join("good"), 3);
    super::errors::image_folders(&dir.path().join("bad"), 3);
    let exp = dir.path().join("slurmbad.toml");
    std::fs::write(
        &exp,
        "name = \"slurmbad\"\nseeds = [0]\n[dataset]\ntrain_dir = \"good/train\"\n\
         validation_dir = \"good/validation\"\nimage_size = [32, 32]\nbatch_size = 4\n\
         on_bad_image = \"error\"\n[model]\nchannels = [2, 2, 2, 2, 2]\nhead = { units = [4] }\n\
         [training]\nepochs = 1\n[slurm]\nextra = [\"--hold\"]\n\
         [[variants]]\nname = \"good\"\n\
         [[variants]]\nname = \"broken\"\ndataset.train_dir = \"bad/train\"\n",
    )
    .unwrap();
    // The jobs are held: the data breaks after the submit host checked it, before a task reads it.
    let child = spawn_wait(dir.path(), &conf, "slurmbad.toml", "results", &[]);
    let results = dir.path().join("results");
    let sub = submitted(&results);
    std::fs::write(
        dir.path().join("bad/train/dogs/1.png"),
        b"this is not a png",
    )
    .unwrap();
    for job in ["array_job", "report_job"] {
        slurm(&conf, "scontrol", &["release", sub[job].as_str().unwrap()]);
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        is_done(&cell_dir(&results, "slurmbad", "good", 0)),
        "{text}"
    );
    assert!(
        text.contains("broken / seed 0: failed: the task ended FAILED before training (log: "),
        "{text}"
    );
    let index = sub["cells"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c["variant"] == "broken")
        .unwrap();
    let status = runner()
        .current_dir(dir.path())
        .env("SLURM_CONF", &conf)
        .args(["status", "slurmbad", "--results", "results"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    let line = status
        .lines()
        .find(|l| l.contains("slurmbad / broken / seed 0"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(line.contains("failed (job "), "{status}");
    let log = line.rsplit_once("log ").unwrap().1.trim_end_matches(')');
    assert!(log.ends_with(&format!("cell-{index}.out")), "{status}");
    // Relative to the directory `runner status` ran in.
    let log = std::fs::read_to_string(dir.path().join(log))
        .unwrap_or_else(|e| panic!("{log}: {e}\n{status}"));
    assert!(
        log.contains("1.png") && log.contains("cannot decode image"),
        "{log}"
    );
}

#[test]
fn a_wait_whose_tasks_are_cancelled_before_training_exits_6_and_says_so() {
    let Some(conf) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    super::errors::image_folders(&dir.path().join("data"), 3);
    let exp = dir.path().join("slurmheld.toml");
    std::fs::write(
        &exp,
        "name = \"slurmheld\"\nseeds = [0]\n[dataset]\ntrain_dir = \"data/train\"\n\
         validation_dir = \"data/validation\"\nimage_size = [32, 32]\nbatch_size = 4\n\
         [model]\nchannels = [2, 2, 2, 2, 2]\nhead = { units = [4] }\n\
         [training]\nepochs = 1\n[slurm]\nextra = [\"--hold\"]\n\
         [[variants]]\nname = \"only\"\n",
    )
    .unwrap();
    let child = spawn_wait(
        dir.path(),
        &conf,
        "slurmheld.toml",
        "results",
        &["--no-report"],
    );
    let sub = submitted(&dir.path().join("results"));
    // Cancelled while held: the task never starts, so the cell is not done but nothing failed.
    slurm(&conf, "scancel", &[sub["array_job"].as_str().unwrap()]);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(6), "{text}");
    assert!(
        text.contains("only / seed 0: its task was cancelled before training"),
        "{text}"
    );
}

/// The report job does what the end of a local sweep does: `[evaluation]` on every done cell,
/// then the report, which shows it.
#[test]
fn the_report_job_evaluates_the_cells_on_the_test_set_before_the_report() {
    let Some(conf) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let only = ["--variant", "fine_tuning_aug", "--seed", "1"];
    // A local run makes the data set; its validation images are the test set here.
    let (code, local) = sweep(
        dir.path(),
        &conf,
        &exp,
        "local",
        &[&only[..], &["--no-report"]].concat(),
    );
    assert_eq!(code, 0, "{local}");
    let local_cell = cell_dir(&dir.path().join("local"), "tiny", "fine_tuning_aug", 1);
    let record = read_json(&local_cell.join("run.json"));
    let validation = dir
        .path()
        .join(record["validation"]["dir"].as_str().unwrap());
    super::evaluate::copy_tree(&validation, &dir.path().join("test"));
    let text = std::fs::read_to_string(&exp).unwrap() + "\n[evaluation]\ntest_dir = \"test\"\n";
    std::fs::write(&exp, text).unwrap();

    let (code, out) = sweep(
        dir.path(),
        &conf,
        &exp,
        "cluster",
        &[&only[..], &["--slurm", "--wait"]].concat(),
    );
    assert_eq!(code, 0, "{out}");
    let cell = cell_dir(&dir.path().join("cluster"), "tiny", "fine_tuning_aug", 1);
    let json = read_json(&cell.join("evaluation/test.json"));
    assert_eq!(json["model"], "final");
    assert_eq!(
        json["metrics"]["accuracy"].as_f64().unwrap(),
        read_json(&cell.join("run.json"))["last"]["val_acc"]
            .as_f64()
            .unwrap(),
        "the test set is the validation set"
    );
    let state = code_state_dir(&dir.path().join("cluster"));
    let report = std::fs::read_to_string(state.join("tiny/report/report.md")).unwrap();
    assert!(report.contains("## Test sets"), "{report}");
}
