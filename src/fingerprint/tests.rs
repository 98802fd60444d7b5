//! Manifests, root hashes, the stat cache and manifest comparison, on small files in temporary
//! directories.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::{DataSource, DatasetConfig, OnBadImage, Preprocessing, ShuffleMode};

/// Write `content` at `root/rel` and date its modification an hour back (older than the racy
/// window, as files of a real data set are).
fn put(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    set_mtime(&path, 3600);
}

fn set_mtime(path: &Path, seconds_ago: u64) {
    let t = SystemTime::now() - Duration::from_secs(seconds_ago);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn manifest(dir: &Path) -> Manifest {
    manifest_of_dir(dir, &mut StatCache::in_memory()).unwrap().0
}

/// The fixture of tests/reference/manifest_root.py.
fn reference_fixture(root: &Path) {
    put(root, "cats/a.png", b"alpha");
    put(root, "cats/sub/b.jpg", b"bravo\n");
    put(root, "dogs/c.JPG", b"");
    put(root, "dogs/\"q\" \u{e9}.gif", &[0, 1, 2, 255]);
    // Not listed by the loader, so not in the manifest.
    put(root, "dogs/notes.txt", b"not an image");
}

#[test]
fn root_hash_matches_the_python_reference() {
    let dir = tempfile::tempdir().unwrap();
    reference_fixture(dir.path());
    let m = manifest(dir.path());
    assert_eq!(m.classes, ["cats", "dogs"]);
    let listed: Vec<(&str, u64, &str)> = m
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size, f.label.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("cats/a.png", 5, "cats"),
            ("cats/sub/b.jpg", 6, "cats"),
            ("dogs/\"q\" \u{e9}.gif", 4, "dogs"),
            ("dogs/c.JPG", 0, "dogs"),
        ]
    );
    assert_eq!(
        m.files[3].sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "SHA-256 of the empty file"
    );
    // python3 tests/reference/manifest_root.py
    assert_eq!(
        m.root,
        "2517a09d2256f4fc04c1b0d3dd88ef09951c513211909d108be48d048d555a4f"
    );
}

#[test]
fn root_hash_is_independent_of_location_but_follows_every_change() {
    let base = tempfile::tempdir().unwrap();
    let fixture = |name: &str| {
        let root = base.path().join(name);
        put(&root, "cats/1.png", b"one");
        put(&root, "cats/2.png", b"two");
        put(&root, "dogs/3.png", b"three");
        root
    };
    let original = manifest(&fixture("original")).root;
    assert_eq!(
        manifest(&fixture("copy")).root,
        original,
        "same files elsewhere"
    );

    type Edit = (&'static str, fn(&Path));
    let cases: [Edit; 6] = [
        ("content", |r| put(r, "cats/1.png", b"One")),
        ("rename", |r| {
            fs::rename(r.join("cats/1.png"), r.join("cats/1b.png")).unwrap()
        }),
        ("label", |r| {
            fs::rename(r.join("cats/1.png"), r.join("dogs/1.png")).unwrap()
        }),
        ("added", |r| put(r, "dogs/4.png", b"four")),
        ("removed", |r| {
            fs::remove_file(r.join("cats/2.png")).unwrap()
        }),
        ("class renamed", |r| {
            fs::rename(r.join("dogs"), r.join("doggos")).unwrap()
        }),
    ];
    let mut seen = std::collections::HashSet::from([original]);
    for (what, change) in cases {
        let root = fixture(what);
        change(&root);
        assert!(
            seen.insert(manifest(&root).root),
            "{what}: hash unchanged or repeated"
        );
    }
}

fn tiny_png(path: &Path, value: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(2, 2, image::Rgb([value, 0, 0]))
        .save(path)
        .unwrap();
}

#[test]
fn files_a_split_skipped_are_not_in_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    tiny_png(&dir.path().join("cats/a.png"), 10);
    tiny_png(&dir.path().join("dogs/b.png"), 20);
    put(dir.path(), "dogs/broken.png", b"not a png");
    let cfg = DatasetConfig {
        source: DataSource::Directories {
            train: dir.path().into(),
            validation: dir.path().into(),
        },
        image_size: [2, 2],
        batch_size: 2,
        shuffle: ShuffleMode::None,
        preprocessing: Preprocessing::Rescale,
        on_bad_image: OnBadImage::Skip,
        augmentation: vec![],
        known: None,
    };
    let split = Split::open(dir.path(), &cfg).unwrap();
    assert_eq!(split.skipped.len(), 1);
    let (used, _) = manifest_of_split(&split, &mut StatCache::in_memory()).unwrap();
    let paths: Vec<&str> = used.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["cats/a.png", "dogs/b.png"]);
    let all = manifest(dir.path());
    assert_eq!(all.len(), 3);
    assert_ne!(used.root, all.root);
    // The listing's manifest less the skipped file is the same manifest, root hash included.
    assert_eq!(manifest_of_kept(&all, &split), used);
    let index = index_directory(dir.path()).unwrap();
    let hashes = hashes_in_listing_order(&index, &all);
    let by_path: Vec<(String, String)> = all
        .files
        .iter()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect();
    let listed: Vec<String> = index
        .samples
        .iter()
        .map(|s| relative_path(&index.root, &s.path))
        .collect();
    for (path, hash) in listed.iter().zip(&hashes) {
        assert!(by_path.contains(&(path.clone(), hash.clone())), "{path}");
    }
}

