//! Where people already watch their runs: TensorBoard event files beside each cell's metrics,
//! and the export of cells to an MLflow tracking server. Both show the same scalars per epoch.

pub mod live;
pub mod mlflow;
pub mod tensorboard;

use crate::config::Optimizer;
use crate::train::EpochMetrics;

/// The learning rate an optimizer trains with (constant: no schedule).
pub fn learning_rate(optimizer: &Optimizer) -> f64 {
    let (Optimizer::Adam { learning_rate, .. } | Optimizer::Rmsprop { learning_rate, .. }) =
        optimizer;
    *learning_rate
}

/// An epoch's scalars under their tracking names (Keras's: `loss`, `accuracy`, `val_loss`,
/// `val_accuracy`), with the learning rate and the epoch's seconds.
pub fn scalars(m: &EpochMetrics, learning_rate: f64) -> [(&'static str, f64); 6] {
    [
        ("loss", m.train_loss),
        ("accuracy", m.train_acc),
        ("val_loss", m.val_loss),
        ("val_accuracy", m.val_acc),
        ("learning_rate", learning_rate),
        ("seconds", m.seconds),
    ]
}
