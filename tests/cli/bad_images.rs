//! Damaged images and suspicious data sets: refused before training, skipped and reported, or
//! warned about.

use super::errors::{directory_experiment, image_folders};
use super::*;

/// A valid JPEG of the data set's kind, cut to 90% of its bytes (no end-of-image marker): the
/// `image` crate decodes it, the missing part grey.
fn truncated_jpeg(path: &Path) {
    let img = image::RgbImage::from_fn(36, 36, |x, y| {
        image::Rgb([200, (x * 7) as u8, (y * 5) as u8])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::from(img)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    std::fs::write(path, &bytes[..bytes.len() * 9 / 10]).unwrap();
}

fn stdout_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).to_string()
}

fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).to_string()
}

#[test]
fn a_truncated_jpeg_stops_the_sweep_naming_it_or_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    image_folders(&dir.path().join("data"), 3);
    let cut = dir.path().join("data/train/dogs/cut.jpg");
    truncated_jpeg(&cut);

    let exp = directory_experiment(dir.path(), "");
    let results = dir.path().join("r-error");
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .code(1);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!(
            "{}: cannot decode image: Jpeg data could not be decoded: truncated: the data ends \
             before the end-of-image marker (FF D9)",
            cut.display()
        )),
        "{stderr}"
    );
    assert!(
        find_code_state_dir(&results).is_none(),
        "nothing is trained"
    );

    let exp = directory_experiment(dir.path(), "on_bad_image = \"skip\"");
    let results = dir.path().join("r-skip");
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains(&format!(
            "warning: 1 of 7 image files in {} were unreadable and skipped (dataset.on_bad_image \
             = \"skip\"), the first {}: Jpeg data could not be decoded: truncated: ",
            dir.path().join("data/train").display(),
            cut.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("under \"train.skipped\" in run.json"),
        "{stdout}"
    );
    let record = read_json(&cell_dir(&results, "dirs", "default", 0).join("run.json"));
    assert_eq!(record["train"]["files"], 6);
    let skipped = record["train"]["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["path"], cut.to_str().unwrap());
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("truncated: the data ends before the end-of-image marker"),
        "{skipped:?}"
    );
}

#[test]
fn an_empty_class_folder_stops_the_sweep_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    image_folders(&dir.path().join("data"), 2);
    let dogs = dir.path().join("data/validation/dogs");
    for entry in std::fs::read_dir(&dogs).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let exp = directory_experiment(dir.path(), "");
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .arg("--results")
        .arg(dir.path().join("r"))
        .assert()
        .code(1);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!(
            "{}: this class folder holds no image files",
            dogs.display()
        )),
        "{stderr}"
    );
}

#[test]
fn the_same_image_under_two_labels_is_a_warning_naming_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    image_folders(&dir.path().join("data"), 2);
    let train = dir.path().join("data/train");
    std::fs::copy(train.join("cats/1.png"), train.join("dogs/copied.png")).unwrap();
    let exp = directory_experiment(dir.path(), "");
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .arg("--results")
        .arg(dir.path().join("r"))
        .assert()
        .success();
    let stdout = stdout_of(&out);
    let warning = stdout
        .lines()
        .find(|l| l.contains("under different labels"))
        .unwrap_or_else(|| panic!("no warning in:\n{stdout}"));
    assert!(
        warning.starts_with(&format!(
            "warning: {}: the same file content",
            train.display()
        )) && warning
            .ends_with("is under different labels: cats/1.png (cats), dogs/copied.png (dogs)"),
        "{warning}"
    );
}
