use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
struct Case {
    name: String,
    classes: Vec<String>,
    logits: Vec<Vec<f32>>,
    labels: Vec<usize>,
    expected: Metrics,
}

fn close(a: Option<f64>, b: Option<f64>, what: &str) {
    match (a, b) {
        (Some(a), Some(b)) => assert!(
            (a - b).abs() <= 1e-12 * b.abs().max(1.0),
            "{what}: {a} vs {b}"
        ),
        (a, b) => assert_eq!(a, b, "{what}"),
    }
}

/// The reference values come from scikit-learn (tests/reference/evaluation_metrics.py).
#[test]
fn metrics_match_scikit_learn() {
    let cases: Vec<Case> = serde_json::from_str(include_str!(
        "../../../tests/reference/evaluation_metrics.json"
    ))
    .unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let logits = Logits {
            rows: case.logits,
            labels: case.labels,
        };
        let got = compute(&logits, &case.classes);
        let want = &case.expected;
        let name = &case.name;
        assert_eq!(got.images, want.images, "{name}");
        assert_eq!(got.confusion, want.confusion, "{name}");
        close(
            Some(got.accuracy),
            Some(want.accuracy),
            &format!("{name} accuracy"),
        );
        close(Some(got.loss), Some(want.loss), &format!("{name} loss"));
        close(got.roc_auc, want.roc_auc, &format!("{name} roc_auc"));
        for (g, w) in got.per_class.iter().zip(&want.per_class) {
            assert_eq!((&g.class, g.support), (&w.class, w.support), "{name}");
            close(
                g.precision,
                w.precision,
                &format!("{name} {} precision", g.class),
            );
            close(g.recall, w.recall, &format!("{name} {} recall", g.class));
            close(g.f1, w.f1, &format!("{name} {} f1", g.class));
        }
    }
}

#[test]
fn a_test_set_of_one_class_has_no_auc() {
    let logits = Logits {
        rows: vec![vec![1.0], vec![-2.0]],
        labels: vec![1, 1],
    };
    let m = compute(&logits, &["a".into(), "b".into()]);
    assert_eq!(m.roc_auc, None);
    assert_eq!(m.per_class[0].recall, None);
    assert_eq!(m.confusion, vec![vec![0, 0], vec![1, 1]]);
}

#[test]
fn probabilities_and_predictions_follow_the_head() {
    assert_eq!(probabilities(&[0.0]), vec![0.5, 0.5]);
    assert_eq!(predicted(&[0.0]), 0, "sigmoid(0) = 0.5 is not > 0.5");
    assert_eq!(predicted(&[1e-3]), 1);
    assert_eq!(predicted(&[1.0, 3.0, 3.0]), 1, "the first of tied maxima");
    let p = probabilities(&[1.0, 2.0, 3.0]);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-15);
}
