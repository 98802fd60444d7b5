//! A cell's feature cache: which cached outputs of its frozen layers (the frozen prefix, see
//! `train::features`) it trains and validates from, and the log line and run-record entry that
//! say so.
//!
//! Validation batches are never augmented, so validation can use the cache even when training
//! cannot. Any problem with the cache (a disk error, the memory budget with no disk to fall back
//! on, an interrupt while computing) is a warning: the cell then runs the full network, which
//! gives the same numbers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::inputs::{Inputs, PreparedData};
use super::Progress;
use crate::config::CellConfig;
use crate::dataset::batches::Split;
use crate::model::Network;
use crate::store::record::FeatureCacheRecord;
use crate::train::features::{self, FeatureSet, Origin, PrefixKey};
use crate::train::CellFeatures;

/// The sets a cell trains and validates from, and what to record about them.
pub struct CellCache {
    pub start: usize,
    pub train: Option<Arc<FeatureSet>>,
    pub validation: Option<Arc<FeatureSet>>,
    pub record: FeatureCacheRecord,
}

impl CellCache {
    pub fn features(&self) -> CellFeatures<'_> {
        CellFeatures {
            start: self.start,
            train: self.train.as_deref(),
            validation: self.validation.as_deref(),
        }
    }
}

fn unused(reason: &str) -> CellCache {
    CellCache {
        start: 0,
        train: None,
        validation: None,
        record: FeatureCacheRecord {
            used: false,
            reason: Some(reason.into()),
            validation: false,
            key: None,
            prefix_layer: None,
        },
    }
}

/// Obtain (load or compute) the prefix outputs `network`'s cell can use, logging what it does;
/// computing them, keep on the way the outputs of the shorter prefixes that end at `keep`
/// (other cells of the sweep want them).
#[allow(clippy::too_many_arguments)]
pub fn for_cell(
    network: &Network,
    cfg: &CellConfig,
    keep: &[usize],
    enabled: bool,
    prepared: &PreparedData,
    inputs: &Inputs,
    progress: &Progress,
    stop: &AtomicBool,
) -> CellCache {
    if !enabled {
        return unused("disabled");
    }
    let prefix = match features::prefix_key(network, &cfg.dataset) {
        Ok(Some(p)) => p,
        Ok(None) => return unused("no frozen prefix"),
        Err(e) => {
            progress.line(&format!(
                "  warning: feature cache unavailable ({e:#}); running the full network"
            ));
            return unused("error");
        }
    };
    let augmented = !cfg.dataset.augmentation.is_empty();
    let data = &prepared.data;
    let get = |split: &Split, root: &str, name: &str| -> Option<Arc<FeatureSet>> {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        let split_key = features::split_key(split, root);
        let cache = &inputs.features;
        let (result, seconds) = features::timed(|| {
            cache.obtain(
                network,
                &prefix,
                keep,
                split,
                &split_key,
                &cfg.dataset,
                stop,
            )
        });
        match result {
            Ok(Some((set, origin))) => {
                progress.line(&describe(&prefix, name, &set, origin, seconds));
                Some(set)
            }
            Ok(None) if stop.load(Ordering::SeqCst) => None,
            Ok(None) => {
                progress.line(&format!(
                    "  feature cache: the {name} features fit neither the memory budget nor the \
                     disk; running the full network on them"
                ));
                None
            }
            Err(e) => {
                progress.line(&format!(
                    "  warning: feature cache: {name}: {e:#}; running the full network on them"
                ));
                None
            }
        }
    };
    let train = if augmented {
        progress.line(
            "  feature cache: not used for training (augmentation changes the images every \
             epoch); validation uses it",
        );
        None
    } else {
        get(&data.train, &prepared.train_manifest.root, "training")
    };
    let validation = get(
        &data.validation,
        &prepared.validation_manifest.root,
        "validation",
    );
    let reason = match (&train, augmented) {
        (Some(_), _) => None,
        (None, true) => Some("augmentation".to_string()),
        (None, false) if stop.load(Ordering::SeqCst) => Some("interrupted".to_string()),
        (None, false) => Some("unavailable".to_string()),
    };
    let record = FeatureCacheRecord {
        used: train.is_some(),
        reason,
        validation: validation.is_some(),
        key: Some(prefix.key.clone()),
        prefix_layer: Some(prefix.last_layer.clone()),
    };
    CellCache {
        start: prefix.end,
        train,
        validation,
        record,
    }
}

fn describe(
    prefix: &PrefixKey,
    name: &str,
    set: &FeatureSet,
    origin: Origin,
    seconds: f64,
) -> String {
    let how = match origin {
        Origin::Computed => format!("computed in {seconds:.1} s"),
        Origin::Derived { from, kept: false } => format!(
            "computed in {seconds:.1} s from the cached outputs of {}",
            prefix.shorter(from).last_layer
        ),
        Origin::Derived { from, kept: true } => format!(
            "computed in {seconds:.1} s by way of the outputs of {} (kept for other cells)",
            prefix.shorter(from).last_layer
        ),
        Origin::Disk => format!("read from disk in {seconds:.1} s"),
        Origin::Shared => "shared with an earlier cell".to_string(),
    };
    let place = if set.in_memory_now() {
        "in memory"
    } else {
        "on disk (past the memory budget)"
    };
    format!(
        "  feature cache: {name} outputs of layers up to {} ({} values x {} images, {:.1} MiB) {how}, {place}; key {}",
        prefix.last_layer,
        set.per_image,
        set.count,
        set.bytes() as f64 / (1 << 20) as f64,
        &prefix.key[..12]
    )
}
