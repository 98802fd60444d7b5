use std::collections::BTreeMap;

use super::*;
use crate::config::{DataSource, DatasetConfig, OnBadImage, Preprocessing, ShuffleMode};
use crate::dataset::Data;

fn spec(seed: u64, per_class: usize, size: u32) -> SyntheticSpec {
    SyntheticSpec {
        seed,
        train_per_class: per_class,
        validation_per_class: per_class / 2,
        size,
        task: crate::config::SyntheticTask::Target,
    }
}

/// Every file under `root` (relative path -> SHA-256 of its bytes), in path order.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, hex(&Sha256::digest(fs::read(&path).unwrap())));
            }
        }
    }
    out
}

fn config(size: u32) -> DatasetConfig {
    DatasetConfig {
        source: DataSource::Synthetic(spec(0, 1, size)),
        image_size: [size, size],
        batch_size: 8,
        shuffle: ShuffleMode::Keras,
        preprocessing: Preprocessing::Rescale,
        on_bad_image: OnBadImage::Error,
        augmentation: Vec::new(),
        known: None,
    }
}

#[test]
fn same_spec_gives_identical_files_and_another_seed_does_not() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (train_a, val_a) = ensure(&spec(3, 6, 16), a.path()).unwrap();
    let (train_b, _) = ensure(&spec(3, 6, 16), b.path()).unwrap();
    let root_a = train_a.parent().unwrap();
    let root_b = train_b.parent().unwrap();
    assert_eq!(root_a.file_name(), root_b.file_name());
    let name = root_a.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("synthetic-") && name.len() == "synthetic-".len() + 12,
        "{name}"
    );
    assert_eq!(val_a, root_a.join("validation"));
    let files = tree(root_a);
    assert_eq!(files, tree(root_b));
    // 2 classes x (6 train + 3 validation) images, plus the description.
    assert_eq!(files.len(), 2 * (6 + 3) + 1);
    assert!(files.contains_key("train/checkers/0000.png"));
    assert!(files.contains_key("validation/squares/0002.jpg"));

    let (train_c, _) = ensure(&spec(4, 6, 16), a.path()).unwrap();
    let root_c = train_c.parent().unwrap();
    assert_ne!(root_c, root_a);
    let other = tree(root_c);
    assert_eq!(
        other.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>()
    );
    let differing = files
        .iter()
        .filter(|(k, v)| k.as_str() != "spec.txt" && other[*k] != **v)
        .count();
    assert_eq!(
        differing,
        files.len() - 1,
        "every image should change with the seed"
    );
    // Train and validation images are drawn from different streams.
    assert_ne!(
        files["train/checkers/0000.png"],
        files["validation/checkers/0000.png"]
    );
}

#[test]
fn the_loader_reads_the_generated_set_with_the_expected_classes_counts_and_formats() {
    let cache = tempfile::tempdir().unwrap();
    let (train, validation) = ensure(&spec(1, 12, 20), cache.path()).unwrap();
    let data = Data::open(&config(20), &train, &validation).unwrap();
    assert_eq!(data.train.class_names, vec!["checkers", "squares"]);
    assert_eq!(data.train.len(), 24);
    assert_eq!(data.validation.len(), 12);
    let per_label = |split: &super::super::Split, label| {
        split.samples.iter().filter(|s| s.label == label).count()
    };
    assert_eq!(
        (per_label(&data.train, 0), per_label(&data.train, 1)),
        (12, 12)
    );
    let jpegs = data
        .train
        .samples
        .iter()
        .filter(|s| s.path.extension().is_some_and(|e| e == "jpg"))
        .count();
    assert_eq!(jpegs, 2 * 4, "one file in three is a JPEG");
    let grey = image::open(train.join("checkers/0001.png")).unwrap();
    assert_eq!(grey.color(), image::ColorType::L8);
    let colour = image::open(train.join("checkers/0000.png")).unwrap();
    assert_eq!(colour.color(), image::ColorType::Rgb8);
}

#[test]
fn an_existing_set_is_reused_not_regenerated() {
    let cache = tempfile::tempdir().unwrap();
    let (train, _) = ensure(&spec(2, 3, 12), cache.path()).unwrap();
    let root = train.parent().unwrap().to_path_buf();
    let file = train.join("squares/0000.png");
    let modified = fs::metadata(&file).unwrap().modified().unwrap();
    fs::write(root.join("marker"), b"kept").unwrap();
    // A leftover temporary directory of an interrupted run is neither used nor in the way.
    let leftover = cache.path().join(format!(
        ".{}.partial-1-0",
        root.file_name().unwrap().to_string_lossy()
    ));
    fs::create_dir_all(leftover.join("train/junk")).unwrap();

    let (again, _) = ensure(&spec(2, 3, 12), cache.path()).unwrap();
    assert_eq!(again, train);
    assert_eq!(fs::read(root.join("marker")).unwrap(), b"kept");
    assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), modified);
    let entries: Vec<_> = fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
}

