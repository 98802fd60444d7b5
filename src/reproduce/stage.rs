//! The pretraining stage of a run being reproduced. A cell that loaded its conv base from a
//! `[pretrain]` stage is checked against the stage's stored checkpoint: that file, verified by
//! the SHA-256 the cell's run.json recorded, is an input like the data set, so `reproduce`
//! trains only the cell from it. `--deep` trains the stage again too, in the scratch tree, and
//! compares its metrics and checkpoint bytes with the stored stage before the cell trains.

use super::current::options;
use super::diff::metric_differences;
use crate::config::Experiment;
use crate::model::weights::file_sha256;
use crate::plan::StagePlan;
use crate::provenance::CodeState;
use crate::store::record::StageUse;
use crate::store::{read_metrics, ResultsLayout};
use crate::sweep::files::{STAGE_MODEL, STAGE_RECORD};
use crate::sweep::stage::{self, StageOutcome, StageRecord};
use crate::sweep::{image_cache, Progress};

/// What the stored stage of a run is now.
pub(super) enum StageCheck {
    /// Its checkpoint is there, with the hash the run recorded.
    Stored(StageOutcome),
    /// It is missing, changed, or its key changed: one line each, naming paths and hashes.
    Changed(Vec<String>),
}

/// Check the stage `used` of a run (whose code hash was `old_code`), planned as `planned`, against
/// the stage stored under `results` for the current code and data. Opens and fingerprints the
/// stage's data set; trains nothing.
pub(super) fn check(
    experiment: &Experiment,
    planned: &StagePlan,
    used: &StageUse,
    old_code: &str,
    results: &ResultsLayout,
    code: &CodeState,
) -> anyhow::Result<StageCheck> {
    let stage = &planned.stage;
    let options = options(results.clone(), Progress::Quiet, false);
    let budget = std::sync::Arc::new(crate::base::memory::MemoryBudget::new(options.cache_memory));
    let images = image_cache(&options, budget);
    let located = stage::locate(experiment, planned, code, &images, &options)?;
    let short = |s: &str| s[..12.min(s.len())].to_string();
    if located.key != used.key {
        let mut changed = vec![format!(
            "pretraining stage changed ({} -> {})",
            short(&used.key),
            short(&located.key)
        )];
        // What the stage's key was made of, from the record beside the checkpoint the run read.
        let old_record = used
            .checkpoint
            .parent()
            .and_then(|dir| std::fs::read(dir.join(STAGE_RECORD)).ok())
            .and_then(|bytes| serde_json::from_slice::<StageRecord>(&bytes).ok());
        match old_record {
            Some(old) => {
                let now = &located.components;
                for (what, a, b) in [
                    ("configuration", &old.key.config, &now.config),
                    ("data set", &old.key.dataset, &now.dataset),
                    ("code", &old.key.code, &now.code),
                ] {
                    if a != b {
                        changed.push(format!(
                            "  the {} stage's {what} changed ({} -> {})",
                            stage.name,
                            short(a),
                            short(b)
                        ));
                    }
                }
            }
            None if old_code != code.hash => changed.push(format!(
                "  code changed ({} -> {})",
                short(old_code),
                short(&code.hash)
            )),
            None => changed.push(format!(
                "  ({} is gone: which of the stage's inputs changed is unknown)",
                used.checkpoint.with_file_name(STAGE_RECORD).display()
            )),
        }
        return Ok(StageCheck::Changed(changed));
    }
    let checkpoint = located.dir.join(STAGE_MODEL);
    if !checkpoint.exists() {
        return Ok(StageCheck::Changed(vec![format!(
            "the {} stage checkpoint {} is missing (the run used SHA-256 {}); `runner sweep` \
             trains the stage again",
            stage.name,
            checkpoint.display(),
            used.checkpoint_sha256
        )]));
    }
    let actual = file_sha256(&checkpoint)?;
    if actual != used.checkpoint_sha256 {
        return Ok(StageCheck::Changed(vec![format!(
            "the {} stage checkpoint {} changed: SHA-256 {actual} now, {} when the run used it",
            stage.name,
            checkpoint.display(),
            used.checkpoint_sha256
        )]));
    }
    match stage::finished(&located.dir, &located.key)? {
        Some(found) => Ok(StageCheck::Stored(found)),
        None => Ok(StageCheck::Changed(vec![format!(
            "the {} stage record {} is missing",
            stage.name,
            located.dir.join(STAGE_RECORD).display()
        )])),
    }
}

/// The line saying that the stage was checked, not trained again.
pub(super) fn checked_line(name: &str, stored: &StageOutcome) -> String {
    format!(
        "{name} stage: not trained again; its checkpoint {} has the SHA-256 the run recorded \
         ({}); --deep trains it again and compares",
        stored.checkpoint.display(),
        &stored.checkpoint_sha256[..12]
    )
}

/// Compare the stage trained again (`new`) with the stored one: every metric but the seconds
/// within `tolerance`, and the checkpoint's bytes (by SHA-256; different bytes are accepted only
/// with a tolerance, as between devices). Prints the comparison; returns the differences, each
/// naming the stage.
pub(super) fn compare(
    name: &str,
    stored: &StageOutcome,
    new: &StageOutcome,
    tolerance: f64,
    progress: &Progress,
) -> anyhow::Result<Vec<String>> {
    let old_rows = read_metrics(&stored.dir.join("metrics.csv"))?;
    let new_rows = read_metrics(&new.dir.join("metrics.csv"))?;
    let mut diffs = metric_differences(&old_rows, &new_rows, tolerance);
    let same_bytes = stored.checkpoint_sha256 == new.checkpoint_sha256;
    if !same_bytes && tolerance == 0.0 {
        diffs.push(format!(
            "the checkpoint differs: SHA-256 {} now, {} stored ({})",
            new.checkpoint_sha256,
            stored.checkpoint_sha256,
            stored.checkpoint.display()
        ));
    }
    if diffs.is_empty() {
        let bytes = if same_bytes {
            format!(
                "the checkpoint is byte-identical (SHA-256 {})",
                &new.checkpoint_sha256[..12]
            )
        } else {
            format!(
                "the checkpoint's bytes differ (SHA-256 {} now, {} stored), as --tolerance allows",
                &new.checkpoint_sha256[..12],
                &stored.checkpoint_sha256[..12]
            )
        };
        progress.line(&format!(
            "{name} stage REPRODUCED: all {} epochs match (tolerance {tolerance}) and {bytes}",
            new_rows.len()
        ));
    } else {
        progress.line(&format!("{name} stage MISMATCH:"));
        diffs.iter().for_each(|d| progress.line(&format!("  {d}")));
    }
    Ok(diffs
        .into_iter()
        .map(|d| format!("{name} stage: {d}"))
        .collect())
}
