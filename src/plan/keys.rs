//! Keys: the run key of a cell and the key of a stage (SHA-256 over their components), and the
//! keys under which cells share a data set or weights.

use serde::{Deserialize, Serialize};

use crate::base::hash;
use crate::config::{CellConfig, DatasetConfig};

/// The components of a run key: each is a SHA-256 (hex) of one input of the cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyComponents {
    /// Canonical hash of the fully resolved cell configuration (paths relative to the experiment file).
    pub config: String,
    /// Root hash of the data set manifests (train and validation).
    pub dataset: String,
    /// SHA-256 of the weights file, or null for random initialisation.
    pub weights: Option<String>,
    /// Hash of the code state: commit id plus the hash of any local diff and untracked files.
    pub code: String,
    pub seed: u64,
    /// Run key of the pretraining stage whose conv base the cell loads, when it loads one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// The components of a stage's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageKey {
    /// Canonical hash of the stage's resolved configuration (as a cell's, `config::hash`).
    pub config: String,
    /// Root hash of the stage's data set manifests.
    pub dataset: String,
    pub code: String,
    pub seed: u64,
}

/// The hashes of a cell's inputs, known once the sweep has opened them: the data set's manifests,
/// the weights file, the code state, and the run key of the stage the cell loads (if any).
#[derive(Debug, Clone, Copy)]
pub struct InputHashes<'a> {
    pub dataset: &'a str,
    pub weights: Option<&'a str>,
    pub code: &'a str,
    pub stage: Option<&'a str>,
}

fn sha256_hex(text: &str) -> String {
    hash::sha256_hex(text.as_bytes())
}

/// The run key of a cell: SHA-256 over its components.
pub fn run_key(components: &KeyComponents) -> String {
    let mut text = format!(
        "runner-run-key-v1\nrunner {}\nconfig {}\ndataset {}\nweights {}\ncode {}\nseed {}\n",
        env!("CARGO_PKG_VERSION"),
        components.config,
        components.dataset,
        components.weights.as_deref().unwrap_or("none"),
        components.code,
        components.seed
    );
    // Only cells that load a stage's weights have this line, so every other key is unchanged.
    if let Some(stage) = &components.stage {
        text.push_str(&format!("stage {stage}\n"));
    }
    sha256_hex(&text)
}

/// The key of the stage named `name`: SHA-256 over its components.
pub fn stage_key(name: &str, components: &StageKey) -> String {
    sha256_hex(&format!(
        "runner-stage-key-v1\nrunner {}\nstage {name}\nconfig {}\ndataset {}\ncode {}\nseed {}\n",
        env!("CARGO_PKG_VERSION"),
        components.config,
        components.dataset,
        components.code,
        components.seed
    ))
}

fn key<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("configuration serializes")
}

/// The part of a dataset config that determines the decoded images (not batching or augmentation).
pub fn data_key(d: &DatasetConfig) -> String {
    key(&(&d.source, d.image_size, d.on_bad_image))
}

/// The part of a cell config that determines its loaded weights.
pub fn weights_key(cfg: &CellConfig) -> String {
    key(&cfg.model.weights)
}
