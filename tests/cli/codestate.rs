//! The code state of sweeps run inside a git repository: the run's inputs and results left out,
//! large untracked files by hash, one stored diff per code state.

use git2::{Repository, RepositoryInitOptions, Signature};
use runner::base::hash::sha256_hex;

use super::errors::{directory_experiment, image_folders};
use super::*;

/// A repository in `dir` on branch `main`, with `files` (relative to `dir`, already written)
/// committed; returns the commit id.
fn commit(dir: &Path, files: &[&str]) -> String {
    let mut opts = RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(dir, &opts).unwrap();
    let mut index = repo.index().unwrap();
    for file in files {
        index.add_path(Path::new(file)).unwrap();
    }
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now("test", "test@example.com").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "initial", &tree, &[])
        .unwrap()
        .to_string()
}

/// `count` files of 1 MiB that zlib cannot shrink (a binary patch of them is as large).
fn noise_files(dir: &Path, prefix: &str, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..count {
        let bytes: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        std::fs::write(dir.join(format!("{prefix}-{i:02}")), bytes).unwrap();
    }
}

/// `runner sweep` run from the work tree `root` (so that `exp` may be relative to it).
fn sweep(root: &Path, exp: &Path, results: &Path, args: &[&str]) -> (String, String) {
    let out = runner()
        .current_dir(root)
        .arg("sweep")
        .args(args)
        .arg(exp)
        .arg("--results")
        .arg(results)
        .assert()
        .success();
    let output = out.get_output();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every `code.diff` under `dir`.
fn diffs_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(diffs_under(&path));
        } else if path.file_name().is_some_and(|n| n == "code.diff") {
            out.push(path);
        }
    }
    out
}

#[test]
fn data_and_results_inside_the_work_tree_leave_the_code_state_clean() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    image_folders(&root.join("data"), 3);
    // 20 MiB of raw originals beside the images (the loader lists image extensions only).
    noise_files(&root.join("data/train/cats"), "original.raw", 10);
    noise_files(&root.join("data/validation/dogs"), "original.raw", 10);
    let exp = directory_experiment(root, "");
    let head = commit(root, &["dirs.toml"]);
    let results = root.join("results");

    let (_, stderr) = sweep(root, &exp, &results, &[]);
    for expected in [
        "data/train, data/validation, results are inputs of this experiment",
        "not ignored by git",
        "\n    /data/train\n    /data/validation\n    /results\n",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
    let state = code_state_dir(&results);
    assert_eq!(state.file_name().unwrap().to_string_lossy(), head[..12]);
    assert!(diffs_under(&results).is_empty());
    let record = read_json(&cell_dir(&results, "dirs", "default", 0).join("run.json"));
    assert_eq!(record["provenance"]["dirty"], false);
    assert_eq!(record["provenance"]["untracked"], serde_json::json!([]));

    // The first sweep's results are not code: the second finds the same state and trains nothing.
    let (stdout, stderr) = sweep(root, &exp, &results, &[]);
    assert_eq!(
        stdout.matches("skipped: done already").count(),
        1,
        "{stdout}"
    );
    assert!(!stdout.contains("epoch 1/1"), "{stdout}");
    assert_eq!(
        stderr.matches("warning: ").count(),
        1,
        "once per sweep:\n{stderr}"
    );
    assert_eq!(code_state_dir(&results), state);
}

#[test]
fn a_dirty_tree_stores_one_diff_per_code_state_with_large_files_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    tiny_experiment(root, "");
    std::fs::write(root.join(".gitignore"), "/results/\n").unwrap();
    std::fs::write(root.join("model.py"), "rate = 1\n").unwrap();
    commit(root, &["tiny.toml", ".gitignore", "model.py"]);
    std::fs::write(root.join("model.py"), "rate = 2\n").unwrap();
    std::fs::write(root.join("notes.txt"), "try a lower rate\n").unwrap();
    // 20 MiB that are not an input of the experiment: recorded by size and hash.
    noise_files(&root.join("scratch"), "blob", 20);
    let results = root.join("results");

    let args = ["--seed", "0", "--epochs", "1"];
    let (_, stderr) = sweep(root, Path::new("tiny.toml"), &results, &args);
    assert!(!stderr.contains("warning"), "ignored results: {stderr}");
    let state = code_state_dir(&results);
    let label = state.file_name().unwrap().to_string_lossy().into_owned();
    assert!(label.contains("-dirty-"), "{label}");
    assert_eq!(diffs_under(&results), [state.join("code.diff")]);
    let diff = std::fs::read(state.join("code.diff")).unwrap();
    assert!(diff.len() < 20_000, "{} bytes", diff.len());
    let text = String::from_utf8(diff.clone()).unwrap();
    let blob = std::fs::read(root.join("scratch/blob-07")).unwrap();
    let blob_sha = sha256_hex(&blob);
    assert!(
        text.contains(&format!("\n# 1048576 {blob_sha} scratch/blob-07\n")),
        "{text}"
    );
    assert!(text.contains("-rate = 1\n+rate = 2\n"), "{text}");
    assert!(text.contains("+++ b/notes.txt\n"), "{text}");
    for variant in ["feature_extraction", "fine_tuning_aug"] {
        let record = read_json(&cell_dir(&results, "tiny", variant, 0).join("run.json"));
        let provenance = &record["provenance"];
        assert_eq!(provenance["diff_file"], format!("{label}/code.diff"));
        assert_eq!(provenance["diff_sha256"], sha256_hex(&diff));
        assert_eq!(provenance["untracked"].as_array().unwrap().len(), 21);
    }

    let (stdout, _) = sweep(root, Path::new("tiny.toml"), &results, &args);
    assert_eq!(
        stdout.matches("skipped: done already").count(),
        2,
        "{stdout}"
    );
    assert_eq!(code_state_dir(&results), state);

    // The experiment was named relative to the work tree: reproduce still finds the repository
    // (and the same code state) from the run's record.
    let out = runner()
        .current_dir(root)
        .arg("reproduce")
        .arg(cell_dir(&results, "tiny", "feature_extraction", 0))
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("REPRODUCED"), "{stdout}");
}
