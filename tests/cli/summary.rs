use super::*;

fn lecture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/lecture.toml")
}

/// The notebook's fine-tuning model at 150x150: Keras's `model.summary()` numbers
/// (16,812,353 total, 9,177,089 trainable, 7,635,264 non-trainable).
#[test]
fn summary_of_the_notebook_fine_tuning_model() {
    let out = runner()
        .args(["summary", "--variant", "fine_tuning"])
        .arg(lecture())
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    insta::assert_snapshot!(stdout);
}

#[test]
fn summary_without_a_variant_shows_every_variant() {
    let out = runner().arg("summary").arg(lecture()).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let titles: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Model: "))
        .collect();
    assert_eq!(
        titles,
        [
            "Model: lecture / feature_extraction",
            "Model: lecture / feature_extraction_aug",
            "Model: lecture / fine_tuning",
            "Model: lecture / fine_tuning_aug"
        ]
    );
    let trainable: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Trainable params: "))
        .collect();
    assert_eq!(
        trainable,
        [
            "Trainable params: 2,097,665 (8.00 MB)",
            "Trainable params: 2,097,665 (8.00 MB)",
            "Trainable params: 9,177,089 (35.01 MB)",
            "Trainable params: 9,177,089 (35.01 MB)"
        ]
    );
}

#[test]
fn an_unknown_variant_lists_the_variants_and_exits_1() {
    let out = runner()
        .args(["summary", "--variant", "fine_tunning"])
        .arg(lecture())
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.ends_with(
            "lecture.toml: no variant named \"fine_tunning\" (variants: feature_extraction, \
             feature_extraction_aug, fine_tuning, fine_tuning_aug)\n"
        ),
        "{stderr}"
    );
}
