//! The run plan, configuration stage two: an experiment file resolved and checked (`resolve`),
//! then every cell with what follows from its configuration alone: its architecture, which layers
//! train, its configuration hash, the keys under which cells share a data set and weights, and
//! the stage it loads. Run keys come from here too, once the sweep has hashed the inputs.
//!
//! `config` holds the typed configuration (stage one); `plan` uses it and `model`'s architecture.
//! Nothing downstream resolves a layer name or computes a key again.

mod keys;
mod resolve;

use std::path::Path;
use std::sync::Arc;

use crate::config::hash::config_hash;
use crate::config::{Cell, CellConfig, ConfigError, Experiment, Stage};
use crate::model::arch::Architecture;
use crate::model::freeze::trainable_mask;
use crate::model::summary::render;

pub use keys::{data_key, run_key, stage_key, weights_key, InputHashes, KeyComponents, StageKey};

/// Read, parse and validate an experiment file.
pub fn load(path: &Path) -> Result<Experiment, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        file: path.to_path_buf(),
        source: e,
    })?;
    parse(&text, path)
}

/// Parse and validate experiment text; `path` is used for messages and to resolve relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Experiment, ConfigError> {
    let (source, parsed) = crate::config::parse::read(text, path)?;
    resolve::resolve(&source, parsed)
}

/// The experiment file at `path`, or the embedded demo (`config::DEMO_TOML`) without one.
pub fn load_or_demo(path: Option<&Path>) -> anyhow::Result<Experiment> {
    use anyhow::Context;
    Ok(match path {
        Some(p) => load(p)?,
        None => parse(crate::config::DEMO_TOML, Path::new("experiments/demo.toml"))
            .context("the embedded demo experiment")?,
    })
}

/// An experiment's cells, resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    pub experiment: Experiment,
    /// One per variant, in the experiment's order.
    pub variants: Vec<Arc<VariantPlan>>,
    /// The matrix, variants-major (as `Experiment::cells`).
    pub cells: Vec<CellPlan>,
    /// The `[pretrain]` stage, when the experiment declares one.
    pub stage: Option<StagePlan>,
}

/// What every cell of one variant shares.
#[derive(Debug, Clone)]
pub struct VariantPlan {
    pub name: String,
    /// The variant's configuration, `--epochs` applied.
    pub config: CellConfig,
    pub architecture: Architecture,
    /// Whether each layer of `architecture` trains.
    pub trainable: Vec<bool>,
    /// The configuration component of the run key (`config::hash`).
    pub config_hash: String,
    /// Cells with the same data key share one opened data set.
    pub data_key: String,
    /// Cells with the same weights key share one loaded set of weights.
    pub weights_key: String,
    /// The name of the stage whose conv base the variant loads, if any.
    pub stage: Option<String>,
}

/// One cell of the matrix: a variant and a seed.
#[derive(Debug, Clone)]
pub struct CellPlan {
    pub cell: Cell,
    pub variant: Arc<VariantPlan>,
}

/// A stage the cells load weights from: its configuration hash is known before its data is.
#[derive(Debug, Clone)]
pub struct StagePlan {
    pub stage: Stage,
    pub config_hash: String,
}

impl Plan {
    /// The plan of `experiment`; `epochs` (`--epochs`) overrides every variant's
    /// `training.epochs` (not the stage's).
    pub fn new(experiment: &Experiment, epochs: Option<usize>) -> anyhow::Result<Plan> {
        let mut variants = Vec::with_capacity(experiment.variants.len());
        for v in &experiment.variants {
            let mut config = v.config.clone();
            if let Some(e) = epochs {
                config.training.epochs = e;
            }
            let architecture = architecture(&config)?;
            let trainable =
                trainable_mask(&config.training.freeze, &architecture).map_err(|e| {
                    anyhow::anyhow!("{}: variant \"{}\": {e}", experiment.file.display(), v.name)
                })?;
            let stage = experiment.stage_of(&config).map(|s| s.name.clone());
            variants.push(Arc::new(VariantPlan {
                name: v.name.clone(),
                config_hash: config_hash(&config, &experiment.base_dir),
                data_key: data_key(&config.dataset),
                weights_key: weights_key(&config),
                architecture,
                trainable,
                stage,
                config,
            }));
        }
        let cells = experiment
            .cells()
            .into_iter()
            .map(|cell| {
                let variant = variants
                    .iter()
                    .find(|v| v.name == cell.variant)
                    .expect("every cell is of a variant")
                    .clone();
                CellPlan { cell, variant }
            })
            .collect();
        let stage = experiment.pretrain.as_ref().map(|stage| StagePlan {
            config_hash: config_hash(&stage.config, &experiment.base_dir),
            stage: stage.clone(),
        });
        Ok(Plan {
            experiment: experiment.clone(),
            variants,
            cells,
            stage,
        })
    }

