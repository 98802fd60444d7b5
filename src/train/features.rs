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

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::base::build_info::kernel_identity;
use crate::base::hash::hex;
use crate::base::memory::MemoryBudget;
use crate::config::DatasetConfig;
use crate::dataset::batches::{EpochPlan, Split};
use crate::model::Network;

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
}

/// The key of `network`'s frozen prefix (None when the first layer trains).
///
/// The key includes `base::build_info::kernel_identity` (the hash of the sources that decode
/// images and run the layers, the engine, the CPU's vector instructions), so a change to the
/// layers' implementation never reuses features computed by other code, while a commit that
/// touches only, say, the report keeps them.
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
    let text = format!(
        "{FORMAT}\n{}device {:?}\ndtype f32\ninput {:?}\n\
         preprocessing {:?}\nlayers {}\nparameters {}\n",
        kernel_identity(),
        network.device(),
        arch.input,
        dataset.preprocessing,
        layers.join(","),
        network.prefix_parameter_hash(end)?,
    );
    Ok(Some(PrefixKey {
        key: hex(&Sha256::digest(text.as_bytes())),
        end,
        last_layer: arch.layers[end - 1].name.clone(),
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
    pub fn obtain(
        &self,
        network: &Network,
        prefix: &PrefixKey,
        split: &Split,
        split_key: &str,
        dataset: &DatasetConfig,
        stop: &AtomicBool,
    ) -> anyhow::Result<Option<(Arc<FeatureSet>, Origin)>> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .entry(format!("{}/{split_key}", prefix.key))
                .or_default()
                .clone()
        };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = slot.as_ref() {
            return Ok(Some((set.clone(), Origin::Shared)));
        }
        let per_image = network.prefix_output_len(prefix.end);
        let bytes = (split.len() * per_image * 4) as u64;
        let fits = self.budget.reserve(bytes);
        let file = self
            .dir
            .as_ref()
            .map(|d| d.join(&prefix.key).join(format!("{split_key}.f32")));
        let obtained = (|| -> anyhow::Result<Option<(FeatureSet, Origin)>> {
            if let Some(path) = &file {
                if let Some(set) = load(path, per_image, split.len(), fits)? {
                    return Ok(Some((set, Origin::Disk)));
                }
            }
            let computed = compute(
                network,
                prefix.end,
                split,
                dataset,
                file.as_deref(),
                fits,
                stop,
            )?;
            Ok(computed.map(|set| (set, Origin::Computed)))
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
}

/// A complete cache file: into memory when it fits the budget, else read per batch from disk.
fn load(
    path: &Path,
    per_image: usize,
    count: usize,
    in_memory: bool,
) -> anyhow::Result<Option<FeatureSet>> {
    let Ok(mut file) = File::open(path) else {
        return Ok(None);
    };
    let expected = (per_image * count * 4) as u64;
    if file.metadata().map(|m| m.len()).ok() != Some(expected) {
        // Not ours, or from an interrupted writer that bypassed the rename: recompute.
        return Ok(None);
    }
    let storage = if in_memory {
        let mut bytes = Vec::with_capacity(expected as usize);
        file.read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        Storage::Memory(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    } else {
        Storage::Disk(Mutex::new(file))
    };
    Ok(Some(FeatureSet {
        per_image,
        count,
        storage,
    }))
}

/// Run the prefix over `split` in file order, writing each batch to `file` (through a temporary
/// name) and, when `in_memory`, keeping the values. None when there is nowhere to keep them.
fn compute(
    network: &Network,
    end: usize,
    split: &Split,
    dataset: &DatasetConfig,
    file: Option<&Path>,
    in_memory: bool,
    stop: &AtomicBool,
) -> anyhow::Result<Option<FeatureSet>> {
    let per_image = network.prefix_output_len(end);
    let mut writer = file.and_then(|path| match open_temp(path) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!(
                "warning: feature cache: cannot write {}: {e:#} (keeping features in memory only)",
                path.display()
            );
            None
        }
    });
    if writer.is_none() && !in_memory {
        return Ok(None);
    }
    let mut values = Vec::new();
    let plan = EpochPlan {
        order: (0..split.len()).collect(),
        batch_size: dataset.batch_size,
        preprocessing: dataset.preprocessing,
        augmentation: None,
    };
    let mut failure = None;
    let flow = split.for_each_batch(&plan, |batch| {
        let mut step = || -> anyhow::Result<()> {
            let out = network.forward_prefix(&batch.images, batch.size, end)?;
            if let Some((w, path, _)) = writer.as_mut() {
                let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
                w.write_all(&bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if in_memory {
                values.extend_from_slice(&out);
            }
            Ok(())
        };
        match step() {
            Ok(()) if stop.load(Ordering::SeqCst) => std::ops::ControlFlow::Break(()),
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(e) => {
                failure = Some(e);
                std::ops::ControlFlow::Break(())
            }
        }
    });
    if let Err(e) = flow {
        failure.get_or_insert(e.into());
    }
    if let Some(e) = failure {
        if let Some((_, tmp, _)) = writer {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    if stop.load(Ordering::SeqCst) {
        // Interrupted: an incomplete set is of no use.
        if let Some((_, tmp, _)) = writer {
            let _ = std::fs::remove_file(tmp);
        }
        return Ok(None);
    }
    let mut on_disk = None;
    if let Some((w, tmp, path)) = writer {
        let finished = w
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all().map(|_| f))
            .and_then(|f| std::fs::rename(&tmp, &path).map(|_| f));
        match finished {
            Ok(_) => on_disk = Some(path),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                eprintln!(
                    "warning: feature cache: cannot write {}: {e}",
                    path.display()
                );
            }
        }
    }
    let storage = if in_memory {
        Storage::Memory(values)
    } else {
        match on_disk.map(File::open) {
            Some(Ok(f)) => Storage::Disk(Mutex::new(f)),
            _ => return Ok(None),
        }
    };
    Ok(Some(FeatureSet {
        per_image,
        count: split.len(),
        storage,
    }))
}

/// The process id in a temporary file name `<split key>.tmp-<pid>-<n>`.
fn temp_writer_pid(name: &str) -> Option<u32> {
    let (_, writer) = name.rsplit_once(".tmp-")?;
    writer.split_once('-')?.0.parse().ok()
}

type TempWriter = (std::io::BufWriter<File>, PathBuf, PathBuf);

/// A buffered writer on a unique temporary name beside `path`, with both names.
fn open_temp(path: &Path) -> anyhow::Result<TempWriter> {
    let dir = path.parent().expect("cache files live in a key directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::base::fs::remove_orphans(dir, temp_writer_pid);
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    Ok((
        std::io::BufWriter::with_capacity(1 << 20, file),
        tmp,
        path.to_path_buf(),
    ))
}

/// Time a closure, for the log.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_read_from_its_file_gathers_what_the_memory_copy_does() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<f32> = (0..15).map(|i| i as f32 * 0.37 - 2.0).collect();
        let path = dir.path().join("k").join("s.f32");
        let (mut w, tmp, path) = open_temp(&path).unwrap();
        for v in &values {
            w.write_all(&v.to_le_bytes()).unwrap();
        }
        drop(w);
        std::fs::rename(tmp, &path).unwrap();
        let memory = FeatureSet::in_memory(3, values.clone());
        let disk = load(&path, 3, 5, false).unwrap().unwrap();
        assert!(!disk.in_memory_now());
        let loaded = load(&path, 3, 5, true).unwrap().unwrap();
        assert!(loaded.in_memory_now());
        for order in [vec![4, 0, 2], vec![1], vec![3, 3]] {
            let want = memory.gather(&order).unwrap();
            assert_eq!(disk.gather(&order).unwrap(), want);
            assert_eq!(loaded.gather(&order).unwrap(), want);
        }
        assert_eq!(memory.gather(&[4, 0]).unwrap()[..3], values[12..15]);
        // A file of the wrong size is not used.
        assert!(load(&path, 3, 6, true).unwrap().is_none());
        // Writing in a key directory removes what a killed writer left there.
        let dead = path.with_extension("tmp-4000000000-3");
        std::fs::write(&dead, b"partial").unwrap();
        let long_ago = std::time::SystemTime::now() - crate::base::fs::ORPHAN_IDLE * 2;
        let file = File::options().write(true).open(&dead).unwrap();
        file.set_modified(long_ago).unwrap();
        drop(file);
        assert_eq!(temp_writer_pid("s.tmp-4000000000-3"), Some(4_000_000_000));
        drop(open_temp(&dir.path().join("k").join("t.f32")).unwrap());
        if cfg!(target_os = "linux") {
            assert!(!dead.exists());
        }
        assert!(path.exists());
    }
}
