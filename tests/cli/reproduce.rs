//! `status`, `why` and `reproduce` on real runs.

use super::*;

fn sweep_one(exp: &Path, results: &Path) {
    runner()
        .args([
            "sweep",
            "--quiet",
            "--variant",
            "fine_tuning_aug",
            "--seed",
            "0",
        ])
        .arg(exp)
        .arg("--results")
        .arg(results)
        .assert()
        .success();
}

#[test]
fn reproduce_passes_on_an_unchanged_cell_and_names_a_modified_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    sweep_one(&exp, &results);
    let cell = cell_dir(&results, "tiny", "fine_tuning_aug", 0);
    let out = runner()
        .arg("reproduce")
        .arg(&cell)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains("REPRODUCED: all 2 epochs match"),
        "{stdout}"
    );
    // By run key prefix too.
    let key = read_json(&cell.join("run.json"))["run_key"]
        .as_str()
        .unwrap()[..10]
        .to_string();
    runner()
        .arg("reproduce")
        .arg(&key)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();

    // Change one training image: the data set no longer matches the run.
    let data = std::fs::read_dir(results.join("datasets"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let victim = data.join("train/squares/0003.png");
    let mut img = image::open(&victim).unwrap().to_rgb8();
    img.put_pixel(0, 0, image::Rgb([1, 2, 3]));
    img.save(&victim).unwrap();
    let out = runner()
        .arg("reproduce")
        .arg(&cell)
        .arg("--results")
        .arg(&results)
        .assert()
        .code(4);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains("NOT REPRODUCIBLE") && stdout.contains("dataset changed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("squares/0003.png"),
        "the changed file is named:\n{stdout}"
    );
}

#[test]
fn status_lists_runs_and_why_names_the_changed_component() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    sweep_one(&exp, &results);
    let out = runner()
        .args(["status", "tiny", "--results"])
        .arg(&results)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains("fine_tuning_aug") && stdout.contains("done"),
        "{stdout}"
    );

    let why = |exp: &Path| -> String {
        let out = runner()
            .args(["why", "--variant", "fine_tuning_aug", "--seed", "0"])
            .arg(exp)
            .arg("--results")
            .arg(&results)
            .assert()
            .success();
        String::from_utf8_lossy(&out.get_output().stdout).to_string()
    };
    assert!(why(&exp).contains("nothing changed"));
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("batch_size = 8", "batch_size = 4");
    std::fs::write(&exp, text).unwrap();
    let out = why(&exp);
    assert!(
        out.contains("config changed") && !out.contains("dataset changed"),
        "{out}"
    );
}
