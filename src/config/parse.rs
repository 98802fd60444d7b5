//! Stage one: experiment text -> spec values, one merged configuration per variant.
//!
//! Syntax errors, wrong types, wrong forms and unknown keys are reported here, each at the key (and
//! line) where the user wrote it. Nothing is checked for meaning yet: that is `resolve`'s job.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::locate::{line_at, line_of, KeyPath, Segment};
use super::spec::{
    DatasetSpec, ExperimentSpec, ModelSpec, PretrainSpec, TrainingSpec, VariantSpec, WeightsSpec,
};
use super::value_de::ValueDe;
use super::ConfigError;

/// The sections a variant may override.
const SECTIONS: [&str; 3] = ["dataset", "model", "training"];

/// Tables that are one value, not a group of settings: a variant that writes one replaces the
/// base's whole table, so that e.g. a new weights `file` never inherits the base's `sha256`.
const ATOMIC_TABLES: [&str; 2] = ["model.weights", "training.optimizer"];

/// The experiment file: its name for messages, and its parsed document for line numbers.
pub struct Source<'a> {
    pub file: &'a Path,
    doc: toml_edit::Document<&'a str>,
}

impl Source<'_> {
    /// A `ConfigError::Invalid` at `key`, with the line where `key` is written.
    pub fn error(&self, key: &KeyPath, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: line_of(&self.doc, key),
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// One variant's configuration: the base sections with the variant's overrides merged in.
#[derive(Debug, Clone, PartialEq)]
pub struct CellSpec {
    pub dataset: DatasetSpec,
    pub model: ModelSpec,
    pub training: TrainingSpec,
}

/// The file after stage one: the spec, and one `CellSpec` per variant (in `spec.variants` order,
/// or the single implicit variant when there are none).
pub struct Parsed {
    pub spec: ExperimentSpec,
    pub cells: Vec<CellSpec>,
    /// The `[pretrain]` stage as a cell of its own, when the file has one.
    pub pretrain: Option<CellSpec>,
}

/// The `[dataset]` keys a `[pretrain.dataset]` table inherits when it does not set them: how
/// images are read and batched. The data source and augmentation are always the stage's own.
const INHERITED_DATASET_KEYS: [&str; 5] = [
    "image_size",
    "batch_size",
    "shuffle",
    "preprocessing",
    "on_bad_image",
];

/// Where the keys of one variant's merged configuration are written: in the variant's overrides
/// (`variants[1].training.learning_rate`) or in the base section (`training.learning_rate`).
/// For the `[pretrain]` stage, the same relative paths map to the stage's own keys
/// (`training.epochs` -> `pretrain.epochs`, `dataset.synthetic` -> `pretrain.dataset.synthetic`).
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    variant: Option<(usize, &'a VariantSpec)>,
    pretrain: Option<&'a PretrainSpec>,
}

impl<'a> Scope<'a> {
    pub fn base() -> Self {
        Scope {
            variant: None,
            pretrain: None,
        }
    }

    pub fn variant(index: usize, spec: &'a VariantSpec) -> Self {
        Scope {
            variant: Some((index, spec)),
            pretrain: None,
        }
    }

    pub fn pretrain(spec: &'a PretrainSpec) -> Self {
        Scope {
            variant: None,
            pretrain: Some(spec),
        }
    }

    /// The key under which `rel` (a path such as `training.freeze`) is written for this variant.
    pub fn place(&self, rel: &KeyPath) -> KeyPath {
        if let Some(stage) = self.pretrain {
            return pretrain_place(stage, rel).unwrap_or_else(|| rel.clone());
        }
        match self.variant {
            Some((index, spec)) if overrides(spec, rel) => {
                KeyPath::default().key("variants").index(index).join(rel)
            }
            _ => rel.clone(),
        }
    }

    /// Whether this is the `[pretrain]` stage's scope.
    pub fn is_pretrain(&self) -> bool {
        self.pretrain.is_some()
    }

    /// Whether this variant (or the stage) writes `rel` itself.
    pub fn overrides(&self, rel: &KeyPath) -> bool {
        if let Some(stage) = self.pretrain {
            return pretrain_place(stage, rel).is_some();
        }
        self.variant.is_some_and(|(_, spec)| overrides(spec, rel))
    }
}

/// Where the stage writes `rel` (a path of its merged `CellSpec`), or `None` when the value comes
/// from the base sections.
fn pretrain_place(stage: &PretrainSpec, rel: &KeyPath) -> Option<KeyPath> {
    let [Segment::Key(section), rest @ ..] = rel.segments() else {
        return None;
    };
    let rest = KeyPath::from_segments(rest);
    let first = match rest.segments().first() {
        Some(Segment::Key(k)) => k.as_str(),
        _ => "",
    };
    let stage_key = KeyPath::default().key("pretrain");
    match section.as_str() {
        "training" => Some(stage_key.join(&rest)),
        "model" if first == "head" && stage.head.is_some() => Some(stage_key.join(&rest)),
        "dataset" => {
            let written = stage
                .dataset
                .as_ref()
                .is_some_and(|t| t.contains_key(first));
            // The data source is the stage's own even when it is missing.
            let own = matches!(
                first,
                "synthetic" | "train_dir" | "validation_dir" | "known" | ""
            );
            (written || own).then(|| stage_key.key("dataset").join(&rest))
        }
        _ => None,
    }
}

/// Whether the merged value at `rel` comes from `variant`: the path is spelled out in its
/// overrides, or passes through a value that the variant replaces whole (an array, an atomic table).
fn overrides(variant: &VariantSpec, rel: &KeyPath) -> bool {
    let segments = rel.segments();
    let Some(Segment::Key(section)) = segments.first() else {
        return false;
    };
    let table = match section.as_str() {
        "dataset" => variant.dataset.as_ref(),
        "model" => variant.model.as_ref(),
        "training" => variant.training.as_ref(),
        _ => None,
    };
    let Some(mut table) = table else {
        return false;
    };
    let mut dotted = section.clone();
    for segment in &segments[1..] {
        let Segment::Key(key) = segment else {
            return true;
        };
        dotted = format!("{dotted}.{key}");
        match table.get(key) {
            None => return false,
            Some(toml::Value::Table(inner)) if !ATOMIC_TABLES.contains(&dotted.as_str()) => {
                table = inner
            }
            Some(_) => return true,
        }
    }
    true
}

/// Parse `text` (read from `file`) into a `Source` and the stage-one result.
pub fn read<'a>(text: &'a str, file: &'a Path) -> Result<(Source<'a>, Parsed), ConfigError> {
    // Parsed twice: toml_edit keeps the spans that give line numbers, toml gives plain values.
    let doc = toml_edit::Document::parse(text).map_err(|e| syntax_error(file, text, &e))?;
    let src = Source { file, doc };
    let root: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            file: file.to_path_buf(),
            line: e.span().map(|s| line_at(text, s.start)),
            key: String::new(),
            message: format!("TOML syntax: {}", e.message().trim_end()),
        })?;

    let spec: ExperimentSpec = deserialize(toml::Value::Table(root.clone()))
        .map_err(|(path, message)| src.error(&path, message))?;

    let pretrain = match &spec.pretrain {
        Some(stage) => Some(pretrain_cell(&src, &root, &spec, stage)?),
        None => None,
    };
    let cells = if spec.variants.is_empty() {
        vec![CellSpec {
            dataset: spec.dataset.clone(),
            model: spec.model.clone(),
            training: spec.training.clone(),
        }]
    } else {
        let base = |section: &str| {
            root.get(section)
                .and_then(toml::Value::as_table)
                .cloned()
                .unwrap_or_default()
        };
        let mut cells = Vec::with_capacity(spec.variants.len());
        for (index, variant) in spec.variants.iter().enumerate() {
            let scope = Scope::variant(index, variant);
            let mut merged = SECTIONS.map(base);
            let overrides = [&variant.dataset, &variant.model, &variant.training];
            for ((section, table), over) in SECTIONS.iter().zip(&mut merged).zip(overrides) {
                if let Some(over) = over {
                    merge(table, over, section);
                }
            }
            let [dataset, model, training] = merged;
            cells.push(CellSpec {
                dataset: section(&src, scope, "dataset", dataset)?,
                model: section(&src, scope, "model", model)?,
                training: section(&src, scope, "training", training)?,
            });
        }
        cells
    };
    Ok((
        src,
        Parsed {
            spec,
            cells,
            pretrain,
        },
    ))
}

