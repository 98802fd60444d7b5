//! Stage two: spec values -> the resolved `Experiment`, checking what the values mean.
//!
//! Every check reports the key where the offending value is written (in the variant's overrides or
//! in the base section) and says what to write instead. Paths are joined to the experiment file's
//! directory but never touched: whether they exist is the data stage's business. Each section of
//! a cell has its own file: `dataset`, `model`, `training`.

mod dataset;
mod model;
mod training;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::locate::KeyPath;
use crate::config::parse::{CellSpec, Parsed, Scope, Source};
use crate::config::spec::{ExperimentSpec, VariantSpec};
use crate::config::{CellConfig, ConfigError, Experiment, Stage, Variant, DEFAULT_VARIANT};
use crate::model::arch::{ArchError, Architecture};

const NAME_RULE: &str = "use only letters, digits, '_', '-' and '.'";

pub fn resolve(src: &Source<'_>, parsed: Parsed) -> Result<Experiment, ConfigError> {
    let Parsed {
        spec,
        cells,
        pretrain,
    } = parsed;
    let name = experiment_name(src, &spec)?;
    check_seeds(src, &spec.seeds)?;
    check_variant_names(src, &spec.variants)?;
    let base_dir = match src.file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };

    let stage = match (&spec.pretrain, &pretrain) {
        (Some(stage_spec), Some(cell)) => {
            let ctx = Ctx::new(src, Scope::pretrain(stage_spec), &base_dir, None);
            Some(Stage {
                name: "pretrain".to_string(),
                seed: stage_spec.seed,
                config: ctx.cell(cell)?,
            })
        }
        _ => None,
    };

    let mut variants = Vec::with_capacity(cells.len());
    if spec.variants.is_empty() {
        let ctx = Ctx::new(src, Scope::base(), &base_dir, stage.as_ref());
        variants.push(Variant {
            name: DEFAULT_VARIANT.to_string(),
            description: None,
            config: ctx.cell(&cells[0])?,
        });
    } else {
        for (index, (variant, cell)) in spec.variants.iter().zip(&cells).enumerate() {
            let ctx = Ctx::new(
                src,
                Scope::variant(index, variant),
                &base_dir,
                stage.as_ref(),
            );
            variants.push(Variant {
                name: variant.name.clone(),
                description: variant.description.clone(),
                config: ctx.cell(cell)?,
            });
        }
    }

    let evaluation = spec
        .evaluation
        .as_ref()
        .map(|e| crate::config::EvaluationSettings {
            test_dir: base_dir.join(&e.test_dir),
            model: e.model,
        });
    Ok(Experiment {
        name,
        description: spec.description.clone(),
        file: src.file.to_path_buf(),
        base_dir,
        seeds: spec.seeds.clone(),
        variants,
        device: spec.device,
        pretrain: stage,
        slurm: spec.slurm.clone(),
        mlflow: check_mlflow(src, &spec)?,
        evaluation,
    })
}

/// `[mlflow]`, whose `tracking_uri` must be a server's URL (what `track::mlflow` talks to).
fn check_mlflow(
    src: &Source<'_>,
    spec: &ExperimentSpec,
) -> Result<Option<crate::config::MlflowSettings>, ConfigError> {
    if let Some(uri) = spec.mlflow.as_ref().and_then(|m| m.tracking_uri.as_ref()) {
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return Err(src.error(
                &KeyPath::parse("mlflow.tracking_uri"),
                format!(
                    "{uri:?} is not a tracking server's URL; give http://HOST:PORT (a local \
                     mlruns folder or database is not supported: serve it with `mlflow server`)"
                ),
            ));
        }
    }
    Ok(spec.mlflow.clone())
}

