//! Dataset fingerprints: which files, with which content and labels, a run used, as a manifest
//! per split and one root hash over it. The dataset component of a run key.
//!
//! A manifest lists every file a split *uses* (files left out under `on_bad_image = "skip"` are
//! not listed, so skipping a file changes the hash): its path relative to the split root with
//! '/' separators, its size, its SHA-256 and its label (class name), plus the class names in
//! label order (a label is a class's position). Files are hashed in parallel; a `StatCache`
//! remembers the hash of each file by its metadata, so re-fingerprinting an unchanged data set
//! only reads metadata.
//!
//! The root hash (version 1) is the lowercase hex SHA-256 of this text, UTF-8, every line ending
//! in "\n":
//! - line 1: the class names in label order as a compact JSON array, e.g. `["cats","dogs"]`;
//! - then one line per file, ordered by path (byte order of the UTF-8 path), each a compact
//!   JSON array `[path, size, sha256, label]`, e.g. `["cats/1.jpg",1234,"9f86d0...","cats"]`.
//!
//! "Compact JSON" is `serde_json`'s output: no spaces, strings with only `"`, `\` and control
//! characters escaped (Python: `json.dumps(x, separators=(",", ":"), ensure_ascii=False)`;
//! `tests/reference/manifest_root.py` computes a root hash that way). Non-UTF-8 file names are
//! recorded lossily (U+FFFD). The dataset hash combines both splits: the SHA-256 of
//! `train:<train root>\nvalidation:<validation root>\n`.
//!
//! This module reads files and the cache; it never decodes images and never writes anywhere but
//! the cache file it is given.

mod diff;
mod hash_cache;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use diff::{
    duplicates_across, label_conflicts, Change, Duplicate, LabelConflict, ManifestDiff,
};
pub use hash_cache::{FileStat, StatCache};

use crate::base::hash::{hex, sha256_file};
use crate::dataset::index::{index_directory, ClassIndex};
use crate::dataset::{DatasetError, Sample, Split};

/// One file of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the split root, '/' separators.
    pub path: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    /// The class name.
    pub label: String,
}

/// The files one split uses, sorted by path, and their root hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Hex SHA-256 of the canonical text (see the module docs).
    pub root: String,
    /// Class names in label order.
    pub classes: Vec<String>,
    pub files: Vec<FileEntry>,
}

/// What fingerprinting cost: how many files were listed and how many had to be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashStats {
    pub files: usize,
    /// Files read and hashed (not found in the stat cache or changed since).
    pub hashed: usize,
    pub bytes_hashed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("{}: cannot read the file to fingerprint it: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{}: cannot write the fingerprint cache: {message} (check that the directory is writable, or delete it to start afresh)", path.display())]
    CacheWrite { path: PathBuf, message: String },
    #[error("{}: not a dataset manifest: {message}", path.display())]
    BadManifest { path: PathBuf, message: String },
}

impl Manifest {
    /// A manifest of `files` (any order; sorted here) and its root hash.
    pub fn new(classes: Vec<String>, mut files: Vec<FileEntry>) -> Manifest {
        files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let root = hex(&Sha256::digest(canonical_text(&classes, &files).as_bytes()));
        Manifest {
            root,
            classes,
            files,
        }
    }

