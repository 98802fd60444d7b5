use super::*;

/// A reduced demo: the demo's structure (a `[pretrain]` stage on the source task, a random-base
/// baseline and feature extraction from the pretrained base) at a size that trains in seconds.
/// The tests turn two knobs: the stage's epochs and its images per class. The head trains for
/// eight epochs: on 80 images, four left a seed's margin over the random base within noise.
pub(super) fn reduced_demo(dir: &Path, stage_epochs: usize, source_per_class: usize) -> PathBuf {
    let text = format!(
        r#"
name = "mini_demo"
seeds = [0, 1]

[dataset]
image_size = [32, 32]
batch_size = 16

[dataset.synthetic]
seed = 0
train_per_class = 40
validation_per_class = 40
size = 32

[model]
channels = [8, 16, 32, 64, 64]
weights = {{ stage = "pretrain" }}
conv_init = "he_uniform"
head = {{ units = [32] }}

[training]
epochs = 8
learning_rate = 1e-3

[pretrain]
seed = 0
epochs = {stage_epochs}
learning_rate = 1e-3

[pretrain.dataset]
batch_size = 32

[pretrain.dataset.synthetic]
task = "source"
seed = 1
train_per_class = {source_per_class}
validation_per_class = 10
size = 32

[[variants]]
name = "baseline_random"
model.weights = "none"
training.freeze = ["block*"]

[[variants]]
name = "feature_extraction"
training.freeze = ["block*"]
"#
    );
    let path = dir.join("mini_demo.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn sweep(exp: &Path, results: &Path) -> String {
    let out = runner()
        .arg("sweep")
        .arg(exp)
        .arg("--results")
        .arg(results)
        .arg("--no-report")
        .assert()
        .success();
    String::from_utf8_lossy(&out.get_output().stdout).to_string()
        + &String::from_utf8_lossy(&out.get_output().stderr)
}

fn final_val_acc(results: &Path, variant: &str, seed: u64) -> f64 {
    let rec = read_json(&cell_dir(results, "mini_demo", variant, seed).join("run.json"));
    rec["last"]["val_acc"].as_f64().unwrap()
}

pub(super) fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The stage directories under the code state: `.stages/pretrain-<key12>`.
pub(super) fn stage_dirs(results: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(code_state_dir(results).join(".stages"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The point of a pretraining stage: a conv base pretrained on the nine source classes (12 epochs,
/// as the demo's stage, on fewer images) gives features a head can use on the new two-class task;
/// a random frozen base of the same shape does not.
#[test]
fn a_pretrained_base_beats_a_random_one_for_every_seed() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let exp = reduced_demo(dir.path(), 12, 150);
    let output = sweep(&exp, &results);
    assert!(output.contains("pretrain stage: training"), "{output}");
    for seed in [0, 1] {
        let random = final_val_acc(&results, "baseline_random", seed);
        let pretrained = final_val_acc(&results, "feature_extraction", seed);
        assert!(
            pretrained > random + 0.05,
            "seed {seed}: feature extraction from the pretrained base {pretrained:.3}, random \
             base {random:.3}\n{output}"
        );
    }
}

#[test]
fn the_stage_trains_once_is_reused_and_retrains_when_its_config_changes() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let exp = reduced_demo(dir.path(), 1, 40);
    let first = sweep(&exp, &results);
    assert_eq!(
        first.matches("pretrain stage: training").count(),
        1,
        "{first}"
    );
    let stages = stage_dirs(&results);
    assert_eq!(stages.len(), 1, "{stages:?}");
    let checkpoint = stages[0].join("model.safetensors");
    let (hash, mtime) = (
        sha256(&checkpoint),
        std::fs::metadata(&checkpoint).unwrap().modified().unwrap(),
    );
    let stage = read_json(&stages[0].join("stage.json"));
    assert_eq!(stage["checkpoint_sha256"], hash.as_str());
    assert_eq!(stage["classes"].as_array().unwrap().len(), 9);
    let key = stage["stage_key"].as_str().unwrap().to_string();
    assert!(stages[0].ends_with(format!("pretrain-{}", &key[..12])));

    // Every cell that loads the stage records its key and the checkpoint's hash; the baseline does not.
    for seed in [0, 1] {
        let rec = read_json(
            &cell_dir(&results, "mini_demo", "feature_extraction", seed).join("run.json"),
        );
        assert_eq!(rec["key"]["stage"], key.as_str());
        assert_eq!(rec["stage"]["checkpoint_sha256"], hash.as_str());
        assert_eq!(rec["weights"]["sha256"], hash.as_str());
        let baseline =
            read_json(&cell_dir(&results, "mini_demo", "baseline_random", seed).join("run.json"));
        assert!(baseline["key"].get("stage").is_none(), "{baseline}");
        assert!(baseline.get("stage").is_none());
    }

    // A second sweep reuses the checkpoint: no training, the same file, untouched.
    let second = sweep(&exp, &results);
    assert!(!second.contains("pretrain stage: training"), "{second}");
    assert!(
        second.contains("pretrain stage: reusing") && second.contains(&key[..12]),
        "{second}"
    );
    assert!(second.contains("done already"), "{second}");
    assert_eq!(sha256(&checkpoint), hash);
    assert_eq!(
        std::fs::metadata(&checkpoint).unwrap().modified().unwrap(),
        mtime
    );
    assert_eq!(stage_dirs(&results).len(), 1);

    // Changing a stage key trains a new stage, and the cells that load it run again.
    let exp = reduced_demo(dir.path(), 2, 40);
    let third = sweep(&exp, &results);
    assert_eq!(
        third.matches("pretrain stage: training").count(),
        1,
        "{third}"
    );
    assert_eq!(stage_dirs(&results).len(), 2);
    let rec = read_json(&cell_dir(&results, "mini_demo", "feature_extraction", 0).join("run.json"));
    assert_ne!(rec["key"]["stage"], key.as_str());
    // The baseline does not load the stage, so its cells are still done.
    let baseline_skips = third
        .lines()
        .filter(|l| l.contains("baseline_random") || l.contains("done already"))
        .count();
    assert!(baseline_skips >= 2, "{third}");
}

/// `runner check` shows the stage, what it trains on and which variants load its conv base.
#[test]
fn check_lists_the_stage_and_the_variants_that_use_it() {
    let out = runner().arg("check").assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains(
            "[pretrain] stage: trains every layer from scratch on a generated source task at \
             32x32, 12 epochs"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "its conv base is the weights of feature_extraction, feature_extraction_aug, \
             fine_tuning, fine_tuning_aug\n"
        ),
        "{text}"
    );
}

/// `runner why` on a cell whose stage is not trained says so, and trains nothing.
#[test]
fn why_does_not_train_a_missing_stage() {
    let dir = tempfile::tempdir().unwrap();
    let exp = reduced_demo(dir.path(), 1, 20);
    let results = dir.path().join("results");
    let out = runner()
        .args(["why", "--variant", "feature_extraction", "--seed", "0"])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains("mini_demo/feature_extraction/seed-0 has no run key yet: the [pretrain] stage has not been trained yet"),
        "{text}"
    );
    assert!(text.contains("`runner sweep` trains it"), "{text}");
    let stages: Vec<_> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().path().join(".stages"))
        .filter(|p| p.exists())
        .collect();
    assert!(stages.is_empty(), "nothing was trained: {stages:?}");
}
