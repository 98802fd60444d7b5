use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{Rgb, RgbImage};
use sha2::{Digest, Sha256};

use super::disk::temp_writer_pid;
use super::*;
use crate::base::hash::hex;
use crate::base::memory::MemoryBudget;
use crate::config::{DataSource, DatasetConfig, OnBadImage, Preprocessing, ShuffleMode};
use crate::dataset::batches::{DecodeReport, EpochPlan, Split};
use crate::dataset::index::{index_directory, ClassIndex};
use crate::dataset::DatasetError;

fn config(on_bad_image: OnBadImage) -> DatasetConfig {
    DatasetConfig {
        source: DataSource::Directories {
            train: PathBuf::new(),
            validation: PathBuf::new(),
        },
        image_size: [8, 8],
        batch_size: 3,
        shuffle: ShuffleMode::Keras,
        preprocessing: Preprocessing::Rescale,
        on_bad_image,
        augmentation: Vec::new(),
        known: None,
    }
}

/// A `w` x `h` PNG of pseudo-random pixels (so that resizing gives fractional values).
fn write_noise_png(path: &Path, w: u32, h: u32, seed: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let image = RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 31 + y * 17 + seed * 101).wrapping_mul(2_654_435_761) >> 8;
        Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    image.save(path).unwrap();
}

/// Two classes: files 0..3 at the target size (exact in u8), 3..6 larger (resized: f32).
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        let class = if i % 2 == 0 { "a" } else { "b" };
        let size = if i < 3 { 8 } else { 13 };
        write_noise_png(&dir.path().join(format!("{class}/{i}.png")), size, size, i);
    }
    dir
}

/// The content hashes of the files of `index`, as the fingerprint would give them.
fn hashes(index: &ClassIndex) -> Vec<String> {
    index
        .samples
        .iter()
        .map(|s| hex(&Sha256::digest(fs::read(&s.path).unwrap())))
        .collect()
}

fn open(dir: &Path, cfg: &DatasetConfig, cache: &ImageCache) -> (Split, DecodeReport) {
    let index = index_directory(dir).unwrap();
    let h = hashes(&index);
    Split::decode_with(index, cfg, Some(&h), cache).unwrap()
}

fn disk_cache(dir: &Path, budget: u64) -> ImageCache {
    ImageCache {
        dir: Some(dir.to_path_buf()),
        budget: Arc::new(MemoryBudget::new(budget)),
        enabled: true,
    }
}

