//! A decoded split in memory, the per-epoch order, and batch assembly (augmentation, preprocessing)
//! on a background thread so that it overlaps with training.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::{DatasetError, Image, Sample};
use crate::config::{AugmentStep, DatasetConfig, Preprocessing, ShuffleMode};

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
    pub order: Vec<usize>,
    pub batch_size: usize,
    pub preprocessing: Preprocessing,
    /// Training only: the steps, and the run seed and epoch that key each image's random stream.
    pub augmentation: Option<(&'a [AugmentStep], u64, usize)>,
}

impl Split {
    pub fn open(dir: &Path, cfg: &DatasetConfig) -> Result<Split, DatasetError> {
        let _ = (dir, cfg);
        todo!("dataset::batches::Split::open")
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Assemble the batches of `plan` on a producer thread and hand each to `consume` in order.
    pub fn for_each_batch(
        &self,
        plan: &EpochPlan<'_>,
        consume: impl FnMut(Batch) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let _ = (plan, consume);
        todo!("dataset::batches::Split::for_each_batch")
    }
}

/// The order of the training samples in `epoch` (0-based) for run seed `seed`.
pub fn epoch_order(
    n: usize,
    mode: ShuffleMode,
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<usize> {
    let _ = (n, mode, batch_size, seed, epoch);
    todo!("dataset::batches::epoch_order")
}

/// Turn 0..255 RGB pixels (HWC, interleaved) into network input, in place.
pub fn preprocess(mode: Preprocessing, pixels: &mut [f32]) {
    let _ = (mode, pixels);
    todo!("dataset::batches::preprocess")
}
