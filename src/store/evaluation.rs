//! A cell's evaluations on test sets, as `runner evaluate` writes them beside the cell:
//! `<cell>/evaluation/<name>.json` (everything) and `<name>.csv` (one row per class).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The folder of a cell's evaluations.
pub const EVALUATION_DIR: &str = "evaluation";

/// One evaluation of a cell's model on a labelled test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The name the files carry (the test folder's name unless given).
    pub name: String,
    /// The test set's class-folder directory, as given.
    pub test_dir: PathBuf,
    /// Root hash of the test set's files (as `runner hash` prints it).
    pub test_hash: String,
    /// `final` (trained.safetensors) or `best` (best-trained.safetensors).
    pub model: String,
    pub run_key: Option<String>,
    /// Files left out under `on_bad_image = "skip"`, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    pub evaluated_at: String,
    pub metrics: Metrics,
}

/// Precision, recall and F1 of one class, with its number of images (support).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub class: String,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub support: usize,
}

/// Everything `runner evaluate` reports about a test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub images: usize,
    pub accuracy: f64,
    /// Mean cross-entropy over the images (binary from one logit, softmax otherwise).
    pub loss: f64,
    /// `confusion[true][predicted]`, classes in folder order.
    pub confusion: Vec<Vec<usize>>,
    pub per_class: Vec<ClassScores>,
    /// Binary: the AUC of the second class's probability. More classes: the mean of each class's
    /// one-vs-rest AUC (scikit-learn's `multi_class="ovr", average="macro"`).
    pub roc_auc: Option<f64>,
}

impl Evaluation {
    /// The per-class table: class, precision, recall, F1, support, then the confusion row.
    pub fn csv(&self) -> String {
        let classes: Vec<&str> = self
            .metrics
            .per_class
            .iter()
            .map(|c| c.class.as_str())
            .collect();
        let mut out = String::from("class,precision,recall,f1,support");
        for c in &classes {
            out.push_str(&format!(",predicted_{c}"));
        }
        out.push('\n');
        let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        for (scores, row) in self.metrics.per_class.iter().zip(&self.metrics.confusion) {
            out.push_str(&format!(
                "{},{},{},{},{}",
                scores.class,
                num(scores.precision),
                num(scores.recall),
                num(scores.f1),
                scores.support
            ));
            for n in row {
                out.push_str(&format!(",{n}"));
            }
            out.push('\n');
        }
        out
    }
}

/// The evaluations stored in the cell directory `cell`, by name; unreadable files are left out
/// with their path and reason.
pub fn read_all(cell: &Path) -> (Vec<Evaluation>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(cell.join(EVALUATION_DIR)) else {
        return (found, problems);
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Evaluation>(&b).map_err(|e| e.to_string()))
        {
            Ok(e) => found.push(e),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    (found, problems)
}