/// Every image of `split`, bit for bit.
fn bits(split: &Split) -> Vec<Vec<u32>> {
    (0..split.len())
        .map(|i| {
            split
                .image(i)
                .unwrap()
                .data
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect()
}

/// Every batch of one pass in file order.
fn batches(split: &Split) -> Result<Vec<Vec<f32>>, DatasetError> {
    let plan = EpochPlan {
        order: (0..split.len()).collect(),
        batch_size: 4,
        preprocessing: Preprocessing::Rescale,
        augmentation: None,
    };
    let mut out = Vec::new();
    let flow = split.for_each_batch(&plan, |b| {
        out.push(b.images);
        ControlFlow::Continue(())
    })?;
    assert!(flow.is_continue());
    Ok(out)
}

#[test]
fn a_cached_split_is_mapped_from_disk_and_identical_to_decoding() {
    let data = data_dir();
    let cache_dir = tempfile::tempdir().unwrap();
    let cfg = config(OnBadImage::Error);
    let fresh = Split::open(data.path(), &cfg).unwrap();

    let (first, report) = open(data.path(), &cfg, &disk_cache(cache_dir.path(), 0));
    assert_eq!(report.origin, Origin::Decoded);
    assert_eq!(report.warning, None);
    assert_eq!(first.residency(), Residency::Mapped);
    let (second, report) = open(data.path(), &cfg, &disk_cache(cache_dir.path(), 0));
    assert_eq!(
        report.origin,
        Origin::Cached,
        "the second open reads the store"
    );
    assert_eq!(second.residency(), Residency::Mapped);

    let want = bits(&fresh);
    assert_eq!(bits(&first), want);
    assert_eq!(bits(&second), want);
    assert_eq!(batches(&second).unwrap(), batches(&fresh).unwrap());
    assert_eq!(second.samples, fresh.samples);

    // Images already at the target size are stored as u8, resized ones as f32: 3 x 1 + 3 x 4
    // bytes per value.
    assert_eq!(second.stored_bytes(), 8 * 8 * 3 * (3 + 3 * 4));
    let resized = fresh.image(5).unwrap();
    assert!(
        resized.data.iter().any(|v| v.fract() != 0.0),
        "resizing gives fractional values, which u8 could not hold"
    );
    // Nothing is held against the memory budget: the pixels are mapped.
    assert_eq!(disk_cache(cache_dir.path(), 0).budget.used(), 0);
}

#[test]
fn changed_content_or_settings_give_another_store_and_a_damaged_one_is_rebuilt() {
    let data = data_dir();
    let cache_dir = tempfile::tempdir().unwrap();
    let cfg = config(OnBadImage::Error);
    let cache = disk_cache(cache_dir.path(), 0);
    let (_, report) = open(data.path(), &cfg, &cache);
    assert_eq!(report.origin, Origin::Decoded);

    let mut bigger = cfg.clone();
    bigger.image_size = [9, 9];
    let (_, report) = open(data.path(), &bigger, &cache);
    assert_eq!(
        report.origin,
        Origin::Decoded,
        "another size is another store"
    );

    write_noise_png(&data.path().join("a/0.png"), 8, 8, 99);
    let (changed, report) = open(data.path(), &cfg, &cache);
    assert_eq!(
        report.origin,
        Origin::Decoded,
        "new content is another store"
    );
    assert_eq!(
        bits(&changed),
        bits(&Split::open(data.path(), &cfg).unwrap())
    );

    // Truncate every pixel file: each store no longer matches its description and is rebuilt.
    for entry in fs::read_dir(cache_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pixels") {
            let bytes = fs::read(&path).unwrap();
            fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        }
    }
    let (rebuilt, report) = open(data.path(), &cfg, &cache);
    assert_eq!(report.origin, Origin::Decoded);
    let (again, report) = open(data.path(), &cfg, &cache);
    assert_eq!(report.origin, Origin::Cached);
    assert_eq!(bits(&again), bits(&rebuilt));

    // A description that lists a file twice is not trusted either.
    for entry in fs::read_dir(cache_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let mut stored: serde_json::Value =
                serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            stored["kept"][1] = stored["kept"][0].clone();
            fs::write(&path, serde_json::to_vec(&stored).unwrap()).unwrap();
        }
    }
    let (_, report) = open(data.path(), &cfg, &cache);
    assert_eq!(report.origin, Origin::Decoded);
}

#[test]
fn skipped_files_are_remembered_by_the_store() {
    let data = data_dir();
    fs::write(data.path().join("a/bad.png"), b"not an image").unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    // Under "error" the bad file stops decoding, and nothing is left in the cache directory.
    let index = index_directory(data.path()).unwrap();
    let h = hashes(&index);
    let cache = disk_cache(cache_dir.path(), 0);
    let err = Split::decode_with(index, &config(OnBadImage::Error), Some(&h), &cache).unwrap_err();
    assert!(matches!(err, DatasetError::BadImage { .. }), "{err:?}");
    assert_eq!(fs::read_dir(cache_dir.path()).unwrap().count(), 0);

    let cfg = config(OnBadImage::Skip);
    let fresh = Split::open(data.path(), &cfg).unwrap();
    assert_eq!(fresh.skipped.len(), 1);
    let _ = open(data.path(), &cfg, &cache);
    let (cached, report) = open(data.path(), &cfg, &cache);
    assert_eq!(report.origin, Origin::Cached);
    assert_eq!(cached.samples, fresh.samples);
    assert_eq!(cached.skipped, fresh.skipped);
    assert_eq!(bits(&cached), bits(&fresh));
}

#[test]
fn without_caching_images_are_decoded_when_used_and_a_file_changed_since_is_an_error() {
    let data = data_dir();
    let cfg = config(OnBadImage::Error);
    let fresh = Split::open(data.path(), &cfg).unwrap();
    let (split, report) = open(data.path(), &cfg, &ImageCache::off());
    assert_eq!(report.origin, Origin::Decoded);
    assert_eq!(split.residency(), Residency::Files);
    assert_eq!(split.stored_bytes(), 0);
    assert_eq!(bits(&split), bits(&fresh));
    assert_eq!(batches(&split).unwrap(), batches(&fresh).unwrap());

    let broken = data.path().join("b/3.png");
    fs::write(&broken, b"").unwrap();
    match batches(&split) {
        Err(DatasetError::Index { path, message }) => {
            assert_eq!(path, broken);
            assert!(
                message.contains("changed or disappeared since the sweep fingerprinted it"),
                "{message}"
            );
        }
        other => panic!("expected the broken file's error, got {other:?}"),
    }
    // The kept copies are not affected.
    assert!(batches(&fresh).is_ok());
}

