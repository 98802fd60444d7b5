//! The hash cache (a stat cache): a file's SHA-256 remembered by its metadata, so that an
//! unchanged data set is fingerprinted by reading metadata only.
//!
//! An entry is reused only when the file's size, modification time (ns) and, on Unix, inode and
//! status-change time (ctime, which no tool can set back) are exactly those recorded. As in git's
//! index, an entry whose modification time was within `RACY_NS` of the moment it was hashed is
//! not trusted: a write in the same timestamp tick as the hashing would leave the metadata
//! unchanged. Such a file is simply hashed again next time.
//!
//! The cache is one JSON file, `fingerprints.json`, in a directory the caller chooses; it is
//! rewritten atomically. A missing, unreadable or damaged cache is treated as empty: it only saves
//! time, and losing it costs one full rehash.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::FingerprintError;

/// How long after its last modification a file's hash becomes trustworthy (covers coarse
/// file-system timestamps, FAT's 2 s included).
const RACY_NS: i64 = 3_000_000_000;

const VERSION: u32 = 1;

/// The metadata an entry is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    /// Unix only: status-change time and inode.
    pub ctime_ns: Option<i64>,
    pub inode: Option<u64>,
}

impl FileStat {
    /// The metadata of `path` (following symbolic links, as reading it does).
    pub fn of(path: &Path) -> std::io::Result<FileStat> {
        let meta = std::fs::metadata(path)?;
        let mtime_ns = meta.modified().map(system_ns).unwrap_or(0);
        #[cfg(unix)]
        let (ctime_ns, inode) = {
            use std::os::unix::fs::MetadataExt;
            (Some(ns(meta.ctime(), meta.ctime_nsec())), Some(meta.ino()))
        };
        #[cfg(not(unix))]
        let (ctime_ns, inode) = (None, None);
        Ok(FileStat {
            size: meta.len(),
            mtime_ns,
            ctime_ns,
            inode,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    stat: FileStat,
    /// When the hash was computed (after the metadata was read), ns since the Unix epoch.
    hashed_at_ns: i64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// Absolute path -> entry; ordered so the file is stable.
    files: BTreeMap<String, Entry>,
}

/// File hashes keyed by absolute path and checked against metadata.
#[derive(Debug, Default)]
pub struct StatCache {
    /// Where `save` writes; `None` for a cache that lives in memory only.
    file: Option<PathBuf>,
    files: BTreeMap<String, Entry>,
    changed: bool,
}

impl StatCache {
    /// The cache file's name inside the directory given to `open`.
    pub const FILE_NAME: &'static str = "fingerprints.json";

    /// A cache that is never saved (every run starts empty).
    pub fn in_memory() -> StatCache {
        StatCache::default()
    }

    /// The cache stored in `dir` (created by `save` when missing). A missing or damaged cache file
    /// gives an empty cache.
    pub fn open(dir: &Path) -> StatCache {
        let file = dir.join(Self::FILE_NAME);
        let files = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|c| c.version == VERSION)
            .map(|c| c.files)
            .unwrap_or_default();
        StatCache {
            file: Some(file),
            files,
            changed: false,
        }
    }

    /// The file `save` writes, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Write the cache (atomically) if anything changed since it was opened or last saved.
    pub fn save(&mut self) -> Result<(), FingerprintError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.changed {
            return Ok(());
        }
        let err = |message: String| FingerprintError::CacheWrite {
            path: file.clone(),
            message,
        };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let bytes = serde_json::to_vec(&CacheFile {
            version: VERSION,
            files: self.files.clone(),
        })
        .map_err(|e| err(e.to_string()))?;
        // The system's error alone: the message already names the file.
        crate::base::fs::write_atomic(file, &bytes).map_err(|e| {
            err(match e.downcast_ref::<crate::base::fs::WriteError>() {
                Some(w) => w.error.to_string(),
                None => e.root_cause().to_string(),
            })
        })?;
        self.changed = false;
        Ok(())
    }

    /// The recorded hash of `key` if its metadata is unchanged and was stable when hashed.
    pub(super) fn lookup(&self, key: &str, stat: &FileStat) -> Option<String> {
        let entry = self.files.get(key)?;
        let trusted =
            entry.stat == *stat && stat.mtime_ns.saturating_add(RACY_NS) <= entry.hashed_at_ns;
        trusted.then(|| entry.sha256.clone())
    }

    pub(super) fn record(
        &mut self,
        key: String,
        stat: FileStat,
        sha256: String,
        hashed_at_ns: i64,
    ) {
        self.files.insert(
            key,
            Entry {
                stat,
                hashed_at_ns,
                sha256,
            },
        );
        self.changed = true;
    }

    /// Forget the files under `prefix` (a directory path ending in '/') that are not in `keep`:
    /// they were deleted or are no longer used, and would otherwise pile up.
    pub(super) fn retain_under<'a>(&mut self, prefix: &str, keep: impl Iterator<Item = &'a str>) {
        let keep: HashSet<&str> = keep.collect();
        let before = self.files.len();
        self.files
            .retain(|k, _| !k.starts_with(prefix) || keep.contains(k.as_str()));
        self.changed |= self.files.len() != before;
    }
}

/// Now, in ns since the Unix epoch.
pub(super) fn now_ns() -> i64 {
    system_ns(SystemTime::now())
}

fn system_ns(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

#[cfg(unix)]
fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}
