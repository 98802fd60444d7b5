use std::fs;
use std::path::Path;

use image::{Rgb, RgbImage};

use super::*;
use crate::config::OnBadImage;
use crate::config::{DataSource, ShuffleMode};
use crate::dataset::Data;

fn config(on_bad_image: OnBadImage) -> DatasetConfig {
    DatasetConfig {
        source: DataSource::Directories {
            train: PathBuf::new(),
            validation: PathBuf::new(),
        },
        image_size: [4, 6],
        batch_size: 4,
        shuffle: ShuffleMode::Keras,
        preprocessing: Preprocessing::Rescale,
        on_bad_image,
        augmentation: Vec::new(),
        known: None,
    }
}

/// Sample `i` is a 2x3 image whose values are `i * 18 + k` for k = 0..18, label `i % 2`.
fn in_memory_split(n: usize) -> Split {
    let images: Vec<Image> = (0..n)
        .map(|i| Image {
            height: 2,
            width: 3,
            data: (0..18).map(|k| (i * 18 + k) as f32).collect(),
        })
        .collect();
    Split::from_images(
        PathBuf::from("memory"),
        vec!["a".into(), "b".into()],
        (0..n)
            .map(|i| Sample {
                path: PathBuf::from(format!("memory/{i}.png")),
                label: (i % 2) as u32,
            })
            .collect(),
        &images,
    )
}

fn collect(split: &Split, plan: &EpochPlan<'_>) -> Vec<Batch> {
    let mut batches = Vec::new();
    let flow = split
        .for_each_batch(plan, |b| {
            batches.push(b);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(flow, ControlFlow::Continue(()));
    batches
}

fn plan(order: Vec<usize>, batch_size: usize) -> EpochPlan<'static> {
    EpochPlan {
        order,
        batch_size,
        preprocessing: Preprocessing::Rescale,
        augmentation: None,
    }
}

#[test]
fn preprocessing_modes_match_hand_computed_values() {
    let pixel = [255.0, 51.0, 0.0];
    let cases: [(Preprocessing, [f32; 3]); 3] = [
        (Preprocessing::Rescale, [1.0, 0.2, 0.0]),
        // BGR order: 0 - 103.939, 51 - 116.779, 255 - 123.68
        (Preprocessing::Caffe, [-103.939, -65.779, 131.32]),
        // (1 - 0.485) / 0.229, (0.2 - 0.456) / 0.224, (0 - 0.406) / 0.225
        (Preprocessing::Torch, [2.2489083, -1.1428571, -1.8044444]),
    ];
    for (mode, want) in cases {
        let mut px = [pixel, pixel].concat();
        preprocess(mode, &mut px);
        for (i, (got, w)) in px.iter().zip(want.iter().cycle()).enumerate() {
            assert!((got - w).abs() < 1e-4, "{mode:?} value {i}: {got} vs {w}");
        }
    }
}

#[test]
fn batches_follow_the_order_and_the_last_is_partial() {
    let split = in_memory_split(10);
    let order = vec![3, 7, 0, 9, 1, 2, 8, 4, 6, 5];
    let batches = collect(&split, &plan(order.clone(), 4));
    let sizes: Vec<usize> = batches.iter().map(|b| b.size).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
    let labels: Vec<f32> = batches.iter().flat_map(|b| b.labels.clone()).collect();
    let want: Vec<f32> = order.iter().map(|&i| (i % 2) as f32).collect();
    assert_eq!(labels, want);
    for (b, chunk) in batches.iter().zip(order.chunks(4)) {
        assert_eq!((b.height, b.width), (2, 3));
        assert_eq!(b.images.len(), chunk.len() * 18);
        assert_eq!(b.labels.len(), b.size);
        for (slot, &i) in chunk.iter().enumerate() {
            let want: Vec<f32> = (0..18).map(|k| (i * 18 + k) as f32 / 255.0).collect();
            assert_eq!(
                &b.images[slot * 18..(slot + 1) * 18],
                &want[..],
                "sample {i}"
            );
        }
    }
}

#[test]
fn empty_augmentation_changes_nothing_and_validation_is_never_augmented() {
    let split = in_memory_split(5);
    let order = epoch_order(5, ShuffleMode::Full, 2, 1, 0);
    let plain = collect(&split, &plan(order.clone(), 2));
    let mut with_empty = plan(order, 2);
    with_empty.augmentation = Some((&[], 7, 3));
    assert_eq!(collect(&split, &with_empty), plain);
}

#[test]
fn break_stops_the_producer_and_is_returned() {
    let split = in_memory_split(3);
    // Many batches: a producer that kept going would block on the full channel forever.
    let order: Vec<usize> = (0..30_000).map(|i| i % 3).collect();
    let mut seen = 0;
    let flow = split
        .for_each_batch(&plan(order, 1), |_| {
            seen += 1;
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(flow, ControlFlow::Break(()));
    assert_eq!(seen, 2);
}

#[test]
fn an_empty_order_gives_no_batches() {
    assert!(collect(&in_memory_split(3), &plan(Vec::new(), 4)).is_empty());
}

/// A solid-colour PNG whose colour encodes `i`.
fn colour(i: usize) -> [u8; 3] {
    [i as u8 * 10, 200 - i as u8, 7]
}

fn write_png(path: &Path, rgb: [u8; 3]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(5, 3, Rgb(rgb)).save(path).unwrap();
}

#[test]
fn open_decodes_every_file_in_index_order_at_the_configured_size() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..9 {
        let class = if i < 4 { "cats" } else { "dogs" };
        write_png(&dir.path().join(format!("{class}/{i}.png")), colour(i));
    }
    let split = Split::open(dir.path(), &config(OnBadImage::Error)).unwrap();
    assert_eq!(split.class_names, vec!["cats", "dogs"]);
    assert_eq!(split.len(), 9);
    assert!(split.skipped.is_empty());
    for (i, sample) in split.samples.iter().enumerate() {
        let image = split.image(i).unwrap();
        assert_eq!(
            sample.path,
            dir.path()
                .join(format!("{}/{i}.png", if i < 4 { "cats" } else { "dogs" }))
        );
        assert_eq!(sample.label, u32::from(i >= 4));
        assert_eq!((image.height, image.width), (4, 6));
        let want: Vec<f32> = colour(i).iter().map(|&v| f32::from(v)).collect();
        for px in image.data.chunks(3) {
            assert_eq!(px, &want[..], "file {i}");
        }
    }
}

#[test]
fn bad_images_stop_the_run_or_are_skipped_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        write_png(&dir.path().join(format!("a/{i}.png")), colour(i));
    }
    write_png(&dir.path().join("b/0.png"), colour(9));
    let bad_late = dir.path().join("b/9.jpg");
    let bad_early = dir.path().join("a/3b.png");
    fs::write(&bad_late, b"").unwrap();
    fs::write(&bad_early, b"not an image").unwrap();

    let err = Split::open(dir.path(), &config(OnBadImage::Error)).unwrap_err();
    assert!(
        matches!(&err, DatasetError::BadImage { path, .. } if path == &bad_early),
        "{err:?}"
    );

    let split = Split::open(dir.path(), &config(OnBadImage::Skip)).unwrap();
    assert_eq!(split.len(), 7);
    assert_eq!(split.samples.len(), 7);
    assert!(!split
        .samples
        .iter()
        .any(|s| s.path == bad_early || s.path == bad_late));
    let skipped: Vec<(&Path, &str)> = split
        .skipped
        .iter()
        .map(|(p, r)| (p.as_path(), r.as_str()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (
                bad_early.as_path(),
                "unknown image format (expected BMP, GIF, JPEG or PNG content)"
            ),
            (bad_late.as_path(), "the file is empty"),
        ]
    );
    // The remaining images still line up with their samples.
    let last = split.image(6).unwrap();
    assert_eq!(&last.data[..3], &[90.0, 191.0, 7.0]);
}

