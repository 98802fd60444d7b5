//! Listing a class-folder directory exactly as Keras `image_dataset_from_directory` does.

use std::path::{Path, PathBuf};

use super::{DatasetError, Sample};

/// The classes (sorted sub-folder names) and every image file, in (class, root path, file name) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassIndex {
    pub root: PathBuf,
    pub class_names: Vec<String>,
    pub samples: Vec<Sample>,
}

/// Index `dir`: one class per immediate non-hidden sub-directory, files found recursively.
pub fn index_directory(dir: &Path) -> Result<ClassIndex, DatasetError> {
    let _ = dir;
    todo!("dataset::index::index_directory")
}
