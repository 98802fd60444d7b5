//! Training: Keras's optimizers, loss and metrics, and the epoch loop. With `model`, the only
//! code that uses candle.

pub mod checkpoint;
pub mod device_check;
pub mod features;
pub mod fit;
pub mod lockstep;
pub mod loss;
pub mod metrics;
pub mod optim;

pub use fit::{evaluate, evaluate_features, CellFeatures, Fit, FitOutcome, Observer};
pub use metrics::{EpochMetrics, Running};
pub use optim::KerasOptimizer;
