//! Inputs shared between the cells of a sweep, loaded and hashed once: decoded data sets with
//! their fingerprints, weights with their hashes, and the code state.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;

use super::SweepOptions;
use crate::cache::MemoryBudget;
use crate::config::{Cell, CellConfig, DataSource, DatasetConfig, Experiment, Weights};
use crate::dataset::{synthetic, ClassIndex, Data, ImageCache, Residency, Split};
use crate::fingerprint::Manifest;
use crate::model::arch::Architecture;
use crate::model::weights::{self, LoadedWeights};
use crate::store::record::{Environment, KeyComponents, Provenance};
use crate::store::{sha256_hex, write_atomic, ResultsLayout, CODE_DIFF};
use crate::train::features::FeatureCache;
use crate::{fingerprint, provenance};

/// A data set in memory and its fingerprint.
pub struct PreparedData {
    pub data: Data,
    /// Hash of the train and validation manifests' root hashes.
    pub hash: String,
    /// The manifests (every file used: path, size, SHA-256, label), stored with every run.
    pub train_manifest: Manifest,
    pub validation_manifest: Manifest,
}

/// The code the sweep runs: stored with every run, and the first level of the results tree.
pub struct CodeState {
    pub provenance: Provenance,
    pub hash: String,
    /// `<commit12>`, `<commit12>-dirty-<diff8>` or `no-git`.
    pub dir_name: String,
    /// The local diff (tracked changes and untracked files), when the tree is dirty.
    pub diff: Option<Vec<u8>>,
    pub environment: Environment,
    /// The warning for inputs that sit in the work tree without being ignored (see
    /// `provenance::gitignore_advice`), for the sweep to print once.
    pub warning: Option<String>,
    /// Whether this process has stored the diff already: cells trained in parallel share it,
    /// and must not write the same temporary file at once.
    diff_stored: Mutex<bool>,
}

impl CodeState {
    /// Store the diff as `<results>/<code-state>/code.diff` (`provenance.diff_file`), once per
    /// code state rather than in every cell: a cell's run.json names it and records its
    /// SHA-256. A file already there with that hash is kept; a missing or damaged one is
    /// written again. Nothing to do for a clean tree.
    pub fn store_diff(&self, results: &ResultsLayout) -> anyhow::Result<()> {
        let (Some(diff), Some(sha256)) = (&self.diff, &self.provenance.diff_sha256) else {
            return Ok(());
        };
        let mut stored = self.diff_stored.lock().unwrap_or_else(|e| e.into_inner());
        if *stored {
            return Ok(());
        }
        let path = results.code_diff(&self.dir_name);
        if !provenance::sha256_file(&path).is_ok_and(|(hash, _)| &hash == sha256) {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            write_atomic(&path, diff)?;
        }
        *stored = true;
        Ok(())
    }
}

pub struct Inputs {
    pub data: BTreeMap<String, PreparedData>,
    pub weights: BTreeMap<String, LoadedWeights>,
    pub code: CodeState,
    /// Stages the cells load weights from, trained (or found) before any cell runs, by name.
    pub stages: BTreeMap<String, super::stage::StageOutcome>,
    /// Frozen-prefix outputs shared by the cells (and on disk, by sweeps on the same results).
    pub features: FeatureCache,
    /// Where decoded images are cached (sharing the memory budget with `features`).
    pub images: ImageCache,
}

