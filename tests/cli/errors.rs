use super::*;

#[test]
fn a_bad_experiment_file_names_the_file_line_and_key_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("batch_size = 8", "batch_size = \"8\"");
    std::fs::write(&exp, text).unwrap();
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .arg("--results")
        .arg(dir.path().join("r"))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let line = std::fs::read_to_string(&exp)
        .unwrap()
        .lines()
        .position(|l| l.contains("batch_size"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("tiny.toml:{line}: dataset.batch_size: ")),
        "{stderr}"
    );
    assert!(
        !dir.path().join("r").exists(),
        "nothing is written for an invalid experiment"
    );
}

/// A class-folder data set written by the test: `n` tiny valid PNGs per class.
pub(super) fn image_folders(root: &Path, n: usize) {
    for (class, value) in [("cats", 40u8), ("dogs", 200u8)] {
        for split in ["train", "validation"] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(36, 36, |x, y| {
                    image::Rgb([value, (x * 7) as u8, (y * 7 + i as u32) as u8])
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

pub(super) fn directory_experiment(dir: &Path, extra_dataset: &str) -> PathBuf {
    let text = format!(
        "name = \"dirs\"\nseeds = [0]\n[dataset]\ntrain_dir = \"data/train\"\nvalidation_dir = \"data/validation\"\n\
         image_size = [32, 32]\nbatch_size = 4\n{extra_dataset}\n[model]\nchannels = [2, 2, 2, 2, 2]\nhead = {{ units = [4] }}\n\
         [training]\nepochs = 1\n"
    );
    let path = dir.join("dirs.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_corrupt_image_stops_the_run_with_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    image_folders(&dir.path().join("data"), 3);
    let bad = dir.path().join("data/train/dogs/broken.jpg");
    std::fs::write(&bad, b"this is not a jpeg").unwrap();
    let exp = directory_experiment(dir.path(), "");
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .arg("--results")
        .arg(dir.path().join("r"))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("broken.jpg") && stderr.contains("on_bad_image"),
        "{stderr}"
    );
}

#[test]
fn skipped_images_are_recorded_in_the_run() {
    let dir = tempfile::tempdir().unwrap();
    image_folders(&dir.path().join("data"), 3);
    std::fs::write(
        dir.path().join("data/train/dogs/broken.jpg"),
        b"not an image",
    )
    .unwrap();
    let exp = directory_experiment(dir.path(), "on_bad_image = \"skip\"");
    let results = dir.path().join("r");
    runner()
        .args(["sweep", "--quiet"])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let record = read_json(&cell_dir(&results, "dirs", "default", 0).join("run.json"));
    assert_eq!(record["train"]["files"], 6);
    let skipped = record["train"]["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0]["path"].as_str().unwrap().ends_with("broken.jpg"));
}

#[test]
fn a_missing_data_directory_is_reported_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let exp = directory_experiment(dir.path(), "");
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .arg("--results")
        .arg(dir.path().join("r"))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("data/train"), "{stderr}");
}

#[test]
fn unknown_variant_selection_lists_the_variants() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let out = runner()
        .args(["sweep", "--variant", "fine_tuning"])
        .arg(&exp)
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains(
            "no variant named \"fine_tuning\" (variants: feature_extraction, fine_tuning_aug)"
        ),
        "{stderr}"
    );
}

/// Bad command-line usage exits 2 (clap's code, listed in `runner --help`), before any command
/// runs.
#[test]
fn bad_usage_exits_2() {
    for args in [
        &["sweep", "--no-such-flag"][..],
        &["no-such-command"],
        &["sweep", "--jobs", "many"],
        &["why", "x.toml", "--variant", "a"],
    ] {
        let out = runner().args(args).assert().code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
}
