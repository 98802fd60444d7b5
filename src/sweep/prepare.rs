//! Inputs shared between the cells of a sweep, loaded and hashed once: decoded data sets with
//! their fingerprints, weights with their hashes, and the code state.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::SweepOptions;
use crate::config::{Cell, CellConfig, DataSource, DatasetConfig, Experiment};
use crate::dataset::{synthetic, Data};
use crate::model::arch::Architecture;
use crate::model::weights::{self, LoadedWeights};
use crate::store::record::{Environment, KeyComponents, Provenance};
use crate::store::{sha256_hex, ResultsLayout};
use crate::{fingerprint, provenance};

/// A data set in memory and its fingerprint.
pub struct PreparedData {
    pub data: Data,
    /// Root hash of the train and validation manifests.
    pub hash: String,
    /// The manifests, stored with every run that uses them.
    pub manifest: serde_json::Value,
}

/// The code the sweep runs: stored with every run, and the first level of the results tree.
pub struct CodeState {
    pub provenance: Provenance,
    pub hash: String,
    /// `<commit8>`, `<commit8>-dirty-<diff8>` or `no-git`.
    pub dir_name: String,
    /// The local diff (tracked changes and untracked files), when the tree is dirty.
    pub diff: Option<String>,
    pub environment: Environment,
}

pub struct Inputs {
    pub data: BTreeMap<String, PreparedData>,
    pub weights: BTreeMap<String, LoadedWeights>,
    pub code: CodeState,
}

fn key<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("configuration serializes")
}

/// The part of a dataset config that determines the decoded images (not batching or augmentation).
pub fn data_key(d: &DatasetConfig) -> String {
    key(&(&d.source, d.image_size, d.on_bad_image))
}

pub fn weights_key(cfg: &CellConfig) -> String {
    key(&cfg.model.weights)
}

/// The (train, validation) directories of a data source, generating a synthetic set if needed.
pub fn data_dirs(
    source: &DataSource,
    results: &ResultsLayout,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    Ok(match source {
        DataSource::Directories { train, validation } => (train.clone(), validation.clone()),
        DataSource::Synthetic(spec) => synthetic::ensure(spec, &results.datasets_dir())?,
    })
}

pub fn architecture(cfg: &CellConfig) -> anyhow::Result<Architecture> {
    let [h, w] = cfg.dataset.image_size;
    Ok(Architecture::build(&cfg.model, h as usize, w as usize)?)
}

/// The code state of the repository holding `start` (the experiment file's directory).
pub fn code_state(start: &Path) -> CodeState {
    let provenance = provenance::code_state(start);
    let hash = provenance::code_hash(&provenance);
    let diff = if provenance.dirty {
        provenance::diff_text(start)
    } else {
        None
    };
    let dir_name = match (&provenance.commit, &provenance.diff_sha256) {
        (Some(c), Some(d)) if provenance.dirty => {
            format!("{}-dirty-{}", &c[..8.min(c.len())], &d[..8.min(d.len())])
        }
        (Some(c), _) => c[..8.min(c.len())].to_string(),
        (None, _) => "no-git".to_string(),
    };
    CodeState {
        provenance,
        hash,
        dir_name,
        diff,
        environment: provenance::environment("cpu"),
    }
}

/// Open and fingerprint every data set and weights file the selected cells need, before any
/// training starts, so that a missing directory or file is reported at once.
pub fn prepare(
    experiment: &Experiment,
    cells: &[Cell],
    options: &SweepOptions,
) -> anyhow::Result<Inputs> {
    let mut inputs = Inputs {
        data: BTreeMap::new(),
        weights: BTreeMap::new(),
        code: code_state(&experiment.base_dir),
    };
    let device = crate::model::cpu();
    for cell in cells {
        let variant = experiment
            .variant(&cell.variant)
            .expect("selected cells exist");
        let cfg = &variant.config;
        let context = || {
            format!(
                "variant \"{}\" of {}",
                variant.name,
                experiment.file.display()
            )
        };
        if let Entry::Vacant(slot) = inputs.data.entry(data_key(&cfg.dataset)) {
            let (train, validation) = data_dirs(&cfg.dataset.source, &options.results)?;
            if let DataSource::Synthetic(_) = cfg.dataset.source {
                options.progress.line(&format!(
                    "synthetic data set: {}",
                    train.parent().unwrap_or(&train).display()
                ));
            }
            let data = Data::open(&cfg.dataset, &train, &validation).with_context(context)?;
            let (hash, manifest) = fingerprint::dataset_hash(
                &data.train,
                &data.validation,
                &options.results.cache_dir(),
            )
            .with_context(context)?;
            options.progress.line(&format!(
                "data: {} training and {} validation images, classes {:?}, hash {}",
                data.train.len(),
                data.validation.len(),
                data.train.class_names,
                &hash[..12]
            ));
            slot.insert(PreparedData {
                data,
                hash,
                manifest,
            });
        }
        if let Entry::Vacant(slot) = inputs.weights.entry(weights_key(cfg)) {
            let arch = architecture(cfg)?;
            let loaded = weights::load(&cfg.model.weights, &arch, &device)
                .with_context(|| format!("{}: model.weights", context()))?;
            slot.insert(loaded);
        }
    }
    Ok(inputs)
}

/// The key components of a cell and its run key: SHA-256 over all of them.
pub fn run_key(
    cfg: &CellConfig,
    experiment: &Experiment,
    data: &PreparedData,
    weights: &LoadedWeights,
    code: &CodeState,
    seed: u64,
) -> (KeyComponents, String) {
    let components = KeyComponents {
        config: crate::config::hash::config_hash(cfg, &experiment.base_dir),
        dataset: data.hash.clone(),
        weights: weights.sha256.clone(),
        code: code.hash.clone(),
        seed,
    };
    let text = format!(
        "runner-run-key-v1\nrunner {}\nconfig {}\ndataset {}\nweights {}\ncode {}\nseed {}\n",
        env!("CARGO_PKG_VERSION"),
        components.config,
        components.dataset,
        components.weights.as_deref().unwrap_or("none"),
        components.code,
        components.seed
    );
    (components, sha256_hex(text.as_bytes()))
}
