//! The losses and accuracies of the two kinds of head, as Keras computes them on the TensorFlow
//! backend: binary cross-entropy from one logit with `p > 0.5` accuracy (the notebook's target
//! task, keras-notebook-semantics.md section 6), and softmax cross-entropy from K logits with
//! argmax accuracy (multi-class tasks such as a pretraining stage's source task).

use candle_core::{DType, Result, Tensor, D};

use crate::model::arch::LayerKind;
use crate::model::Network;

/// Which loss and accuracy a network's head calls for. A head of one unit is binary (the notebook's
/// sigmoid output), more units are one logit per class; deciding from the network itself keeps the
/// binary path exactly as it was for every head of one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// `binary_crossentropy(from_logits=True)` and `BinaryAccuracy`; labels are 0.0 or 1.0.
    Binary,
    /// `SparseCategoricalCrossentropy(from_logits=True)` and `SparseCategoricalAccuracy`;
    /// labels are class indices (as f32) below `classes`.
    Categorical { classes: usize },
}

impl Objective {
    /// The objective for a head with `outputs` units.
    pub fn for_outputs(outputs: usize) -> Self {
        if outputs <= 1 {
            Objective::Binary
        } else {
            Objective::Categorical { classes: outputs }
        }
    }

    /// The objective for `network`'s output layer.
    pub fn of(network: &Network) -> Self {
        let outputs = match network.architecture().layers.last().map(|l| l.kind) {
            Some(LayerKind::Dense { units, .. }) => units,
            _ => 1,
        };
        Objective::for_outputs(outputs)
    }

    /// The batch's mean loss: `logits` is (batch,) for `Binary`, (batch, classes) otherwise.
    pub fn loss(self, logits: &Tensor, labels: &[f32]) -> Result<Tensor> {
        let y = Tensor::from_slice(labels, labels.len(), logits.device())?;
        match self {
            Objective::Binary => bce_with_logits(logits, &y),
            Objective::Categorical { .. } => softmax_cross_entropy(logits, &y),
        }
    }

    /// How many of the batch are classified correctly.
    pub fn correct(self, logits: &Tensor, labels: &[f32]) -> Result<usize> {
        match self {
            Objective::Binary => Ok(correct_predictions(&logits.to_vec1::<f32>()?, labels)),
            Objective::Categorical { .. } => Ok(correct_argmax(&logits.to_vec2::<f32>()?, labels)),
        }
    }
}

/// Mean over the batch of `max(z, 0) - z*y + log(1 + exp(-|z|))`, the form of
/// `tf.nn.sigmoid_cross_entropy_with_logits`, which stays finite for any finite logit.
/// (candle 0.11's `binary_cross_entropy_with_logit` goes through `log(sigmoid(z))` and overflows
/// to infinity for large |z|.) The gradient with respect to z is `(sigmoid(z) - y) / B`.
pub fn bce_with_logits(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((logits.relu()? - (logits * labels)?)? + softplus_neg_abs)?.mean_all()
}

/// Keras `BinaryAccuracy`'s predicted class of one logit: `sigmoid(z) > 0.5` (strict), in f32.
pub fn predicts_positive(z: f32) -> bool {
    1.0 / (1.0 + (-z).exp()) > 0.5
}

/// Keras `BinaryAccuracy`: how many logits predict their label (see `predicts_positive`).
pub fn correct_predictions(logits: &[f32], labels: &[f32]) -> usize {
    logits
        .iter()
        .zip(labels)
        .filter(|&(&z, &y)| predicts_positive(z) == (y > 0.5))
        .count()
}

/// Mean over the batch of `logsumexp(z) - z[y]` for logits `z` (batch, classes) and class indices
/// `labels` (batch,) stored as f32: `tf.nn.sparse_softmax_cross_entropy_with_logits`, which is
/// what Keras's `SparseCategoricalCrossentropy(from_logits=True)` computes. The row maximum is
/// subtracted before `exp` (and detached: it cancels out of the value and of the gradient, which
/// is `(softmax(z) - onehot(y)) / B`), so extreme logits stay finite.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (batch, classes) = logits.dims2()?;
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum_exp = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let class_ids = Tensor::arange(0u32, classes as u32, logits.device())?
        .to_dtype(DType::F32)?
        .reshape((1, classes))?;
    let onehot = class_ids
        .broadcast_eq(&labels.reshape((batch, 1))?)?
        .to_dtype(DType::F32)?;
    let picked = (shifted * onehot)?.sum_keepdim(D::Minus1)?;
    (log_sum_exp - picked)?.mean_all()
}

