//! The decoded-image cache: each split's files decoded and resized once, keyed by their content,
//! and shared by every epoch, seed, variant and cell of a sweep, and by later sweeps.
//!
//! A store's key covers the content hash, path and label of every listed file, the image size,
//! the resize method, the `on_bad_image` policy and the code that decodes and resizes
//! (`cache::kernel_identity`); a hit therefore holds exactly the pixels decoding would give.
//!
//! Pixels are kept losslessly. An image whose resized values are all whole numbers in 0..=255
//! (one already at the target size, for instance) is stored as `u8`, a quarter of the memory.
//! Keras's bilinear resize gives fractional values otherwise, and rounding them to `u8` would
//! change every result against the notebook's, so such an image is stored as `f32`.
//!
//! Where the values live (`Residency`):
//! * `Mapped`: a file under `results/.cache/images/` (`<key>.pixels`, with `<key>.json`
//!   describing it), written to a temporary name and renamed, then memory-mapped. Its pages
//!   belong to the kernel's page cache: shared between cells, sweeps and processes, evicted
//!   under memory pressure and read back on demand, so they never count against the budget.
//! * `Memory`: without a cache directory (or when no file can be created in it), within the
//!   memory budget.
//! * `Files`: caching turned off (`--no-cache`), or neither of the above possible (the images
//!   exceed the budget, or writing the cache file failed part-way): every image is decoded from
//!   its file again each time a batch needs it, as the notebook's `tf.data` pipeline does. Every
//!   file is still decoded once up front, so a broken file is reported (or skipped) before
//!   training starts, and a file that changes afterwards is an error.
//!
//! A split with a file skipped for a reason that may pass (an I/O error rather than bad
//! content) is cached for this sweep only: its store is not published for later sweeps.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::decode::load_image;
use super::index::ClassIndex;
use super::{DatasetError, Image, Sample};
use crate::base::build_info::kernel_identity;
use crate::base::hash::hex;
use crate::base::memory::MemoryBudget;
use crate::config::{DatasetConfig, OnBadImage};

/// Bump when the file layout or the meaning of a key changes.
const FORMAT: &str = "runner-image-cache-v1";

/// Images decoded at once (per block, across all cores) while a store is filled: bounds the
/// memory that decoding itself needs, whatever the size of the data set.
const BLOCK_PER_THREAD: usize = 32;

/// How a split's decoded images are kept (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    Mapped,
    Memory,
    Files,
}

/// Where the pixels of a split came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Decoded now.
    Decoded,
    /// Found in the cache directory (an earlier sweep, or another process).
    Cached,
}

/// Where and whether to cache decoded images.
#[derive(Debug, Clone)]
pub struct ImageCache {
    /// `results/.cache/images`, or None to keep images in memory only.
    pub dir: Option<PathBuf>,
    /// Bytes of images that may be held in memory (shared with the feature cache).
    pub budget: Arc<MemoryBudget>,
    /// False: keep nothing and decode every image each time it is used.
    pub enabled: bool,
}

impl ImageCache {
    /// In memory, without limit: for one-off uses (tests, `runner augment`, reproduction checks).
    pub fn memory() -> Self {
        ImageCache {
            dir: None,
            budget: Arc::new(MemoryBudget::new(u64::MAX)),
            enabled: true,
        }
    }

    /// Decode every image each time it is used.
    pub fn off() -> Self {
        ImageCache {
            enabled: false,
            ..ImageCache::memory()
        }
    }
}

/// One stored image: where its values start and whether they are `u8` (else little-endian `f32`).
#[derive(Debug, Clone, Copy)]
struct Record {
    offset: usize,
    u8: bool,
}

/// A split's decoded pixels.
#[derive(Debug)]
pub(super) struct Pixels {
    pub(super) height: usize,
    pub(super) width: usize,
    records: Vec<Record>,
    storage: Storage,
}

