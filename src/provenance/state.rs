//! The code state a sweep runs: the provenance stored with every run, its code hash (a run-key
//! component), the name of its results folder, and the local diff stored once per code state.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;

use super::{code_hash, code_label, environment, gitignore_advice, snapshot_excluding};
use super::{Environment, Provenance};
use crate::base::fs::write_atomic;
use crate::base::hash::sha256_file;
use crate::store::{ResultsLayout, CODE_DIFF};

/// The code the sweep runs: stored with every run, and the first level of the results tree.
pub struct CodeState {
    pub provenance: Provenance,
    pub hash: String,
    /// `<commit12>`, `<commit12>-dirty-<diff8>` or `no-git`.
    pub dir_name: String,
    /// The local diff (tracked changes and untracked files), when the tree is dirty.
    pub diff: Option<Vec<u8>>,
    pub environment: Environment,
    /// The warning for inputs that sit in the work tree without being ignored (see
    /// `gitignore_advice`), for the sweep to print once.
    pub warning: Option<String>,
    /// Whether this process has stored the diff already: cells trained in parallel share it,
    /// and must not write the same temporary file at once.
    diff_stored: Mutex<bool>,
}

impl CodeState {
    /// The code state of the repository holding `start` (the experiment file's directory).
    /// Outside a repository this is the `no-git` state; a repository that cannot be read is an
    /// error.
    pub fn read(start: &Path) -> anyhow::Result<CodeState> {
        Self::read_excluding(start, &[])
    }

    /// `read`, leaving out changes at or under `inputs` (the run's data, weights and results).
    pub fn read_excluding(start: &Path, inputs: &[PathBuf]) -> anyhow::Result<CodeState> {
        let snapshot = snapshot_excluding(start, inputs)?;
        let warning = gitignore_advice(&snapshot);
        let mut provenance = snapshot.provenance;
        let dir_name = code_label(&provenance);
        if !snapshot.diff.is_empty() {
            provenance.diff_file = Some(format!("{dir_name}/{CODE_DIFF}"));
        }
        Ok(CodeState {
            hash: code_hash(&provenance),
            dir_name,
            diff: (!snapshot.diff.is_empty()).then_some(snapshot.diff),
            provenance,
            environment: environment("cpu"),
            warning,
            diff_stored: Mutex::new(false),
        })
    }

    /// The code state recorded as `provenance` on another host (a Slurm submission): its diff
    /// is read back from `<results>/<code-state>/code.diff`, so that tasks file their cells
    /// under the code state that was submitted, whatever the tree holds meanwhile.
    pub fn pinned(provenance: Provenance, results: &ResultsLayout) -> anyhow::Result<CodeState> {
        let dir_name = code_label(&provenance);
        let diff = match &provenance.diff_sha256 {
            None => None,
            Some(_) => {
                let path = results.code_diff(&dir_name);
                Some(std::fs::read(&path).with_context(|| {
                    format!(
                        "cannot read the submitted code state's diff {}",
                        path.display()
                    )
                })?)
            }
        };
        Ok(CodeState {
            hash: code_hash(&provenance),
            dir_name,
            diff,
            provenance,
            environment: environment("cpu"),
            warning: None,
            diff_stored: Mutex::new(true),
        })
    }

    /// Store the diff as `<results>/<code-state>/code.diff` (`provenance.diff_file`), once per
    /// code state rather than in every cell: a cell's run.json names it and records its
    /// SHA-256. A file already there with that hash is kept; a missing or damaged one is
    /// written again. Nothing to do for a clean tree.
    pub fn store_diff(&self, results: &ResultsLayout) -> anyhow::Result<()> {
        let (Some(diff), Some(sha256)) = (&self.diff, &self.provenance.diff_sha256) else {
            return Ok(());
        };
        let mut stored = self.diff_stored.lock().unwrap_or_else(|e| e.into_inner());
        if *stored {
            return Ok(());
        }
        let path = results.code_diff(&self.dir_name);
        if !sha256_file(&path).is_ok_and(|(hash, _)| &hash == sha256) {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            write_atomic(&path, diff)?;
        }
        *stored = true;
        Ok(())
    }
}
