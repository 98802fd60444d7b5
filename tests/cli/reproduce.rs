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
    assert!(
        out.contains("    dataset.batch_size: 8 -> 4\n"),
        "the changed key is named:\n{out}"
    );
}

fn reproduce(run: &Path, results: &Path) -> assert_cmd::assert::Assert {
    runner()
        .arg("reproduce")
        .arg(run)
        .arg("--results")
        .arg(results)
        .assert()
}

fn stdout_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

/// A training image replaced by bytes that no longer decode: `reproduce` compares hashes before
/// decoding, so it exits 4 naming the file (not 1 with a decoding error), and `why` names it.
#[test]
fn a_changed_file_that_no_longer_decodes_is_an_input_change_named_by_reproduce_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    sweep_one(&exp, &results);
    let cell = cell_dir(&results, "tiny", "fine_tuning_aug", 0);
    let data = std::fs::read_dir(results.join("datasets"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(data.join("train/squares/0003.png"), b"not a png any more").unwrap();
    let out = reproduce(&cell, &results).code(4);
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("NOT REPRODUCIBLE") && stdout.contains("squares/0003.png"),
        "{stdout}"
    );
    let out = runner()
        .args(["why", "--variant", "fine_tuning_aug", "--seed", "0"])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("dataset changed: train: ~ squares/0003.png: content "),
        "{stdout}"
    );
}

/// `why` for a seed the experiment does not have is an error naming its seeds.
#[test]
fn why_for_a_seed_not_in_the_experiment_names_its_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let out = runner()
        .args(["why", "--variant", "fine_tuning_aug", "--seed", "7"])
        .arg(&exp)
        .arg("--results")
        .arg(dir.path().join("results"))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("seed 7 is not in the experiment's seeds (0, 1)"),
        "{stderr}"
    );
}

/// A recorded metric that training does not give again: exit 5, naming the epoch and metric.
#[test]
fn reproduce_exits_5_when_a_recorded_metric_differs() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    sweep_one(&exp, &results);
    let cell = cell_dir(&results, "tiny", "fine_tuning_aug", 0);
    let metrics = cell.join("metrics.csv");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // epoch,train_loss,...: replace epoch 2's train_loss.
    let mut fields: Vec<String> = lines[2].split(',').map(str::to_string).collect();
    fields[1] = "0.125".into();
    lines[2] = fields.join(",");
    std::fs::write(&metrics, lines.join("\n") + "\n").unwrap();
    let out = reproduce(&cell, &results).code(5);
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("MISMATCH") && stdout.contains("epoch 2: train_loss 0.125 recorded"),
        "{stdout}"
    );
}

/// A weights file changed since the run: exit 4, naming the file.
#[test]
fn reproduce_names_a_changed_weights_file() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/vgg_timm.safetensors"),
        &weights,
    )
    .unwrap();
    let exp = tiny_experiment(
        dir.path(),
        "[[variants]]\nname = \"from_file\"\ntraining.freeze = [\"block*\"]\n\
         model.channels = [2, 4, 4, 4, 8]\nmodel.weights = { file = \"w.safetensors\" }\n",
    );
    let results = dir.path().join("results");
    runner()
        .args(["sweep", "--quiet", "--variant", "from_file", "--seed", "0"])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let cell = cell_dir(&results, "tiny", "from_file", 0);
    // One byte of the last tensor's data: still a valid file, with other weights.
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&weights, bytes).unwrap();
    let stdout = stdout_of(&reproduce(&cell, &results).code(4));
    assert!(
        stdout.contains(&format!("weights file {} changed", weights.display())),
        "{stdout}"
    );
}

/// A commit made since the run: exit 4, naming both commits.
#[test]
fn reproduce_names_a_changed_commit() {
    use git2::{Repository, RepositoryInitOptions, Signature};
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    std::fs::write(dir.path().join(".gitignore"), "results/\n").unwrap();
    let mut opts = RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(dir.path(), &opts).unwrap();
    let sig = Signature::now("test", "test@example.com").unwrap();
    let commit = |files: &[&str], message: &str| -> String {
        let mut index = repo.index().unwrap();
        for file in files {
            index.add_path(Path::new(file)).unwrap();
        }
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let parents: Vec<git2::Commit> = repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
            .to_string()
    };
    let first = commit(&["tiny.toml", ".gitignore"], "first");
    let results = dir.path().join("results");
    sweep_one(&exp, &results);
    let cell = std::fs::read_dir(results.join(&first[..12]))
        .map(|_| {
            results
                .join(&first[..12])
                .join("tiny/fine_tuning_aug/seed-0")
        })
        .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "a change of code\n").unwrap();
    let second = commit(&["notes.txt"], "second");
    let stdout = stdout_of(&reproduce(&cell, &results).code(4));
    assert!(
        stdout.contains(&format!("commit {first} -> {second}")),
        "{stdout}"
    );
}