/// The `[pretrain]` stage as a cell: the base `[model]` (its architecture, channels and
/// initialisation; random weights; the stage's head when it gives one), its own training keys,
/// and its dataset (see `INHERITED_DATASET_KEYS`).
fn pretrain_cell(
    src: &Source<'_>,
    root: &toml::Table,
    spec: &ExperimentSpec,
    stage: &PretrainSpec,
) -> Result<CellSpec, ConfigError> {
    let mut dataset = toml::Table::new();
    if let Some(base) = root.get("dataset").and_then(toml::Value::as_table) {
        for key in INHERITED_DATASET_KEYS {
            if let Some(value) = base.get(key) {
                dataset.insert(key.to_string(), value.clone());
            }
        }
    }
    if let Some(own) = &stage.dataset {
        merge(&mut dataset, own, "pretrain.dataset");
    }
    let dataset: DatasetSpec =
        deserialize(toml::Value::Table(dataset)).map_err(|(path, message)| {
            let rel = KeyPath::default().key("dataset").join(&path);
            src.error(&Scope::pretrain(stage).place(&rel), message)
        })?;
    let model = ModelSpec {
        weights: WeightsSpec::default(),
        head: stage
            .head
            .clone()
            .unwrap_or_else(|| spec.model.head.clone()),
        ..spec.model.clone()
    };
    let training = TrainingSpec {
        epochs: stage.epochs,
        optimizer: stage.optimizer,
        learning_rate: stage.learning_rate,
        ..TrainingSpec::default()
    };
    Ok(CellSpec {
        dataset,
        model,
        training,
    })
}