enum Storage {
    Mapped {
        map: memmap2::Mmap,
        /// The published cache file; None for a store kept for this process only.
        path: Option<PathBuf>,
    },
    Memory {
        bytes: Vec<u8>,
        /// The budget the bytes were reserved from, given back on drop.
        budget: Arc<MemoryBudget>,
    },
    /// Decode `files[i]` each time image `i` is used.
    Files { files: Vec<Source> },
}

/// A file decoded each time it is used, and its size and modification time when it was first
/// decoded: a file that changes during the sweep is an error, not silently other data.
#[derive(Debug, Clone)]
struct Source {
    path: PathBuf,
    stamp: Option<(u64, std::time::SystemTime)>,
}

impl Source {
    fn of(path: &Path) -> Source {
        Source {
            path: path.to_path_buf(),
            stamp: stamp(path),
        }
    }
}

fn stamp(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Mapped { path, map } => {
                write!(f, "Mapped({path:?}, {} bytes)", map.len())
            }
            Storage::Memory { bytes, .. } => write!(f, "Memory({} bytes)", bytes.len()),
            Storage::Files { files } => write!(f, "Files({})", files.len()),
        }
    }
}

impl Drop for Pixels {
    fn drop(&mut self) {
        if let Storage::Memory { bytes, budget } = &self.storage {
            budget.release(bytes.len() as u64);
        }
    }
}

impl Pixels {
    /// Images held in memory as given (no budget): for splits built from decoded images.
    pub(super) fn from_images(height: usize, width: usize, images: &[Image]) -> Pixels {
        let mut records = Vec::with_capacity(images.len());
        let mut bytes = Vec::new();
        for image in images {
            assert_eq!((image.height, image.width), (height, width));
            let (u8, encoded) = encode(image);
            records.push(Record {
                offset: bytes.len(),
                u8,
            });
            bytes.extend_from_slice(&encoded);
        }
        Pixels {
            height,
            width,
            records,
            storage: Storage::Memory {
                bytes,
                budget: Arc::new(MemoryBudget::new(u64::MAX)),
            },
        }
    }

    pub(super) fn residency(&self) -> Residency {
        match self.storage {
            Storage::Mapped { .. } => Residency::Mapped,
            Storage::Memory { .. } => Residency::Memory,
            Storage::Files { .. } => Residency::Files,
        }
    }

    /// Bytes of pixel values held (in memory or mapped); 0 when decoding from the files.
    pub(super) fn stored_bytes(&self) -> usize {
        match &self.storage {
            Storage::Mapped { map, .. } => map.len(),
            Storage::Memory { bytes, .. } => bytes.len(),
            Storage::Files { .. } => 0,
        }
    }

    /// The cache file the pixels are mapped from, if any.
    pub(super) fn file(&self) -> Option<&Path> {
        match &self.storage {
            Storage::Mapped { path, .. } => path.as_deref(),
            _ => None,
        }
    }

