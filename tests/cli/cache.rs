//! The decoded-image and frozen-prefix feature caches and `--jobs`: execution details that must
//! not change a number.

use super::*;

const FINE_TUNING: &str = r#"
[[variants]]
name = "fine_tuning"
training.trainable_from = "block5_conv1"
"#;

/// Every line of metrics.csv without the wall-clock column.
fn metrics(cell: &Path) -> Vec<String> {
    std::fs::read_to_string(cell.join("metrics.csv"))
        .unwrap_or_else(|e| panic!("{}: {e}", cell.display()))
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

fn sweep(exp: &Path, results: &Path, args: &[&str]) -> String {
    let out = runner()
        .arg("sweep")
        .arg("--no-report")
        .args(args)
        .arg(exp)
        .arg("--results")
        .arg(results)
        .assert()
        .success();
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

const VARIANTS: [&str; 3] = ["feature_extraction", "fine_tuning_aug", "fine_tuning"];

/// Metrics and saved trained-parameter bytes of every cell of a sweep.
fn outcome(results: &Path) -> Vec<(String, Vec<String>, Vec<u8>)> {
    let mut out = Vec::new();
    for variant in VARIANTS {
        for seed in [0, 1] {
            let cell = cell_dir(results, "tiny", variant, seed);
            let model = std::fs::read(cell.join("trained.safetensors")).unwrap();
            out.push((format!("{variant}/{seed}"), metrics(&cell), model));
        }
    }
    out
}

fn assert_same(a: &Path, b: &Path) {
    for ((cell, ma, wa), (_, mb, wb)) in outcome(a).into_iter().zip(outcome(b)) {
        assert_eq!(ma, mb, "{cell}: metrics differ");
        assert!(wa == wb, "{cell}: trained.safetensors differs");
    }
}

/// Training from cached prefix outputs and cached decoded images gives bitwise the metrics and
/// model of decoding every image and running the full network every epoch (`--no-cache`), for
/// the head-only cells (cached block5 outputs), block5 fine-tuning (cached block4 outputs) and
/// augmented cells (cached validation only); with a zero memory budget the features are read
/// from disk per batch, and a later sweep reads images and features back from disk.
#[test]
fn cached_features_give_bitwise_the_results_of_the_full_network() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), FINE_TUNING);
    let full = dir.path().join("full");
    let cached = dir.path().join("cached");
    let on_disk = dir.path().join("disk");
    let log_full = sweep(&exp, &full, &["--no-cache"]);
    let log = sweep(&exp, &cached, &[]);
    assert_same(&full, &cached);
    assert!(!log_full.contains("feature cache:"), "{log_full}");
    assert_eq!(
        log_full
            .matches("decoded from the files each epoch (not cached)")
            .count(),
        2,
        "{log_full}"
    );
    assert!(!full.join(".cache/images").exists());
    assert!(
        log.contains("images (train): 24 decoded into the image cache (key "),
        "{log}"
    );
    let stores = std::fs::read_dir(cached.join(".cache/images"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "pixels")
        .count();
    assert_eq!(stores, 2, "one store per split");

    // Seeds share nothing here (weights = "none": the frozen layers are initialised from the
    // seed): one line for each non-augmented cell's training features.
    assert_eq!(
        log.matches("feature cache: training outputs").count(),
        4,
        "{log}"
    );
    assert!(
        log.contains("feature cache: not used for training (augmentation"),
        "{log}"
    );
    let record = read_json(&cell_dir(&cached, "tiny", "feature_extraction", 0).join("run.json"));
    let fc = &record["feature_cache"];
    assert_eq!(fc["used"], true, "{fc}");
    assert_eq!(fc["validation"], true, "{fc}");
    assert_eq!(fc["prefix_layer"], "flatten", "{fc}");
    let key = fc["key"].as_str().unwrap();
    assert!(cached.join(".cache/features").join(key).is_dir());
    let record = read_json(&cell_dir(&cached, "tiny", "fine_tuning", 1).join("run.json"));
    assert_eq!(record["feature_cache"]["prefix_layer"], "block4_pool");
    // Feature extraction shares blocks 1-4 with fine-tuning (same seed, same base): its flatten
    // outputs come by way of the block4_pool outputs, kept for fine-tuning, which finds them
    // held; the comparison above covers both.
    assert_eq!(log.matches("up to flatten").count(), 4, "{log}");
    assert_eq!(
        log.matches("by way of the outputs of block4_pool (kept for other cells)")
            .count(),
        4,
        "training and validation, two seeds: {log}"
    );
    assert_eq!(
        log.matches("up to block4_pool").count(),
        log.matches("shared with an earlier cell").count(),
        "{log}"
    );
    let record = read_json(&cell_dir(&cached, "tiny", "fine_tuning_aug", 0).join("run.json"));
    let fc = &record["feature_cache"];
    assert_eq!(fc["used"], false, "{fc}");
    assert_eq!(fc["reason"], "augmentation", "{fc}");
    assert_eq!(fc["validation"], true, "{fc}");
    let record = read_json(&cell_dir(&full, "tiny", "fine_tuning", 0).join("run.json"));
    assert_eq!(record["feature_cache"]["reason"], "disabled");
    // The cache is not an input of the run: same run keys with and without it.
    let key_of = |root: &Path| {
        read_json(&cell_dir(root, "tiny", "fine_tuning", 0).join("run.json"))["run_key"].clone()
    };
    assert_eq!(key_of(&full), key_of(&cached));

    // No memory for features: computed to disk and read per batch, same numbers.
    let log = sweep(&exp, &on_disk, &["--cache-memory", "0"]);
    assert!(log.contains("on disk (past the memory budget)"), "{log}");
    assert_same(&full, &on_disk);
    // A second sweep finds the features on disk.
    let again = sweep(&exp, &on_disk, &["--force", "--cache-memory", "1GiB"]);
    assert!(again.contains("read from disk"), "{again}");
    assert!(
        again.contains("images (train): 24 reused from the image cache (key "),
        "{again}"
    );
    assert!(again.contains("images (validation): "), "{again}");
    assert!(!again.contains("computed in"), "{again}");
    assert_same(&full, &on_disk);
}

