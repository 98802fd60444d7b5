//! Stage two: spec values -> the resolved `Experiment`, checking what the values mean.
//!
//! Every check reports the key where the offending value is written (in the variant's overrides or
//! in the base section) and says what to write instead. Paths are joined to the experiment file's
//! directory but never touched: whether they exist is the data stage's business.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::locate::KeyPath;
use super::parse::{CellSpec, Parsed, Scope, Source};
use super::spec::{
    DatasetSpec, ExperimentSpec, Factor, ModelSpec, OptimizerSpec, TrainingSpec, VariantSpec,
    WeightsSpec, STAGES,
};
use super::{
    AugmentStep, CellConfig, ConfigError, DataSource, DatasetConfig, Experiment, FreezeRule,
    ModelConfig, Optimizer, Stage, TrainingConfig, Variant, Weights,
};
use crate::model::arch::{ArchError, Architecture};
use crate::model::freeze::trainable_mask;

/// VGG16's block widths, which every pretrained VGG16 checkpoint has.
const VGG16_CHANNELS: [usize; 5] = [64, 128, 256, 512, 512];

/// The name of the single variant of an experiment without `[[variants]]`.
pub const DEFAULT_VARIANT: &str = "default";

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

    Ok(Experiment {
        name,
        description: spec.description.clone(),
        file: src.file.to_path_buf(),
        base_dir,
        seeds: spec.seeds.clone(),
        variants,
        device: spec.device,
        pretrain: stage,
    })
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

    fn dataset(&self, d: &DatasetSpec) -> Result<DatasetConfig, ConfigError> {
        const SOURCE_KEYS: [&str; 3] = [
            "dataset.synthetic",
            "dataset.train_dir",
            "dataset.validation_dir",
        ];
        let source =
            match (&d.train_dir, &d.validation_dir, &d.synthetic) {
                (Some(train), Some(validation), None) => DataSource::Directories {
                    train: self.path("dataset.train_dir", train)?,
                    validation: self.path("dataset.validation_dir", validation)?,
                },
                (None, None, Some(synthetic)) => {
                    for (key, value) in [
                        ("train_per_class", synthetic.train_per_class),
                        ("validation_per_class", synthetic.validation_per_class),
                        ("size", synthetic.size as usize),
                    ] {
                        if value == 0 {
                            return Err(
                                self.err(&format!("dataset.synthetic.{key}"), "must be at least 1")
                            );
                        }
                    }
                    DataSource::Synthetic(synthetic.clone())
                }
                (None, None, None) => {
                    let key = if self.scope.is_pretrain() {
                        self.scope.place(&KeyPath::parse("dataset"))
                    } else {
                        KeyPath::parse("dataset")
                    };
                    return Err(self.src.error(
                        &key,
                        "no data source; set train_dir and validation_dir (folders with one \
                     sub-folder per class), or add a [dataset.synthetic] table",
                    ));
                }
                (_, _, Some(_)) => return Err(self.err(
                    self.pick(&SOURCE_KEYS, "dataset.synthetic"),
                    "give either train_dir and validation_dir, or [dataset.synthetic], not both",
                )),
                (Some(_), None, None) => {
                    return Err(self.err(
                        "dataset.train_dir",
                        "validation_dir is missing; give both train_dir and validation_dir \
                     (or use [dataset.synthetic] instead)",
                    ))
                }
                (None, Some(_), None) => {
                    return Err(self.err(
                        "dataset.validation_dir",
                        "train_dir is missing; give both train_dir and validation_dir \
                     (or use [dataset.synthetic] instead)",
                    ))
                }
            };

        let [height, width] = d.image_size;
        if height < 32 || width < 32 {
            return Err(self.err(
                "dataset.image_size",
                format!(
                    "[{height}, {width}] is too small: VGG's five 2x2 poolings need at least \
                     [32, 32]"
                ),
            ));
        }
        if d.batch_size == 0 {
            return Err(self.err("dataset.batch_size", "must be at least 1"));
        }
        for (i, step) in d.augmentation.iter().enumerate() {
            self.augment_step(i, step)?;
        }

        Ok(DatasetConfig {
            source,
            image_size: d.image_size,
            batch_size: d.batch_size,
            shuffle: d.shuffle,
            preprocessing: d.preprocessing,
            on_bad_image: d.on_bad_image,
            augmentation: d.augmentation.clone(),
        })
    }

    fn augment_step(&self, index: usize, step: &AugmentStep) -> Result<(), ConfigError> {
        let at = |key: &str| format!("dataset.augmentation[{index}].{key}");
        let factor = |key: &str, f: &Factor| -> Result<(f32, f32), ConfigError> {
            let (lower, upper) = f.bounds();
            if !lower.is_finite() || !upper.is_finite() {
                return Err(self.err(&at(key), "must be finite"));
            }
            if lower > upper {
                return Err(self.err(
                    &at(key),
                    format!(
                        "the range [{lower}, {upper}] has its lower bound above its upper bound"
                    ),
                ));
            }
            Ok((lower, upper))
        };
        let fill = |value: f32| {
            if value.is_finite() {
                Ok(())
            } else {
                Err(self.err(&at("fill_value"), "must be finite"))
            }
        };
        match step {
            AugmentStep::Flip { .. } => {}
            AugmentStep::Rotation {
                factor: f,
                fill_value,
                ..
            } => {
                factor("factor", f)?;
                fill(*fill_value)?;
            }
            AugmentStep::Zoom {
                height_factor,
                width_factor,
                fill_value,
                ..
            } => {
                let mut factors = vec![("height_factor", height_factor)];
                factors.extend(width_factor.as_ref().map(|w| ("width_factor", w)));
                for (key, f) in factors {
                    // Keras's RandomZoom rejects -1 and below: the zoomed image would have no size.
                    if factor(key, f)?.0 <= -1.0 {
                        return Err(self.err(&at(key), "zoom factors must be above -1"));
                    }
                }
                fill(*fill_value)?;
            }
            AugmentStep::Translation {
                height_factor,
                width_factor,
                fill_value,
                ..
            } => {
                factor("height_factor", height_factor)?;
                factor("width_factor", width_factor)?;
                fill(*fill_value)?;
            }
            AugmentStep::Contrast { factor: f } => {
                factor("factor", f)?;
            }
        }
        Ok(())
    }

    fn model(&self, m: &ModelSpec) -> Result<ModelConfig, ConfigError> {
        if m.channels.contains(&0) {
            return Err(self.err(
                "model.channels",
                format!(
                    "every block needs at least 1 channel, found {:?}",
                    m.channels
                ),
            ));
        }
        if m.head.units.contains(&0) {
            return Err(self.err(
                "model.head.units",
                format!(
                    "every dense layer needs at least 1 unit, found {:?}",
                    m.head.units
                ),
            ));
        }
        let weights = match &m.weights {
            WeightsSpec::Named(name) if name == "none" => Weights::None,
            WeightsSpec::Named(name) => {
                if m.channels != VGG16_CHANNELS {
                    return Err(self.err(
                        self.pick(&["model.weights", "model.channels"], "model.channels"),
                        format!(
                            "pretrained weights {name:?} need VGG16's channels {VGG16_CHANNELS:?}, \
                             found {:?}; remove channels or set weights = \"none\"",
                            m.channels
                        ),
                    ));
                }
                Weights::Named(name.clone())
            }
            WeightsSpec::File { file, sha256 } => {
                let path = self.path("model.weights.file", file)?;
                let sha256 = match sha256 {
                    Some(digest)
                        if digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()) =>
                    {
                        Some(digest.to_ascii_lowercase())
                    }
                    Some(digest) => {
                        return Err(self.err(
                            "model.weights.sha256",
                            format!(
                                "expected 64 hexadecimal digits (the file's SHA-256), found \
                                 {digest:?}"
                            ),
                        ))
                    }
                    None => None,
                };
                Weights::File { path, sha256 }
            }
            WeightsSpec::Stage { stage } => {
                if !STAGES.contains(&stage.as_str()) {
                    return Err(self.err(
                        "model.weights.stage",
                        format!(
                            "unknown stage {stage:?} (stages: {}); write {{ stage = \"pretrain\" }} \
                             and declare a [pretrain] table",
                            STAGES.join(", ")
                        ),
                    ));
                }
                let Some(declared) = self.stage.filter(|s| &s.name == stage) else {
                    return Err(self.err(
                        "model.weights.stage",
                        format!(
                            "the experiment has no [{stage}] table; add one (see \
                             experiments/reference.toml) or choose other weights"
                        ),
                    ));
                };
                let trained = &declared.config.model;
                if m.architecture != trained.architecture || m.channels != trained.channels {
                    return Err(self.err(
                        self.pick(&["model.channels", "model.architecture"], "model.weights"),
                        format!(
                            "the {stage} stage trains {} with channels {:?} (from [model]); a cell \
                             that loads its weights needs the same, found {} with {:?}",
                            trained.architecture, trained.channels, m.architecture, m.channels
                        ),
                    ));
                }
                Weights::Stage(stage.clone())
            }
        };
        Ok(ModelConfig {
            architecture: m.architecture.clone(),
            channels: m.channels,
            weights,
            conv_init: m.conv_init,
            head: m.head.clone(),
        })
    }

    fn training(
        &self,
        t: &TrainingSpec,
        arch: &Architecture,
    ) -> Result<TrainingConfig, ConfigError> {
        if t.epochs == 0 {
            return Err(self.err("training.epochs", "must be at least 1"));
        }
        let learning_rate = t.learning_rate;
        if !(learning_rate.is_finite() && learning_rate > 0.0) {
            return Err(self.err(
                "training.learning_rate",
                format!("must be a finite number above 0, found {learning_rate:?}"),
            ));
        }
        let optimizer = self.optimizer(&t.optimizer, learning_rate)?;
        let freeze = self.freeze_rule(t, arch)?;
        Ok(TrainingConfig {
            epochs: t.epochs,
            optimizer,
            freeze,
        })
    }

    fn optimizer(&self, o: &OptimizerSpec, learning_rate: f64) -> Result<Optimizer, ConfigError> {
        let unit = |key: &str, value: f64| {
            if (0.0..1.0).contains(&value) {
                Ok(())
            } else {
                Err(self.err(
                    &format!("training.optimizer.{key}"),
                    format!("must be at least 0 and below 1, found {value:?}"),
                ))
            }
        };
        let epsilon = |value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(self.err(
                    "training.optimizer.epsilon",
                    format!("must be a finite number above 0, found {value:?}"),
                ))
            }
        };
        Ok(match *o {
            OptimizerSpec::Adam {
                beta_1,
                beta_2,
                epsilon: eps,
            } => {
                unit("beta_1", beta_1)?;
                unit("beta_2", beta_2)?;
                epsilon(eps)?;
                Optimizer::Adam {
                    learning_rate,
                    beta_1,
                    beta_2,
                    epsilon: eps,
                }
            }
            OptimizerSpec::Rmsprop {
                rho,
                momentum,
                epsilon: eps,
                centered,
            } => {
                unit("rho", rho)?;
                if !(momentum.is_finite() && momentum >= 0.0) {
                    return Err(self.err(
                        "training.optimizer.momentum",
                        format!("must be a finite number of at least 0, found {momentum:?}"),
                    ));
                }
                epsilon(eps)?;
                Optimizer::Rmsprop {
                    learning_rate,
                    rho,
                    momentum,
                    epsilon: eps,
                    centered,
                }
            }
        })
    }

    fn freeze_rule(
        &self,
        t: &TrainingSpec,
        arch: &Architecture,
    ) -> Result<FreezeRule, ConfigError> {
        let mut rules = Vec::new();
        if let Some(name) = &t.trainable_from {
            rules.push(("trainable_from", FreezeRule::TrainableFrom(name.clone())));
        }
        if let Some(globs) = &t.freeze {
            rules.push(("freeze", FreezeRule::Freeze(globs.clone())));
        }
        if let Some(globs) = &t.train {
            rules.push(("train", FreezeRule::Train(globs.clone())));
        }
        let keys: Vec<String> = rules.iter().map(|(k, _)| format!("training.{k}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (key, rule) = match rules.len() {
            0 => return Ok(FreezeRule::AllTrainable),
            1 => (keys[0], rules.remove(0).1),
            _ => {
                let names: Vec<&str> = rules.iter().map(|(k, _)| *k).collect();
                let (last, rest) = names.split_last().unwrap_or((&"", &[]));
                return Err(self.err(
                    self.pick(&keys, keys[keys.len() - 1]),
                    format!(
                        "set at most one of trainable_from, freeze and train (found {} and \
                         {last}); remove the others",
                        rest.join(", ")
                    ),
                ));
            }
        };
        let mask = trainable_mask(&rule, arch).map_err(|message| self.err(key, message))?;
        let trains_weights = arch
            .layers
            .iter()
            .zip(&mask)
            .any(|(layer, &trains)| trains && layer.has_weights());
        if !trains_weights {
            return Err(self.err(key, "no layer with weights would train under this rule"));
        }
        Ok(rule)
    }
}