/// Deserialize one merged section of a variant, reporting errors where the key is written.
fn section<T: DeserializeOwned>(
    src: &Source<'_>,
    scope: Scope<'_>,
    name: &str,
    table: toml::Table,
) -> Result<T, ConfigError> {
    deserialize(toml::Value::Table(table)).map_err(|(path, message)| {
        src.error(
            &scope.place(&KeyPath::default().key(name).join(&path)),
            message,
        )
    })
}

/// Deep merge: tables merge key by key (except `ATOMIC_TABLES`), any other value replaces.
fn merge(base: &mut toml::Table, over: &toml::Table, at: &str) {
    for (key, value) in over {
        let path = format!("{at}.{key}");
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o))
                if !ATOMIC_TABLES.contains(&path.as_str()) =>
            {
                merge(b, o, &path)
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Deserialize `value`, returning the failing key's path (relative to `value`) and the message.
fn deserialize<T: DeserializeOwned>(value: toml::Value) -> Result<T, (KeyPath, String)> {
    serde_path_to_error::deserialize(ValueDe(value)).map_err(|e| {
        let mut path = KeyPath::from_serde(e.path());
        let error = e.into_inner();
        if let Some(key) = &error.unknown_key {
            // Unknown keys found while reading the keys already carry the key; those rejected
            // after reading a whole table (optimizer, weights, steps) carry the table's path.
            if path.last_key() != Some(key.as_str()) {
                path = path.key(key);
            }
        }
        (path, error.message)
    })
}

fn syntax_error(file: &Path, text: &str, error: &toml_edit::TomlError) -> ConfigError {
    let position = error.span().map(|span| {
        let line = line_at(text, span.start);
        let line_start = text[..span.start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let column = text[line_start..span.start.min(text.len())].chars().count() + 1;
        (line, column)
    });
    let mut message = error.message().trim_end().to_string();
    if message == "duplicate key" {
        // toml_edit points at the repeated key but does not name it.
        if let Some(key) = error.span().and_then(|span| text.get(span)) {
            let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
            message = format!("duplicate key {key:?}");
        }
    }
    ConfigError::Invalid {
        file: file.to_path_buf(),
        line: position.map(|(line, _)| line),
        key: String::new(),
        message: match position {
            Some((_, column)) => format!("TOML syntax, column {column}: {message}"),
            None => format!("TOML syntax: {message}"),
        },
    }
}
