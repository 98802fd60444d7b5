//! Placeholder: canonical configuration hash.
use std::path::Path;

use super::CellConfig;

pub fn config_hash(cfg: &CellConfig, _experiment_dir: &Path) -> String {
    crate::store::sha256_hex(serde_json::to_string(cfg).unwrap_or_default().as_bytes())
}
