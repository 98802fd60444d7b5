use super::*;
use crate::report::load::{load, Declared};

fn epoch(epoch: usize, val_acc: f64, val_loss: f64) -> EpochMetrics {
    EpochMetrics {
        epoch,
        train_loss: 0.5,
        train_acc: 0.5,
        val_loss,
        val_acc,
        seconds: 2.0,
    }
}

#[test]
fn per_cell_metrics() {
    let m = [
        epoch(1, 0.6, 0.7),
        epoch(2, 0.8, 0.5),
        epoch(3, 0.8, 0.55),
        epoch(4, 0.7, 0.6),
    ];
    assert_eq!(Metric::FinalValAcc.of(&m), Some(0.7));
    assert_eq!(Metric::BestValAcc.of(&m), Some(0.8));
    assert_eq!(Metric::FinalValLoss.of(&m), Some(0.6));
    assert_eq!(Metric::BestValLoss.of(&m), Some(0.5));
    assert_eq!(
        Metric::EpochsToBest.of(&m),
        Some(2.0),
        "the first of the tied best epochs"
    );
    assert_eq!(Metric::TrainSeconds.of(&m), Some(8.0));
    assert_eq!(Metric::FinalValAcc.of(&[]), None);
}

/// Writes variants `base`, `better`, `same` and `broken` with the given final accuracies.
fn experiment(dir: &std::path::Path, cells: &[(&str, u64, &str, f64)]) -> ExperimentResults {
    for (variant, seed, status, acc) in cells {
        let d = dir.join(variant).join(format!("seed-{seed}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("run.json"), format!(r#"{{"status":"{status}"}}"#)).unwrap();
        std::fs::write(
            d.join("metrics.csv"),
            format!("epoch,train_loss,train_acc,val_loss,val_acc,seconds\n1,0.6,0.5,0.6,0.5,1\n2,0.5,0.6,{},{acc},1\n", 1.0 - acc),
        )
        .unwrap();
    }
    let plan = Declared {
        variants: ["base", "better", "same", "broken"]
            .map(String::from)
            .to_vec(),
        seeds: vec![0, 1, 2],
        source: "test".into(),
    };
    load(dir, "exp", Some(&plan)).unwrap()
}

#[test]
fn only_finished_cells_count_and_pairs_need_both_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let r = experiment(
        dir.path(),
        &[
            ("base", 0, "done", 0.60),
            ("base", 1, "done", 0.62),
            ("base", 2, "done", 0.61),
            ("better", 0, "done", 0.70),
            ("better", 1, "done", 0.73),
            ("better", 2, "done", 0.71),
            ("same", 0, "done", 0.62),
            ("same", 1, "done", 0.60),
            ("same", 2, "diverged", 0.10),
            ("broken", 0, "failed", 0.99),
        ],
    );
    let a = analyse(&r, None, Metric::FinalValAcc).unwrap();
    assert_eq!(a.baseline, "base");
    let same = a.variant("same").unwrap();
    assert_eq!(same.seeds, vec![0, 1]);
    assert_eq!(
        same.excluded,
        vec![(2, "diverged after 2 epochs".to_string())]
    );
    let s = same.summaries[&Metric::FinalValAcc].unwrap();
    assert_eq!(s.n, 2);
    assert!(
        (s.mean - 0.61).abs() < 1e-12,
        "the diverged 0.10 is not averaged in"
    );
    let broken = a.variant("broken").unwrap();
    assert!(broken.seeds.is_empty());
    assert_eq!(broken.summaries[&Metric::FinalValAcc], None);
    assert_eq!(broken.excluded.len(), 3);

    let cmp = &a.comparisons[&Metric::FinalValAcc];
    let names: Vec<&str> = cmp.iter().map(|c| c.variant.as_str()).collect();
    assert_eq!(names, ["better", "same", "broken"]);
    assert_eq!(cmp[0].seeds, vec![0, 1, 2]);
    assert!(
        cmp[0]
            .verdict
            .starts_with("better is better than base: final val accuracy higher by 0.103"),
        "{}",
        cmp[0].verdict
    );
    assert_eq!(
        cmp[1].seeds,
        vec![0, 1],
        "seed 2 diverged in one of the pair"
    );
    assert!(cmp[1].verdict.contains("no winner"), "{}", cmp[1].verdict);
    assert!(cmp[2].paired.is_none());
    assert!(
        cmp[2].verdict.contains("nothing to compare"),
        "{}",
        cmp[2].verdict
    );
    // Holm over the two defined p-values: the smaller is doubled.
    let p0 = cmp[0].paired.as_ref().unwrap().p.unwrap();
    let p1 = cmp[1].paired.as_ref().unwrap().p.unwrap();
    assert!(p0 < p1);
    assert!((cmp[0].p_holm.unwrap() - 2.0 * p0).abs() < 1e-12);
    // For loss, lower is better: the same variant wins, in the other direction.
    let loss = &a.comparisons[&Metric::FinalValLoss][0];
    assert!(
        loss.verdict
            .starts_with("better is better than base: final val loss lower"),
        "{}",
        loss.verdict
    );
}

#[test]
fn one_seed_is_never_enough() {
    let dir = tempfile::tempdir().unwrap();
    let r = experiment(
        dir.path(),
        &[("base", 0, "done", 0.5), ("better", 0, "done", 0.9)],
    );
    let a = analyse(&r, Some("base"), Metric::FinalValAcc).unwrap();
    let c = &a.comparisons[&Metric::FinalValAcc][0];
    assert_eq!(
        c.verdict,
        "better vs base: only 1 paired seed (seed 0); no winner can be called from fewer than 2."
    );
    let err = analyse(&r, Some("nope"), Metric::FinalValAcc)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "--baseline nope: experiment \"exp\" has no variant of that name (variants: base, better, same, broken)"
    );
}
