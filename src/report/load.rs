//! Reading an experiment directory (the folder holding `<variant>/seed-<n>/`) back into cells:
//! finished, failed, diverged, interrupted and still-running ones, and the ones that are missing.
//!
//! Nothing here averages or drops anything: every expected cell comes back with its state, and
//! [`CellRun::included`] is the one rule that decides what the statistics may use. Records are
//! read leniently, field by field, because records written by older or newer versions of the
//! runner differ (run keys, provenance and environment are recent additions).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::store::evaluation::Evaluation;
use crate::store::record::{Environment, KeyComponents, Provenance, Status};
use crate::train::EpochMetrics;

/// What a cell's directory says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    Done,
    Diverged,
    Failed,
    Interrupted,
    /// run.json says `running`: in progress, or stopped without a final record.
    Running,
    /// No directory for this cell.
    Missing,
    /// A directory without a readable run.json.
    Unreadable,
}

impl CellState {
    fn from_status(s: Status) -> Self {
        match s {
            Status::Done => CellState::Done,
            Status::Diverged => CellState::Diverged,
            Status::Failed => CellState::Failed,
            Status::Interrupted => CellState::Interrupted,
            Status::Running => CellState::Running,
        }
    }
}

impl std::fmt::Display for CellState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CellState::Done => "done",
            CellState::Diverged => "diverged",
            CellState::Failed => "failed",
            CellState::Interrupted => "interrupted",
            CellState::Running => "running",
            CellState::Missing => "missing",
            CellState::Unreadable => "unreadable",
        })
    }
}

/// The fields of run.json the report uses, each optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordView {
    pub status: Option<Status>,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub epochs_completed: Option<usize>,
    /// `config.training.epochs`: how many epochs the cell was to train.
    pub epochs_planned: Option<usize>,
    pub experiment_file: Option<PathBuf>,
    pub run_key: Option<String>,
    pub key: Option<KeyComponents>,
    pub provenance: Option<Provenance>,
    pub environment: Option<Environment>,
    /// `weights.sha256` (older records have no `key`).
    pub weights_sha256: Option<String>,
}

impl RecordView {
    /// Read what can be read; a field of an unexpected shape is left out, not fatal.
    pub fn from_json(v: &serde_json::Value) -> Self {
        fn field<T: DeserializeOwned>(v: &serde_json::Value, name: &str) -> Option<T> {
            v.get(name)
                .filter(|x| !x.is_null())
                .and_then(|x| serde_json::from_value(x.clone()).ok())
        }
        RecordView {
            status: field(v, "status"),
            message: field(v, "message"),
            started_at: field(v, "started_at"),
            finished_at: field(v, "finished_at"),
            epochs_completed: field(v, "epochs_completed"),
            epochs_planned: v
                .pointer("/config/training/epochs")
                .and_then(serde_json::Value::as_u64)
                .map(|e| e as usize),
            experiment_file: field(v, "experiment_file"),
            run_key: field(v, "run_key"),
            key: field(v, "key"),
            provenance: field(v, "provenance"),
            environment: field(v, "environment"),
            weights_sha256: v
                .pointer("/weights/sha256")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
        }
    }

    /// When the cell last changed: `finished_at`, else `started_at` (RFC 3339 UTC, so ordered as text).
    pub fn last_time(&self) -> Option<&str> {
        self.finished_at.as_deref().or(self.started_at.as_deref())
    }
}

/// One cell (variant x seed) as found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRun {
    pub variant: String,
    pub seed: u64,
    pub state: CellState,
    /// The cell's directory relative to the experiment directory (`fine_tuning/seed-0`, or
    /// `fine_tuning/seed-0.partial` for an unfinished one); `None` when missing.
    pub rel_dir: Option<PathBuf>,
    pub metrics: Vec<EpochMetrics>,
    pub record: RecordView,
    /// What could not be read, for the report to show.
    pub problems: Vec<String>,
    /// A later, unfinished attempt in `.partial` next to this finished result.
    pub pending: Option<Box<CellRun>>,
    /// `runner evaluate`'s results on test sets (`<cell>/evaluation/*.json`), by name.
    pub evaluations: Vec<Evaluation>,
}