#[test]
fn a_split_with_only_bad_files_is_an_error_even_when_skipping() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("a")).unwrap();
    fs::write(dir.path().join("a/x.png"), b"").unwrap();
    let err = Split::open(dir.path(), &config(OnBadImage::Skip)).unwrap_err();
    let p = dir.path().display();
    assert_eq!(
        err.to_string(),
        format!(
            "{p}: all 1 image files were unreadable and skipped (the first, {p}/a/x.png: the file is empty); \
             check that these are image files"
        )
    );
}

#[test]
fn a_class_whose_files_were_all_skipped_is_an_error_naming_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("a/0.png"), colour(0));
    write_png(&dir.path().join("a/1.png"), colour(1));
    fs::create_dir_all(dir.path().join("b")).unwrap();
    fs::write(dir.path().join("b/x.png"), b"").unwrap();
    fs::write(dir.path().join("b/y.jpg"), b"not an image").unwrap();
    let err = Split::open(dir.path(), &config(OnBadImage::Skip)).unwrap_err();
    let b = dir.path().join("b");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: all 2 image files of this class were unreadable and skipped (the first, {}: \
             the file is empty), and a class without images cannot be learned",
            b.display(),
            b.join("x.png").display()
        )
    );
}

#[test]
fn skipped_files_are_summed_up_for_the_console() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        write_png(&dir.path().join(format!("a/{i}.png")), colour(i));
        write_png(&dir.path().join(format!("b/{i}.png")), colour(i + 3));
    }
    let good = Split::open(dir.path(), &config(OnBadImage::Skip)).unwrap();
    assert_eq!(good.skipped_summary("train"), None);
    let bad = dir.path().join("b/3.png");
    fs::write(&bad, b"").unwrap();
    fs::write(dir.path().join("a/9.gif"), b"GIF89a").unwrap();
    let split = Split::open(dir.path(), &config(OnBadImage::Skip)).unwrap();
    assert_eq!(
        split.skipped_summary("validation").unwrap(),
        format!(
            "2 of 8 image files in {} were unreadable and skipped (dataset.on_bad_image = \
             \"skip\"), the first {}: Gif data could not be decoded: truncated: the data ends \
             before the end of the first image; all are listed with their reasons under \
             \"validation.skipped\" in run.json (stage.json for a pretraining stage)",
            dir.path().display(),
            dir.path().join("a/9.gif").display()
        )
    );
}

#[test]
fn data_requires_the_same_two_classes_in_both_splits() {
    let root = tempfile::tempdir().unwrap();
    let tree = |name: &str, classes: &[&str]| {
        for c in classes {
            write_png(&root.path().join(format!("{name}/{c}/0.png")), colour(1));
        }
        root.path().join(name)
    };
    let two = tree("two", &["cats", "dogs"]);
    let other = tree("other", &["cats", "wolves"]);
    let three = tree("three", &["a", "b", "c"]);
    let cfg = config(OnBadImage::Error);

    let data = Data::open(&cfg, &two, &two).unwrap();
    assert_eq!((data.train.len(), data.validation.len()), (2, 2));

    let err = Data::open(&cfg, &two, &other).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} and {} have different class folders ([\"cats\", \"dogs\"] and [\"cats\", \"wolves\"]); \
             both must have the same class sub-folders",
            two.display(),
            other.display()
        )
    );
    let err = Data::open(&cfg, &three, &three).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: found 3 classes named [\"a\", \"b\", \"c\"]; binary classification needs exactly 2 class folders",
            three.display()
        )
    );
}
