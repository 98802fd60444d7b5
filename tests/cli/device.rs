use super::*;

/// A build without the `cuda` feature keeps `--device cuda` and answers with how to build one,
/// before anything is written.
#[cfg(not(feature = "cuda"))]
#[test]
fn device_cuda_without_the_feature_says_how_to_build_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("r");
    let out = runner()
        .args(["sweep", "--device", "cuda", "--results"])
        .arg(&results)
        .arg(&exp)
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("--device = \"cuda\""), "{stderr}");
    assert!(stderr.contains("scripts/build-cuda.sh"), "{stderr}");
    assert!(
        find_code_state_dir(&results).is_none_or(|d| !d.join("tiny").exists()),
        "no cell is started"
    );

    // The experiment file's key is named when it asks for CUDA.
    let exp = tiny_experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp).unwrap();
    std::fs::write(&exp, format!("device = \"cuda:1\"\n{text}")).unwrap();
    let out = runner()
        .args(["sweep", "--results"])
        .arg(&results)
        .arg(&exp)
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("tiny.toml: device = \"cuda:1\""),
        "{stderr}"
    );

    runner()
        .args(["device", "--device", "cuda"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("scripts/build-cuda.sh"));
}

/// The device goes into run.json: its kind, what it is, and (none on the CPU) nondeterminism.
#[test]
fn run_json_records_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("r");
    let out = runner()
        .args([
            "sweep",
            "--device",
            "cpu",
            "--variant",
            "feature_extraction",
            "--seed",
            "0",
            "--epochs",
            "1",
            "--no-report",
            "--results",
        ])
        .arg(&results)
        .arg(&exp)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stdout.contains("device: cpu") || stderr.contains("device: cpu"),
        "{stdout}{stderr}"
    );
    let run = read_json(&cell_dir(&results, "tiny", "feature_extraction", 0).join("run.json"));
    assert_eq!(run["device"], "cpu");
    assert_eq!(run["device_info"]["kind"], "cpu");
    assert_eq!(run["environment"]["device"], "cpu");
    assert_eq!(run["nondeterminism"], serde_json::json!([]));
}