impl CellRun {
    /// A cell with nothing on disk.
    pub fn missing(variant: &str, seed: u64) -> Self {
        CellRun {
            variant: variant.to_string(),
            seed,
            state: CellState::Missing,
            rel_dir: None,
            metrics: Vec::new(),
            record: RecordView::default(),
            problems: Vec::new(),
            pending: None,
            evaluations: Vec::new(),
        }
    }

    /// Whether the statistics may use this cell: it finished (`done`) and has its metrics.
    /// Diverged, failed, interrupted, running and missing cells are reported, never averaged.
    pub fn included(&self) -> bool {
        self.state == CellState::Done && !self.metrics.is_empty() && self.problems.is_empty()
    }

    /// A short account of a cell that is not included: `failed at epoch 2 of 6: out of memory`.
    pub fn why_excluded(&self) -> String {
        let mut s = match self.state {
            CellState::Missing => return "missing (never run)".to_string(),
            CellState::Unreadable => "unreadable".to_string(),
            state => {
                let done = self.metrics.len();
                match self.record.epochs_planned {
                    Some(planned) => format!("{state} at epoch {done} of {planned}"),
                    None => format!("{state} after {done} epochs"),
                }
            }
        };
        if let Some(m) = &self.record.message {
            s.push_str(": ");
            s.push_str(m);
        }
        for p in &self.problems {
            s.push_str("; ");
            s.push_str(p);
        }
        s
    }
}

/// The variants and seeds the experiment file declares, in its order.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub variants: Vec<String>,
    pub seeds: Vec<u64>,
    /// Where the order came from, for the report (`experiments/demo.toml`).
    pub source: String,
}

/// Every cell of one experiment at one code state.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentResults {
    pub experiment: String,
    pub dir: PathBuf,
    pub variants: Vec<String>,
    pub seeds: Vec<u64>,
    /// Where the variant order came from (it decides the default baseline).
    pub order_source: String,
    /// Variant-major, seeds in order: `variants.len() * seeds.len()` cells.
    pub cells: Vec<CellRun>,
}

impl ExperimentResults {
    pub fn cell(&self, variant: &str, seed: u64) -> Option<&CellRun> {
        self.cells
            .iter()
            .find(|c| c.variant == variant && c.seed == seed)
    }

    pub fn cells_of<'a>(&'a self, variant: &'a str) -> impl Iterator<Item = &'a CellRun> + 'a {
        self.cells.iter().filter(move |c| c.variant == variant)
    }

    /// The latest time any cell changed.
    pub fn latest(&self) -> Option<&str> {
        let pending = self.cells.iter().filter_map(|c| c.pending.as_deref());
        self.cells
            .iter()
            .chain(pending)
            .filter_map(|c| c.record.last_time())
            .max()
    }
}

/// Parse `seed-<n>` or `seed-<n>.partial`.
pub fn parse_cell_dir_name(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix("seed-")?;
    let (num, partial) = match rest.strip_suffix(".partial") {
        Some(n) => (n, true),
        None => (rest, false),
    };
    num.parse().ok().map(|n| (n, partial))
}