#[test]
fn stat_cache_rehashes_only_changed_files_across_processes() {
    let data = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache_dir = cache_dir.path().join(".cache");
    for i in 0..20 {
        put(
            data.path(),
            &format!("c{}/{i:02}.jpg", i % 2),
            &[i as u8; 100],
        );
    }

    let mut cache = StatCache::open(&cache_dir);
    assert!(cache.is_empty());
    let (first, stats) = manifest_of_dir(data.path(), &mut cache).unwrap();
    assert_eq!(
        (stats.files, stats.hashed, stats.bytes_hashed),
        (20, 20, 2000)
    );
    cache.save().unwrap();
    assert!(cache_dir.join(StatCache::FILE_NAME).is_file());

    // A new process: only the cache file carries over.
    let mut cache = StatCache::open(&cache_dir);
    assert_eq!(cache.len(), 20);
    let (second, stats) = manifest_of_dir(data.path(), &mut cache).unwrap();
    assert_eq!((stats.hashed, stats.bytes_hashed), (0, 0));
    assert_eq!(second, first);

    // Same size, new content and a new (old) modification time.
    let changed = data.path().join("c1/07.jpg");
    fs::write(&changed, [99u8; 100]).unwrap();
    set_mtime(&changed, 1800);
    let (third, stats) = manifest_of_dir(data.path(), &mut cache).unwrap();
    assert_eq!((stats.hashed, stats.bytes_hashed), (1, 100));
    assert_eq!(
        third,
        manifest(data.path()),
        "cached result equals a fresh one"
    );
    let diff = ManifestDiff::between(&first, &third);
    assert_eq!(diff.changed.len(), 1);
    assert_eq!(diff.changed[0].new.path, "c1/07.jpg");
    cache.save().unwrap();

    // A deleted file leaves the cache too.
    fs::remove_file(data.path().join("c0/00.jpg")).unwrap();
    manifest_of_dir(data.path(), &mut cache).unwrap();
    assert_eq!(cache.len(), 19);
}

/// A content change that keeps size and modification time (e.g. a tool that restores mtimes) is
/// still caught: the status-change time cannot be set back.
#[cfg(unix)]
#[test]
fn stat_cache_notices_content_rewritten_with_the_same_size_and_mtime() {
    let data = tempfile::tempdir().unwrap();
    put(data.path(), "a/1.png", b"0123456789");
    put(data.path(), "b/2.png", b"abcdefghij");
    let mut cache = StatCache::in_memory();
    manifest_of_dir(data.path(), &mut cache).unwrap();
    let path = data.path().join("a/1.png");
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    // ctime has the kernel's timestamp granularity: make sure the rewrite lands on a new tick.
    std::thread::sleep(Duration::from_millis(20));
    fs::write(&path, b"9876543210").unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let (m, stats) = manifest_of_dir(data.path(), &mut cache).unwrap();
    assert_eq!(stats.hashed, 1);
    assert_eq!(m, manifest(data.path()));
}

