//! Filling a split's store as `ImageCache` says: its files decoded and resized on all cores,
//! block by block, into a sink (a cache file, memory, or nowhere), with skipped files and
//! fallbacks recorded.

use std::path::PathBuf;
use std::sync::Arc;

use super::disk::{finish_file, load, store_key, Sink, SinkGuard, StoreFile, FORMAT};
use super::pixels::{encode, Decoded, Origin, Pixels, Record, Source, Storage};
use crate::base::memory::MemoryBudget;
use crate::config::{DatasetConfig, OnBadImage};
use crate::dataset::decode::load_image;
use crate::dataset::error::DatasetError;
use crate::dataset::index::ClassIndex;
use crate::dataset::index::Sample;
use crate::image::Image;

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

/// Images decoded at once (per block, across all cores) while a store is filled: bounds the
/// memory that decoding itself needs, whatever the size of the data set.
const BLOCK_PER_THREAD: usize = 32;

/// Decode the files of `index` through `cache`. `hashes` are the files' content hashes in
/// listing order; without them nothing is looked up or written on disk.
pub(in crate::dataset) fn decode_split(
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
