//! Reading and writing a feature set: a complete cache file loaded back, and a set computed
//! from the images or from a shorter prefix's set, written through a temporary name.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::Context;

use super::{FeatureSet, Storage};
use crate::config::DatasetConfig;
use crate::dataset::batches::{EpochPlan, Split};
use crate::model::Network;

/// A complete cache file: into memory when it fits the budget, else read per batch from disk.
pub(super) fn load(
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

/// Run layers `..end` over `split` in file order (from the images, or from `source`: the
/// outputs of layers `..k` and `k`), writing each batch to `file` (through a temporary name)
/// and, when `in_memory`, keeping the values. None when there is nowhere to keep them.
#[allow(clippy::too_many_arguments)]
pub(super) fn compute(
    network: &Network,
    source: Option<(&FeatureSet, usize)>,
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
    let mut keep = |out: Vec<f32>| -> anyhow::Result<()> {
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
    let result = match source {
        None => each_batch_from_images(network, end, split, dataset, stop, &mut keep),
        Some((set, start)) => {
            each_batch_from_features(network, set, start, end, dataset, stop, &mut keep)
        }
    };
    if let Err(e) = result {
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

/// Layers `..end` over the images of `split`, in file order and batches of
/// `dataset.batch_size`, each batch's output to `keep`; stops after a batch once `stop` is set.
fn each_batch_from_images(
    network: &Network,
    end: usize,
    split: &Split,
    dataset: &DatasetConfig,
    stop: &AtomicBool,
    keep: &mut dyn FnMut(Vec<f32>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let plan = EpochPlan {
        order: (0..split.len()).collect(),
        batch_size: dataset.batch_size,
        preprocessing: dataset.preprocessing,
        augmentation: None,
    };
    let mut failure = None;
    let flow = split.for_each_batch(&plan, |batch| {
        let step = network
            .forward_prefix(&batch.images, batch.size, end)
            .map_err(anyhow::Error::from)
            .and_then(&mut *keep);
        match step {
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
    failure.map_or(Ok(()), Err)
}

/// Layers `start..end` over `set` (the outputs of layers `..start`), in the batches
/// `each_batch_from_images` uses.
fn each_batch_from_features(
    network: &Network,
    set: &FeatureSet,
    start: usize,
    end: usize,
    dataset: &DatasetConfig,
    stop: &AtomicBool,
    keep: &mut dyn FnMut(Vec<f32>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let order: Vec<usize> = (0..set.count).collect();
    for chunk in order.chunks(dataset.batch_size.max(1)) {
        let input = set.gather(chunk)?;
        keep(network.forward_between(start, end, &input, chunk.len())?)?;
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    Ok(())
}

/// The process id in a temporary file name `<split key>.tmp-<pid>-<n>`.
pub(super) fn temp_writer_pid(name: &str) -> Option<u32> {
    let (_, writer) = name.rsplit_once(".tmp-")?;
    writer.split_once('-')?.0.parse().ok()
}

type TempWriter = (std::io::BufWriter<File>, PathBuf, PathBuf);

/// A buffered writer on a unique temporary name beside `path`, with both names.
pub(super) fn open_temp(path: &Path) -> anyhow::Result<TempWriter> {
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