#[test]
fn a_file_modified_just_before_hashing_is_not_trusted_from_the_cache() {
    let data = tempfile::tempdir().unwrap();
    put(data.path(), "a/old.png", b"old");
    let fresh = data.path().join("b/fresh.png");
    fs::create_dir_all(fresh.parent().unwrap()).unwrap();
    fs::write(&fresh, b"fresh").unwrap();
    let mut cache = StatCache::in_memory();
    assert_eq!(
        manifest_of_dir(data.path(), &mut cache).unwrap().1.hashed,
        2
    );
    assert_eq!(
        manifest_of_dir(data.path(), &mut cache).unwrap().1.hashed,
        1
    );
}

#[test]
fn a_damaged_cache_file_is_ignored_and_replaced() {
    let data = tempfile::tempdir().unwrap();
    put(data.path(), "a/1.png", b"1");
    let cache_dir = tempfile::tempdir().unwrap();
    let file = cache_dir.path().join(StatCache::FILE_NAME);
    fs::write(&file, b"{ not json").unwrap();
    let mut cache = StatCache::open(cache_dir.path());
    assert!(cache.is_empty());
    assert_eq!(
        manifest_of_dir(data.path(), &mut cache).unwrap().1.hashed,
        1
    );
    cache.save().unwrap();
    assert_eq!(StatCache::open(cache_dir.path()).len(), 1);
    let leftovers: Vec<_> = fs::read_dir(cache_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, [StatCache::FILE_NAME], "no temporary files left");
}

#[test]
fn an_unwritable_cache_location_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    put(&data, "a/1.png", b"1");
    // A file where the cache directory should be.
    let blocker = dir.path().join("blocker");
    fs::write(&blocker, b"").unwrap();
    let mut cache = StatCache::open(&blocker.join("cache"));
    manifest_of_dir(&data, &mut cache).unwrap();
    let err = cache.save().unwrap_err().to_string();
    let want = format!(
        "{}: cannot write the fingerprint cache:",
        blocker.join("cache").join(StatCache::FILE_NAME).display()
    );
    assert!(err.starts_with(&want), "{err}");
    assert!(err.ends_with("(check that the directory is writable, or delete it to start afresh)"));
}

#[cfg(unix)]
#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "a/1.png", b"1");
    let dangling = dir.path().join("a/2.png");
    std::os::unix::fs::symlink(dir.path().join("nowhere.png"), &dangling).unwrap();
    let err = manifest_of_dir(dir.path(), &mut StatCache::in_memory()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cannot read the file to fingerprint it: No such file or directory (os error 2)",
            dangling.display()
        )
    );
}

#[test]
fn manifests_round_trip_through_json_and_edits_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    reference_fixture(dir.path());
    let m = manifest(dir.path());
    let json = m.to_json();
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(
        text.starts_with("{\n  \"root\": \"2517a09d"),
        "root first, then classes and files: {text}"
    );
    assert_eq!(Manifest::from_json(&json, Path::new("m.json")).unwrap(), m);

    let edited = text.replace("\"size\": 5", "\"size\": 6");
    let err = Manifest::from_json(edited.as_bytes(), Path::new("run/train.manifest.json"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("run/train.manifest.json: not a dataset manifest: its root hash 2517a09d"),
        "{err}"
    );
    assert!(err.ends_with("it was edited or damaged"), "{err}");
    let err = Manifest::from_json(b"[]", Path::new("x.json")).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("x.json: not a dataset manifest: "));
}

fn entry(path: &str, content: &str, label: &str) -> FileEntry {
    FileEntry {
        path: path.into(),
        size: content.len() as u64,
        sha256: crate::base::hash::hex(&Sha256::digest(content.as_bytes())),
        label: label.into(),
    }
}

