//! Image data sets with Keras `image_dataset_from_directory` semantics, and the synthetic generator.
//!
//! The pipeline: `index` lists a class-folder directory, `decode` reads and resizes each file,
//! `store` keeps the decoded images (a memory-mapped cache file keyed by the files' content, or
//! memory, or nothing: decode again when used), `batches` assembles each epoch's batches of a
//! `Split` (order from `epoch_order`, augmentation for training only, preprocessing), and `Data`
//! pairs the training and validation splits. `synthetic` writes a generated data set as ordinary class folders.
//!
//! This module turns files into batches of plain `f32` pixels; it never touches the engine
//! (`model`/`train` convert batches to tensors). Errors name the file or directory concerned.

pub mod batches;
pub mod decode;
pub mod index;
mod order;
pub mod store;
pub mod synthetic;

use std::path::{Path, PathBuf};

pub use batches::{Batch, DecodeReport, EpochPlan, Split};
pub use index::ClassIndex;
pub use store::{ImageCache, Residency};

use crate::config::DatasetConfig;

/// An RGB image, channels last (HWC), values in 0..=255 as `f32` (what Keras's resize produces).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    /// `height * width * 3` values, row-major, RGB interleaved.
    pub data: Vec<f32>,
}

impl Image {
    pub fn new(height: usize, width: usize) -> Self {
        Image {
            height,
            width,
            data: vec![0.0; height * width * 3],
        }
    }

    /// Value at row `y`, column `x`, channel `c`.
    pub fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.data[(y * self.width + x) * 3 + c]
    }
}

/// A file of the data set and its class index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    pub label: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{}: {message}", path.display())]
    Index { path: PathBuf, message: String },
    #[error("{}: cannot decode image: {message} (set dataset.on_bad_image = \"skip\" to skip unreadable files)", path.display())]
    BadImage { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} and {} have different class folders ({train_classes:?} and {validation_classes:?}); \
         both must have the same class sub-folders",
        train.display(),
        validation.display()
    )]
    ClassMismatch {
        train: PathBuf,
        validation: PathBuf,
        train_classes: Vec<String>,
        validation_classes: Vec<String>,
    },
    #[error(
        "{}: found {} classes named {classes:?}; binary classification needs exactly 2 class folders",
        path.display(),
        classes.len()
    )]
    NotBinary { path: PathBuf, classes: Vec<String> },
    #[error(
        "{}: found {} class folder(s) {classes:?}; a multi-class task needs at least 2",
        path.display(),
        classes.len()
    )]
    TooFewClasses { path: PathBuf, classes: Vec<String> },
    #[error("dataset.synthetic: {message}")]
    InvalidSynthetic { message: String },
    #[error("{}: cannot write the synthetic data set: {source} (check that the cache directory is writable and has free space)", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
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
        let train = index::index_directory(train_dir)?;
        let validation = index::index_directory(validation_dir)?;
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
