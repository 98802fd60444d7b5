//! Binary cross-entropy from logits and binary accuracy, as Keras computes them on the TensorFlow
//! backend (keras-notebook-semantics.md section 6).

use candle_core::{Result, Tensor};

/// Mean over the batch of `max(z, 0) - z*y + log(1 + exp(-|z|))`, the form of
/// `tf.nn.sigmoid_cross_entropy_with_logits`, which stays finite for any finite logit.
/// (candle 0.11's `binary_cross_entropy_with_logit` goes through `log(sigmoid(z))` and overflows
/// to infinity for large |z|.) The gradient with respect to z is `(sigmoid(z) - y) / B`.
pub fn bce_with_logits(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((logits.relu()? - (logits * labels)?)? + softplus_neg_abs)?.mean_all()
}

/// Keras `BinaryAccuracy`: predicted class is `sigmoid(z) > 0.5` (strict), computed in f32.
pub fn correct_predictions(logits: &[f32], labels: &[f32]) -> usize {
    logits
        .iter()
        .zip(labels)
        .filter(|&(&z, &y)| {
            let p = 1.0 / (1.0 + (-z).exp());
            (p > 0.5) == (y > 0.5)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Values from `tests/reference/bce.py` (`tf.nn.sigmoid_cross_entropy_with_logits` and its
    /// gradient, TensorFlow 2.21.0, float32).
    const REFERENCE: &str = include_str!("../../tests/reference/bce.json");

    #[test]
    fn matches_tensorflow_including_extreme_logits() {
        let r: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
        let v = |k: &str| -> Vec<f32> {
            r[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        };
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
            .get(zv.as_tensor())
            .unwrap()
            .to_vec1()
            .unwrap();
        for (i, (a, b)) in g.iter().zip(&grad).enumerate() {
            assert!(
                a.is_finite() && (a - b).abs() <= 1e-6,
                "grad[{i}] (z = {}): {a} vs {b}",
                z[i]
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
}
