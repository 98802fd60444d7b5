//! Per-epoch metrics as Keras's `fit` logs them (keras-notebook-semantics.md section 9).

use serde::{Deserialize, Serialize};

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based, as Keras prints it.
    pub epoch: usize,
    /// Batch-size-weighted running mean of the batch losses over the epoch (pre-update weights).
    pub train_loss: f64,
    /// Fraction of training samples classified correctly during the epoch (pre-update weights).
    pub train_acc: f64,
    /// Mean loss over the whole validation set with the end-of-epoch weights.
    pub val_loss: f64,
    pub val_acc: f64,
    /// Wall-clock seconds for the epoch, validation included.
    pub seconds: f64,
}

/// Keras's `Mean` metric with sample weights: sum(value_b * n_b) / sum(n_b), and the accuracy count.
#[derive(Debug, Default, Clone, Copy)]
pub struct Running {
    loss_sum: f64,
    correct: usize,
    count: usize,
}

impl Running {
    /// Record a batch of `size` samples whose mean loss is `batch_loss` and of which `correct` were right.
    pub fn update(&mut self, batch_loss: f64, correct: usize, size: usize) {
        self.loss_sum += batch_loss * size as f64;
        self.correct += correct;
        self.count += size;
    }

    pub fn loss(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.loss_sum / self.count as f64
        }
    }

    pub fn accuracy(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.correct as f64 / self.count as f64
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_mean_weights_by_batch_size() {
        let mut r = Running::default();
        r.update(1.0, 3, 4);
        r.update(4.0, 0, 2); // a partial last batch counts for its size, not as a whole batch
        assert!((r.loss() - (4.0 + 8.0) / 6.0).abs() < 1e-12);
        assert!((r.accuracy() - 0.5).abs() < 1e-12);
    }
}
