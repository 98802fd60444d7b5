//! `runner export-model`: a cell's complete model, rebuilt from the base it was trained from and
//! the parameters it trained.
//!
//! A cell stores only its trained parameters (`trained.safetensors`, `best-trained.safetensors`):
//! its frozen layers are the weights file, the pretraining stage's checkpoint or the seeded
//! initialisation it was built from, which run.json names. Export builds the network exactly as
//! the cell did, after checking the base file against the SHA-256 the cell recorded, checks the
//! rebuilt frozen layers against the cell's `frozen_sha256`, puts the trained parameters in, and
//! writes every parameter, as the cell would have saved its whole model. It never writes a model
//! whose frozen layers differ from the ones the cell was trained with.

use std::path::Path;

use anyhow::bail;

use crate::base::fs::write_atomic_with;
use crate::config::Weights;
use crate::model::weights::trained::{self, BEST_TRAINED_FILE, TRAINED_FILE};
use crate::model::weights::{self, LoadedWeights};
use crate::model::{freeze, Network};
use crate::store::RunRecord;

/// What `export` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Parameters read from the cell's trained-parameter file.
    pub trained: usize,
    /// Parameters rebuilt from the base.
    pub frozen: usize,
    /// Where the frozen parameters came from, in words.
    pub base: String,
    pub sha256: String,
}

/// The cell's file of trained parameters: of the best epoch, or of the last one.
pub fn trained_file(best: bool) -> &'static str {
    if best {
        BEST_TRAINED_FILE
    } else {
        TRAINED_FILE
    }
}

/// Write the complete model of the cell in `dir` (whose run.json is `record`) to `output`,
/// atomically. `base` replaces the weights file run.json names.
pub fn export(
    dir: &Path,
    record: &RunRecord,
    best: bool,
    base: Option<&Path>,
    output: &Path,
) -> anyhow::Result<Exported> {
    let (network, described) = rebuild(dir, record, best, base)?;
    write_atomic_with(output, |tmp| {
        network
            .save_safetensors(tmp)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })?;
    let (trained, frozen) = network.parameter_counts();
    Ok(Exported {
        trained,
        frozen,
        base: described,
        sha256: weights::file_sha256(output)?,
    })
}

/// The cell's network with its trained parameters (final, or best with `best`), and where its
/// frozen parameters came from.
pub fn rebuild(
    dir: &Path,
    record: &RunRecord,
    best: bool,
    base: Option<&Path>,
) -> anyhow::Result<(Network, String)> {
    let trained_path = dir.join(trained_file(best));
    if !trained_path.exists() {
        let complete = if best {
            "best.safetensors"
        } else {
            "model.safetensors"
        };
        if dir.join(complete).exists() {
            bail!(
                "{}: no {}; this cell was written when cells kept the whole model, and its {complete} is the complete model already",
                dir.display(),
                trained_file(best)
            );
        }
        bail!(
            "{}: no {}: the cell is {} (a cell has it once it finishes as done or diverged{})",
            dir.display(),
            trained_file(best),
            record.status,
            if best {
                ", or once an epoch finished"
            } else {
                "; --best exports its best epoch so far"
            }
        );
    }
    let cfg = &record.config;
    let arch = crate::plan::architecture(cfg)?;
    let mask = freeze::trainable_mask(&cfg.training.freeze, &arch).map_err(anyhow::Error::msg)?;
    let has_frozen = arch
        .layers
        .iter()
        .zip(&mask)
        .any(|(layer, &trains)| !trains && layer.has_weights());
    let cpu = crate::model::cpu();
    // A cell that trains every layer overwrites whatever its base gave it: no base is needed.
    let (loaded, described) = if has_frozen {
        load_base(dir, record, base, &arch, &cpu)?
    } else {
        (
            LoadedWeights::default(),
            "nothing (every layer trains)".into(),
        )
    };
    let network = Network::new(arch, cfg.model.conv_init, mask, &loaded, record.seed, &cpu)?;
    if let (true, Some(expected)) = (has_frozen, &record.frozen_sha256) {
        let actual = trained::frozen_hash(&network)?;
        if &actual != expected {
            bail!(
                "the frozen layers rebuilt from {described} differ from those {} was trained with \
                 (SHA-256 {actual}, recorded {expected}): the code that builds them has changed \
                 since code state {}; export with that code",
                dir.display(),
                record.code_state.as_deref().unwrap_or("unknown")
            );
        }
    }
    trained::load_into(&trained_path, &network)?;
    Ok((network, described))
}

/// The base the cell was built from, checked against the SHA-256 it recorded, read as the sweep
/// read it (a stage's checkpoint gives its conv base only; a weights file whatever it holds).
fn load_base(
    dir: &Path,
    record: &RunRecord,
    base: Option<&Path>,
    arch: &crate::model::arch::Architecture,
    device: &candle_core::Device,
) -> anyhow::Result<(LoadedWeights, String)> {
    let weights = &record.config.model.weights;
    if *weights == Weights::None {
        return Ok((
            LoadedWeights::default(),
            format!("the seeded initialisation (seed {})", record.seed),
        ));
    }
    let recorded = record
        .stage
        .as_ref()
        .map(|s| s.checkpoint.clone())
        .or_else(|| record.weights.source.clone());
    let Some(path) = base.map(Path::to_path_buf).or(recorded) else {
        bail!(
            "{}/run.json names no weights file for the frozen layers; pass --base FILE",
            dir.display()
        );
    };
    let expected = record.weights.sha256.as_deref().unwrap_or("unknown");
    if !path.is_file() {
        bail!(
            "{}: the frozen base of {} is missing (a weights file with SHA-256 {expected}); \
             put it back, or pass --base FILE with a copy",
            path.display(),
            dir.display()
        );
    }
    let actual = weights::file_sha256(&path)?;
    if record.weights.sha256.as_deref() != Some(actual.as_str()) {
        bail!(
            "{}: SHA-256 is {actual}, but {} was trained from a base with SHA-256 {expected}: \
             the file changed since; pass --base FILE with the original",
            path.display(),
            dir.display()
        );
    }
    let loaded = match weights {
        Weights::Stage(_) => weights::load_conv_base(&path, arch, device)?,
        _ => weights::load_checked(&path, arch, device)?,
    };
    Ok((loaded, format!("{} (SHA-256 verified)", path.display())))
}

#[cfg(test)]
mod tests;