#[test]
fn classes_are_not_separable_by_mean_brightness() {
    let cache = tempfile::tempdir().unwrap();
    let (train, validation) = ensure(&spec(5, 160, 32), cache.path()).unwrap();
    let data = Data::open(&config(32), &train, &validation).unwrap();
    let mut means: Vec<(f32, u32)> = data
        .train
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let img = data.train.image(i).unwrap();
            (
                img.data.iter().sum::<f32>() / img.data.len() as f32,
                s.label,
            )
        })
        .collect();
    let class_mean = |label| {
        let v: Vec<f32> = means.iter().filter(|m| m.1 == label).map(|m| m.0).collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    let all: Vec<f32> = means.iter().map(|m| m.0).collect();
    let mean = all.iter().sum::<f32>() / all.len() as f32;
    let std = (all.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / all.len() as f32).sqrt();
    let gap = (class_mean(0) - class_mean(1)).abs();
    assert!(
        std > 20.0,
        "brightness should vary a lot within classes: std {std}"
    );
    assert!(gap < 0.2 * std, "class means differ by {gap} (std {std})");

    // The best single threshold on mean brightness is little better than chance.
    means.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = means.len();
    let ones_total = means.iter().filter(|m| m.1 == 1).count();
    // Threshold after the k darkest images: predict 0 below it and 1 above, or the reverse.
    let score = |k: usize, ones_below: usize| {
        let correct = (k - ones_below) + (ones_total - ones_below);
        correct.max(n - correct)
    };
    let mut ones_below = 0;
    let mut best = score(0, 0);
    for (k, m) in means.iter().enumerate() {
        ones_below += usize::from(m.1 == 1);
        best = best.max(score(k + 1, ones_below));
    }
    let accuracy = best as f32 / n as f32;
    assert!(
        accuracy < 0.62,
        "brightness threshold separates the classes: {accuracy}"
    );
}

#[test]
fn invalid_specs_are_rejected_with_the_key() {
    let cache = tempfile::tempdir().unwrap();
    let cases = [
        (
            spec(0, 4, 4),
            "dataset.synthetic: size must be at least 8 pixels (got 4)",
        ),
        (
            spec(0, 1, 16),
            "dataset.synthetic: train_per_class and validation_per_class must be at least 1",
        ),
    ];
    for (s, want) in cases {
        assert_eq!(ensure(&s, cache.path()).unwrap_err().to_string(), want);
    }
    assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn file_formats_follow_the_index() {
    let formats: Vec<Encoding> = (0..6).map(encoding).collect();
    use Encoding::*;
    assert_eq!(formats, vec![Png, GreyPng, Jpeg, Png, Png, Jpeg]);
    let jpeg_share = (0..300).filter(|&i| encoding(i) == Jpeg).count();
    assert_eq!(jpeg_share, 100);
}

#[test]
fn the_source_task_has_other_classes_and_its_own_directory() {
    let target: Vec<&str> = TARGET_CLASSES.iter().map(|k| k.folder_name()).collect();
    assert!(SOURCE_CLASSES.len() >= 8);
    for kind in SOURCE_CLASSES {
        assert!(
            !TARGET_CLASSES.contains(&kind),
            "{kind:?} is a target class"
        );
    }
    let cache = tempfile::tempdir().unwrap();
    let source_spec = SyntheticSpec {
        task: SyntheticTask::Source,
        ..spec(0, 2, 16)
    };
    let (train, validation) = ensure(&source_spec, cache.path()).unwrap();
    let (target_train, _) = ensure(&spec(0, 2, 16), cache.path()).unwrap();
    assert_ne!(train.parent(), target_train.parent());
    let folders = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let expected: Vec<String> = SOURCE_CLASSES
        .iter()
        .map(|k| k.folder_name().to_string())
        .collect();
    // Label order is folder order: SOURCE_CLASSES is listed sorted by folder name.
    assert_eq!(folders(&train), expected);
    assert_eq!(folders(&validation), expected);
    assert!(folders(&train)
        .iter()
        .all(|n| !target.contains(&n.as_str())));
    assert_eq!(fs::read_dir(train.join("grids")).unwrap().count(), 2);
}
