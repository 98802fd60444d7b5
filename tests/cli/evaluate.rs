//! `runner evaluate` and `runner predict` on a trained cell: the model is rebuilt as the cell
//! trained it, so evaluating on the cell's own validation folder gives its last epoch's
//! validation accuracy; predict agrees with evaluate image by image.

use super::*;

/// The last epoch's value of `column` in the cell's metrics.csv.
fn last(cell: &Path, column: &str) -> f64 {
    let text = std::fs::read_to_string(cell.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == column).expect(column);
    let last: Vec<&str> = lines.last().unwrap().split(',').collect();
    last[col].parse().unwrap()
}

fn stdout(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

#[test]
fn a_cell_evaluated_on_its_validation_folder_gives_its_validation_accuracy_and_predict_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    runner()
        .arg("sweep")
        .arg(&exp)
        .args([
            "--variant",
            "fine_tuning_aug",
            "--seed",
            "1",
            "--epochs",
            "2",
        ])
        .args(["--quiet", "--no-report", "--results"])
        .arg(&results)
        .assert()
        .success();
    let cell = cell_dir(&results, "tiny", "fine_tuning_aug", 1);
    let record = read_json(&cell.join("run.json"));
    let validation = PathBuf::from(record["validation"]["dir"].as_str().unwrap());

    let out = runner()
        .arg("evaluate")
        .arg(&cell)
        .arg(&validation)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let name = validation
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let json = read_json(&cell.join("evaluation").join(format!("{name}.json")));
    let metrics = &json["metrics"];
    assert_eq!(metrics["images"], 12);
    assert_eq!(
        metrics["accuracy"].as_f64().unwrap(),
        last(&cell, "val_acc"),
        "{}",
        stdout(&out)
    );
    // Training averages float32 batch losses; evaluate sums per image in float64.
    let (loss, val_loss) = (metrics["loss"].as_f64().unwrap(), last(&cell, "val_loss"));
    assert!(
        (loss - val_loss).abs() <= 1e-5 * val_loss.max(1.0),
        "{loss} vs {val_loss}"
    );
    assert_eq!(json["model"], "final");
    assert_eq!(json["run_key"], record["run_key"]);
    let confusion: Vec<Vec<u64>> = serde_json::from_value(metrics["confusion"].clone()).unwrap();
    assert_eq!(confusion.iter().flatten().sum::<u64>(), 12);
    let csv = std::fs::read_to_string(cell.join("evaluation").join(format!("{name}.csv"))).unwrap();
    assert!(
        csv.starts_with("class,precision,recall,f1,support,predicted_"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(stdout(&out).contains("ROC AUC"), "{}", stdout(&out));

    // predict: one row per image, and the predicted classes are evaluate's confusion columns.
    let predictions = dir.path().join("predictions.csv");
    runner()
        .arg("predict")
        .arg(&cell)
        .arg(&validation)
        .arg("-o")
        .arg(&predictions)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let text = std::fs::read_to_string(&predictions).unwrap();
    let classes: Vec<String> = serde_json::from_value(record["train"]["classes"].clone()).unwrap();
    let header = format!("path,class,probability,p_{},p_{}", classes[0], classes[1]);
    assert_eq!(text.lines().next().unwrap(), header);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 12);
    let mut predicted = vec![0u64; 2];
    let mut correct = 0;
    let mut log_loss = 0.0;
    for row in &rows {
        let class = classes.iter().position(|c| c == row[1]).unwrap();
        predicted[class] += 1;
        let truth = Path::new(row[0]).parent().unwrap().file_name().unwrap();
        correct += u64::from(truth.to_string_lossy() == classes[class]);
        let p: Vec<f64> = row[3..].iter().map(|v| v.parse().unwrap()).collect();
        let true_class = classes
            .iter()
            .position(|c| **c == *truth.to_string_lossy())
            .unwrap();
        log_loss -= p[true_class].ln() / rows.len() as f64;
        assert!((p[0] + p[1] - 1.0).abs() < 1e-12);
        assert_eq!(row[2].parse::<f64>().unwrap(), p[class]);
    }
    let columns: Vec<u64> = (0..2).map(|c| confusion[0][c] + confusion[1][c]).collect();
    assert_eq!(predicted, columns);
    assert_eq!(correct, confusion[0][0] + confusion[1][1]);
    // The same images, decoded and preprocessed alike: the same cross-entropy as evaluate's.
    assert!((log_loss - loss).abs() < 1e-9, "{log_loss} vs {loss}");

    // The report shows the evaluation.
    runner()
        .arg("report")
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let report =
        std::fs::read_to_string(code_state_dir(&results).join("tiny/report/report.md")).unwrap();
    assert!(report.contains("## Test sets"), "{report}");
    assert!(report.contains(&name), "{report}");
}

#[test]
fn a_test_set_with_other_classes_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    runner()
        .arg("sweep")
        .arg(&exp)
        .args([
            "--variant",
            "feature_extraction",
            "--seed",
            "0",
            "--epochs",
            "1",
        ])
        .args(["--quiet", "--no-report", "--results"])
        .arg(&results)
        .assert()
        .success();
    let cell = cell_dir(&results, "tiny", "feature_extraction", 0);
    let record = read_json(&cell.join("run.json"));
    let validation = PathBuf::from(record["validation"]["dir"].as_str().unwrap());
    let other = dir.path().join("other");
    for (i, class) in ["apples", "pears"].iter().enumerate() {
        std::fs::create_dir_all(other.join(class)).unwrap();
        let any =
            std::fs::read_dir(validation.join(record["train"]["classes"][i].as_str().unwrap()))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
        std::fs::copy(&any, other.join(class).join(any.file_name().unwrap())).unwrap();
    }
    let out = runner()
        .arg("evaluate")
        .arg(&cell)
        .arg(&other)
        .arg("--results")
        .arg(&results)
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("[apples, pears]"), "{err}");
    assert!(!cell.join("evaluation").exists());
}