/// Keras `SparseCategoricalAccuracy`'s predicted class of one row of logits: the argmax, the
/// first index among ties (as `tf.argmax`).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &z) in row.iter().enumerate() {
        if z > row[best] {
            best = i;
        }
    }
    best
}

/// Keras `SparseCategoricalAccuracy`: how many rows' argmax is their label.
pub fn correct_argmax(logits: &[Vec<f32>], labels: &[f32]) -> usize {
    logits
        .iter()
        .zip(labels)
        .filter(|&(row, &y)| argmax(row) as f32 == y)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The numbers under `key` of a reference JSON file, as f32.
    fn column(reference: &serde_json::Value, key: &str) -> Vec<f32> {
        reference[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    /// Values from `tests/reference/bce.py` (`tf.nn.sigmoid_cross_entropy_with_logits` and its
    /// gradient, TensorFlow 2.21.0, float32).
    const REFERENCE: &str = include_str!("../../tests/reference/bce.json");

    #[test]
    fn matches_tensorflow_including_extreme_logits() {
        let r: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
        let v = |k: &str| column(&r, k);
        let (z, y, per_sample, grad) =
            (v("logits"), v("labels"), v("per_sample"), v("grad_of_mean"));
        assert!(
            z.iter().any(|z| z.abs() >= 1000.0),
            "the reference must cover large logits"
        );
        let dev = Device::Cpu;
        let zv = Var::from_tensor(&Tensor::from_slice(&z, z.len(), &dev).unwrap()).unwrap();
        let yt = Tensor::from_slice(&y, y.len(), &dev).unwrap();
        let loss = bce_with_logits(zv.as_tensor(), &yt).unwrap();
        assert_loss_and_gradient(&loss, &zv, &per_sample, &grad);
    }

    /// `loss` is the mean of the reference's per-sample losses (relative 1e-5) and its gradient
    /// with respect to `logits` is the reference's (absolute 1e-6), everything finite.
    fn assert_loss_and_gradient(loss: &Tensor, logits: &Var, per_sample: &[f32], grad: &[f32]) {
        let got: f32 = loss.to_scalar().unwrap();
        let expected = per_sample.iter().map(|&x| x as f64).sum::<f64>() / per_sample.len() as f64;
        assert!(got.is_finite());
        assert!(
            ((got as f64) - expected).abs() <= 1e-5 * expected.abs().max(1.0),
            "loss {got} vs {expected}"
        );
        let g: Vec<f32> = loss
            .backward()
            .unwrap()
            .get(logits.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(g.len(), grad.len());
        for (i, (a, b)) in g.iter().zip(grad).enumerate() {
            assert!(
                a.is_finite() && (a - b).abs() <= 1e-6,
                "grad[{i}]: {a} vs {b}"
            );
        }
    }

    #[test]
    fn candle_builtin_overflows_which_is_why_this_exists() {
        let dev = Device::Cpu;
        let z = Tensor::from_slice(&[200.0f32], 1, &dev).unwrap();
        let y = Tensor::from_slice(&[0.0f32], 1, &dev).unwrap();
        let theirs: f32 = candle_nn::loss::binary_cross_entropy_with_logit(&z, &y)
            .unwrap()
            .to_scalar()
            .unwrap();
        let ours: f32 = bce_with_logits(&z, &y).unwrap().to_scalar().unwrap();
        assert!(
            !theirs.is_finite(),
            "candle's BCE is now finite ({theirs}): the workaround may be dropped"
        );
        assert_eq!(ours, 200.0);
    }

    #[test]
    fn accuracy_threshold_is_strict() {
        // sigmoid(0) = 0.5 is not > 0.5: predicted 0. A tiny positive logit rounds to 0.5 in f32 too.
        assert_eq!(
            correct_predictions(&[0.0, 1e-9, 0.1, -3.0], &[0.0, 0.0, 1.0, 1.0]),
            3
        );
    }

    /// Values from `tests/reference/softmax_ce.py` (`torch.nn.functional.cross_entropy`, the same
    /// function as TensorFlow's sparse softmax cross-entropy, and its gradient; float32).
    const SOFTMAX_REFERENCE: &str = include_str!("../../tests/reference/softmax_ce.json");

    #[test]
    fn softmax_cross_entropy_matches_pytorch_including_extreme_logits() {
        let r: serde_json::Value = serde_json::from_str(SOFTMAX_REFERENCE).unwrap();
        let v = |k: &str| column(&r, k);
        let classes = r["classes"].as_u64().unwrap() as usize;
        let (z, y, per_sample, grad) =
            (v("logits"), v("labels"), v("per_sample"), v("grad_of_mean"));
        let batch = y.len();
        assert!(z.iter().any(|z| z.abs() >= 1000.0), "large logits covered");
        let dev = Device::Cpu;
        let zv =
            Var::from_tensor(&Tensor::from_slice(&z, (batch, classes), &dev).unwrap()).unwrap();
        let objective = Objective::for_outputs(classes);
        let loss = objective.loss(zv.as_tensor(), &y).unwrap();
        assert_eq!(per_sample.len(), batch);
        assert_loss_and_gradient(&loss, &zv, &per_sample, &grad);
        let correct = objective.correct(zv.as_tensor(), &y).unwrap();
        assert_eq!(correct as u64, r["correct"].as_u64().unwrap());
    }

    /// Central differences in f64 of the loss formula against the autograd gradient.
    #[test]
    fn softmax_cross_entropy_gradient_matches_finite_differences() {
        let (batch, classes) = (3, 4);
        let mut rng = crate::base::rng::stream(11, "softmax-fd");
        let z: Vec<f32> = (0..batch * classes)
            .map(|_| crate::base::rng::uniform_f32(&mut rng, -3.0, 3.0))
            .collect();
        let y = [2.0f32, 0.0, 3.0];
        let dev = Device::Cpu;
        let zv =
            Var::from_tensor(&Tensor::from_slice(&z, (batch, classes), &dev).unwrap()).unwrap();
        let yt = Tensor::from_slice(&y, batch, &dev).unwrap();
        let loss = softmax_cross_entropy(zv.as_tensor(), &yt).unwrap();
        let g: Vec<f32> = loss
            .backward()
            .unwrap()
            .get(zv.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        // The formula in f64: mean over rows of log(sum(exp(z))) - z[y].
        let f = |z: &[f64]| -> f64 {
            (0..batch)
                .map(|b| {
                    let row = &z[b * classes..(b + 1) * classes];
                    row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[y[b] as usize]
                })
                .sum::<f64>()
                / batch as f64
        };
        let z64: Vec<f64> = z.iter().map(|&v| v as f64).collect();
        let got: f32 = loss.to_scalar().unwrap();
        assert!((got as f64 - f(&z64)).abs() < 1e-5);
        let h = 1e-5;
        for i in 0..z64.len() {
            let (mut plus, mut minus) = (z64.clone(), z64.clone());
            plus[i] += h;
            minus[i] -= h;
            let numeric = (f(&plus) - f(&minus)) / (2.0 * h);
            assert!(
                (numeric - g[i] as f64).abs() < 1e-5,
                "d/dz[{i}]: finite differences {numeric}, autograd {}",
                g[i]
            );
        }
    }

    #[test]
    fn argmax_accuracy_takes_the_first_of_tied_logits() {
        let logits = vec![
            vec![1.0, 1.0, 0.0],
            vec![0.0, 2.0, 2.0],
            vec![-1.0, -2.0, -0.5],
        ];
        assert_eq!(correct_argmax(&logits, &[0.0, 2.0, 2.0]), 2);
        assert_eq!(Objective::for_outputs(1), Objective::Binary);
        assert_eq!(
            Objective::for_outputs(3),
            Objective::Categorical { classes: 3 }
        );
    }
}
