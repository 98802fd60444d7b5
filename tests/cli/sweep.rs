use super::*;

#[test]
fn two_epoch_sweep_writes_metrics_and_records_for_every_cell() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains("feature_extraction") && stdout.contains("fine_tuning_aug"),
        "{stdout}"
    );
    // The sweep ends with the report of its code state.
    let report = code_state_dir(&results).join("tiny/report");
    for file in ["report.md", "report.html", "summary.csv"] {
        assert!(report.join(file).exists(), "{file}\n{stdout}");
    }
    for variant in ["feature_extraction", "fine_tuning_aug"] {
        for seed in [0, 1] {
            let cell = cell_dir(&results, "tiny", variant, seed);
            let metrics = std::fs::read_to_string(cell.join("metrics.csv")).unwrap();
            let lines: Vec<&str> = metrics.lines().collect();
            assert_eq!(
                lines[0],
                "epoch,train_loss,train_acc,val_loss,val_acc,seconds"
            );
            assert_eq!(
                lines.len(),
                3,
                "{variant}/{seed}: header + 2 epochs\n{metrics}"
            );
            for line in &lines[1..] {
                let v: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
                assert!(
                    v[1].is_finite() && (0.0..=1.0).contains(&v[2]) && (0.0..=1.0).contains(&v[4]),
                    "{line}"
                );
            }
            let record = read_json(&cell.join("run.json"));
            assert_eq!(record["status"], "done");
            assert_eq!(record["variant"], variant);
            assert_eq!(record["seed"], seed);
            assert_eq!(record["epochs_completed"], 2);
            assert_eq!(record["train"]["files"], 24);
            assert_eq!(record["validation"]["files"], 12);
            let layers: Vec<String> = record["trainable_layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect();
            let expected: &[&str] = if variant == "feature_extraction" {
                &["dense", "dense_1"]
            } else {
                &[
                    "block5_conv1",
                    "block5_conv2",
                    "block5_conv3",
                    "dense",
                    "dense_1",
                ]
            };
            assert_eq!(layers, expected);
            assert!(!cell.with_file_name(format!("seed-{seed}.partial")).exists());
        }
    }
}

#[test]
fn same_seed_gives_identical_metrics_and_seeds_differ() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let metrics = |results: &str, seed: u64| -> Vec<String> {
        let results = dir.path().join(results);
        runner()
            .args([
                "sweep",
                "--quiet",
                "--variant",
                "fine_tuning_aug",
                "--seed",
                &seed.to_string(),
            ])
            .arg(&exp)
            .arg("--results")
            .arg(&results)
            .assert()
            .success();
        let text = std::fs::read_to_string(
            cell_dir(&results, "tiny", "fine_tuning_aug", seed).join("metrics.csv"),
        )
        .unwrap();
        // Everything but the wall-clock seconds column.
        text.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(metrics("a", 0), metrics("b", 0));
    assert_ne!(metrics("a", 0), metrics("c", 1));
}

#[test]
fn check_describes_the_matrix_without_training() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let out = runner().arg("check").arg(&exp).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.starts_with("tiny: 2 variants x 2 seeds = 4 cells"),
        "{stdout}"
    );
    assert!(stdout.contains("trains dense, dense_1;"), "{stdout}");
    assert!(
        stdout.contains("trains block5_conv1, block5_conv2, block5_conv3, dense, dense_1;"),
        "{stdout}"
    );
    assert!(!dir.path().join("results").exists());
}

#[test]
fn a_diverging_cell_is_recorded_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // The diverging variant comes first, so that the sweep has cells to go on to.
    let exp = tiny_experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp).unwrap().replacen(
        "[[variants]]",
        "[[variants]]\nname = \"exploding\"\ntraining.learning_rate = 1e30\n\n[[variants]]",
        1,
    );
    std::fs::write(&exp, text).unwrap();
    let results = dir.path().join("results");
    let out = runner()
        .args(["sweep", "--seed", "0", "--no-report"])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .code(3);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains("[1/3] tiny / exploding / seed 0"),
        "the diverging cell runs first: {stdout}"
    );
    let record = read_json(&cell_dir(&results, "tiny", "exploding", 0).join("run.json"));
    assert_eq!(record["status"], "diverged");
    let message = record["message"].as_str().unwrap();
    assert!(
        message.contains("loss became") && message.contains("in epoch 1, batch "),
        "{message}"
    );
    // The closing table's row says where it stopped: the epoch and the batch.
    let row = stdout
        .lines()
        .find(|l| l.starts_with("exploding ") && l.contains("diverged"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("in epoch 1, batch "), "{row}");
    // The cells after it ran to completion.
    for variant in ["feature_extraction", "fine_tuning_aug"] {
        let run = read_json(&cell_dir(&results, "tiny", variant, 0).join("run.json"));
        assert_eq!(run["status"], "done", "{variant}");
        assert_eq!(run["epochs_completed"], 2, "{variant}");
    }
}

/// A loss that explodes while staying finite (a head at learning rate 1e9) finishes the cell as
/// done, with a warning on the console and in run.json; a normal cell has none.
#[test]
fn an_exploding_finite_loss_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        dir.path(),
        "[[variants]]\nname = \"huge_lr\"\ntraining.freeze = [\"block*\"]\ntraining.learning_rate = 1e9\n",
    );
    let results = dir.path().join("results");
    let out = runner()
        .args(["sweep", "--seed", "0", "--no-report"])
        .args(["--variant", "huge_lr", "--variant", "feature_extraction"])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let record = read_json(&cell_dir(&results, "tiny", "huge_lr", 0).join("run.json"));
    assert_eq!(record["status"], "done");
    let message = record["message"].as_str().unwrap_or_default();
    assert!(message.contains("the loss exploded"), "{record}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("huge_lr "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("warning: the loss exploded"), "{row}");
    let normal = read_json(&cell_dir(&results, "tiny", "feature_extraction", 0).join("run.json"));
    assert!(normal["message"].is_null(), "{normal}");
}

#[test]
fn augment_preview_writes_what_training_sees() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let preview = |name: &str, epoch: &str| -> Vec<u8> {
        let out = dir.path().join(name);
        runner()
            .args([
                "augment-preview",
                "--variant",
                "fine_tuning_aug",
                "-n",
                "4",
                "--epoch",
                epoch,
            ])
            .arg(&exp)
            .arg("-o")
            .arg(&out)
            .arg("--results")
            .arg(dir.path().join("results"))
            .assert()
            .success();
        std::fs::read(out).unwrap()
    };
    let a = preview("a.png", "1");
    let img = image::load_from_memory(&a).unwrap();
    assert!(
        img.width() >= 2 * 32 && img.height() >= 2 * 32,
        "2x2 grid of 32x32 images"
    );
    assert_eq!(a, preview("b.png", "1"), "deterministic");
    assert_ne!(a, preview("c.png", "2"), "another epoch, other draws");
}
