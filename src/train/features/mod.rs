//! The frozen-prefix feature cache: the output of a cell's frozen leading layers for every image
//! of a split, computed once and reused by every epoch, seed and variant that shares it.
//!
//! Without augmentation, what the frozen prefix makes of an image is a pure function of the image
//! file, its resizing and preprocessing, the prefix's parameters (weights file or seeded
//! initialisation alike: their bytes are hashed), the layer list, the engine, dtype and device,
//! and the code that runs them. The cache key covers all of these, so a hit gives the same
//! numbers as running the layers again; the rest of the network (`Network::forward_from`) then
//! trains on the cached values exactly as it would on freshly computed ones.
//!
//! The cache is an execution detail: it is not part of a run key. Sets live in memory while they
//! fit the memory budget and on disk under `results/.cache/features/<key>/` (written to a
//! temporary name, then renamed); past the budget a set is read from its file per batch, and when
//! it can be neither kept in memory nor written to disk the cell runs the full network.
//!
//! Prefixes share their common part: a prefix's key depends only on its own layers, so block-5
//! fine-tuning (outputs of `block4_pool`) and feature extraction (`flatten`) from the same base
//! agree on the key of `..block4_pool`, and the longer set is computed from the shorter one by
//! running only the remaining layers, in the same batches: the same bits as from the images.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::base::build_info::kernel_identity;
use crate::base::hash::hex;
use crate::base::memory::MemoryBudget;
use crate::config::DatasetConfig;
use crate::dataset::batches::Split;
use crate::model::Network;
use compute::{compute, load};

mod compute;

/// Bump when the file layout or the meaning of a key changes.
const FORMAT: &str = "runner-feature-cache-v2";

/// One split's prefix outputs: `count` images of `per_image` f32 values each, in split order.
#[derive(Debug)]
pub struct FeatureSet {
    pub per_image: usize,
    pub count: usize,
    storage: Storage,
}

#[derive(Debug)]
enum Storage {
    Memory(Vec<f32>),
    /// Past the memory budget: read per batch from the cache file (little-endian f32).
    Disk(Mutex<File>),
}

/// Where a set came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Computed by this cell.
    Computed,
    /// Read from the disk cache (an earlier sweep, or another process).
    Disk,
    /// Already in memory (an earlier cell of this sweep).
    Shared,
    /// Computed by this cell from the outputs of the same network's layers `..from`: cached
    /// already, or (`kept`) computed from the images on the way and kept for other cells.
    Derived { from: usize, kept: bool },
}

impl FeatureSet {
    /// A set held in memory (`values.len()` must be a multiple of `per_image`).
    pub fn in_memory(per_image: usize, values: Vec<f32>) -> Self {
        assert_eq!(values.len() % per_image.max(1), 0);
        FeatureSet {
            per_image,
            count: values.len() / per_image.max(1),
            storage: Storage::Memory(values),
        }
    }

    pub fn bytes(&self) -> u64 {
        (self.count * self.per_image * 4) as u64
    }

    pub fn in_memory_now(&self) -> bool {
        matches!(self.storage, Storage::Memory(_))
    }

