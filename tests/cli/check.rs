//! `runner check` finds every error `runner sweep` finds before training, with the same message,
//! and trains nothing.

use sha2::{Digest, Sha256};

use super::errors::image_folders;
use super::*;

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An experiment on `data/{train,validation}` with `weights` as its `model.weights`, channels
/// matching `tests/reference/vgg_timm.safetensors`.
fn experiment(dir: &Path, weights: &str) -> PathBuf {
    let text = format!(
        "name = \"checked\"\nseeds = [0]\n[dataset]\ntrain_dir = \"data/train\"\n\
         validation_dir = \"data/validation\"\nimage_size = [32, 32]\nbatch_size = 4\n\
         [model]\nchannels = [2, 4, 4, 4, 8]\nhead = {{ units = [4] }}\nweights = {weights}\n\
         [training]\nepochs = 1\n[[variants]]\nname = \"a\"\ntraining.freeze = [\"block*\"]\n\
         [[variants]]\nname = \"b\"\n"
    );
    let path = dir.join("checked.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn timm() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/vgg_timm.safetensors"),
    )
    .unwrap()
}

/// A weights entry for `bytes` written to `w.safetensors`, with their SHA-256.
fn weights_file(dir: &Path, bytes: &[u8]) -> String {
    std::fs::write(dir.join("w.safetensors"), bytes).unwrap();
    format!(
        "{{ file = \"w.safetensors\", sha256 = \"{}\" }}",
        sha256(bytes)
    )
}

/// Each broken input: how to break a valid setup, and a phrase its error must contain.
type Breakage = (&'static str, fn(&Path) -> String, &'static str);

fn breakages() -> Vec<Breakage> {
    vec![
        (
            "missing train_dir",
            |d| {
                std::fs::remove_dir_all(d.join("data/train")).unwrap();
                weights_file(d, &timm())
            },
            "data/train",
        ),
        (
            "different classes in training and validation",
            |d| {
                std::fs::rename(
                    d.join("data/validation/dogs"),
                    d.join("data/validation/birds"),
                )
                .unwrap();
                weights_file(d, &timm())
            },
            "birds",
        ),
        (
            "a single class",
            |d| {
                std::fs::remove_dir_all(d.join("data/train/dogs")).unwrap();
                std::fs::remove_dir_all(d.join("data/validation/dogs")).unwrap();
                weights_file(d, &timm())
            },
            "cats",
        ),
        (
            "only empty class folders",
            |d| {
                for class in ["cats", "dogs"] {
                    let dir = d.join("data/train").join(class);
                    std::fs::remove_dir_all(&dir).unwrap();
                    std::fs::create_dir(&dir).unwrap();
                }
                weights_file(d, &timm())
            },
            "no image files",
        ),
        (
            "a missing weights file",
            |d| {
                let entry = weights_file(d, &timm());
                std::fs::remove_file(d.join("w.safetensors")).unwrap();
                entry
            },
            "w.safetensors",
        ),
        (
            "a wrong SHA-256",
            |d| {
                weights_file(d, &timm());
                format!(
                    "{{ file = \"w.safetensors\", sha256 = \"{}\" }}",
                    "0".repeat(64)
                )
            },
            "0000000000000000",
        ),
        (
            "a truncated weights file (its own SHA-256)",
            |d| weights_file(d, &timm()[..5000]),
            "w.safetensors",
        ),
        (
            "a garbage weights file (its own SHA-256)",
            |d| weights_file(d, b"these are not weights at all, just text"),
            "w.safetensors",
        ),
    ]
}

fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

/// Every error `sweep` reports before training, `check` reports too (exit 1, the same message),
/// and with the inputs intact, `check` passes.
#[test]
fn check_finds_every_input_error_that_sweep_finds_with_the_same_message() {
    let good = tempfile::tempdir().unwrap();
    image_folders(&good.path().join("data"), 3);
    let exp = experiment(good.path(), &weights_file(good.path(), &timm()));
    let out = runner().arg("check").arg(&exp).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        stdout.contains("inputs: opened as a sweep would"),
        "{stdout}"
    );

    for (what, breakage, phrase) in breakages() {
        let dir = tempfile::tempdir().unwrap();
        image_folders(&dir.path().join("data"), 3);
        let weights = breakage(dir.path());
        let exp = experiment(dir.path(), &weights);
        let results = dir.path().join("results");
        let sweep = runner()
            .arg("sweep")
            .arg(&exp)
            .arg("--results")
            .arg(&results)
            .assert()
            .code(1);
        let sweep_err = stderr_of(&sweep);
        assert!(sweep_err.contains(phrase), "{what}: sweep: {sweep_err}");
        let check = runner().arg("check").arg(&exp).assert();
        let check_err = stderr_of(&check);
        let check = check.code(1);
        assert_eq!(check_err, sweep_err, "{what}: check and sweep differ");
        let stdout = String::from_utf8_lossy(&check.get_output().stdout).into_owned();
        assert!(
            !stdout.contains("loss") && !results.join("checked").exists(),
            "{what}: check trains nothing: {stdout}"
        );
    }
}
