//! The configuration hash: one SHA-256 over a cell's fully resolved configuration, the
//! configuration component of a run key.
//!
//! Comments, key order, and whether a default is written out or left implicit never change it,
//! because it is computed from the resolved `CellConfig` (defaults filled in), not from the text.
//! Any value that changes training does change it. Moving the project (experiment file and data
//! together) does not, because paths are made relative to the experiment file's directory first.
//!
//! The canonical form, version 1 (change `SCHEMA` whenever it changes, so old keys stop matching):
//! - the text `runner-config-v1\n`, followed by
//! - the `CellConfig` as JSON (its serde representation) without any whitespace, object keys
//!   sorted by their UTF-8 bytes, arrays in order;
//! - integers as decimal integers; floats in Rust's shortest round-trip form (`serde_json`, ryu),
//!   `f32` values widened exactly to `f64` first, `-0.0` written as `0.0`; strings as JSON
//!   strings (UTF-8, only `"`, `\` and control characters escaped);
//! - every path (the data directories, a weights file) relative to the experiment file's
//!   directory with '/' separators, when it lies under that directory as written (e.g.
//!   `../data/train` stays `../data/train`); a path outside it (an absolute path in the file)
//!   stays absolute, because it does not move with the project.
//!
//! The hash is the lowercase hex SHA-256 of those bytes. The seed is not part of a cell
//! configuration; it is its own run-key component.

use std::path::{Component, Path};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{CellConfig, DataSource, Weights};
use crate::base::hash::hex;

/// Prefix of the canonical text: the version of the serialization.
const SCHEMA: &str = "runner-config-v1\n";

/// The hex SHA-256 of `cfg`'s canonical form, paths taken relative to `experiment_dir`.
pub fn config_hash(cfg: &CellConfig, experiment_dir: &Path) -> String {
    hex(&Sha256::digest(
        canonical_text(cfg, experiment_dir).as_bytes(),
    ))
}

/// The exact text `config_hash` hashes (see the module docs), for inspection and debugging.
pub fn canonical_text(cfg: &CellConfig, experiment_dir: &Path) -> String {
    let mut cfg = cfg.clone();
    match (&mut cfg.dataset.source, &cfg.dataset.known) {
        // A fetched data set lies wherever the cache is on this machine: its name stands for it.
        (DataSource::Directories { train, validation }, Some(name)) => {
            *train = format!("known:{name}/train").into();
            *validation = format!("known:{name}/validation").into();
        }
        (DataSource::Directories { train, validation }, None) => {
            *train = relative_to(train, experiment_dir).into();
            *validation = relative_to(validation, experiment_dir).into();
        }
        (DataSource::Synthetic(_), _) => {}
    }
    if let Weights::File { path, .. } = &mut cfg.model.weights {
        *path = relative_to(path, experiment_dir).into();
    }
    // A `CellConfig` is plain data (strings, numbers, enums, no maps with non-string keys), so
    // converting it to a JSON value cannot fail; the fallback keeps this function total anyway.
    let value = serde_json::to_value(&cfg).unwrap_or_else(|e| Value::String(e.to_string()));
    let mut out = String::from(SCHEMA);
    // Serializing a `Value` to a string cannot fail (its keys are strings).
    out.push_str(&serde_json::to_string(&canonical(value)).unwrap_or_default());
    out
}

/// `value` with every object's keys sorted and `-0.0` replaced by `0.0`. (`serde_json` here keeps
/// insertion order, `preserve_order`, so a map rebuilt in sorted order serializes sorted.)
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        Value::Number(n) if n.as_f64() == Some(0.0) && n.is_f64() => Value::from(0.0),
        other => other,
    }
}

