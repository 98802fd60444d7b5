//! Results on disk: where each cell's files go, and writing them so that a crash never leaves a
//! half-written file or a half-finished cell under its final name.
//!
//! A cell is written into `<cell>.partial/` (metrics after every epoch, run.json on every status
//! change) and renamed to `<cell>/` when it finishes as `done` or `diverged`. A cell that failed
//! or was interrupted stays in `.partial/`, so an earlier finished result is never replaced by an
//! unfinished one.

pub mod caches;
pub mod evaluation;
pub mod lock_status;
pub mod record;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::base::fs::{create_dir_all, remove_temporaries, write_atomic};
use crate::config::Cell;
use crate::train::EpochMetrics;
pub use record::{RunRecord, Status};

/// The results tree. Cells live at `<root>/<code-state>/<experiment>/<variant>/seed-<n>/`, where
/// the code state is `<commit12>`, `<commit12>-dirty-<diff8>` or `no-git`: results of different
/// code never mix, and a tree with local edits is never filed under its clean commit. This is
/// the one place that decides paths.
#[derive(Debug, Clone)]
pub struct ResultsLayout {
    pub root: PathBuf,
}

impl ResultsLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ResultsLayout { root: root.into() }
    }

    pub fn experiment_dir(&self, code_state: &str, experiment: &str) -> PathBuf {
        self.root.join(code_state).join(experiment)
    }

    pub fn cell_dir(&self, code_state: &str, experiment: &str, cell: &Cell) -> PathBuf {
        self.experiment_dir(code_state, experiment)
            .join(&cell.variant)
            .join(format!("seed-{}", cell.seed))
    }

    /// The local diff of a dirty code state, one file shared by its cells (see
    /// `provenance::CodeSnapshot::diff`).
    pub fn code_diff(&self, code_state: &str) -> PathBuf {
        self.root.join(code_state).join(CODE_DIFF)
    }

    /// Generated data sets (the synthetic demo data), shared by all experiments.
    pub fn datasets_dir(&self) -> PathBuf {
        self.root.join("datasets")
    }

    /// Caches that are safe to delete (file-hash stat cache, ...).
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join(".cache")
    }

    /// The code-state directories that exist, e.g. for `status` and `why`.
    pub fn code_states(&self) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n != "datasets")
            .collect();
        out.sort();
        out
    }
}

/// The name of a code state's diff in its results folder.
pub const CODE_DIFF: &str = "code.diff";

