//! What differs between a past run and now: the components of its run key, and its metrics.

use crate::config::CellConfig;
use crate::plan::KeyComponents;
use crate::train::EpochMetrics;

/// The differences between two sets of key components, one line each; empty when equal.
pub fn key_differences(old: &KeyComponents, new: &KeyComponents) -> Vec<String> {
    let mut out = Vec::new();
    let short = |s: &str| s[..12.min(s.len())].to_string();
    let opt = |s: &Option<String>| s.as_deref().map(short).unwrap_or_else(|| "none".into());
    if old.config != new.config {
        out.push(format!(
            "config changed ({} -> {})",
            short(&old.config),
            short(&new.config)
        ));
    }
    if old.dataset != new.dataset {
        out.push(format!(
            "dataset changed ({} -> {})",
            short(&old.dataset),
            short(&new.dataset)
        ));
    }
    if old.weights != new.weights {
        out.push(format!(
            "weights changed ({} -> {})",
            opt(&old.weights),
            opt(&new.weights)
        ));
    }
    if old.stage != new.stage {
        out.push(format!(
            "pretraining stage changed ({} -> {})",
            opt(&old.stage),
            opt(&new.stage)
        ));
    }
    if old.code != new.code {
        out.push(format!(
            "code changed ({} -> {})",
            short(&old.code),
            short(&new.code)
        ));
    }
    if old.seed != new.seed {
        out.push(format!("seed changed ({} -> {})", old.seed, new.seed));
    }
    out
}

/// The keys of a cell's resolved configuration that differ, as dotted paths with both values
/// (`training.optimizer.learning_rate: 0.001 -> 0.01`), one line each.
pub fn config_differences(old: &CellConfig, new: &CellConfig) -> Vec<String> {
    let to_value = |c: &CellConfig| serde_json::to_value(c).unwrap_or(serde_json::Value::Null);
    let mut out = Vec::new();
    value_differences("", &to_value(old), &to_value(new), &mut out);
    out
}

fn value_differences(
    at: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    let join = |key: &str| {
        if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            let none = Value::String("(not set)".into());
            for key in keys {
                let (x, y) = (a.get(key).unwrap_or(&none), b.get(key).unwrap_or(&none));
                value_differences(&join(key), x, y, out);
            }
        }
        (a, b) if a != b => out.push(format!("{at}: {a} -> {b}")),
        _ => {}
    }
}

/// Every metric of `new` that differs from `old` by more than `tolerance` (NaN matches NaN), and
/// a different number of epochs; wall-clock seconds are not compared.
pub fn metric_differences(
    old: &[EpochMetrics],
    new: &[EpochMetrics],
    tolerance: f64,
) -> Vec<String> {
    let mut diffs = Vec::new();
    if old.len() != new.len() {
        diffs.push(format!("{} epochs recorded, {} now", old.len(), new.len()));
    }
    for (a, b) in old.iter().zip(new) {
        for (name, x, y) in [
            ("train_loss", a.train_loss, b.train_loss),
            ("train_acc", a.train_acc, b.train_acc),
            ("val_loss", a.val_loss, b.val_loss),
            ("val_acc", a.val_acc, b.val_acc),
        ] {
            if !((x - y).abs() <= tolerance || (x.is_nan() && y.is_nan())) {
                diffs.push(format!("epoch {}: {name} {x} recorded, {y} now", a.epoch));
            }
        }
    }
    diffs
}