#[test]
fn diff_lists_added_removed_and_changed_files() {
    let classes = || vec!["cats".to_string(), "dogs".to_string()];
    let old = Manifest::new(
        classes(),
        vec![
            entry("cats/1.png", "one", "cats"),
            entry("cats/2.png", "two", "cats"),
            entry("dogs/3.png", "three", "dogs"),
            entry("dogs/4.png", "four", "dogs"),
        ],
    );
    let new = Manifest::new(
        classes(),
        vec![
            entry("cats/1.png", "one", "cats"),
            entry("cats/2.png", "TWO!", "cats"),
            entry("dogs/4.png", "four", "cats"),
            entry("dogs/5.png", "five", "dogs"),
        ],
    );
    let diff = ManifestDiff::between(&old, &new);
    assert!(ManifestDiff::between(&old, &old).is_empty());
    assert!(!diff.is_empty());
    // sha256("two") = 3fc4ccfe..., sha256("TWO!") = 598e1933... (sha256sum)
    assert_eq!(
        diff.to_string(),
        "+ dogs/5.png (4 bytes, dogs)\n\
         - dogs/3.png (5 bytes, dogs)\n\
         ~ cats/2.png: content 3fc4ccfe -> 598e1933, size 3 -> 4\n\
         ~ dogs/4.png: label dogs -> cats\n"
    );
    let renamed = Manifest::new(vec!["cats".into(), "wolves".into()], new.files.clone());
    assert_eq!(
        ManifestDiff::between(&new, &renamed).to_string(),
        "classes: [\"cats\", \"dogs\"] -> [\"cats\", \"wolves\"]\n"
    );
}

#[test]
fn the_same_content_in_both_splits_is_reported() {
    let classes = || vec!["cats".to_string(), "dogs".to_string()];
    let train = Manifest::new(
        classes(),
        vec![
            entry("cats/1.png", "same", "cats"),
            entry("cats/1-copy.png", "same", "cats"),
            entry("dogs/2.png", "unique", "dogs"),
        ],
    );
    let validation = Manifest::new(
        classes(),
        vec![
            entry("dogs/9.png", "same", "dogs"),
            entry("cats/8.png", "other", "cats"),
        ],
    );
    let found = duplicates_across(&train, &validation);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].train, ["cats/1-copy.png", "cats/1.png"]);
    assert_eq!(found[0].validation, ["dogs/9.png"]);
    // sha256("same") = 0967115f... (sha256sum)
    assert_eq!(
        found[0].to_string(),
        "the same file content (sha256 0967115f) is in train (cats/1-copy.png, cats/1.png) \
         and validation (dogs/9.png)"
    );
    assert!(duplicates_across(&train, &train.clone()).len() == 2);
    assert!(duplicates_across(&validation, &Manifest::new(classes(), vec![])).is_empty());
}

#[test]
fn the_same_content_under_two_labels_is_reported_with_every_path() {
    let classes = vec!["cats".to_string(), "dogs".to_string(), "owls".to_string()];
    let split = Manifest::new(
        classes,
        vec![
            entry("cats/1.png", "same", "cats"),
            entry("cats/1-copy.png", "same", "cats"),
            entry("dogs/7.png", "same", "dogs"),
            entry("cats/2.png", "twice", "cats"),
            entry("cats/2-copy.png", "twice", "cats"),
            entry("owls/3.png", "thrice", "owls"),
            entry("dogs/3.png", "thrice", "dogs"),
        ],
    );
    let found = label_conflicts(&split);
    assert_eq!(found.len(), 2, "{found:?}");
    // sha256("same") = 0967115f... (sha256sum)
    assert_eq!(
        found[0].to_string(),
        "the same file content (sha256 0967115f) is under different labels: \
         cats/1-copy.png (cats), cats/1.png (cats), dogs/7.png (dogs)"
    );
    assert_eq!(
        found[1].files,
        [
            ("dogs/3.png".to_string(), "dogs".to_string()),
            ("owls/3.png".to_string(), "owls".to_string())
        ]
    );
}

#[test]
fn the_dataset_hash_names_each_split() {
    let split = |c: char| Manifest {
        root: c.to_string().repeat(64),
        classes: vec![],
        files: vec![],
    };
    // printf 'train:%s\nvalidation:%s\n' aaa...a bbb...b | sha256sum
    assert_eq!(
        dataset_hash(&split('a'), &split('b')),
        "9fdfcacff8598c5e3bf2592c4cd6205ac9eb269f965e18cadc0f409516cab552"
    );
    assert_ne!(
        dataset_hash(&split('a'), &split('b')),
        dataset_hash(&split('b'), &split('a'))
    );
}
