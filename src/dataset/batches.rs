//! A decoded split in memory, the per-epoch order, and batch assembly (augmentation, preprocessing)
//! on a background thread so that it overlaps with training.
//!
//! Every random draw is keyed by (seed, epoch, sample index) through `rng::stream`, never by
//! thread or batch, so results do not depend on scheduling. Validation batches are built with
//! `augmentation: None` and never pass through `augment`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use super::decode::load_image;
use super::index::{index_directory, ClassIndex};
use super::{DatasetError, Image, Sample};
use crate::augment;
use crate::config::{AugmentStep, DatasetConfig, OnBadImage, Preprocessing};

pub use super::order::epoch_order;

/// Batches assembled ahead of the consumer; enough to overlap without holding many in memory.
const PREFETCH: usize = 2;

/// One split (train or validation), decoded and resized once, kept in memory.
#[derive(Debug, Clone)]
pub struct Split {
    pub root: PathBuf,
    pub class_names: Vec<String>,
    pub samples: Vec<Sample>,
    /// `images[i]` belongs to `samples[i]`.
    pub images: Vec<Image>,
    /// Files left out under `on_bad_image = "skip"`, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// A batch ready for the model: NHWC pixels after augmentation and preprocessing, labels 0.0/1.0.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub size: usize,
    pub height: usize,
    pub width: usize,
    pub images: Vec<f32>,
    pub labels: Vec<f32>,
}

/// How to assemble one pass over a split.
#[derive(Debug, Clone)]
pub struct EpochPlan<'a> {
    /// Indices into the split's samples; every index must be below `Split::len`.
    pub order: Vec<usize>,
    pub batch_size: usize,
    pub preprocessing: Preprocessing,
    /// Training only: the steps, and the run seed and epoch that key each image's random stream.
    pub augmentation: Option<(&'a [AugmentStep], u64, usize)>,
}

impl Split {
    /// Index `dir`, then decode and resize every image to `cfg.image_size` on all cores.
    ///
    /// With `on_bad_image = "error"` the first unreadable file in index order is the error; with
    /// `"skip"` unreadable files are left out and listed in `skipped`.
    pub fn open(dir: &Path, cfg: &DatasetConfig) -> Result<Split, DatasetError> {
        Split::decode(index_directory(dir)?, cfg)
    }

    /// Decode and resize the files of `index` (see `open`).
    pub fn decode(index: ClassIndex, cfg: &DatasetConfig) -> Result<Split, DatasetError> {
        let [height, width] = cfg.image_size.map(|v| v as usize);
        let decoded = decode_all(&index.samples, height, width);
        let mut split = Split {
            root: index.root,
            class_names: index.class_names,
            samples: Vec::with_capacity(index.samples.len()),
            images: Vec::with_capacity(index.samples.len()),
            skipped: Vec::new(),
        };
        for (sample, result) in index.samples.into_iter().zip(decoded) {
            match (result, cfg.on_bad_image) {
                (Ok(image), _) => {
                    split.samples.push(sample);
                    split.images.push(image);
                }
                (Err(e), OnBadImage::Error) => return Err(e),
                (Err(e), OnBadImage::Skip) => split.skipped.push((sample.path, reason(&e))),
            }
        }
        if let (true, Some((first, why))) = (split.samples.is_empty(), split.skipped.first()) {
            return Err(DatasetError::Index {
                path: split.root,
                message: format!(
                    "all {} image files were unreadable and skipped (the first, {}: {why}); \
                     check that these are image files",
                    split.skipped.len(),
                    first.display()
                ),
            });
        }
        Ok(split)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Assemble the batches of `plan` on a producer thread and hand each to `consume` in order.
    ///
    /// Batches hold `plan.batch_size` samples, the last one possibly fewer. When `consume` returns
    /// `Break`, the producer stops after the batch it is building and `Break` is returned.
    pub fn for_each_batch(
        &self,
        plan: &EpochPlan<'_>,
        mut consume: impl FnMut(Batch) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let batch_size = plan.batch_size.max(1);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel(PREFETCH);
            scope.spawn(move || {
                for chunk in plan.order.chunks(batch_size) {
                    // A failed send means the consumer stopped and dropped the receiver.
                    if tx.send(self.batch(chunk, plan)).is_err() {
                        return;
                    }
                }
            });
            for batch in rx {
                consume(batch)?;
            }
            ControlFlow::Continue(())
        })
    }

    /// The batch of the samples `indices`: augmented (training only), preprocessed, with labels.
    fn batch(&self, indices: &[usize], plan: &EpochPlan<'_>) -> Batch {
        let first = &self.images[indices[0]];
        let (height, width) = (first.height, first.width);
        let mut images = Vec::with_capacity(indices.len() * height * width * 3);
        for &i in indices {
            let start = images.len();
            match plan.augmentation {
                Some((steps, seed, epoch)) if !steps.is_empty() => {
                    let mut stream = augment::image_stream(seed, epoch, i);
                    let augmented = augment::apply(steps, &self.images[i], &mut stream);
                    images.extend_from_slice(&augmented.data);
                }
                _ => images.extend_from_slice(&self.images[i].data),
            }
            preprocess(plan.preprocessing, &mut images[start..]);
        }
        Batch {
            size: indices.len(),
            height,
            width,
            images,
            labels: indices
                .iter()
                .map(|&i| self.samples[i].label as f32)
                .collect(),
        }
    }
}

/// Decode every sample, in parallel over contiguous chunks; results are in sample order.
fn decode_all(samples: &[Sample], height: usize, width: usize) -> Vec<Result<Image, DatasetError>> {
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

/// ImageNet channel means in B, G, R order (Keras `imagenet_utils`, mode "caffe").
const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];
/// ImageNet mean and std in R, G, B order on 0..1 (torchvision `ImageClassification`).
const TORCH_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const TORCH_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Turn 0..255 RGB pixels (HWC, interleaved) into network input, in place.
pub fn preprocess(mode: Preprocessing, pixels: &mut [f32]) {
    match mode {
        // The notebook's `ds.map(lambda x, y: (x / 255, y))`: float32 true division.
        Preprocessing::Rescale => pixels.iter_mut().for_each(|v| *v /= 255.0),
        Preprocessing::Caffe => {
            for px in pixels.chunks_exact_mut(3) {
                let [r, g, b] = [px[0], px[1], px[2]];
                px[0] = b - CAFFE_MEAN_BGR[0];
                px[1] = g - CAFFE_MEAN_BGR[1];
                px[2] = r - CAFFE_MEAN_BGR[2];
            }
        }
        Preprocessing::Torch => {
            for px in pixels.chunks_exact_mut(3) {
                for c in 0..3 {
                    px[c] = (px[c] / 255.0 - TORCH_MEAN[c]) / TORCH_STD[c];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
