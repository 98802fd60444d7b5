//! The tables about what happens around training, not in it: `[mlflow]` (where a sweep logs its
//! cells) and `[evaluation]` (the test set every cell is evaluated on when a sweep ends). Neither
//! changes a number a cell trains to, so neither enters a run key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[mlflow]`: where `runner sweep` logs its cells as they train (as `runner export mlflow`
/// does afterwards). `$MLFLOW_TRACKING_URI` overrides `tracking_uri`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowSettings {
    /// The tracking server, e.g. "http://127.0.0.1:5000".
    #[serde(default)]
    pub tracking_uri: Option<String>,
    /// The MLflow experiment to log into (default: the runner experiment's name).
    #[serde(default)]
    pub experiment: Option<String>,
}

/// `[evaluation]`: a labelled test set (class folders named as the training classes) every cell
/// is evaluated on when a sweep ends, as `runner evaluate` does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationSpec {
    /// Relative to the experiment file.
    pub test_dir: std::path::PathBuf,
    /// "final" (default): the last epoch's model; "best": the best validation accuracy's.
    #[serde(default)]
    pub model: EvaluatedModel,
}

/// Which of a cell's models `[evaluation]` evaluates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluatedModel {
    #[default]
    Final,
    Best,
}

/// `[evaluation]` resolved: the test set's folder (joined to the experiment file's directory,
/// not yet opened) and which model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluationSettings {
    pub test_dir: PathBuf,
    pub model: EvaluatedModel,
}