#[test]
fn in_memory_images_stay_within_the_budget_or_fall_back_to_decoding() {
    let data = data_dir();
    let cfg = config(OnBadImage::Error);
    let need = (8 * 8 * 3 * (3 + 3 * 4)) as u64;
    let fresh = Split::open(data.path(), &cfg).unwrap();

    let roomy = ImageCache {
        dir: None,
        budget: Arc::new(MemoryBudget::new(need)),
        enabled: true,
    };
    let (split, report) = open(data.path(), &cfg, &roomy);
    assert_eq!(report.warning, None);
    assert_eq!(split.residency(), Residency::Memory);
    assert_eq!(roomy.budget.used(), need);
    assert_eq!(bits(&split), bits(&fresh));
    drop(split);
    assert_eq!(
        roomy.budget.used(),
        0,
        "dropping the split returns its memory"
    );

    let tight = ImageCache {
        dir: None,
        budget: Arc::new(MemoryBudget::new(need - 1)),
        enabled: true,
    };
    let (split, report) = open(data.path(), &cfg, &tight);
    assert!(
        report
            .warning
            .as_deref()
            .unwrap_or("")
            .contains("memory budget"),
        "{:?}",
        report.warning
    );
    assert_eq!(split.residency(), Residency::Files);
    assert_eq!(
        tight.budget.used(),
        0,
        "what was held before the limit is given back"
    );
    assert_eq!(bits(&split), bits(&fresh));
}

#[test]
fn an_unwritable_cache_directory_falls_back_to_memory_with_a_warning() {
    let data = data_dir();
    let cfg = config(OnBadImage::Error);
    let blocker = tempfile::NamedTempFile::new().unwrap();
    // A file where the directory should be: it cannot be created.
    let cache = disk_cache(&blocker.path().join("images"), u64::MAX);
    let (split, report) = open(data.path(), &cfg, &cache);
    assert!(report
        .warning
        .as_deref()
        .unwrap_or("")
        .contains("cannot write"));
    assert_eq!(split.residency(), Residency::Memory);
    assert_eq!(bits(&split), bits(&Split::open(data.path(), &cfg).unwrap()));
}

#[test]
fn temporary_files_of_dead_writers_are_removed_and_live_ones_kept() {
    let data = data_dir();
    let cache_dir = tempfile::tempdir().unwrap();
    // No process has this id (Linux caps ids far below it).
    let dead = cache_dir.path().join(".abc.pixels.4000000000-0.tmp");
    let mine = cache_dir
        .path()
        .join(format!(".abc.pixels.{}-7.tmp", std::process::id()));
    let other = cache_dir.path().join("notes.tmp");
    let recent = cache_dir.path().join(".def.pixels.4000000001-0.tmp");
    let long_ago = std::time::SystemTime::now() - crate::base::fs::ORPHAN_IDLE * 2;
    for f in [&dead, &mine, &other, &recent] {
        fs::write(f, b"partial").unwrap();
        if f != &recent {
            let file = fs::File::options().write(true).open(f).unwrap();
            file.set_modified(long_ago).unwrap();
        }
    }
    assert_eq!(
        temp_writer_pid(".abc.pixels.4000000000-0.tmp"),
        Some(4_000_000_000)
    );
    assert_eq!(temp_writer_pid("abc.pixels"), None);
    let _ = open(
        data.path(),
        &config(OnBadImage::Error),
        &disk_cache(cache_dir.path(), 0),
    );
    if cfg!(target_os = "linux") {
        assert!(!dead.exists(), "a dead writer's file is removed");
    }
    assert!(mine.exists(), "this process's own files are left alone");
    assert!(
        recent.exists(),
        "a file written to lately may belong to a writer on another machine"
    );
    assert!(other.exists(), "other files are left alone");
}
