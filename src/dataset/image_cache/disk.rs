//! The cache files' protocol under `results/.cache/images/`: a split's key, the description
//! beside its pixels (`<key>.json`), writing `<key>.pixels` under a temporary name and publishing
//! it, and loading a published store back (or nothing, when anything does not match).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::pixels::{Decoded, Origin, Pixels, Record, Storage};
use crate::base::build_info::kernel_identity;
use crate::base::fs::{remove_orphans, write_atomic};
use crate::base::hash::hex;
use crate::base::memory::MemoryBudget;
use crate::config::DatasetConfig;
use crate::dataset::index::ClassIndex;

/// Bump when the file layout or the meaning of a key changes.
pub(super) const FORMAT: &str = "runner-image-cache-v1";

/// The description stored beside a cache file (`<key>.json`).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoreFile {
    pub(super) format: String,
    pub(super) key: String,
    pub(super) height: usize,
    pub(super) width: usize,
    /// Files listed in the split (kept and skipped).
    pub(super) files: usize,
    /// Positions of the kept files in the listing, in order.
    pub(super) kept: Vec<usize>,
    /// One letter per kept file: `u` for `u8` values, `f` for `f32`.
    pub(super) encoding: String,
    pub(super) skipped: Vec<(usize, String)>,
}

/// The cache key of a split: its listing (paths, labels, content hashes in listing order), the
/// decoding settings and the decoding code.
pub fn store_key(index: &ClassIndex, hashes: &[String], cfg: &DatasetConfig) -> String {
    let mut hasher = Sha256::new();
    hasher.update(
        format!(
            "{FORMAT}\n{}size {:?}\nresize bilinear-half-pixel\non_bad_image {:?}\nfiles {}\n",
            kernel_identity(),
            cfg.image_size,
            cfg.on_bad_image,
            index.samples.len()
        )
        .as_bytes(),
    );
    for (sample, hash) in index.samples.iter().zip(hashes) {
        let rel = sample
            .path
            .strip_prefix(&index.root)
            .unwrap_or(&sample.path);
        hasher.update(format!("{} {} {hash}\n", rel.display(), sample.label).as_bytes());
    }
    hex(&hasher.finalize())
}

/// Where the bytes of a store being filled go.
pub(super) enum Sink {
    File {
        writer: std::io::BufWriter<File>,
        tmp: PathBuf,
        path: PathBuf,
    },
    /// In memory; every byte is reserved from `budget`.
    Memory {
        bytes: Vec<u8>,
        budget: Arc<MemoryBudget>,
    },
    /// Nowhere: the images will be decoded from their files when used.
    Nowhere,
}

impl Sink {
    pub(super) fn memory(budget: Arc<MemoryBudget>) -> Sink {
        Sink::Memory {
            bytes: Vec::new(),
            budget,
        }
    }

    /// A temporary file beside `<dir>/<key>.pixels`, renamed to it when complete.
    pub(super) fn file(dir: &Path, key: &str) -> std::io::Result<Sink> {
        std::fs::create_dir_all(dir)?;
        remove_orphans(dir, temp_writer_pid);
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{key}.pixels"));
        let tmp = dir.join(format!(".{key}.pixels.{}-{n}.tmp", std::process::id()));
        let file = File::create(&tmp)?;
        Ok(Sink::File {
            writer: std::io::BufWriter::with_capacity(1 << 20, file),
            tmp,
            path,
        })
    }

    /// Give up what the sink holds: remove its temporary file, return its memory.
    fn abandon(self) {
        match self {
            Sink::File { writer, tmp, .. } => {
                drop(writer);
                let _ = std::fs::remove_file(tmp);
            }
            Sink::Memory { bytes, budget } => budget.release(bytes.len() as u64),
            Sink::Nowhere => {}
        }
    }
}

/// The process id in a temporary file name `.<key>.pixels.<pid>-<n>.tmp`.
pub(super) fn temp_writer_pid(name: &str) -> Option<u32> {
    let stem = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, writer) = stem.rsplit_once(".pixels.")?;
    writer.split_once('-')?.0.parse().ok()
}

/// Owns a sink while a store is filled; dropped early (an error, a panic), it abandons it.
pub(super) struct SinkGuard(pub(super) Option<Sink>);

impl Drop for SinkGuard {
    fn drop(&mut self) {
        if let Some(sink) = self.0.take() {
            sink.abandon();
        }
    }
}

