//! A decoded split (pixels from the image cache, `image_cache`), the per-epoch order, and batch
//! assembly (augmentation, preprocessing) on a background thread, through a bounded queue, so
//! that it overlaps with training.
//!
//! Every random draw is keyed by (seed, epoch, sample index) through `rng::stream`, never by
//! thread or batch, so results do not depend on scheduling. Validation batches are built with
//! `augmentation: None` and never pass through `augment`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use super::error::DatasetError;
use super::image_cache::{self, ImageCache, Origin, Pixels, Residency};
use super::index::Sample;
use super::index::{index_directory, ClassIndex};
use crate::augment;
use crate::config::{AugmentStep, DatasetConfig, Preprocessing};
use crate::image::Image;

pub use super::order::epoch_order;

/// Batches assembled ahead of the consumer; enough to overlap without holding many in memory.
const PREFETCH: usize = 2;

/// One split (train or validation): its files, decoded and resized once (see `image_cache` for
/// where the pixels are kept).
#[derive(Debug, Clone)]
pub struct Split {
    pub root: PathBuf,
    pub class_names: Vec<String>,
    pub samples: Vec<Sample>,
    /// Files left out under `on_bad_image = "skip"`, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Pixel `i` belongs to `samples[i]`.
    pixels: Arc<Pixels>,
}

/// How a split's images were obtained through the cache, for the log.
#[derive(Debug, Clone)]
pub struct DecodeReport {
    pub origin: Origin,
    /// A problem with the cache that did not stop the run (it fell back), if any.
    pub warning: Option<String>,
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
    /// A split of already decoded images (all the same size), held in memory.
    pub fn from_images(
        root: PathBuf,
        class_names: Vec<String>,
        samples: Vec<Sample>,
        images: &[Image],
    ) -> Split {
        assert_eq!(samples.len(), images.len());
        let (height, width) = images.first().map_or((0, 0), |i| (i.height, i.width));
        Split {
            root,
            class_names,
            samples,
            skipped: Vec::new(),
            pixels: Arc::new(Pixels::from_images(height, width, images)),
        }
    }

    /// Index `dir`, then decode and resize every image to `cfg.image_size` on all cores, into
    /// memory.
    ///
    /// With `on_bad_image = "error"` the first unreadable file in index order is the error; with
    /// `"skip"` unreadable files are left out and listed in `skipped`.
    pub fn open(dir: &Path, cfg: &DatasetConfig) -> Result<Split, DatasetError> {
        Split::decode(index_directory(dir)?, cfg)
    }

    /// Decode and resize the files of `index` into memory (see `open`).
    pub fn decode(index: ClassIndex, cfg: &DatasetConfig) -> Result<Split, DatasetError> {
        Ok(Split::decode_with(index, cfg, None, &ImageCache::memory())?.0)
    }

    /// Decode and resize the files of `index` through `cache` (see `image_cache`): `hashes` are the
    /// files' content hashes in index order, without which nothing is cached on disk.
    pub fn decode_with(
        index: ClassIndex,
        cfg: &DatasetConfig,
        hashes: Option<&[String]>,
        cache: &ImageCache,
    ) -> Result<(Split, DecodeReport), DatasetError> {
        let decoded = image_cache::decode_split(&index, cfg, hashes, cache)?;
        // The first skipped file of each class, and how many (a class may lose them all).
        let mut skipped_per_class = vec![(0usize, None); index.class_names.len()];
        for (i, why) in &decoded.skipped {
            let (count, first) = &mut skipped_per_class[index.samples[*i].label as usize];
            *count += 1;
            first.get_or_insert((index.samples[*i].path.clone(), why.clone()));
        }
        let mut listed: Vec<Option<Sample>> = index.samples.into_iter().map(Some).collect();
        let split = Split {
            root: index.root,
            class_names: index.class_names,
            samples: decoded
                .kept
                .iter()
                .filter_map(|&i| listed[i].take())
                .collect(),
            skipped: decoded
                .skipped
                .into_iter()
                .filter_map(|(i, why)| Some((listed[i].take()?.path, why)))
                .collect(),
            pixels: Arc::new(decoded.pixels),
        };
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
        for (label, (count, first)) in skipped_per_class.into_iter().enumerate() {
            let kept = split.samples.iter().any(|s| s.label as usize == label);
            if let (false, Some((path, why))) = (kept, first) {
                return Err(DatasetError::Index {
                    path: split.root.join(&split.class_names[label]),
                    message: format!(
                        "all {count} image files of this class were unreadable and skipped (the \
                         first, {}: {why}), and a class without images cannot be learned",
                        path.display()
                    ),
                });
            }
        }
        let report = DecodeReport {
            origin: decoded.origin,
            warning: decoded.warning,
        };
        Ok((split, report))
    }