impl Inputs {
    /// The run key of the stage `cfg` loads its weights from, if any.
    pub fn stage_key(&self, cfg: &CellConfig) -> Option<&str> {
        match &cfg.model.weights {
            Weights::Stage(name) => self.stages.get(name).map(|s| s.key.as_str()),
            _ => None,
        }
    }
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
/// Outside a repository this is the `no-git` state; a repository that cannot be read is an error.
pub fn code_state(start: &Path) -> anyhow::Result<CodeState> {
    code_state_excluding(start, &[])
}

/// `code_state`, leaving out changes at or under `inputs` (see `input_paths`).
pub fn code_state_excluding(start: &Path, inputs: &[PathBuf]) -> anyhow::Result<CodeState> {
    let snapshot = provenance::snapshot_excluding(start, inputs)?;
    let warning = provenance::gitignore_advice(&snapshot);
    let mut provenance = snapshot.provenance;
    let dir_name = provenance::code_label(&provenance);
    if !snapshot.diff.is_empty() {
        provenance.diff_file = Some(format!("{dir_name}/{CODE_DIFF}"));
    }
    Ok(CodeState {
        hash: provenance::code_hash(&provenance),
        dir_name,
        diff: (!snapshot.diff.is_empty()).then_some(snapshot.diff),
        provenance,
        environment: provenance::environment("cpu"),
        warning,
        diff_stored: Mutex::new(false),
    })
}

/// What an experiment reads as data rather than code, whatever cells a sweep selects (so that
/// a subset of the matrix has the code state of the whole): the results directory (which holds
/// generated data sets and pretraining stages too), every data set directory, every weights
/// file named, and for a known weights name every place it is looked for.
pub fn input_paths(experiment: &Experiment, results: &ResultsLayout) -> Vec<PathBuf> {
    let env = weights::known::Env::from_process();
    let mut out = vec![results.root.clone()];
    let configs = experiment
        .variants
        .iter()
        .map(|v| &v.config)
        .chain(experiment.pretrain.iter().map(|s| &s.config));
    for cfg in configs {
        if let DataSource::Directories { train, validation } = &cfg.dataset.source {
            out.extend([train.clone(), validation.clone()]);
        }
        match &cfg.model.weights {
            Weights::File { path, .. } => out.push(path.clone()),
            Weights::Named(name) => {
                if let Some(known) = weights::known::lookup(name) {
                    out.extend(known.candidates(&env));
                }
            }
            Weights::None | Weights::Stage(_) => {}
        }
    }
    out
}

/// Fingerprint both splits of a data set (the files actually used), through the stat cache
/// under `results`, warning about files that are in both splits.
pub fn fingerprint(
    data: Data,
    results: &ResultsLayout,
    progress: &super::Progress,
) -> anyhow::Result<PreparedData> {
    let mut cache = fingerprint::StatCache::open(&results.cache_dir());
    let (train_manifest, _) = fingerprint::manifest_of_split(&data.train, &mut cache)?;
    let (validation_manifest, _) = fingerprint::manifest_of_split(&data.validation, &mut cache)?;
    cache.save()?;
    Ok(prepared(
        data,
        train_manifest,
        validation_manifest,
        progress,
    ))
}

/// A data set with its manifests: the dataset hash, and a warning for each file that is in
/// both splits.
fn prepared(
    data: Data,
    train_manifest: Manifest,
    validation_manifest: Manifest,
    progress: &super::Progress,
) -> PreparedData {
    for dup in fingerprint::duplicates_across(&train_manifest, &validation_manifest) {
        progress.line(&format!("warning: {dup}"));
    }
    for (split, manifest) in [
        (&data.train, &train_manifest),
        (&data.validation, &validation_manifest),
    ] {
        for conflict in fingerprint::label_conflicts(manifest) {
            progress.line(&format!("warning: {}: {conflict}", split.root.display()));
        }
    }
    let hash = fingerprint::dataset_hash(&train_manifest, &validation_manifest);
    PreparedData {
        data,
        hash,
        train_manifest,
        validation_manifest,
    }
}

/// The image cache of a sweep: files under `results/.cache/images`, memory from `budget`.
pub fn image_cache(options: &SweepOptions, budget: std::sync::Arc<MemoryBudget>) -> ImageCache {
    ImageCache {
        dir: Some(options.results.cache_dir().join("images")),
        budget,
        enabled: options.image_cache,
    }
}

/// Open a data set through the image cache and fingerprint it: list both splits (checking their
/// classes: exactly two when `binary`), hash the files (through the stat cache), decode what
/// the cache does not hold, and log where the images came from.
pub fn open_data(
    dataset: &DatasetConfig,
    binary: bool,
    images: &ImageCache,
    options: &SweepOptions,
) -> anyhow::Result<PreparedData> {
    let (train_dir, validation_dir) = data_dirs(&dataset.source, &options.results)?;
    if let DataSource::Synthetic(_) = dataset.source {
        options.progress.line(&format!(
            "synthetic data set: {}",
            train_dir.parent().unwrap_or(&train_dir).display()
        ));
    }
    let (train_index, validation_index) = Data::index(&train_dir, &validation_dir, binary)?;
    let mut stat = fingerprint::StatCache::open(&options.results.cache_dir());
    let mut open_split = |index: ClassIndex, name: &str| -> anyhow::Result<(Split, Manifest)> {
        // Every listed file is hashed first: the hashes key the image cache, and the split's
        // manifest is this one less the files decoding skips.
        let listing = match fingerprint::manifest_of_index(&index, &mut stat) {
            Ok((manifest, _)) => Some(manifest),
            // Under "skip", an unreadable file is left out by decoding; it only keeps this split
            // out of the on-disk image cache (a store must name every file's content).
            Err(e) if dataset.on_bad_image == crate::config::OnBadImage::Skip => {
                if images.enabled {
                    options.progress.line(&format!(
                        "warning: image cache: {e}; not caching the {name} images on disk"
                    ));
                }
                None
            }
            Err(e) => return Err(e.into()),
        };
        let hashes = listing
            .as_ref()
            .filter(|_| images.enabled)
            .map(|m| fingerprint::hashes_in_listing_order(&index, m));
        let (split, report) = Split::decode_with(index, dataset, hashes.as_deref(), images)?;
        if let Some(warning) = &report.warning {
            options.progress.line(&format!("warning: {warning}"));
        }
        if let Some(skipped) = split.skipped_summary(name) {
            options.progress.line(&format!("warning: {skipped}"));
        }
        let mib = split.stored_bytes() as f64 / (1 << 20) as f64;
        let place = match (split.residency(), split.cache_file()) {
            (Residency::Mapped, Some(file)) => {
                let verb = match report.origin {
                    crate::dataset::store::Origin::Cached => "reused from",
                    crate::dataset::store::Origin::Decoded => "decoded into",
                };
                let stem = file.file_stem().unwrap_or_default().to_string_lossy();
                let key = stem.get(..12).unwrap_or(&stem);
                format!("{verb} the image cache (key {key}, {mib:.1} MiB, mapped)")
            }
            (Residency::Memory, _) => format!("decoded into memory ({mib:.1} MiB)"),
            (Residency::Mapped, None) => {
                format!("decoded into an unnamed mapped file ({mib:.1} MiB, this sweep only)")
            }
            (Residency::Files, _) => "decoded from the files each epoch (not cached)".into(),
        };
        options
            .progress
            .line(&format!("images ({name}): {} {place}", split.len()));
        let manifest = match listing {
            Some(listing) => fingerprint::manifest_of_kept(&listing, &split),
            None => fingerprint::manifest_of_split(&split, &mut stat)?.0,
        };
        Ok((split, manifest))
    };
    let (train, train_manifest) = open_split(train_index, "train")?;
    let (validation, validation_manifest) = open_split(validation_index, "validation")?;
    stat.save()?;
    Ok(prepared(
        Data { train, validation },
        train_manifest,
        validation_manifest,
        &options.progress,
    ))
}

/// Open and fingerprint every data set and weights file the selected cells need, before any
/// training starts, so that a missing directory or file is reported at once (`sweep::run` opens
/// the device first, so a device that cannot be used is reported before them).
///
/// A pretraining stage that is not trained yet is trained as `stages` says (or not at all).
pub fn prepare(
    experiment: &Experiment,
    cells: &[Cell],
    options: &SweepOptions,
    stages: super::stage::Training<'_>,
) -> anyhow::Result<Inputs> {
    let budget = std::sync::Arc::new(MemoryBudget::new(options.cache_memory));
    let mut inputs = Inputs {
        data: BTreeMap::new(),
        weights: BTreeMap::new(),
        code: code_state_excluding(
            &experiment.base_dir,
            &input_paths(experiment, &options.results),
        )?,
        stages: BTreeMap::new(),
        features: FeatureCache::new(
            Some(options.results.cache_dir().join("features")),
            budget.clone(),
        ),
        images: image_cache(options, budget),
    };
    let cpu = crate::model::cpu();
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
            let prepared =
                open_data(&cfg.dataset, true, &inputs.images, options).with_context(context)?;
            options.progress.line(&format!(
                "data: {} training and {} validation images, classes {:?}, hash {}",
                prepared.data.train.len(),
                prepared.data.validation.len(),
                prepared.data.train.class_names,
                &prepared.hash[..12]
            ));
            slot.insert(prepared);
        }
        if let Entry::Vacant(slot) = inputs.weights.entry(weights_key(cfg)) {
            let arch = architecture(cfg)?;
            let loaded = match experiment.stage_of(cfg) {
                Some(stage) => {
                    let outcome = super::stage::ensure(
                        experiment,
                        stage,
                        &inputs.code,
                        &inputs.images,
                        stages,
                        options,
                    )?;
                    let loaded = weights::load_conv_base(&outcome.checkpoint, &arch, &cpu)
                        .with_context(|| format!("{}: model.weights", context()))?;
                    inputs.stages.insert(stage.name.clone(), outcome);
                    loaded
                }
                None => weights::load(&cfg.model.weights, &arch, &cpu)
                    .with_context(|| format!("{}: model.weights", context()))?,
            };
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
    stage: Option<&str>,
) -> (KeyComponents, String) {
    let components = KeyComponents {
        config: crate::config::hash::config_hash(cfg, &experiment.base_dir),
        dataset: data.hash.clone(),
        weights: weights.sha256.clone(),
        code: code.hash.clone(),
        seed,
        stage: stage.map(str::to_string),
    };
    let mut text = format!(
        "runner-run-key-v1\nrunner {}\nconfig {}\ndataset {}\nweights {}\ncode {}\nseed {}\n",
        env!("CARGO_PKG_VERSION"),
        components.config,
        components.dataset,
        components.weights.as_deref().unwrap_or("none"),
        components.code,
        components.seed
    );
    // Only cells that load a stage's weights have this line, so every other key is unchanged.
    if let Some(stage) = &components.stage {
        text.push_str(&format!("stage {stage}\n"));
    }
    (components, sha256_hex(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_paths_cover_every_variants_data_and_weights_and_the_results() {
        let text = r#"
name = "inputs"
[dataset]
train_dir = "data/train"
validation_dir = "data/validation"
[model]
weights = { file = "weights/base.safetensors" }
[[variants]]
name = "a"
[[variants]]
name = "b"
dataset.train_dir = "other/train"
dataset.validation_dir = "other/validation"
model.weights = "keras:vgg16-imagenet"
"#;
        let experiment = crate::config::parse(text, Path::new("exp/inputs.toml")).unwrap();
        let paths = input_paths(&experiment, &ResultsLayout::new("out"));
        for expected in [
            "out",
            "exp/data/train",
            "exp/data/validation",
            "exp/weights/base.safetensors",
            "exp/other/train",
            "exp/other/validation",
        ] {
            assert!(
                paths.contains(&PathBuf::from(expected)),
                "{expected}: {paths:?}"
            );
        }
        // A known name: wherever `runner weights fetch` or Keras would put the file.
        let known = paths
            .iter()
            .filter(|p| p.ends_with("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"))
            .count();
        assert!(known >= 1, "{paths:?}");
    }
}
