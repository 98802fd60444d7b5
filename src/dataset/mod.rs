//! Image data sets with Keras `image_dataset_from_directory` semantics, and the synthetic generator.
//!
//! This module turns files into batches of plain `f32` pixels; it never touches the engine
//! (`model`/`train` convert batches to tensors). Decoding errors name the file.

pub mod batches;
pub mod decode;
pub mod index;
pub mod synthetic;

use std::path::PathBuf;

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
}
