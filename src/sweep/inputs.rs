//! Inputs shared between the cells of a sweep, loaded and hashed once: decoded data sets with
//! their fingerprints, weights with their hashes, trained stages, and the code state; and the
//! split records that cells and stages store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::SweepOptions;
use crate::base::memory::MemoryBudget;
use crate::config::{DataSource, DatasetConfig, Experiment, Weights};
use crate::dataset::{synthetic, ClassIndex, Data, ImageCache, Residency, Split};
use crate::fingerprint::{self, Manifest};
use crate::model::network::frozen_prefix_len;
use crate::model::weights::{self, LoadedWeights};
use crate::plan::{CellPlan, InputHashes, KeyComponents};
use crate::provenance::CodeState;
use crate::store::record::{SkippedFile, SplitRecord};
use crate::store::ResultsLayout;
use crate::train::features::FeatureCache;
use crate::train::EpochMetrics;

/// A data set in memory and its fingerprint.
pub struct PreparedData {
    pub data: Data,
    /// Hash of the train and validation manifests' root hashes.
    pub hash: String,
    /// The manifests (every file used: path, size, SHA-256, label), stored with every run.
    pub train_manifest: Manifest,
    pub validation_manifest: Manifest,
}

/// A stage ready for the cells: its key and its checkpoint.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub key: String,
    pub dir: PathBuf,
    pub checkpoint: PathBuf,
    pub checkpoint_sha256: String,
    /// Whether this call trained it (false: found on disk).
    pub trained: bool,
    /// The last epoch's metrics on the stage's own validation set.
    pub last: Option<EpochMetrics>,
}

/// Everything the selected cells read, opened once (`sweep::prepare`).
pub struct Inputs {
    pub data: BTreeMap<String, PreparedData>,
    pub weights: BTreeMap<String, LoadedWeights>,
    pub code: CodeState,
    /// Stages the cells load weights from, trained (or found) before any cell runs, by name.
    pub stages: BTreeMap<String, StageOutcome>,
    /// Frozen-prefix outputs shared by the cells (and on disk, by sweeps on the same results).
    pub features: FeatureCache,
    /// Where decoded images are cached (sharing the memory budget with `features`).
    pub images: ImageCache,
    /// Where the cells are logged as they train (`[mlflow]`), when the server could be reached.
    pub tracker: Option<std::sync::Arc<crate::track::live::Tracker>>,
    /// The frozen-prefix ends that the cells to run want, per group of cells whose networks
    /// can share prefixes (`prefix_group`): a cell computing a longer prefix keeps these shorter
    /// ones on the way, for the others. Empty: nothing is kept beyond a cell's own prefix.
    pub prefix_ends: BTreeMap<String, BTreeSet<usize>>,
}

impl Inputs {
    /// The run key of a planned cell over the inputs opened for it (by `sweep::prepare`).
    pub fn run_key(&self, cell: &CellPlan) -> (KeyComponents, String) {
        let variant = &cell.variant;
        cell.run_key(InputHashes {
            dataset: &self.data[&variant.data_key].hash,
            weights: self.weights[&variant.weights_key].sha256.as_deref(),
            code: &self.code.hash,
            stage: self.stage_key(cell),
        })
    }

    /// The ends of the shorter frozen prefixes that other cells to run will want from `cell`'s
    /// network (see `prefix_ends`).
    pub fn prefixes_to_keep(&self, cell: &CellPlan) -> Vec<usize> {
        self.prefix_ends
            .get(&prefix_group(cell))
            .map(|ends| ends.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The run key of the stage `cell` loads its weights from, if any.
    pub fn stage_key(&self, cell: &CellPlan) -> Option<&str> {
        let name = cell.variant.stage.as_ref()?;
        self.stages.get(name).map(|s| s.key.as_str())
    }
}

/// Cells whose networks may share frozen prefixes: the same weights, data and seed (a layer
/// the weights do not cover is initialised from the seed). Only a hint: whether two prefixes
/// are the same is decided by their keys (`train::features::prefix_key`).
fn prefix_group(cell: &CellPlan) -> String {
    let variant = &cell.variant;
    format!(
        "{} {} {}",
        variant.weights_key, variant.data_key, cell.cell.seed
    )
}

/// The frozen-prefix ends of `cells` (those that will train), per `prefix_group`.
pub fn prefix_ends<'a>(
    cells: impl IntoIterator<Item = &'a CellPlan>,
) -> BTreeMap<String, BTreeSet<usize>> {
    let mut out: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for cell in cells {
        let variant = &cell.variant;
        let end = frozen_prefix_len(&variant.architecture, &variant.trainable);
        if end > 0 {
            out.entry(prefix_group(cell)).or_default().insert(end);
        }
    }
    out
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

/// Save the file-hash cache. It only saves hashing the files again, so one that cannot be written
/// (a read-only results directory whose cells are all done) is a warning, not an error.
fn save_stat_cache(cache: &mut fingerprint::StatCache) {
    if let Err(e) = cache.save() {
        eprintln!("warning: {e}; the data set's files will be hashed again next time");
    }
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
    save_stat_cache(&mut cache);
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
    if let Some(name) = &dataset.known {
        if !train_dir.is_dir() || !validation_dir.is_dir() {
            anyhow::bail!(
                "data set \"{name}\" is not fetched (it goes to {}): run `runner fetch \
                 EXPERIMENT.toml` first",
                train_dir.parent().unwrap_or(&train_dir).display()
            );
        }
    }
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
                    crate::dataset::image_cache::Origin::Cached => "reused from",
                    crate::dataset::image_cache::Origin::Decoded => "decoded into",
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
    save_stat_cache(&mut stat);
    Ok(prepared(
        Data { train, validation },
        train_manifest,
        validation_manifest,
        &options.progress,
    ))
}

/// What a cell or stage stores about one split of its data set.
pub fn split_record(split: &Split) -> SplitRecord {
    SplitRecord {
        dir: split.root.clone(),
        files: split.len(),
        classes: split.class_names.clone(),
        skipped: split
            .skipped
            .iter()
            .map(|(path, reason)| SkippedFile {
                path: path.clone(),
                reason: reason.clone(),
            })
            .collect(),
    }
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
        let experiment = crate::plan::parse(text, std::path::Path::new("exp/inputs.toml")).unwrap();
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
