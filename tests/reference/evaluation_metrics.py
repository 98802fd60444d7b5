"""Reference values for src/evaluate/metrics.rs, computed with scikit-learn.

Run (scikit-learn 1.x, numpy):
    python3 tests/reference/evaluation_metrics.py > tests/reference/evaluation_metrics.json

Three cases: a binary head (one logit per image, with tied scores), a three-class head (softmax),
and a binary head that never predicts one of the classes (its precision is undefined: null).
"""
import json

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


def f32_list(values):
    return [float(np.float32(v)) for v in values]


def case_binary(rng, n, shift):
    labels = rng.integers(0, 2, n)
    logits = np.round(rng.normal(0.0, 1.5, n) + shift * (2 * labels - 1), 1).astype(np.float32)
    logits[logits == 0] = 0.1  # keep clear of sigmoid(z) == 0.5
    return logits.reshape(n, 1), labels


def metrics(rows, labels, classes):
    rows64 = rows.astype(np.float64)
    k = len(classes)
    if rows.shape[1] == 1:
        z = rows64[:, 0]
        p1 = 1.0 / (1.0 + np.exp(-z))
        probs = np.stack([1.0 - p1, p1], axis=1)
        pred = (rows[:, 0] > 0).astype(int)
        loss = np.maximum(z, 0) - z * labels + np.log1p(np.exp(-np.abs(z)))
        auc = roc_auc_score(labels, p1) if len(set(labels)) == 2 else None
    else:
        shifted = rows64 - rows64.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        pred = rows.argmax(axis=1)
        loss = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(labels)), labels]
        auc = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    p, r, f, s = precision_recall_fscore_support(
        labels, pred, labels=list(range(k)), zero_division=np.nan
    )
    nan = lambda v: None if np.isnan(v) else float(v)
    return {
        "images": int(len(labels)),
        "accuracy": float(accuracy_score(labels, pred)),
        "loss": float(loss.mean()),
        "confusion": confusion_matrix(labels, pred, labels=list(range(k))).tolist(),
        "per_class": [
            {"class": classes[c], "precision": nan(p[c]), "recall": nan(r[c]), "f1": nan(f[c]), "support": int(s[c])}
            for c in range(k)
        ],
        "roc_auc": None if auc is None else float(auc),
    }


rng = np.random.default_rng(20261203)
cases = []
rows, labels = case_binary(rng, 40, 1.0)
cases.append(("binary", ["cats", "dogs"], rows, labels))
labels = rng.integers(0, 3, 30)
rows = np.round(rng.normal(0.0, 1.0, (30, 3)), 2).astype(np.float32)
rows[np.arange(30), labels] += np.float32(0.8)
cases.append(("three_classes", ["a", "b", "c"], rows, labels))
labels = rng.integers(0, 2, 12)
rows = np.abs(np.round(rng.normal(0.0, 2.0, (12, 1)), 1)).astype(np.float32) + np.float32(0.1)
cases.append(("never_predicts_class_0", ["x", "y"], rows, labels))

out = []
for name, classes, rows, labels in cases:
    out.append(
        {
            "name": name,
            "classes": classes,
            "logits": [f32_list(r) for r in rows],
            "labels": [int(l) for l in labels],
            "expected": metrics(rows, labels, classes),
        }
    )
print(json.dumps(out, indent=1))