    /// A line for the console when files were skipped under `on_bad_image = "skip"`: how many,
    /// the first with its reason, and where the full list is kept. `name` is the split's name
    /// in the run records ("train" or "validation").
    pub fn skipped_summary(&self, name: &str) -> Option<String> {
        let (first, why) = self.skipped.first()?;
        Some(format!(
            "{} of {} image files in {} were unreadable and skipped (dataset.on_bad_image = \
             \"skip\"), the first {}: {why}; all are listed with their reasons under \
             \"{name}.skipped\" in run.json (stage.json for a pretraining stage)",
            self.skipped.len(),
            self.skipped.len() + self.samples.len(),
            self.root.display(),
            first.display(),
        ))
    }

    /// Image `i` (0..255 RGB, HWC) at the configured size: from the cache, or decoded now when
    /// the images are not kept.
    pub fn image(&self, i: usize) -> Result<Image, DatasetError> {
        self.pixels.image(i)
    }

    /// How the decoded images are kept.
    pub fn residency(&self) -> Residency {
        self.pixels.residency()
    }

    /// Bytes the decoded images take (in memory or in their mapped cache file).
    pub fn stored_bytes(&self) -> usize {
        self.pixels.stored_bytes()
    }

    /// The cache file the images are mapped from, if any.
    pub fn cache_file(&self) -> Option<&Path> {
        self.pixels.file()
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
    ///
    /// An image that cannot be decoded at this point (images are decoded per batch when they
    /// are not cached, and the file changed since) stops the pass with that error.
    pub fn for_each_batch(
        &self,
        plan: &EpochPlan<'_>,
        mut consume: impl FnMut(Batch) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, DatasetError> {
        let batch_size = plan.batch_size.max(1);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel(PREFETCH);
            scope.spawn(move || {
                for chunk in plan.order.chunks(batch_size) {
                    let batch = self.batch(chunk, plan);
                    let failed = batch.is_err();
                    // A failed send means the consumer stopped and dropped the receiver.
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            });
            for batch in rx {
                if consume(batch?).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            Ok(ControlFlow::Continue(()))
        })
    }

    /// The batch of the samples `indices`: augmented (training only), preprocessed, with labels.
    pub fn batch(&self, indices: &[usize], plan: &EpochPlan<'_>) -> Result<Batch, DatasetError> {
        let (height, width) = (self.pixels.height, self.pixels.width);
        let mut images = Vec::with_capacity(indices.len() * height * width * 3);
        for &i in indices {
            let start = images.len();
            match plan.augmentation {
                Some((steps, seed, epoch)) if !steps.is_empty() => {
                    let mut stream = augment::image_stream(seed, epoch, i);
                    let augmented = augment::apply(steps, &self.image(i)?, &mut stream);
                    images.extend_from_slice(&augmented.data);
                }
                _ => self.pixels.extend_into(i, &mut images)?,
            }
            preprocess(plan.preprocessing, &mut images[start..]);
        }
        Ok(Batch {
            size: indices.len(),
            height,
            width,
            images,
            labels: indices
                .iter()
                .map(|&i| self.samples[i].label as f32)
                .collect(),
        })
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

/// The training and validation splits of one data set, with the same classes.
#[derive(Debug, Clone)]
pub struct Data {
    pub train: Split,
    pub validation: Split,
}

impl Data {
    /// Open both splits and check that they hold the same two classes (binary classification).
    pub fn open(
        cfg: &DatasetConfig,
        train_dir: &Path,
        validation_dir: &Path,
    ) -> Result<Data, DatasetError> {
        Self::open_classes(cfg, train_dir, validation_dir, true)
    }

    /// Open both splits of a multi-class task (a pretraining stage's): the same two or more classes.
    pub fn open_multiclass(
        cfg: &DatasetConfig,
        train_dir: &Path,
        validation_dir: &Path,
    ) -> Result<Data, DatasetError> {
        Self::open_classes(cfg, train_dir, validation_dir, false)
    }

    fn open_classes(
        cfg: &DatasetConfig,
        train_dir: &Path,
        validation_dir: &Path,
        binary: bool,
    ) -> Result<Data, DatasetError> {
        let (train, validation) = Data::index(train_dir, validation_dir, binary)?;
        Ok(Data {
            train: Split::decode(train, cfg)?,
            validation: Split::decode(validation, cfg)?,
        })
    }

    /// List both splits and check their classes (the same in both; exactly two when `binary`,
    /// at least two otherwise), before any time is spent decoding.
    pub fn index(
        train_dir: &Path,
        validation_dir: &Path,
        binary: bool,
    ) -> Result<(ClassIndex, ClassIndex), DatasetError> {
        let train = index_directory(train_dir)?;
        let validation = index_directory(validation_dir)?;
        if train.class_names != validation.class_names {
            return Err(DatasetError::ClassMismatch {
                train: train.root,
                validation: validation.root,
                train_classes: train.class_names,
                validation_classes: validation.class_names,
            });
        }
        if !binary && train.class_names.len() < 2 {
            return Err(DatasetError::TooFewClasses {
                path: train.root,
                classes: train.class_names,
            });
        }
        if binary && train.class_names.len() != 2 {
            return Err(DatasetError::NotBinary {
                path: train.root,
                classes: train.class_names,
            });
        }
        Ok((train, validation))
    }
}

#[cfg(test)]
mod tests;
