//! A cell stores only the layers it trained; `export-model` rebuilds the complete model from
//! the base the cell recorded, and refuses a base that is missing or changed.

use std::collections::BTreeMap;

use super::*;

/// Every tensor of a safetensors file, as the bits of its values.
fn tensors(path: &Path) -> BTreeMap<String, Vec<u32>> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|(name, t)| {
            let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            (name, values.iter().map(|v| v.to_bits()).collect())
        })
        .collect()
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stderr(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

#[test]
fn a_feature_extraction_cell_keeps_its_head_only_and_exports_the_whole_model() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.safetensors");
    runner()
        .args(["weights", "import"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/vgg_keras_notop.h5"))
        .arg("-o")
        .arg(&base)
        .assert()
        .success();
    let exp = tiny_experiment(
        dir.path(),
        "[[variants]]\nname = \"imported\"\ntraining.freeze = [\"block*\"]\n\
         model.channels = [2, 4, 4, 4, 8]\nmodel.weights = { file = \"base.safetensors\" }\n",
    );
    let results = dir.path().join("results");
    runner()
        .arg("sweep")
        .arg(&exp)
        .args(["--variant", "imported", "--seed", "0", "--epochs", "2"])
        .args(["--quiet", "--no-report", "--results"])
        .arg(&results)
        .assert()
        .success();
    let cell = cell_dir(&results, "tiny", "imported", 0);
    let mut files: Vec<String> = std::fs::read_dir(&cell)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    files.sort();
    assert_eq!(files, ["best-trained.safetensors", "trained.safetensors"]);
    let trained = tensors(&cell.join("trained.safetensors"));
    let head = [
        "dense.bias",
        "dense.weight",
        "dense_1.bias",
        "dense_1.weight",
    ];
    assert_eq!(trained.keys().collect::<Vec<_>>(), head);
    let record = read_json(&cell.join("run.json"));
    assert_eq!(record["weights"]["sha256"], sha256(&base).as_str());
    assert_eq!(record["frozen_sha256"].as_str().unwrap().len(), 64);

    // The whole model: the base's conv layers and the cell's head, under Keras layer names.
    let model = dir.path().join("model.safetensors");
    let out = runner()
        .arg("export-model")
        .arg(&cell)
        .arg("-o")
        .arg(&model)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        stdout.starts_with(&format!("wrote {}", model.display())),
        "{stdout}"
    );
    let exported = tensors(&model);
    let conv_base = tensors(&base);
    assert_eq!(exported.len(), conv_base.len() + head.len());
    for (name, bits) in &exported {
        let from = conv_base.get(name).or_else(|| trained.get(name));
        assert!(from == Some(bits), "{name} differs from its source");
    }
    // --best, found by run key.
    let key = record["run_key"].as_str().unwrap();
    let best = dir.path().join("best.safetensors");
    runner()
        .args(["export-model", &key[..12], "--best", "-o"])
        .arg(&best)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let best_trained = tensors(&cell.join("best-trained.safetensors"));
    for name in head {
        assert_eq!(tensors(&best)[name], best_trained[name], "{name}");
    }

    // The base is gone: the error names it and says what to do; --base points at a copy.
    let moved = dir.path().join("moved.safetensors");
    std::fs::rename(&base, &moved).unwrap();
    let again = dir.path().join("again.safetensors");
    let export = |base: Option<&Path>| {
        let mut cmd = runner();
        cmd.arg("export-model").arg(&cell).arg("-o").arg(&again);
        if let Some(b) = base {
            cmd.arg("--base").arg(b);
        }
        cmd.assert()
    };
    let err = stderr(&export(None).code(1));
    assert_eq!(
        err,
        format!(
            "error: {}: the frozen base of {} is missing (a weights file with SHA-256 {}); put \
             it back, or pass --base FILE with a copy\n",
            base.display(),
            cell.display(),
            sha256(&moved)
        )
    );
    assert!(!again.exists());
    export(Some(&moved)).success();
    assert!(std::fs::read(&again).unwrap() == std::fs::read(&model).unwrap());

    // Another file under the base's name is refused.
    std::fs::copy(&model, &base).unwrap();
    let err = stderr(&export(None).code(1));
    assert_eq!(
        err,
        format!(
            "error: {}: SHA-256 is {}, but {} was trained from a base with SHA-256 {}: the file \
             changed since; pass --base FILE with the original\n",
            base.display(),
            sha256(&model),
            cell.display(),
            sha256(&moved)
        )
    );
}

/// A cell built on a pretraining stage: its conv layers come from the stage's checkpoint (whose
/// multi-class head is not used), its head from the cell.
#[test]
fn a_cell_on_a_pretraining_stage_exports_the_stage_conv_base_and_its_own_head() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        dir.path(),
        r#"
[[variants]]
name = "staged"
model.weights = { stage = "pretrain" }
training.freeze = ["block*"]

[pretrain]
seed = 0
epochs = 1

[pretrain.dataset.synthetic]
task = "source"
seed = 1
train_per_class = 2
validation_per_class = 1
size = 32
"#,
    );
    let results = dir.path().join("results");
    runner()
        .arg("sweep")
        .arg(&exp)
        .args(["--variant", "staged", "--seed", "0", "--epochs", "1"])
        .args(["--quiet", "--no-report", "--results"])
        .arg(&results)
        .assert()
        .success();
    let cell = cell_dir(&results, "tiny", "staged", 0);
    let record = read_json(&cell.join("run.json"));
    let checkpoint = PathBuf::from(record["stage"]["checkpoint"].as_str().unwrap());
    assert_eq!(record["weights"]["sha256"], sha256(&checkpoint).as_str());
    let model = dir.path().join("model.safetensors");
    runner()
        .arg("export-model")
        .arg(&cell)
        .arg("-o")
        .arg(&model)
        .assert()
        .success();
    let (exported, stage, trained) = (
        tensors(&model),
        tensors(&checkpoint),
        tensors(&cell.join("trained.safetensors")),
    );
    assert_eq!(exported.len(), 2 * 15);
    for (name, bits) in &exported {
        let from = if name.starts_with("block") {
            &stage[name]
        } else {
            &trained[name]
        };
        assert!(from == bits, "{name} differs from its source");
    }
}