/// Safe as one directory name on every platform the results may be copied to.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn experiment_name(src: &Source<'_>, spec: &ExperimentSpec) -> Result<String, ConfigError> {
    let key = KeyPath::parse("name");
    match &spec.name {
        Some(name) if is_safe_name(name) => Ok(name.clone()),
        Some(name) => Err(src.error(
            &key,
            format!("{name:?} cannot be used as a directory name; {NAME_RULE}"),
        )),
        None => {
            let stem = src.file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if is_safe_name(stem) {
                Ok(stem.to_string())
            } else {
                Err(src.error(
                    &key,
                    format!(
                        "the experiment is named after the file, but {stem:?} cannot be used as a \
                         directory name; set name = \"...\" ({NAME_RULE})"
                    ),
                ))
            }
        }
    }
}

fn check_seeds(src: &Source<'_>, seeds: &[u64]) -> Result<(), ConfigError> {
    if seeds.is_empty() {
        return Err(src.error(
            &KeyPath::parse("seeds"),
            "the list is empty; give at least one seed, e.g. seeds = [0]",
        ));
    }
    let mut first = HashMap::new();
    for (i, seed) in seeds.iter().enumerate() {
        if let Some(j) = first.insert(seed, i) {
            return Err(src.error(
                &KeyPath::parse("seeds").index(i),
                format!("seed {seed} is already listed (seeds[{j}]); list each seed once"),
            ));
        }
    }
    Ok(())
}

fn check_variant_names(src: &Source<'_>, variants: &[VariantSpec]) -> Result<(), ConfigError> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, variant) in variants.iter().enumerate() {
        let key = KeyPath::default().key("variants").index(i).key("name");
        let name = variant.name.as_str();
        if name.is_empty() {
            return Err(src.error(&key, format!("the name is empty; {NAME_RULE}")));
        }
        if !is_safe_name(name) {
            return Err(src.error(
                &key,
                format!("{name:?} cannot be used as a directory name; {NAME_RULE}"),
            ));
        }
        if let Some(j) = first.insert(name, i) {
            return Err(src.error(
                &key,
                format!(
                    "{name:?} is already the name of variants[{j}]; variant names must be unique"
                ),
            ));
        }
    }
    Ok(())
}

/// Resolves one variant's merged configuration, reporting errors where its keys are written.
struct Ctx<'a> {
    src: &'a Source<'a>,
    scope: Scope<'a>,
    base_dir: &'a Path,
    /// The experiment's `[pretrain]` stage, which `weights = { stage = "pretrain" }` refers to.
    stage: Option<&'a Stage>,
}

impl<'a> Ctx<'a> {
    fn new(
        src: &'a Source<'a>,
        scope: Scope<'a>,
        base_dir: &'a Path,
        stage: Option<&'a Stage>,
    ) -> Self {
        Ctx {
            src,
            scope,
            base_dir,
            stage,
        }
    }

    /// An error at `rel` (e.g. `training.epochs`), placed in the variant or the base section.
    fn err(&self, rel: &str, message: impl Into<String>) -> ConfigError {
        self.src
            .error(&self.scope.place(&KeyPath::parse(rel)), message)
    }

    /// Of several keys involved in one error, the first one this variant writes itself, so that
    /// the message points at the line that made the combination wrong; else `fallback`.
    fn pick<'k>(&self, keys: &[&'k str], fallback: &'k str) -> &'k str {
        keys.iter()
            .copied()
            .find(|k| self.scope.overrides(&KeyPath::parse(k)))
            .unwrap_or(fallback)
    }

    fn cell(&self, cell: &CellSpec) -> Result<CellConfig, ConfigError> {
        let dataset = self.dataset(&cell.dataset)?;
        let model = self.model(&cell.model)?;
        let [height, width] = dataset.image_size;
        let arch = Architecture::build(&model, height as usize, width as usize).map_err(|e| {
            let key = match e {
                ArchError::UnknownArchitecture(_) => "model.architecture",
                ArchError::InputTooSmall { .. } => "dataset.image_size",
            };
            self.err(key, e.to_string())
        })?;
        let training = self.training(&cell.training, &arch)?;
        Ok(CellConfig {
            dataset,
            model,
            training,
        })
    }

    fn path(&self, key: &str, path: &str) -> Result<PathBuf, ConfigError> {
        if path.is_empty() {
            return Err(self.err(key, "the path is empty"));
        }
        Ok(self.base_dir.join(path))
    }
}
