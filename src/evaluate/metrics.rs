//! Classification metrics of a test set from the model's logits: accuracy and loss as Keras
//! computes them, the confusion matrix, per-class precision / recall / F1, and ROC AUC, defined
//! as scikit-learn defines them (checked against it in the tests; the script that produced the
//! reference values is `tests/reference/evaluation_metrics.py`).
//!
//! Everything is computed in f64 from the f32 logits. A value that is undefined (the precision of
//! a class never predicted, the AUC of a test set with one class only) is `None`, written as
//! `null`, where scikit-learn would warn and print 0.

pub use crate::store::evaluation::{ClassScores, Metrics};
use crate::train::loss::{argmax, predicts_positive};

/// The logits of a test set, one row per image (one value for a binary head, one per class
/// otherwise), and each image's true class index.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    pub rows: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
}

/// Each class's probability for one row of logits: `[1 - sigmoid(z), sigmoid(z)]` for a binary
/// head, the softmax otherwise.
pub fn probabilities(row: &[f32]) -> Vec<f64> {
    if let [z] = row {
        let p = sigmoid(*z as f64);
        return vec![1.0 - p, p];
    }
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64));
    let exp: Vec<f64> = row.iter().map(|&z| (z as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The predicted class of one row of logits, as training counts a correct prediction: binary
/// `sigmoid(z) > 0.5` (strict, in f32 as Keras's `BinaryAccuracy`), otherwise the first index of
/// the largest logit (`tf.argmax`).
pub fn predicted(row: &[f32]) -> usize {
    match row {
        [z] => usize::from(predicts_positive(*z)),
        _ => argmax(row),
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The cross-entropy of one row of logits against class `label`, in the stable forms training
/// uses: `max(z, 0) - z*y + log(1 + exp(-|z|))` for one logit, `logsumexp(z) - z[y]` otherwise.
fn loss(row: &[f32], label: usize) -> f64 {
    if let [z] = row {
        let (z, y) = (*z as f64, label as f64);
        return z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
    }
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64));
    let sum: f64 = row.iter().map(|&z| (z as f64 - max).exp()).sum();
    max + sum.ln() - row[label] as f64
}

/// The metrics of `logits` for the classes `classes` (folder order).
pub fn compute(logits: &Logits, classes: &[String]) -> Metrics {
    let k = classes.len();
    let n = logits.rows.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut total_loss = 0.0;
    for (row, &label) in logits.rows.iter().zip(&logits.labels) {
        confusion[label][predicted(row)] += 1;
        total_loss += loss(row, label);
    }
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let per_class = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let support: usize = confusion[c].iter().sum();
            let predicted: usize = confusion.iter().map(|r| r[c]).sum();
            let precision = (predicted > 0).then(|| tp / predicted as f64);
            let recall = (support > 0).then(|| tp / support as f64);
            // 2TP / (2TP + FP + FN): defined whenever the class is present or predicted.
            let denominator = (support + predicted) as f64;
            let f1 = (denominator > 0.0).then(|| 2.0 * tp / denominator);
            ClassScores {
                class: classes[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let probs: Vec<Vec<f64>> = logits.rows.iter().map(|r| probabilities(r)).collect();
    let roc_auc = if k == 2 {
        auc_one_vs_rest(&probs, &logits.labels, 1)
    } else {
        let aucs: Option<Vec<f64>> = (0..k)
            .map(|c| auc_one_vs_rest(&probs, &logits.labels, c))
            .collect();
        aucs.map(|a| a.iter().sum::<f64>() / k as f64)
    };
    Metrics {
        images: n,
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        loss: if n == 0 { 0.0 } else { total_loss / n as f64 },
        confusion,
        per_class,
        roc_auc,
    }
}

/// The area under the ROC curve of class `c` against the rest, scored by its probability: the
/// Mann-Whitney statistic, ties counting one half (what scikit-learn's trapezoidal
/// `roc_auc_score` gives). `None` when the test set lacks either side.
fn auc_one_vs_rest(probs: &[Vec<f64>], labels: &[usize], c: usize) -> Option<f64> {
    let mut scored: Vec<(f64, bool)> = probs
        .iter()
        .zip(labels)
        .map(|(p, &l)| (p[c], l == c))
        .collect();
    let positives = scored.iter().filter(|(_, pos)| *pos).count();
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the positives' ranks (1-based), ties sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < scored.len() {
        let mut j = i;
        while j + 1 < scored.len() && scored[j + 1].0 == scored[i].0 {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * scored[i..=j].iter().filter(|(_, pos)| *pos).count() as f64;
        i = j + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

#[cfg(test)]
mod tests;