/// A copy of the folder `from` (files and sub-folders) at `to`.
pub(super) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn an_evaluation_table_evaluates_every_cell_when_the_sweep_ends_once_per_test_set() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    let sweep = |extra: &[&str]| {
        let mut command = runner();
        command
            .arg("sweep")
            .arg(&exp)
            .args(["--variant", "fine_tuning_aug", "--seed", "1"])
            .args(extra)
            .arg("--results")
            .arg(&results);
        command.assert()
    };
    sweep(&["--quiet", "--no-report"]).success();
    let cell = cell_dir(&results, "tiny", "fine_tuning_aug", 1);
    let record = read_json(&cell.join("run.json"));
    let validation = PathBuf::from(record["validation"]["dir"].as_str().unwrap());
    copy_tree(&validation, &dir.path().join("test"));

    // A test folder that is not there: `check` and `sweep` name the key and the path.
    tiny_experiment(dir.path(), "[evaluation]\ntest_dir = \"missing\"\n");
    for command in ["check", "sweep"] {
        let mut run = runner();
        run.arg(command).arg(&exp);
        if command == "sweep" {
            run.arg("--results").arg(&results);
        }
        let out = run.assert().code(1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains("evaluation.test_dir")
                && stderr.contains(&dir.path().join("missing").display().to_string())
                && stderr.contains("no such directory"),
            "{command}: {stderr}"
        );
    }

    // The table changes no run key: the cell is done already, and is evaluated.
    tiny_experiment(dir.path(), "[evaluation]\ntest_dir = \"test\"\n");
    let out = sweep(&[]).success();
    let text = stdout(&out);
    assert!(text.contains("done already"), "{text}");
    assert!(
        text.contains("1 cell(s) evaluated, 0 had it already"),
        "{text}"
    );
    assert_eq!(
        read_json(&cell.join("run.json"))["started_at"],
        record["started_at"]
    );
    let json_path = cell.join("evaluation/test.json");
    let json = read_json(&json_path);
    assert_eq!(json["model"], "final");
    assert_eq!(
        json["metrics"]["accuracy"].as_f64().unwrap(),
        last(&cell, "val_acc")
    );
    let report =
        std::fs::read_to_string(code_state_dir(&results).join("tiny/report/report.md")).unwrap();
    assert!(report.contains("## Test sets"), "{report}");

    // Again: stored already, not evaluated twice.
    let before = std::fs::read(&json_path).unwrap();
    let text = stdout(&sweep(&["--no-report"]).success());
    assert!(
        text.contains("0 cell(s) evaluated, 1 had it already"),
        "{text}"
    );
    assert_eq!(std::fs::read(&json_path).unwrap(), before);

    // The best epoch's model is another evaluation.
    tiny_experiment(
        dir.path(),
        "[evaluation]\ntest_dir = \"test\"\nmodel = \"best\"\n",
    );
    let text = stdout(&sweep(&["--no-report"]).success());
    assert!(text.contains("1 cell(s) evaluated"), "{text}");
    assert_eq!(
        read_json(&cell.join("evaluation/test-best.json"))["model"],
        "best"
    );
}