/// `<cell>.partial`: where an unfinished cell lives.
pub fn partial_dir(final_dir: &Path) -> PathBuf {
    let mut p = final_dir.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// `<cell>.lock`
pub fn lock_path(final_dir: &Path) -> PathBuf {
    let mut p = final_dir.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Read a cell's run.json, if there is a readable one.
pub fn read_record(dir: &Path) -> Option<RunRecord> {
    let bytes = fs::read(dir.join("run.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `metrics.csv`: header `epoch,train_loss,train_acc,val_loss,val_acc,seconds`, one row per epoch.
pub fn metrics_csv(rows: &[EpochMetrics]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row)?;
    }
    if rows.is_empty() {
        w.write_record([
            "epoch",
            "train_loss",
            "train_acc",
            "val_loss",
            "val_acc",
            "seconds",
        ])?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Read a `metrics.csv` back.
pub fn read_metrics(path: &Path) -> anyhow::Result<Vec<EpochMetrics>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    r.deserialize()
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: malformed metrics", path.display()))
}

/// The files of one running cell.
pub struct CellWriter {
    final_dir: PathBuf,
    work_dir: PathBuf,
    metrics: Vec<EpochMetrics>,
    pub record: RunRecord,
}

impl CellWriter {
    /// Start writing a cell: a fresh `.partial` directory with run.json in status `running`.
    pub fn start(final_dir: PathBuf, record: RunRecord) -> anyhow::Result<Self> {
        let work_dir = partial_dir(&final_dir);
        if work_dir.exists() {
            fs::remove_dir_all(&work_dir)
                .with_context(|| format!("cannot clear {}", work_dir.display()))?;
        }
        create_dir_all(&work_dir)?;
        let w = CellWriter {
            final_dir,
            work_dir,
            metrics: Vec::new(),
            record,
        };
        w.write_record()?;
        w.write_metrics()?;
        Ok(w)
    }

    /// Continue an unfinished cell in its `.partial` directory, keeping its first `epochs` rows
    /// of metrics (those its checkpoint covers).
    pub fn resume(
        final_dir: PathBuf,
        mut record: RunRecord,
        epochs: usize,
    ) -> anyhow::Result<Self> {
        let work_dir = partial_dir(&final_dir);
        let mut metrics = read_metrics(&work_dir.join("metrics.csv"))?;
        anyhow::ensure!(
            metrics.len() >= epochs,
            "{}: metrics.csv has {} epochs, the checkpoint {epochs}",
            work_dir.display(),
            metrics.len()
        );
        metrics.truncate(epochs);
        record.epochs_completed = metrics.len();
        record.last = metrics.last().copied();
        let w = CellWriter {
            final_dir,
            work_dir,
            metrics,
            record,
        };
        w.write_record()?;
        w.write_metrics()?;
        Ok(w)
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    pub fn final_dir(&self) -> &Path {
        &self.final_dir
    }

    pub fn metrics(&self) -> &[EpochMetrics] {
        &self.metrics
    }

    /// Append an epoch and rewrite metrics.csv and run.json.
    pub fn epoch(&mut self, m: &EpochMetrics) -> anyhow::Result<()> {
        self.metrics.push(*m);
        self.record.epochs_completed = self.metrics.len();
        self.record.last = Some(*m);
        self.write_metrics()?;
        self.write_record()
    }

    fn write_metrics(&self) -> anyhow::Result<()> {
        write_atomic(
            &self.work_dir.join("metrics.csv"),
            &metrics_csv(&self.metrics)?,
        )
    }

    fn write_record(&self) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(&self.record)?;
        write_atomic(&self.work_dir.join("run.json"), &json)
    }

    /// Record the final status. `done` and `diverged` cells move to their final directory
    /// (replacing an earlier result only now); others stay in `.partial`. Returns where the cell is.
    pub fn finish(mut self, status: Status, message: Option<String>) -> anyhow::Result<PathBuf> {
        self.record.status = status;
        self.record.message = message;
        self.record.finished_at = Some(crate::base::clock::now());
        self.write_record()?;
        if !matches!(status, Status::Done | Status::Diverged) {
            return Ok(self.work_dir);
        }
        // Temporary files that a killed writer left (`write_atomic`'s) stay out of the
        // finished cell: nothing else writes into this directory while its lock is held.
        remove_temporaries(&self.work_dir);
        if self.final_dir.exists() {
            // Keep the result being replaced (a --force rerun, or new inputs under the same code).
            let old_key = read_record(&self.final_dir)
                .and_then(|r| r.run_key)
                .unwrap_or_else(|| "unkeyed".into());
            let name = self
                .final_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let history = self
                .final_dir
                .parent()
                .unwrap_or(Path::new("."))
                .join(".history");
            fs::create_dir_all(&history)
                .with_context(|| format!("cannot create {}", history.display()))?;
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let base = format!("{name}-{}-{stamp}", &old_key[..old_key.len().min(12)]);
            let aside = (0..)
                .map(|n| {
                    history.join(if n == 0 {
                        base.clone()
                    } else {
                        format!("{base}-{n}")
                    })
                })
                .find(|p| !p.exists())
                .expect("some name is free");
            fs::rename(&self.final_dir, &aside)
                .with_context(|| format!("cannot move aside {}", self.final_dir.display()))?;
        }
        fs::rename(&self.work_dir, &self.final_dir)
            .with_context(|| format!("cannot move {} into place", self.work_dir.display()))?;
        Ok(self.final_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 0.5,
            train_acc: 0.75,
            val_loss: 0.25,
            val_acc: 0.875,
            seconds: 1.5,
        }
    }

    #[test]
    fn metrics_csv_has_a_stable_header_and_round_trips() {
        let bytes = metrics_csv(&[row(1), row(2)]).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "epoch,train_loss,train_acc,val_loss,val_acc,seconds"
        );
        assert_eq!(text.lines().nth(1).unwrap(), "1,0.5,0.75,0.25,0.875,1.5");
        let empty = String::from_utf8(metrics_csv(&[]).unwrap()).unwrap();
        assert_eq!(
            empty.trim(),
            "epoch,train_loss,train_acc,val_loss,val_acc,seconds"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        write_atomic(&p, &bytes).unwrap();
        assert_eq!(read_metrics(&p).unwrap(), vec![row(1), row(2)]);
    }

    #[test]
    fn finished_cell_replaces_old_result_only_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let final_dir = dir.path().join("exp/v/seed-0");
        let mut w = CellWriter::start(final_dir.clone(), RunRecord::test_record()).unwrap();
        w.epoch(&row(1)).unwrap();
        assert!(w.work_dir().join("metrics.csv").exists());
        assert!(
            !final_dir.exists(),
            "nothing appears under the final name before the cell finishes"
        );
        // A temporary left by a writer killed in the middle of a write (kill -9).
        let orphan = w.work_dir().join(".metrics.csv.4194999.tmp");
        fs::write(&orphan, b"half a file").unwrap();
        assert_eq!(w.finish(Status::Done, None).unwrap(), final_dir);
        let names: Vec<String> = fs::read_dir(&final_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.ends_with(".tmp")),
            "a temporary reached the finished cell: {names:?}"
        );
        assert_eq!(
            read_metrics(&final_dir.join("metrics.csv")).unwrap().len(),
            1
        );

        // An interrupted rerun keeps the earlier result and leaves its own epochs in .partial.
        let mut w = CellWriter::start(final_dir.clone(), RunRecord::test_record()).unwrap();
        w.epoch(&row(1)).unwrap();
        w.epoch(&row(2)).unwrap();
        let kept = w
            .finish(Status::Interrupted, Some("stopped by the user".into()))
            .unwrap();
        assert!(kept.ends_with("seed-0.partial"));
        assert_eq!(
            read_metrics(&final_dir.join("metrics.csv")).unwrap().len(),
            1
        );
        assert_eq!(read_metrics(&kept.join("metrics.csv")).unwrap().len(), 2);
        let rec: serde_json::Value =
            serde_json::from_slice(&fs::read(kept.join("run.json")).unwrap()).unwrap();
        assert_eq!(rec["status"], "interrupted");
        assert_eq!(rec["epochs_completed"], 2);
    }
}
