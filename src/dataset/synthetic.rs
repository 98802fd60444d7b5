//! The deterministic synthetic image set used by the offline demo and the tests.

use std::path::{Path, PathBuf};

use super::DatasetError;
use crate::config::SyntheticSpec;

/// Generate the data set of `spec` under `cache_root` unless it already exists, and return
/// the (train, validation) class-folder directories.
pub fn ensure(spec: &SyntheticSpec, cache_root: &Path) -> Result<(PathBuf, PathBuf), DatasetError> {
    let _ = (spec, cache_root);
    todo!("dataset::synthetic::ensure")
}