    /// The values of images `indices`, concatenated in that order.
    pub fn gather(&self, indices: &[usize]) -> anyhow::Result<Vec<f32>> {
        let n = self.per_image;
        let mut out = Vec::with_capacity(indices.len() * n);
        match &self.storage {
            Storage::Memory(values) => {
                for &i in indices {
                    out.extend_from_slice(&values[i * n..(i + 1) * n]);
                }
            }
            Storage::Disk(file) => {
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                let mut bytes = vec![0u8; n * 4];
                for &i in indices {
                    file.seek(SeekFrom::Start((i * n * 4) as u64))?;
                    file.read_exact(&mut bytes)
                        .context("reading the feature cache file")?;
                    out.extend(
                        bytes
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                }
            }
        }
        Ok(out)
    }
}

/// The identity of a frozen prefix, computed per cell: `key` names its cache directory.
#[derive(Debug, Clone)]
pub struct PrefixKey {
    pub key: String,
    /// Layers `..end` are the prefix.
    pub end: usize,
    /// The name of the prefix's last layer (e.g. `block4_pool`, `flatten`).
    pub last_layer: String,
    /// The keys and last layers of the same network's prefixes `..k` for `k` in `1..=end`:
    /// shorter prefixes whose cached outputs this one can be computed from.
    chain: Arc<Vec<(String, String)>>,
}

impl PrefixKey {
    /// The same network's prefix of layers `..k` (`1 <= k <= end`).
    pub fn shorter(&self, k: usize) -> PrefixKey {
        let (key, last_layer) = self.chain[k - 1].clone();
        PrefixKey {
            key,
            end: k,
            last_layer,
            chain: self.chain.clone(),
        }
    }
}

/// The key of `network`'s frozen prefix (None when the first layer trains).
///
/// The key includes `base::build_info::kernel_identity` (the hash of the sources that decode
/// images and run the layers, the engine, the CPU's vector instructions), so a change to the
/// layers' implementation never reuses features computed by other code, while a commit that
/// touches only, say, the report keeps them.
///
/// A prefix's key depends only on its own layers and parameters, so two networks that agree on
/// their first `k` layers (e.g. block-5 fine-tuning and feature extraction from the same base)
/// give their prefixes `..k` the same key, whatever their later layers.
pub fn prefix_key(network: &Network, dataset: &DatasetConfig) -> anyhow::Result<Option<PrefixKey>> {
    let end = network.frozen_prefix_len();
    if end == 0 {
        return Ok(None);
    }
    let arch = network.architecture();
    let layers: Vec<String> = arch.layers[..end]
        .iter()
        .map(|l| format!("{}:{:?}:{:?}", l.name, l.kind, l.output))
        .collect();
    let hashes = network.prefix_parameter_hashes(end)?;
    let kernel = kernel_identity();
    let chain: Vec<(String, String)> = (1..=end)
        .map(|k| {
            let text = format!(
                "{FORMAT}\n{}device {:?}\ndtype f32\ninput {:?}\n\
                 preprocessing {:?}\nlayers {}\nparameters {}\n",
                kernel,
                network.device(),
                arch.input,
                dataset.preprocessing,
                layers[..k].join(","),
                hashes[k - 1],
            );
            (
                hex(&Sha256::digest(text.as_bytes())),
                arch.layers[k - 1].name.clone(),
            )
        })
        .collect();
    let (key, last_layer) = chain[end - 1].clone();
    Ok(Some(PrefixKey {
        key,
        end,
        last_layer,
        chain: Arc::new(chain),
    }))
}

/// The identity of a split's images: the manifest root (every file's path, size, content and
/// label) and the order of the split's samples, which the cached values follow.
pub fn split_key(split: &Split, manifest_root: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{FORMAT}\nmanifest {manifest_root}\n").as_bytes());
    for s in &split.samples {
        let rel = s.path.strip_prefix(&split.root).unwrap_or(&s.path);
        hasher.update(format!("{} {}\n", rel.display(), s.label).as_bytes());
    }
    hex(&hasher.finalize())
}

type Slot = Arc<Mutex<Option<Arc<FeatureSet>>>>;

/// The cache shared by the cells of a sweep (and, on disk, by sweeps on the same results).
pub struct FeatureCache {
    /// `results/.cache/features`, or None for memory only.
    dir: Option<PathBuf>,
    /// Bytes of feature values that may be held in memory (shared with the image cache).
    budget: Arc<MemoryBudget>,
    /// One slot per (prefix key, split key); a slot is locked while its set is computed, so two
    /// cells running at once never compute the same set twice.
    slots: Mutex<HashMap<String, Slot>>,
}

impl FeatureCache {
    pub fn new(dir: Option<PathBuf>, budget: Arc<MemoryBudget>) -> Self {
        FeatureCache {
            dir,
            budget,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The prefix outputs of `split` under `prefix`: from memory, from disk, or computed now
    /// (batches of `dataset.batch_size` in file order, no augmentation). `Ok(None)` when the set
    /// can be neither held in memory (budget) nor stored on disk: the cell then runs the full
    /// network.
    ///
    /// A set is computed from the cached outputs of the longest shorter prefix of the same
    /// network that is at hand (in memory, on disk) or listed in `keep` (the ends of the shorter
    /// prefixes that other cells of the sweep will want: obtained first, and kept), running
    /// only the remaining layers; otherwise from the images. Either way it is the same bits:
    /// the remaining layers run on the same values, in the same batches.
    #[allow(clippy::too_many_arguments)]
    pub fn obtain(
        &self,
        network: &Network,
        prefix: &PrefixKey,
        keep: &[usize],
        split: &Split,
        split_key: &str,
        dataset: &DatasetConfig,
        stop: &AtomicBool,
    ) -> anyhow::Result<Option<(Arc<FeatureSet>, Origin)>> {
        let slot = self.slot(&prefix.key, split_key);
        // Slots are locked from the longer prefix to the shorter (`source`), never the other
        // way, so cells obtaining sets at once cannot deadlock.
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = slot.as_ref() {
            return Ok(Some((set.clone(), Origin::Shared)));
        }
        let per_image = network.prefix_output_len(prefix.end);
        let bytes = (split.len() * per_image * 4) as u64;
        let fits = self.budget.reserve(bytes);
        let file = self.file(&prefix.key, split_key);
        let obtained = (|| -> anyhow::Result<Option<(FeatureSet, Origin)>> {
            if let Some(path) = &file {
                if let Some(set) = load(path, per_image, split.len(), fits)? {
                    return Ok(Some((set, Origin::Disk)));
                }
            }
            let source = self.source(network, prefix, keep, split, split_key, dataset, stop);
            if stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let from = source.as_ref().map(|(set, k, _)| (set.as_ref(), *k));
            let computed = compute(
                network,
                from,
                prefix.end,
                split,
                dataset,
                file.as_deref(),
                fits,
                stop,
            )?;
            let origin = match source {
                Some((_, k, source)) => Origin::Derived {
                    from: k,
                    kept: matches!(source, Origin::Computed | Origin::Derived { .. }),
                },
                None => Origin::Computed,
            };
            Ok(computed.map(|set| (set, origin)))
        })();
        // Nothing held (including on errors): give the reservation back.
        if fits && !matches!(obtained, Ok(Some(_))) {
            self.budget.release(bytes);
        }
        let Some((set, origin)) = obtained? else {
            return Ok(None);
        };
        let set = Arc::new(set);
        *slot = Some(set.clone());
        Ok(Some((set, origin)))
    }

    /// The outputs of `split` under the longest shorter prefix of `prefix`'s network that is
    /// held or being computed in this process, stored on disk, or listed in `keep`, with that
    /// prefix's end and where it came from; None when there is none (or it cannot be had: then the images serve).
    #[allow(clippy::too_many_arguments)]
    fn source(
        &self,
        network: &Network,
        prefix: &PrefixKey,
        keep: &[usize],
        split: &Split,
        split_key: &str,
        dataset: &DatasetConfig,
        stop: &AtomicBool,
    ) -> Option<(Arc<FeatureSet>, usize, Origin)> {
        for k in (1..prefix.end).rev() {
            let shorter = prefix.shorter(k);
            let at_hand = keep.contains(&k)
                || self.known(&shorter.key, split_key)
                || self
                    .file(&shorter.key, split_key)
                    .is_some_and(|p| p.is_file());
            if !at_hand {
                continue;
            }
            match self.obtain(network, &shorter, keep, split, split_key, dataset, stop) {
                Ok(Some((set, origin))) => return Some((set, k, origin)),
                Ok(None) => {}
                Err(e) => eprintln!(
                    "warning: feature cache: outputs of layers up to {}: {e:#} (computing from \
                     the images instead)",
                    shorter.last_layer
                ),
            }
            if stop.load(Ordering::SeqCst) {
                return None;
            }
        }
        None
    }

    fn slot(&self, prefix_key: &str, split_key: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(format!("{prefix_key}/{split_key}"))
            .or_default()
            .clone()
    }

    /// Whether this process holds, or is computing, the set.
    fn known(&self, prefix_key: &str, split_key: &str) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.contains_key(&format!("{prefix_key}/{split_key}"))
    }

    fn file(&self, prefix_key: &str, split_key: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(prefix_key).join(format!("{split_key}.f32")))
    }
}

/// Time a closure, for the log.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests;