    /// Image `i`'s values (0..255, HWC), appended to `out`.
    pub(super) fn extend_into(&self, i: usize, out: &mut Vec<f32>) -> Result<(), DatasetError> {
        let n = self.height * self.width * 3;
        let bytes: &[u8] = match &self.storage {
            Storage::Mapped { map, .. } => map,
            Storage::Memory { bytes, .. } => bytes,
            Storage::Files { files } => {
                let source = &files[i];
                let changed = || DatasetError::Index {
                    path: source.path.clone(),
                    message: "the file changed or disappeared since the sweep fingerprinted it; \
                              rerun the sweep so that its run keys describe the new content"
                        .into(),
                };
                if stamp(&source.path) != source.stamp {
                    return Err(changed());
                }
                let image = load_image(&source.path, self.height, self.width)?;
                out.extend_from_slice(&image.data);
                return Ok(());
            }
        };
        let r = self.records[i];
        if r.u8 {
            out.extend(bytes[r.offset..r.offset + n].iter().map(|&v| f32::from(v)));
        } else {
            out.extend(
                bytes[r.offset..r.offset + 4 * n]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        Ok(())
    }

    /// Image `i` as an `Image`.
    pub(super) fn image(&self, i: usize) -> Result<Image, DatasetError> {
        let mut data = Vec::with_capacity(self.height * self.width * 3);
        self.extend_into(i, &mut data)?;
        Ok(Image {
            height: self.height,
            width: self.width,
            data,
        })
    }
}

/// One image's stored bytes: `u8` values when that is exact (every value a whole number in
/// 0..=255, bit for bit), else little-endian `f32`. The flag says which.
fn encode(image: &Image) -> (bool, Vec<u8>) {
    let exact_u8 = image
        .data
        .iter()
        .all(|&v| (0.0..=255.0).contains(&v) && f32::from(v as u8).to_bits() == v.to_bits());
    if exact_u8 {
        (true, image.data.iter().map(|&v| v as u8).collect())
    } else {
        (
            false,
            image.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }
}

/// A split decoded through the cache: which listed files were kept (positions in the index) and
/// which were skipped (with the reason), their pixels, and a warning for the log, if any.
#[derive(Debug)]
pub(super) struct Decoded {
    pub kept: Vec<usize>,
    pub skipped: Vec<(usize, String)>,
    pub pixels: Pixels,
    pub origin: Origin,
    pub warning: Option<String>,
}

/// The description stored beside a cache file (`<key>.json`).
#[derive(Debug, Serialize, Deserialize)]
struct StoreFile {
    format: String,
    key: String,
    height: usize,
    width: usize,
    /// Files listed in the split (kept and skipped).
    files: usize,
    /// Positions of the kept files in the listing, in order.
    kept: Vec<usize>,
    /// One letter per kept file: `u` for `u8` values, `f` for `f32`.
    encoding: String,
    skipped: Vec<(usize, String)>,
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

/// Decode the files of `index` through `cache`. `hashes` are the files' content hashes in
/// listing order; without them nothing is looked up or written on disk.
pub(super) fn decode_split(
    index: &ClassIndex,
    cfg: &DatasetConfig,
    hashes: Option<&[String]>,
    cache: &ImageCache,
) -> Result<Decoded, DatasetError> {
    let [height, width] = cfg.image_size.map(|v| v as usize);
    let key = match (&cache.dir, hashes, cache.enabled) {
        (Some(dir), Some(hashes), true) => {
            let key = store_key(index, hashes, cfg);
            if let Some(found) = load(dir, &key, index.samples.len(), height, width) {
                return Ok(found);
            }
            Some((dir.clone(), key))
        }
        _ => None,
    };
    let mut warning = None;
    let sink = match (&key, cache.enabled) {
        (_, false) => Sink::Nowhere,
        (Some((dir, key)), true) => match Sink::file(dir, key) {
            Ok(sink) => sink,
            Err(e) => {
                warning = Some(format!(
                    "image cache: cannot write under {}: {e} (keeping images in memory)",
                    dir.display()
                ));
                Sink::memory(cache.budget.clone())
            }
        },
        (None, true) => Sink::memory(cache.budget.clone()),
    };
    // Dropping the guard (an error, a panic) removes a temporary file and returns memory.
    let mut sink = SinkGuard(Some(sink));
    let mut kept = Vec::with_capacity(index.samples.len());
    let mut skipped = Vec::new();
    // A file skipped for a reason that may pass (an I/O error, not bad content) must not be
    // remembered as skipped by a store on disk.
    let mut transient_skip = false;
    let mut records = Vec::with_capacity(index.samples.len());
    let mut written = 0usize;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let block = BLOCK_PER_THREAD * threads;
    for (b, samples) in index.samples.chunks(block).enumerate() {
        for (j, result) in decode_block(samples, height, width).into_iter().enumerate() {
            let position = b * block + j;
            match (result, cfg.on_bad_image) {
                (Ok(image), _) => {
                    kept.push(position);
                    let (u8, bytes) = encode(&image);
                    if let Err(why) = sink.append(&bytes) {
                        warning.get_or_insert(why);
                    }
                    records.push(Record {
                        offset: written,
                        u8,
                    });
                    written += bytes.len();
                }
                (Err(e), OnBadImage::Error) => return Err(e),
                (Err(e), OnBadImage::Skip) => {
                    transient_skip |= !matches!(e, DatasetError::BadImage { .. });
                    skipped.push((position, reason(&e)));
                }
            }
        }
    }
    // Files decoded when used: stamped now, before the sweep fingerprints them for the run key,
    // so a change from here on is detected when the file is decoded again.
    let files = |kept: &[usize]| -> Vec<Source> {
        kept.iter()
            .map(|&i| Source::of(&index.samples[i].path))
            .collect()
    };
    let storage = match sink.0.take().expect("the sink is kept until here") {
        Sink::File { writer, tmp, path } => {
            let (dir, key) = key.as_ref().expect("a file sink has a key");
            let description = StoreFile {
                format: FORMAT.to_string(),
                key: key.clone(),
                height,
                width,
                files: index.samples.len(),
                kept: kept.clone(),
                encoding: records
                    .iter()
                    .map(|r| if r.u8 { 'u' } else { 'f' })
                    .collect(),
                skipped: skipped.clone(),
            };
            let json = (!transient_skip).then(|| dir.join(format!("{key}.json")));
            if transient_skip {
                warning.get_or_insert(
                    "image cache: some files were skipped because they could not be read (see \
                     the skipped files); this split's images are cached for this sweep only"
                        .to_string(),
                );
            }
            match finish_file(writer, &tmp, &path, json.as_deref(), &description) {
                Ok((map, published)) => Storage::Mapped {
                    map,
                    path: published,
                },
                Err(e) => {
                    warning.get_or_insert(format!(
                        "image cache: cannot write {}: {e:#} (decoding images from their files \
                         every epoch instead)",
                        path.display()
                    ));
                    Storage::Files {
                        files: files(&kept),
                    }
                }
            }
        }
        Sink::Memory { mut bytes, budget } => {
            bytes.shrink_to_fit();
            Storage::Memory { bytes, budget }
        }
        Sink::Nowhere => Storage::Files {
            files: files(&kept),
        },
    };
    Ok(Decoded {
        kept,
        skipped,
        pixels: Pixels {
            height,
            width,
            records,
            storage,
        },
        origin: Origin::Decoded,
        warning,
    })
}

/// Where the bytes of a store being filled go.
enum Sink {
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
    fn memory(budget: Arc<MemoryBudget>) -> Sink {
        Sink::Memory {
            bytes: Vec::new(),
            budget,
        }
    }

    /// A temporary file beside `<dir>/<key>.pixels`, renamed to it when complete.
    fn file(dir: &Path, key: &str) -> std::io::Result<Sink> {
        std::fs::create_dir_all(dir)?;
        crate::base::fs::remove_orphans(dir, temp_writer_pid);
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
fn temp_writer_pid(name: &str) -> Option<u32> {
    let stem = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, writer) = stem.rsplit_once(".pixels.")?;
    writer.split_once('-')?.0.parse().ok()
}

/// Owns a sink while a store is filled; dropped early (an error, a panic), it abandons it.
struct SinkGuard(Option<Sink>);

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
    fn append(&mut self, bytes: &[u8]) -> Result<(), String> {
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
fn finish_file(
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
        if let Err(e) = crate::base::fs::write_atomic(json, &text) {
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
fn load(dir: &Path, key: &str, files: usize, height: usize, width: usize) -> Option<Decoded> {
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

/// Decode `samples` on all cores, over contiguous chunks; results are in sample order.
fn decode_block(
    samples: &[Sample],
    height: usize,
    width: usize,
) -> Vec<Result<Image, DatasetError>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = samples.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = samples
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|s| load_image(&s.path, height, width))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(results) => results,
                // A decoder panic is a bug, not bad input: surface it unchanged.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Why a file was skipped, for `Split::skipped` (the path is recorded separately).
fn reason(e: &DatasetError) -> String {
    match e {
        DatasetError::BadImage { message, .. } | DatasetError::Index { message, .. } => {
            message.clone()
        }
        DatasetError::Io { source, .. } => format!("cannot read the file: {source}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