impl SinkGuard {
    /// Add one image's bytes. When they cannot be kept (a write error, the memory budget), the
    /// sink gives up everything it holds, becomes `Nowhere`, and says why.
    pub(super) fn append(&mut self, bytes: &[u8]) -> Result<(), String> {
        let why = match self.0.as_mut() {
            None | Some(Sink::Nowhere) => return Ok(()),
            Some(Sink::File { writer, path, .. }) => match writer.write_all(bytes) {
                Ok(()) => return Ok(()),
                Err(e) => format!(
                    "image cache: cannot write {}: {e} (decoding images from their files every \
                     epoch instead)",
                    path.display()
                ),
            },
            Some(Sink::Memory {
                bytes: held,
                budget,
            }) => {
                if budget.reserve(bytes.len() as u64) {
                    held.extend_from_slice(bytes);
                    return Ok(());
                }
                format!(
                    "image cache: the decoded images do not fit the memory budget ({} MiB in \
                     use of {} MiB; see --cache-memory) and there is no cache file; decoding \
                     them from their files every epoch instead",
                    budget.used() >> 20,
                    budget.limit() >> 20
                )
            }
        };
        if let Some(sink) = self.0.replace(Sink::Nowhere) {
            sink.abandon();
        }
        Err(why)
    }
}

/// Complete a cache file: flush and sync it, then either publish it (rename to `path`, write
/// its description `json`) or, without `json`, keep it for this process only (map it and
/// remove the name). Returns the mapping and, when published, its file.
pub(super) fn finish_file(
    writer: std::io::BufWriter<File>,
    tmp: &Path,
    path: &Path,
    json: Option<&Path>,
    description: &StoreFile,
) -> anyhow::Result<(memmap2::Mmap, Option<PathBuf>)> {
    let published = (|| -> anyhow::Result<(memmap2::Mmap, Option<PathBuf>)> {
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let Some(json) = json else {
            let map = map_file(tmp)?;
            let _ = std::fs::remove_file(tmp);
            return Ok((map, None));
        };
        std::fs::rename(tmp, path)?;
        let text = serde_json::to_vec(description)?;
        if let Err(e) = write_atomic(json, &text) {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok((map_file(path)?, Some(path.to_path_buf())))
    })();
    if published.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    published
}

/// Map a complete cache file read-only.
fn map_file(path: &Path) -> std::io::Result<memmap2::Mmap> {
    let file = File::open(path)?;
    // SAFETY: cache files are written once under a temporary name and renamed into place; no
    // writer ever opens a finished file again (a rewrite makes a new file and renames it over
    // the name, which leaves existing mappings of the old file intact). Truncating the file by
    // hand while a sweep runs is the one way to break the mapping, as with any mapped file.
    unsafe { memmap2::Mmap::map(&file) }
}

/// A complete store for `key`, or None (missing, partial, or not matching the listing).
pub(super) fn load(
    dir: &Path,
    key: &str,
    files: usize,
    height: usize,
    width: usize,
) -> Option<Decoded> {
    let text = std::fs::read(dir.join(format!("{key}.json"))).ok()?;
    let stored: StoreFile = serde_json::from_slice(&text).ok()?;
    // Every listed file exactly once, kept or skipped, with one known encoding per kept file:
    // anything else is a damaged description, and the split is decoded again.
    let mut seen = vec![false; files];
    let positions_valid = stored
        .kept
        .iter()
        .chain(stored.skipped.iter().map(|(i, _)| i))
        .all(|&i| i < files && !std::mem::replace(&mut seen[i], true));
    let consistent = stored.format == FORMAT
        && stored.key == key
        && (stored.height, stored.width, stored.files) == (height, width, files)
        && stored.encoding.len() == stored.kept.len()
        && stored.encoding.chars().all(|c| c == 'u' || c == 'f')
        && stored.kept.windows(2).all(|w| w[0] < w[1])
        && stored.kept.len() + stored.skipped.len() == files
        && positions_valid;
    if !consistent {
        return None;
    }
    let n = height * width * 3;
    let mut records = Vec::with_capacity(stored.kept.len());
    let mut offset = 0;
    for c in stored.encoding.chars() {
        let u8 = c == 'u';
        records.push(Record { offset, u8 });
        offset += if u8 { n } else { 4 * n };
    }
    let path = dir.join(format!("{key}.pixels"));
    if std::fs::metadata(&path).ok()?.len() != offset as u64 || offset == 0 {
        return None;
    }
    let map = map_file(&path).ok()?;
    Some(Decoded {
        kept: stored.kept,
        skipped: stored.skipped,
        pixels: Pixels {
            height,
            width,
            records,
            storage: Storage::Mapped {
                map,
                path: Some(path),
            },
        },
        origin: Origin::Cached,
        warning: None,
    })
}
