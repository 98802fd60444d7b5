//! The files a past run read, compared with the files there now by hash alone: nothing is
//! decoded, so a changed file is reported as a change (naming it) even when it no longer decodes.

use std::path::Path;

use crate::config::{CellConfig, Weights};
use crate::dataset::Data;
use crate::fingerprint::{self, Manifest, ManifestDiff, StatCache};
use crate::model::weights::file_sha256;
use crate::store::{ResultsLayout, RunRecord};
use crate::sweep;
use crate::sweep::files::manifest;

/// What changed in the data set and the weights file `cfg` names since the run in `run_dir`
/// (`record`) read them: one line per file, naming it. Empty when every file is as recorded.
pub(super) fn changed_files(
    run_dir: &Path,
    cfg: &CellConfig,
    record: &RunRecord,
    results: &ResultsLayout,
) -> anyhow::Result<Vec<String>> {
    let mut out = data_changes(run_dir, cfg, record, results)?;
    out.extend(weights_change(cfg, record));
    Ok(out)
}

/// The data set's files now against the manifests stored with the run.
fn data_changes(
    run_dir: &Path,
    cfg: &CellConfig,
    record: &RunRecord,
    results: &ResultsLayout,
) -> anyhow::Result<Vec<String>> {
    let (train, validation) = sweep::data_dirs(&cfg.dataset.source, results)?;
    let (train_index, validation_index) = match Data::index(&train, &validation, true) {
        Ok(indices) => indices,
        Err(e) => return Ok(vec![format!("dataset changed: {e}")]),
    };
    let mut stat = StatCache::open(&results.cache_dir());
    let mut out = Vec::new();
    let splits = [
        ("train", &train_index, record.train.as_ref()),
        ("validation", &validation_index, record.validation.as_ref()),
    ];
    for (split, index, recorded) in splits {
        let path = run_dir.join(manifest(split));
        let Ok(bytes) = std::fs::read(&path) else {
            out.push(format!(
                "{} is missing: cannot list the changed files",
                path.display()
            ));
            continue;
        };
        let stored = Manifest::from_json(&bytes, &path)?;
        let (now, _) = fingerprint::manifest_of_index(index, &mut stat)?;
        let mut diff = ManifestDiff::between(&stored, &now);
        // Files the run skipped (`on_bad_image = "skip"`) are not in its manifest.
        let skipped: Vec<&Path> = recorded
            .map(|r| r.skipped.iter().map(|s| s.path.as_path()).collect())
            .unwrap_or_default();
        diff.added
            .retain(|f| !skipped.iter().any(|s| s.ends_with(&f.path)));
        if !diff.is_empty() {
            out.extend(diff.to_string().lines().map(|l| {
                format!(
                    "dataset changed: {split}: {l} (in {})",
                    index.root.display()
                )
            }));
        }
    }
    // Only a cache: a results directory that cannot be written does not hide what changed.
    let _ = stat.save();
    Ok(out)
}

/// The weights file `cfg` names, against the SHA-256 the run recorded.
fn weights_change(cfg: &CellConfig, record: &RunRecord) -> Option<String> {
    let Weights::File { path, .. } = &cfg.model.weights else {
        return None;
    };
    let recorded = record.weights.sha256.as_deref()?;
    match file_sha256(path) {
        Ok(now) if now == recorded => None,
        Ok(now) => Some(format!(
            "weights file {} changed: SHA-256 {now} now, {recorded} when the run used it",
            path.display()
        )),
        Err(e) => Some(format!(
            "weights file {} cannot be read ({e}); the run used SHA-256 {recorded}",
            path.display()
        )),
    }
}