fn sorted_children(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read directory {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                out.push((name, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `dir` holds at least one `<variant>/seed-<n>[.partial]/` folder.
pub fn holds_cells(dir: &Path) -> bool {
    sorted_children(dir).is_ok_and(|variants| {
        variants.iter().any(|(_, v)| {
            sorted_children(v).is_ok_and(|cells| {
                cells
                    .iter()
                    .any(|(name, _)| parse_cell_dir_name(name).is_some())
            })
        })
    })
}

/// Read one cell directory.
pub fn read_cell(dir: &Path, rel_dir: PathBuf, variant: &str, seed: u64) -> CellRun {
    let mut cell = CellRun::missing(variant, seed);
    cell.rel_dir = Some(rel_dir);
    let (evaluations, problems) = crate::store::evaluation::read_all(dir);
    cell.evaluations = evaluations;
    cell.problems.extend(problems);
    let run_json = dir.join("run.json");
    match std::fs::read(&run_json) {
        Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) => {
                cell.record = RecordView::from_json(&v);
                match cell.record.status {
                    Some(s) => cell.state = CellState::from_status(s),
                    None => {
                        cell.state = CellState::Unreadable;
                        cell.problems
                            .push("run.json has no valid status".to_string());
                    }
                }
            }
            Err(e) => {
                cell.state = CellState::Unreadable;
                cell.problems
                    .push(format!("run.json is not valid JSON ({e})"));
            }
        },
        Err(e) => {
            cell.state = CellState::Unreadable;
            cell.problems.push(format!("no readable run.json ({e})"));
        }
    }
    let metrics = dir.join("metrics.csv");
    if metrics.exists() {
        match crate::store::read_metrics(&metrics) {
            Ok(m) => cell.metrics = m,
            Err(e) => cell.problems.push(format!("{e:#}")),
        }
    } else if cell.state == CellState::Done {
        cell.problems.push("metrics.csv is missing".to_string());
    }
    cell
}

/// Read every cell under `dir`. With a plan, its variants and seeds come first and in its order,
/// and each planned cell that has no directory is `Missing`; variants and seeds found on disk but
/// not planned are added after them (sorted). Without a plan: what is on disk, sorted by name.
pub fn load(
    dir: &Path,
    experiment: &str,
    plan: Option<&Declared>,
) -> anyhow::Result<ExperimentResults> {
    let mut found: Vec<(String, u64, bool, PathBuf)> = Vec::new();
    for (variant, vdir) in sorted_children(dir)? {
        for (name, cdir) in sorted_children(&vdir)? {
            if let Some((seed, partial)) = parse_cell_dir_name(&name) {
                found.push((variant.clone(), seed, partial, cdir));
            }
        }
    }
    let mut variants: Vec<String> = plan.map(|p| p.variants.clone()).unwrap_or_default();
    let on_disk: BTreeSet<&String> = found.iter().map(|f| &f.0).collect();
    for v in on_disk {
        if !variants.contains(v) {
            variants.push(v.clone());
        }
    }
    let mut seeds: Vec<u64> = plan.map(|p| p.seeds.clone()).unwrap_or_default();
    let extra: BTreeSet<u64> = found
        .iter()
        .map(|f| f.1)
        .filter(|s| !seeds.contains(s))
        .collect();
    seeds.extend(extra);

    let mut cells = Vec::new();
    for variant in &variants {
        for &seed in &seeds {
            let at = |partial: bool| {
                found
                    .iter()
                    .find(|f| &f.0 == variant && f.1 == seed && f.2 == partial)
                    .map(|f| {
                        let name = f.3.file_name().map(PathBuf::from).unwrap_or_default();
                        read_cell(&f.3, Path::new(variant).join(name), variant, seed)
                    })
            };
            let cell = match (at(false), at(true)) {
                (Some(mut done), Some(pending)) => {
                    done.pending = Some(Box::new(pending));
                    done
                }
                (Some(c), None) | (None, Some(c)) => c,
                (None, None) => CellRun::missing(variant, seed),
            };
            cells.push(cell);
        }
    }
    Ok(ExperimentResults {
        experiment: experiment.to_string(),
        dir: dir.to_path_buf(),
        variants,
        seeds,
        order_source: plan
            .map(|p| p.source.clone())
            .unwrap_or_else(|| "name order (no experiment file given or found)".to_string()),
        cells,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const HEADER: &str = "epoch,train_loss,train_acc,val_loss,val_acc,seconds\n";

    #[test]
    fn every_planned_cell_comes_back_with_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            &d.join("a/seed-0/run.json"),
            r#"{"status":"done","config":{"training":{"epochs":2}}}"#,
        );
        write(
            &d.join("a/seed-0/metrics.csv"),
            &format!("{HEADER}1,0.7,0.5,0.69,0.5,1.0\n2,0.6,0.6,0.65,0.625,1.0\n"),
        );
        // A rerun of a/seed-0 in progress next to the finished result.
        write(
            &d.join("a/seed-0.partial/run.json"),
            r#"{"status":"running","config":{"training":{"epochs":2}}}"#,
        );
        write(
            &d.join("a/seed-0.partial/metrics.csv"),
            &format!("{HEADER}1,0.7,0.5,0.69,0.5,1.0\n"),
        );
        write(
            &d.join("b/seed-0.partial/run.json"),
            r#"{"status":"failed","message":"out of memory","config":{"training":{"epochs":2}}}"#,
        );
        write(
            &d.join("b/seed-0.partial/metrics.csv"),
            &format!("{HEADER}1,0.7,0.5,0.69,0.5,1.0\n"),
        );
        write(&d.join("b/seed-7/metrics.csv"), HEADER);
        write(&d.join("a/seed-x/run.json"), "{}");
        write(&d.join("report/summary.csv"), "not a cell");
        let plan = Declared {
            variants: vec!["b".into(), "a".into(), "c".into()],
            seeds: vec![0, 1],
            source: "exp.toml".into(),
        };
        let r = load(d, "exp", Some(&plan)).unwrap();
        // Planned order first; report/ holds no cells, so it is no variant.
        assert_eq!(r.variants, ["b", "a", "c"].map(String::from));
        assert_eq!(r.seeds, vec![0, 1, 7]);
        assert_eq!(r.cells.len(), 9);

        let a0 = r.cell("a", 0).unwrap();
        assert_eq!(a0.state, CellState::Done);
        assert!(a0.included());
        assert_eq!(a0.metrics.len(), 2);
        let pending = a0.pending.as_ref().unwrap();
        assert_eq!(pending.state, CellState::Running);
        assert_eq!(
            pending.rel_dir.as_deref(),
            Some(Path::new("a/seed-0.partial"))
        );

        let b0 = r.cell("b", 0).unwrap();
        assert_eq!(b0.state, CellState::Failed);
        assert!(!b0.included());
        assert_eq!(b0.why_excluded(), "failed at epoch 1 of 2: out of memory");

        let b7 = r.cell("b", 7).unwrap();
        assert_eq!(b7.state, CellState::Unreadable);
        assert!(b7
            .why_excluded()
            .starts_with("unreadable; no readable run.json"));

        assert_eq!(r.cell("a", 1).unwrap().state, CellState::Missing);
        assert_eq!(
            r.cell("c", 0).unwrap().why_excluded(),
            "missing (never run)"
        );
    }

    #[test]
    fn a_done_cell_without_metrics_is_not_included() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("a/seed-0/run.json"),
            r#"{"status":"done"}"#,
        );
        let r = load(dir.path(), "exp", None).unwrap();
        let c = r.cell("a", 0).unwrap();
        assert!(!c.included());
        assert_eq!(
            c.why_excluded(),
            "done after 0 epochs; metrics.csv is missing"
        );
    }

    #[test]
    fn records_are_read_field_by_field() {
        let v: serde_json::Value = serde_json::json!({
            "status": "done",
            "key": {"config": "c", "dataset": "d", "weights": null, "code": "k", "seed": 3},
            "provenance": "not an object",
            "weights": {"source": null, "sha256": "abc"},
            "finished_at": "2026-01-02T03:04:05Z"
        });
        let r = RecordView::from_json(&v);
        assert_eq!(r.status, Some(Status::Done));
        assert_eq!(r.key.as_ref().unwrap().dataset, "d");
        assert_eq!(r.provenance, None);
        assert_eq!(r.weights_sha256.as_deref(), Some("abc"));
        assert_eq!(r.last_time(), Some("2026-01-02T03:04:05Z"));
    }

    #[test]
    fn cell_directory_names() {
        assert_eq!(parse_cell_dir_name("seed-3"), Some((3, false)));
        assert_eq!(parse_cell_dir_name("seed-12.partial"), Some((12, true)));
        assert_eq!(parse_cell_dir_name("seed-3.old-123"), None);
        assert_eq!(parse_cell_dir_name("report"), None);
    }
}
