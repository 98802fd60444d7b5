//! Image data sets with Keras `image_dataset_from_directory` semantics, and the synthetic generator.
//!
//! The pipeline: `index` lists a class-folder directory, `decode` reads and resizes each file,
//! `image_cache` keeps the decoded images (a memory-mapped cache file keyed by the files' content,
//! or memory, or nothing: decode again when used), `batches` assembles each epoch's batches of a
//! `Split` (order from `epoch_order`, augmentation for training only, preprocessing), and `Data`
//! pairs the training and validation splits. `synthetic` writes a generated data set as ordinary
//! class folders. `known` and `fetch` are the data sets `runner fetch` downloads.
//!
//! This module turns files into batches of plain `f32` pixels; it never touches the engine
//! (`model`/`train` convert batches to tensors). Errors name the file or directory concerned.

pub mod batches;
pub mod decode;
mod error;
pub mod fetch;
pub mod image_cache;
pub mod index;
pub mod known;
mod order;
pub mod synthetic;

pub use crate::image::Image;
pub use batches::{Batch, Data, DecodeReport, EpochPlan, Split};
pub use error::DatasetError;
pub use image_cache::{ImageCache, Residency};
pub use index::{ClassIndex, Sample};
