//! `runner hash DIR`: the root hash of a class-folder directory, its manifest, and the stat cache.

use super::*;

/// The fixture of tests/reference/manifest_root.py, whose root hash that script computes.
fn reference_fixture(root: &Path) {
    let files: [(&str, &[u8]); 5] = [
        ("cats/a.png", b"alpha"),
        ("cats/sub/b.jpg", b"bravo\n"),
        ("dogs/c.JPG", b""),
        ("dogs/\"q\" \u{e9}.gif", &[0, 1, 2, 255]),
        ("dogs/readme.txt", b"not an image, not listed"),
    ];
    for (rel, content) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

const REFERENCE_ROOT: &str = "2517a09d2256f4fc04c1b0d3dd88ef09951c513211909d108be48d048d555a4f";

#[test]
fn hash_prints_the_root_hash_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    reference_fixture(dir.path());
    let out = runner().arg("hash").arg(dir.path()).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert_eq!(stdout, format!("{REFERENCE_ROOT}\n"));
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.ends_with(": 4 files in 2 classes; 4 read (15 bytes), 0 from the cache\n"),
        "{stderr}"
    );
}

#[test]
fn hash_manifest_lists_every_file_and_the_cache_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    reference_fixture(&data);
    let cache = dir.path().join("cache");
    let run = || {
        let out = runner()
            .arg("hash")
            .arg(&data)
            .arg("--manifest")
            .arg("--cache")
            .arg(&cache)
            .assert()
            .success();
        let o = out.get_output();
        (
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (manifest, _) = run();
    assert_eq!(manifest["root"], REFERENCE_ROOT);
    assert_eq!(manifest["classes"], serde_json::json!(["cats", "dogs"]));
    assert_eq!(
        manifest["files"][0],
        serde_json::json!({
            "path": "cats/a.png",
            "size": 5,
            // printf alpha | sha256sum
            "sha256": "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8",
            "label": "cats"
        })
    );
    assert_eq!(manifest["files"].as_array().unwrap().len(), 4);
    assert!(cache.join("fingerprints.json").is_file());

    // Age the files past the cache's safety window, hash once to record them as stable, then
    // again: nothing is read.
    for entry in [
        "cats/a.png",
        "cats/sub/b.jpg",
        "dogs/c.JPG",
        "dogs/\"q\" \u{e9}.gif",
    ] {
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
        std::fs::File::options()
            .write(true)
            .open(data.join(entry))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    run();
    let (again, stderr) = run();
    assert_eq!(again, manifest);
    assert!(
        stderr.ends_with("0 read (0 bytes), 4 from the cache\n"),
        "{stderr}"
    );
}

#[test]
fn hash_of_a_directory_without_class_folders_names_it_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let out = runner().arg("hash").arg(&missing).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert_eq!(
        stderr,
        format!(
            "error: {}: no such directory; expected one sub-folder per class, laid out as {}/<class_name>/<image files>\n",
            missing.display(),
            missing.display()
        )
    );
}
