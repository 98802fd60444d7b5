//! The runs on disk: every run record under a results tree, and finding one by directory or run
//! key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::store::{read_record, ResultsLayout, RunRecord};

/// A run on disk.
#[derive(Debug, Clone)]
pub struct FoundRun {
    pub dir: PathBuf,
    pub record: RunRecord,
}

/// Every run record under the results tree (finished and `.partial`), optionally of one experiment.
pub fn find_runs(results: &ResultsLayout, experiment: Option<&str>) -> Vec<FoundRun> {
    let mut out = Vec::new();
    for state in results.code_states() {
        let state_dir = results.root.join(&state);
        for exp in read_dirs(&state_dir) {
            if experiment.is_some_and(|e| exp.file_name().is_some_and(|n| n != e)) {
                continue;
            }
            for variant in read_dirs(&exp) {
                for cell in read_dirs(&variant) {
                    if let Some(record) = read_record(&cell) {
                        out.push(FoundRun { dir: cell, record });
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (
            &a.record.experiment,
            &a.record.variant,
            a.record.seed,
            &a.record.started_at,
        )
            .cmp(&(
                &b.record.experiment,
                &b.record.variant,
                b.record.seed,
                &b.record.started_at,
            ))
    });
    out
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

/// Find a run by directory, or by (a prefix of) its run key.
pub fn locate(results: &ResultsLayout, what: &str) -> anyhow::Result<FoundRun> {
    let path = Path::new(what);
    if path.is_dir() {
        let record = read_record(path)
            .with_context(|| format!("{}: no readable run.json", path.display()))?;
        return Ok(FoundRun {
            dir: path.to_path_buf(),
            record,
        });
    }
    let matches: Vec<FoundRun> = find_runs(results, None)
        .into_iter()
        .filter(|r| {
            r.record
                .run_key
                .as_deref()
                .is_some_and(|k| k.starts_with(what))
        })
        .collect();
    match matches.len() {
        0 => bail!(
            "no run directory or run key \"{what}\" under {}",
            results.root.display()
        ),
        1 => Ok(matches.into_iter().next().expect("one")),
        n => bail!("run key prefix \"{what}\" matches {n} runs; give more digits"),
    }
}