/// `path` relative to `base` with '/' separators when it starts with `base` (component-wise),
/// otherwise `path` itself with '/' separators. `.` components are dropped; `..` are kept as
/// written (resolving them would need the file system and would follow symbolic links).
fn relative_to(path: &Path, base: &Path) -> String {
    let rest = path.strip_prefix(base).unwrap_or(path);
    let mut parts: Vec<String> = Vec::new();
    let mut absolute = false;
    for component in rest.components() {
        match component {
            Component::CurDir => {}
            Component::RootDir => absolute = true,
            Component::Prefix(p) => parts.push(p.as_os_str().to_string_lossy().into_owned()),
            Component::ParentDir => parts.push("..".to_string()),
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::parse;

    /// A complete experiment with one variant; `{}` placeholders are filled by the tests.
    const BASE: &str = r#"
name = "h"
seeds = [0, 1]

[dataset]
train_dir = "../data/train"
validation_dir = "../data/validation"
image_size = [64, 48]
batch_size = 16

[model]
channels = [4, 8, 8, 8, 8]
weights = "none"
head = { units = [16] }

[training]
epochs = 3
learning_rate = 1e-3

[[variants]]
name = "v"
training.freeze = ["block1*", "block2*"]
dataset.augmentation = [
  { type = "flip", mode = "horizontal" },
  { type = "rotation", factor = 0.1 },
]
"#;

    fn hash_of(text: &str, file: &str) -> String {
        let experiment = parse(text, Path::new(file)).unwrap_or_else(|e| panic!("{e}\n{text}"));
        config_hash(&experiment.variants[0].config, &experiment.base_dir)
    }

    fn base_hash() -> String {
        hash_of(BASE, "project/experiments/h.toml")
    }

    #[test]
    fn comments_key_order_and_spelled_out_defaults_do_not_change_the_hash() {
        let reordered = r#"
# The same experiment, written differently.
seeds = [5]   # seeds are not part of a cell's configuration
name = "h"

[training]
learning_rate = 0.001       # 1e-3 spelled differently
epochs = 3
optimizer = { name = "adam", beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-7 }

[model]
head = { activation = "relu", units = [16] }
weights = "none"
architecture = "vgg16"
conv_init = "glorot_uniform"
channels = [4, 8, 8, 8, 8]

[dataset]
validation_dir = "../data/./validation"
train_dir = "../data/train"
batch_size = 16
shuffle = "keras"
preprocessing = "rescale"
on_bad_image = "error"
image_size = [64, 48]

[[variants]]
dataset.augmentation = [
  { mode = "horizontal", type = "flip" },
  { type = "rotation", factor = 0.1, fill_mode = "reflect", fill_value = 0.0, interpolation = "bilinear" },
]
training.freeze = ["block1*", "block2*"]
name = "v"
"#;
        assert_eq!(
            hash_of(reordered, "project/experiments/h.toml"),
            base_hash()
        );
    }

    #[test]
    fn moving_the_project_does_not_change_the_hash() {
        for file in [
            "elsewhere/deeper/experiments/h.toml",
            "/abs/project/experiments/h.toml",
            "h.toml",
            "./h.toml",
        ] {
            assert_eq!(hash_of(BASE, file), base_hash(), "{file}");
        }
    }

    #[test]
    fn paths_are_relative_to_the_experiment_directory_in_the_canonical_text() {
        let experiment = parse(BASE, Path::new("/abs/project/experiments/h.toml")).unwrap();
        let text = canonical_text(&experiment.variants[0].config, &experiment.base_dir);
        assert!(text.starts_with("runner-config-v1\n{"), "{text}");
        assert!(
            text.contains(r#""train":"../data/train","validation":"../data/validation""#),
            "{text}"
        );
        // Absolute paths outside the experiment directory stay as written.
        let absolute = BASE.replace("../data/train", "/srv/data/train");
        let experiment = parse(&absolute, Path::new("/abs/project/experiments/h.toml")).unwrap();
        let text = canonical_text(&experiment.variants[0].config, &experiment.base_dir);
        assert!(text.contains(r#""train":"/srv/data/train""#), "{text}");
    }

    #[test]
    fn keys_are_sorted_and_floats_are_short() {
        let experiment = parse(BASE, Path::new("h.toml")).unwrap();
        let text = canonical_text(&experiment.variants[0].config, &experiment.base_dir);
        let json = text.strip_prefix(SCHEMA).unwrap();
        assert!(json.starts_with(r#"{"dataset":{"augmentation":"#), "{json}");
        assert!(json.contains(r#""model":{"architecture":"vgg16","channels":[4,8,8,8,8]"#));
        assert!(
            json.contains(r#"{"factor":0.10000000149011612,"fill_mode":"reflect""#),
            "an f32 factor is widened exactly: {json}"
        );
        assert!(
            json.contains(r#""optimizer":{"beta_1":0.9,"beta_2":0.999,"epsilon":1e-7,"learning_rate":0.001,"name":"adam"}"#),
            "{json}"
        );
        assert!(!json.contains(' '), "no whitespace: {json}");
    }

    #[test]
    fn negative_zero_is_zero() {
        let a = BASE.replace("factor = 0.1 }", "factor = 0.1, fill_value = 0.0 }");
        let b = BASE.replace("factor = 0.1 }", "factor = 0.1, fill_value = -0.0 }");
        assert_eq!(hash_of(&a, "h.toml"), hash_of(&b, "h.toml"));
    }

    /// Every single-value change must change the hash.
    #[test]
    fn changing_any_value_changes_the_hash() {
        let changes: &[(&str, &str, &str)] = &[
            ("epochs", "epochs = 3", "epochs = 4"),
            ("learning rate", "learning_rate = 1e-3", "learning_rate = 2e-3"),
            (
                "learning rate, last bit",
                "learning_rate = 1e-3",
                "learning_rate = 0.0010000000000000002",
            ),
            ("freeze glob", "\"block2*\"]", "\"block3*\"]"),
            (
                "freeze -> train",
                "training.freeze = [",
                "training.train = [",
            ),
            ("rotation factor", "factor = 0.1", "factor = 0.2"),
            (
                "augmentation step order",
                "{ type = \"flip\", mode = \"horizontal\" },\n  { type = \"rotation\", factor = 0.1 },",
                "{ type = \"rotation\", factor = 0.1 },\n  { type = \"flip\", mode = \"horizontal\" },",
            ),
            ("flip mode", "mode = \"horizontal\"", "mode = \"vertical\""),
            ("image height", "image_size = [64, 48]", "image_size = [65, 48]"),
            (
                "image size transposed",
                "image_size = [64, 48]",
                "image_size = [48, 64]",
            ),
            ("batch size", "batch_size = 16", "batch_size = 8"),
            ("train path", "../data/train", "../data/train2"),
            ("validation path", "../data/validation", "../other/validation"),
            ("channels", "[4, 8, 8, 8, 8]", "[4, 8, 8, 8, 16]"),
            ("head units", "units = [16]", "units = [16, 8]"),
            (
                "optimizer",
                "learning_rate = 1e-3",
                "learning_rate = 1e-3\noptimizer = \"rmsprop\"",
            ),
            (
                "adam epsilon",
                "learning_rate = 1e-3",
                "learning_rate = 1e-3\noptimizer = { name = \"adam\", epsilon = 1e-8 }",
            ),
            (
                "preprocessing",
                "batch_size = 16",
                "batch_size = 16\npreprocessing = \"caffe\"",
            ),
            ("shuffle", "batch_size = 16", "batch_size = 16\nshuffle = \"full\""),
            (
                "on_bad_image",
                "batch_size = 16",
                "batch_size = 16\non_bad_image = \"skip\"",
            ),
            (
                "conv init",
                "weights = \"none\"",
                "weights = \"none\"\nconv_init = \"he_uniform\"",
            ),
            (
                "weights file",
                "weights = \"none\"",
                "weights = { file = \"w.safetensors\" }",
            ),
        ];
        let base = base_hash();
        let mut seen = std::collections::HashMap::new();
        seen.insert(base.clone(), "base");
        for (what, from, to) in changes {
            assert!(BASE.contains(from), "{what}: {from:?} not in the base text");
            let text = BASE.replacen(from, to, 1);
            let hash = hash_of(&text, "project/experiments/h.toml");
            if let Some(other) = seen.insert(hash, what) {
                panic!("{what}: same hash as {other}");
            }
        }
    }

    #[test]
    fn weights_file_path_and_checksum_are_part_of_the_hash() {
        let with = |w: &str| BASE.replace("weights = \"none\"", w);
        let a = hash_of(&with("weights = { file = \"w.safetensors\" }"), "e/h.toml");
        let moved = hash_of(
            &with("weights = { file = \"w.safetensors\" }"),
            "f/g/h.toml",
        );
        let other = hash_of(&with("weights = { file = \"v.safetensors\" }"), "e/h.toml");
        let pinned = hash_of(
            &with(&format!(
                "weights = {{ file = \"w.safetensors\", sha256 = \"{}\" }}",
                "ab".repeat(32)
            )),
            "e/h.toml",
        );
        assert_eq!(a, moved);
        assert_ne!(a, other);
        assert_ne!(a, pinned);
    }

    /// A known data set keys by its name: the same on machines whose caches lie elsewhere.
    #[test]
    fn a_known_data_set_is_hashed_by_name_not_by_cache_location() {
        let exp = parse(BASE, Path::new("/p/exp/h.toml")).unwrap();
        let mut cfg = exp.variants[0].config.clone();
        let at = |root: &str| DataSource::Directories {
            train: Path::new(root).join("cats-and-dogs-filtered/train"),
            validation: Path::new(root).join("cats-and-dogs-filtered/validation"),
        };
        cfg.dataset.known = Some("cats-and-dogs-filtered".into());
        cfg.dataset.source = at("/home/a/.cache/runner/datasets");
        let a = config_hash(&cfg, Path::new("/p/exp"));
        cfg.dataset.source = at("/scratch/b/datasets");
        assert_eq!(config_hash(&cfg, Path::new("/p/exp")), a);
        assert!(canonical_text(&cfg, Path::new("/p/exp"))
            .contains("\"train\":\"known:cats-and-dogs-filtered/train\""));
        cfg.dataset.known = None;
        assert_ne!(config_hash(&cfg, Path::new("/p/exp")), a);
    }

    #[test]
    fn relative_to_keeps_parent_components_and_outside_paths() {
        let cases = [
            ("exp/../data/x", "exp", "../data/x"),
            ("./data/x", ".", "data/x"),
            ("exp", "exp", "."),
            ("/srv/data", "exp", "/srv/data"),
            ("/p/exp/./a//b", "/p/exp", "a/b"),
        ];
        for (path, base, want) in cases {
            assert_eq!(
                relative_to(Path::new(path), Path::new(base)),
                want,
                "{path}"
            );
        }
    }
}
