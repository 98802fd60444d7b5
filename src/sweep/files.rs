//! The names of the files a sweep keeps beside the store's own (`run.json`, `metrics.csv`).

/// The resumable checkpoint (trainable parameters, optimizer state and epoch, `train::checkpoint`)
/// that an unfinished cell or stage keeps in its `.partial` directory after every finished epoch;
/// removed once it finishes.
pub const RESUME_CHECKPOINT: &str = "checkpoint.safetensors";

/// A finished stage's whole trained network, whose conv base the cells load.
pub const STAGE_MODEL: &str = "model.safetensors";

/// A finished stage's record (`stage::StageRecord`).
pub const STAGE_RECORD: &str = "stage.json";

/// The manifest of one split (`train` or `validation`) stored with every cell.
pub fn manifest(split: &str) -> String {
    format!("{split}.manifest.json")
}