    /// The planned cell `cell`, if it is in the matrix.
    pub fn cell(&self, cell: &Cell) -> Option<&CellPlan> {
        self.cells.iter().find(|c| &c.cell == cell)
    }

    /// The cell of the variant named `variant` with `seed`, whether or not the experiment lists
    /// that seed (`runner why` asks about any).
    pub fn cell_of(&self, variant: &str, seed: u64) -> Option<CellPlan> {
        let variant = self.variants.iter().find(|v| v.name == variant)?;
        Some(CellPlan {
            cell: Cell {
                variant: variant.name.clone(),
                seed,
            },
            variant: variant.clone(),
        })
    }

    /// The stage `variant` loads its conv base from, if any.
    pub fn stage_of(&self, variant: &VariantPlan) -> Option<&StagePlan> {
        let name = variant.stage.as_deref()?;
        self.stage.as_ref().filter(|s| s.stage.name == name)
    }

    /// The Keras-style summary of each variant, or of the one named `variant`.
    pub fn summary(&self, variant: Option<&str>) -> anyhow::Result<String> {
        if let Some(name) = variant {
            self.experiment.require_variant(name)?;
        }
        Ok(self
            .variants
            .iter()
            .filter(|v| variant.is_none_or(|name| v.name == name))
            .map(|v| {
                render(
                    &format!("{} / {}", self.experiment.name, v.name),
                    &v.architecture,
                    &v.trainable,
                )
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

impl VariantPlan {
    /// The layers with weights that train, by name.
    pub fn trainable_layers(&self) -> Vec<String> {
        self.architecture
            .layers
            .iter()
            .zip(&self.trainable)
            .filter(|(l, &t)| t && l.has_weights())
            .map(|(l, _)| l.name.clone())
            .collect()
    }
}

impl CellPlan {
    /// The run key of this cell over the hashes of its inputs.
    pub fn run_key(&self, inputs: InputHashes<'_>) -> (KeyComponents, String) {
        let components = KeyComponents {
            config: self.variant.config_hash.clone(),
            dataset: inputs.dataset.to_string(),
            weights: inputs.weights.map(str::to_string),
            code: inputs.code.to_string(),
            seed: self.cell.seed,
            stage: inputs.stage.map(str::to_string),
        };
        let key = run_key(&components);
        (components, key)
    }
}

impl StagePlan {
    /// The stage's key, over the hashes of its data set and the code.
    pub fn key(&self, dataset: &str, code: &str) -> (StageKey, String) {
        let components = StageKey {
            config: self.config_hash.clone(),
            dataset: dataset.to_string(),
            code: code.to_string(),
            seed: self.stage.seed,
        };
        let key = stage_key(&self.stage.name, &components);
        (components, key)
    }
}

/// The network a cell configuration describes (its binary classifier).
pub fn architecture(cfg: &CellConfig) -> anyhow::Result<Architecture> {
    let [h, w] = cfg.dataset.image_size;
    Ok(Architecture::build(&cfg.model, h as usize, w as usize)?)
}

/// The summary of each variant of `experiment`, or of the one named `variant` (`runner summary`).
pub fn summary(experiment: &Experiment, variant: Option<&str>) -> anyhow::Result<String> {
    Plan::new(experiment, None)?.summary(variant)
}
