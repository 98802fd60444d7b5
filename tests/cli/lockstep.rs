//! `feature_extraction_aug` and `fine_tuning_aug` of one seed train in lockstep: the prefix they
//! share runs once per training batch for both, and each cell ends with the bits it reaches
//! alone.

use super::{cell_dir, runner, tiny_experiment};

const AUG: &str = r#"
[[variants]]
name = "feature_extraction_aug"
training.freeze = ["block*"]
dataset.augmentation = [
  { type = "flip", mode = "horizontal" },
  { type = "rotation", factor = 0.1 },
  { type = "zoom", height_factor = 0.1 },
]
"#;

/// Every file a finished cell keeps that training decides: its metrics without the wall-clock
/// seconds, and its trained parameters (last and best epoch).
fn trained(results: &std::path::Path, variant: &str) -> (Vec<String>, Vec<u8>, Vec<u8>) {
    let dir = cell_dir(results, "tiny", variant, 0);
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    (
        metrics
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect(),
        std::fs::read(dir.join("trained.safetensors")).unwrap(),
        std::fs::read(dir.join("best-trained.safetensors")).unwrap(),
    )
}

#[test]
fn the_augmented_pair_shares_its_prefix_and_each_cell_ends_as_it_does_alone() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), AUG);
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("epochs = 2", "epochs = 3");
    std::fs::write(&exp, text).unwrap();
    let sweep = |results: &str, extra: &[&str]| {
        let out = runner()
            .args(["sweep", "--seed", "0"])
            .args(extra)
            .arg(&exp)
            .arg("--results")
            .arg(dir.path().join(results))
            .assert()
            .success();
        String::from_utf8_lossy(&out.get_output().stdout).into_owned()
    };
    // Three cells: feature_extraction (not augmented: trains alone, on cached features), then
    // the pair.
    let paired = sweep("paired", &[]);
    assert!(
        paired.contains(
            "fine_tuning_aug and feature_extraction_aug, seed 0: in lockstep, layers up to \
             block4_pool run once per training batch for both"
        ),
        "{paired}"
    );
    // 24 training images in batches of 8, 3 epochs: every batch's prefix computed once.
    assert!(
        paired.contains(
            "lockstep: 9 training batches' prefix outputs computed once for both cells, 0 for one"
        ),
        "{paired}"
    );
    // The two cells' lines interleave, so each says whose it is.
    for cell in [
        "[2/3] tiny / fine_tuning_aug",
        "[3/3] tiny / feature_extraction_aug",
    ] {
        let epoch = format!("{cell} / seed 0:  epoch 1/3 ");
        assert!(paired.lines().any(|l| l.starts_with(&epoch)), "{paired}");
    }
    let alone = sweep("alone", &["--variant", "feature_extraction_aug"]);
    assert!(!alone.contains("lockstep"), "{alone}");
    let alone = sweep("alone", &["--variant", "fine_tuning_aug"]);
    assert!(!alone.contains("lockstep"), "{alone}");
    for variant in ["feature_extraction_aug", "fine_tuning_aug"] {
        let (paired, alone) = (
            trained(&dir.path().join("paired"), variant),
            trained(&dir.path().join("alone"), variant),
        );
        assert_eq!(paired.0.len(), 4, "{variant}: a header and 3 epochs");
        assert_eq!(paired, alone, "{variant}");
    }
    // The two cells learned different things from the shared prefix (the test is not vacuous).
    assert_ne!(
        trained(&dir.path().join("paired"), "feature_extraction_aug").1,
        trained(&dir.path().join("paired"), "fine_tuning_aug").1
    );
}