    /// The manifest as stored with a run: pretty JSON, fields and files in a fixed order.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and integers only: serializing cannot fail.
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Read a stored manifest back; `path` names the file in errors. The root hash is recomputed
    /// and must match the stored one, so a hand-edited manifest cannot pass for the original.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Manifest, FingerprintError> {
        let bad = |message: String| FingerprintError::BadManifest {
            path: path.to_path_buf(),
            message,
        };
        let stored: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let rebuilt = Manifest::new(stored.classes.clone(), stored.files.clone());
        if rebuilt.root != stored.root {
            return Err(bad(format!(
                "its root hash {} does not match its files (recomputed: {}); it was edited or damaged",
                stored.root, rebuilt.root
            )));
        }
        Ok(rebuilt)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// The text the root hash is taken of (see the module docs).
fn canonical_text(classes: &[String], sorted_files: &[FileEntry]) -> String {
    // Strings and integers only: serializing cannot fail.
    let line = |v: serde_json::Value| serde_json::to_string(&v).unwrap_or_default() + "\n";
    let mut text = line(serde_json::json!(classes));
    for f in sorted_files {
        text.push_str(&line(serde_json::json!([
            f.path, f.size, f.sha256, f.label
        ])));
    }
    text
}

/// The dataset hash: both splits' root hashes, named.
pub fn dataset_hash(train: &Manifest, validation: &Manifest) -> String {
    let text = format!("train:{}\nvalidation:{}\n", train.root, validation.root);
    hex(&Sha256::digest(text.as_bytes()))
}

/// List `dir` as the data loader does (`dataset::index::index_directory`) and fingerprint every file.
pub fn manifest_of_dir(
    dir: &Path,
    cache: &mut StatCache,
) -> Result<(Manifest, HashStats), FingerprintError> {
    manifest_of_index(&index_directory(dir)?, cache)
}

/// Fingerprint every file of a listing (for `on_bad_image = "error"`, where every file is used).
pub fn manifest_of_index(
    index: &ClassIndex,
    cache: &mut StatCache,
) -> Result<(Manifest, HashStats), FingerprintError> {
    manifest_of_samples(&index.root, &index.class_names, &index.samples, cache)
}

/// The content hash of every file of a listing, in listing order, from the listing's manifest
/// (`manifest_of_index`): what keys the decoded-image cache.
pub fn hashes_in_listing_order(index: &ClassIndex, manifest: &Manifest) -> Vec<String> {
    let by_path: std::collections::HashMap<&str, &str> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.sha256.as_str()))
        .collect();
    index
        .samples
        .iter()
        .map(|s| {
            let rel = relative_path(&index.root, &s.path);
            by_path
                .get(rel.as_str())
                .copied()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The manifest of the files a decoded split uses, from the manifest of its whole listing
/// (`manifest_of_index`): the same as `manifest_of_split`, without reading the files' metadata
/// again.
pub fn manifest_of_kept(listing: &Manifest, split: &Split) -> Manifest {
    let kept: std::collections::HashSet<String> = split
        .samples
        .iter()
        .map(|s| relative_path(&split.root, &s.path))
        .collect();
    let files = listing
        .files
        .iter()
        .filter(|f| kept.contains(&f.path))
        .cloned()
        .collect();
    Manifest::new(listing.classes.clone(), files)
}

/// Fingerprint the files a decoded split uses (files it skipped are left out).
pub fn manifest_of_split(
    split: &Split,
    cache: &mut StatCache,
) -> Result<(Manifest, HashStats), FingerprintError> {
    manifest_of_samples(&split.root, &split.class_names, &split.samples, cache)
}

/// Fingerprint `samples` (paths under `root`, labels indexing `classes`). Files whose metadata
/// matches the cache are not read; the others are hashed on all cores and recorded in the cache.
/// The caller saves the cache (`StatCache::save`) when it is done.
pub fn manifest_of_samples(
    root: &Path,
    classes: &[String],
    samples: &[Sample],
    cache: &mut StatCache,
) -> Result<(Manifest, HashStats), FingerprintError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FingerprintError::Io { path, source }
    };
    // Cache keys are absolute paths, so the same file is found whatever directory the runner
    // was started from.
    let abs_root = root.canonicalize().map_err(io(root))?;

    struct Pending<'a> {
        sample: &'a Sample,
        rel: String,
        key: String,
        stat: FileStat,
    }
    let mut pending = Vec::with_capacity(samples.len());
    for sample in samples {
        let rel = relative_path(root, &sample.path);
        let key = format!("{}/{rel}", abs_root.to_string_lossy().trim_end_matches('/'));
        let stat = FileStat::of(&sample.path).map_err(io(&sample.path))?;
        pending.push(Pending {
            sample,
            rel,
            key,
            stat,
        });
    }

    let label = |s: &Sample| {
        classes
            .get(s.label as usize)
            .cloned()
            .unwrap_or_else(|| s.label.to_string())
    };
    let mut files = Vec::with_capacity(pending.len());
    let mut misses = Vec::new();
    for p in &pending {
        match cache.lookup(&p.key, &p.stat) {
            Some(sha256) => files.push(FileEntry {
                path: p.rel.clone(),
                size: p.stat.size,
                sha256,
                label: label(p.sample),
            }),
            None => misses.push(p),
        }
    }

    let hashed_at = hash_cache::now_ns();
    let hashed: Vec<(&Pending, u64, String)> = misses
        .par_iter()
        .map(|p| {
            let (sha256, size) = sha256_file(&p.sample.path).map_err(io(&p.sample.path))?;
            Ok((*p, size, sha256))
        })
        .collect::<Result<_, FingerprintError>>()?;

    let mut stats = HashStats {
        files: samples.len(),
        hashed: hashed.len(),
        bytes_hashed: 0,
    };
    for (p, size, sha256) in hashed {
        stats.bytes_hashed += size;
        cache.record(p.key.clone(), p.stat, sha256.clone(), hashed_at);
        files.push(FileEntry {
            path: p.rel.clone(),
            size,
            sha256,
            label: label(p.sample),
        });
    }
    let prefix = format!("{}/", abs_root.to_string_lossy().trim_end_matches('/'));
    cache.retain_under(&prefix, pending.iter().map(|p| p.key.as_str()));
    Ok((Manifest::new(classes.to_vec(), files), stats))
}

/// `path` relative to `root`, '/' separators (the index joins class folders onto the root, so the
/// prefix is always there; a path outside it is kept whole rather than lost).
fn relative_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests;
