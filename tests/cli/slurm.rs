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