/// The same frozen-prefix outputs whether computed from the images (feature extraction alone)
/// or from the outputs of a shorter prefix kept for another cell (with fine-tuning): the same
/// cache files, byte for byte.
#[test]
fn a_prefix_computed_from_a_shorter_one_is_the_same_cache_file() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), FINE_TUNING);
    let alone = dir.path().join("alone");
    let shared = dir.path().join("shared");
    let log = sweep(
        &exp,
        &alone,
        &["--variant", "feature_extraction", "--seed", "0"],
    );
    assert!(!log.contains("from the cached outputs"), "{log}");
    let log = sweep(
        &exp,
        &shared,
        &[
            "--variant",
            "feature_extraction",
            "--variant",
            "fine_tuning",
            "--seed",
            "0",
        ],
    );
    assert_eq!(
        log.matches("by way of the outputs of block4_pool").count(),
        2,
        "training and validation: {log}"
    );
    let record = read_json(&cell_dir(&alone, "tiny", "feature_extraction", 0).join("run.json"));
    let key = record["feature_cache"]["key"].as_str().unwrap().to_string();
    let files = |root: &Path| {
        let mut out: Vec<(std::ffi::OsString, Vec<u8>)> =
            std::fs::read_dir(root.join(".cache/features").join(&key))
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (e.file_name(), std::fs::read(e.path()).unwrap())
                })
                .collect();
        out.sort();
        out
    };
    let (a, b) = (files(&alone), files(&shared));
    assert_eq!(a.len(), 2, "training and validation");
    assert!(a == b, "the cache files differ");
    assert_eq!(
        metrics(&cell_dir(&alone, "tiny", "feature_extraction", 0)),
        metrics(&cell_dir(&shared, "tiny", "feature_extraction", 0))
    );
}

/// `--jobs 2` trains two cells at once and ends with the same files as one at a time.
#[test]
fn parallel_cells_give_the_results_of_a_serial_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), FINE_TUNING);
    let serial = dir.path().join("serial");
    let parallel = dir.path().join("parallel");
    sweep(&exp, &serial, &[]);
    let log = sweep(&exp, &parallel, &["--jobs", "2"]);
    let ends = log
        .lines()
        .filter(|l| l.contains("] tiny / ") && l.contains(":  done"))
        .count();
    assert_eq!(ends, 6, "one closing line per cell: {log}");
    assert_same(&serial, &parallel);
}

/// `runner cache` shows what the caches hold after a sweep, and `--clear` deletes them; the
/// next sweep rebuilds them and its cells are still found done.
#[test]
fn the_cache_command_shows_and_clears_the_caches() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), FINE_TUNING);
    let results = dir.path().join("results");
    sweep(&exp, &results, &["--variant", "feature_extraction"]);
    let show = |extra: &[&str]| {
        let out = runner()
            .arg("cache")
            .arg("--results")
            .arg(&results)
            .args(extra)
            .assert()
            .success();
        String::from_utf8_lossy(&out.get_output().stdout).into_owned()
    };
    let text = show(&[]);
    let files_of = |text: &str, kind: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} line: {text}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // Two splits: a pixels file and its description each.
    assert_eq!(files_of(&text, "images"), 4, "{text}");
    assert!(files_of(&text, "features") >= 2, "{text}");
    let text = show(&["--clear"]);
    assert!(text.contains("deleted"), "{text}");
    assert!(!results.join(".cache").exists());
    let text = show(&[]);
    assert_eq!(files_of(&text, "images"), 0, "{text}");
    let log = sweep(&exp, &results, &["--variant", "feature_extraction"]);
    assert_eq!(
        log.matches("skipped: done already").count(),
        2,
        "finished cells are not rerun: {log}"
    );
    assert!(log.contains("images (train): 24 decoded into"), "{log}");
}
