//! Using a trained cell: `runner evaluate` (its model on a labelled test set it never saw) and
//! `runner predict` (class probabilities for any images).
//!
//! Both rebuild the cell's model exactly as `runner export-model` does (frozen layers from the
//! base the cell recorded, checked by hash; trained parameters from the cell), and read images as
//! the cell's training did: the same decoding, resizing to the cell's image size, preprocessing
//! and `on_bad_image` rule.

pub mod cells;
pub mod metrics;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::base::fs::write_atomic;
use crate::dataset::batches::preprocess;
use crate::dataset::decode::load_image;
use crate::dataset::index::is_image_name;
use crate::dataset::{EpochPlan, Split};
use crate::export::rebuild;
use crate::model::{Mode, Network};
use crate::store::evaluation::{Evaluation, EVALUATION_DIR};
use crate::store::RunRecord;
use metrics::Logits;

/// The cell's model, final or best, and the classes it was trained on (folder order).
pub struct CellModel {
    pub network: Network,
    pub classes: Vec<String>,
    pub best: bool,
}

impl CellModel {
    /// Rebuild the model of the cell in `dir` (whose run.json is `record`).
    pub fn load(dir: &Path, record: &RunRecord, best: bool) -> anyhow::Result<CellModel> {
        let Some(classes) = record.train.as_ref().map(|s| s.classes.clone()) else {
            bail!(
                "{}: run.json records no training classes; the cell has not finished preparing its data",
                dir.display()
            );
        };
        let (network, _) = rebuild(dir, record, best, None)?;
        Ok(CellModel {
            network,
            classes,
            best,
        })
    }

    fn logits(&self, images: &[f32], batch: usize) -> anyhow::Result<Vec<Vec<f32>>> {
        let out = self.network.forward(images, batch, Mode::Eval)?;
        Ok(match out.dims().len() {
            1 => out.to_vec1::<f32>()?.into_iter().map(|z| vec![z]).collect(),
            _ => out.to_vec2::<f32>()?,
        })
    }
}

/// Evaluate the cell in `dir` on the class folders of `test_dir`, which must hold the classes the
/// cell was trained on.
pub fn evaluate(
    dir: &Path,
    record: &RunRecord,
    model: &CellModel,
    test_dir: &Path,
    name: &str,
) -> anyhow::Result<Evaluation> {
    let dataset = &record.config.dataset;
    let split = Split::open(test_dir, dataset)?;
    if split.class_names != model.classes {
        bail!(
            "{}: the test set's classes [{}] are not the classes {} was trained on [{}]; its \
             class folders must have the training classes' names",
            test_dir.display(),
            split.class_names.join(", "),
            dir.display(),
            model.classes.join(", ")
        );
    }
    if split.is_empty() {
        bail!("{}: the test set has no images", test_dir.display());
    }
    let (manifest, _) = crate::fingerprint::manifest_of_dir(
        test_dir,
        &mut crate::fingerprint::StatCache::in_memory(),
    )?;
    let plan = EpochPlan {
        order: (0..split.len()).collect(),
        batch_size: dataset.batch_size,
        preprocessing: dataset.preprocessing,
        augmentation: None,
    };
    let mut logits = Logits {
        rows: Vec::with_capacity(split.len()),
        labels: split.samples.iter().map(|s| s.label as usize).collect(),
    };
    let mut failure = None;
    let _ = split.for_each_batch(&plan, |batch| {
        match model.logits(&batch.images, batch.size) {
            Ok(rows) => {
                logits.rows.extend(rows);
                std::ops::ControlFlow::Continue(())
            }
            Err(e) => {
                failure = Some(e);
                std::ops::ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Evaluation {
        name: name.to_string(),
        test_dir: test_dir.to_path_buf(),
        test_hash: manifest.root,
        model: if model.best { "best" } else { "final" }.into(),
        run_key: record.run_key.clone(),
        skipped: split.skipped.clone(),
        evaluated_at: crate::base::clock::now(),
        metrics: metrics::compute(&logits, &model.classes),
    })
}

/// Write `evaluation` into the cell directory `dir`: `evaluation/<name>.json` and
/// `evaluation/<name>.csv`. Returns both paths.
pub fn write(dir: &Path, evaluation: &Evaluation) -> anyhow::Result<(PathBuf, PathBuf)> {
    let folder = dir.join(EVALUATION_DIR);
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let json = folder.join(format!("{}.json", evaluation.name));
    let csv = folder.join(format!("{}.csv", evaluation.name));
    write_atomic(&json, &serde_json::to_vec_pretty(evaluation)?)?;
    write_atomic(&csv, evaluation.csv().as_bytes())?;
    Ok((json, csv))
}

/// The name of a test set's evaluation files: the test folder's name (characters other than
/// letters, digits, '_' and '-' as '_'), with "-best" for the best epoch's model.
pub fn default_name(test_dir: &Path, best: bool) -> String {
    let base = std::fs::canonicalize(test_dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "test".into());
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if best {
        format!("{clean}-best")
    } else {
        clean
    }
}

/// A file left out, with the reason.
pub type Skipped = (PathBuf, String);

/// One image's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub path: PathBuf,
    /// Each class's probability, in the cell's class order.
    pub probabilities: Vec<f64>,
    pub class: usize,
}

/// The image files of `inputs`: files as given, folders read recursively (sorted by path).
pub fn image_files(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            collect(input, &mut found)?;
            found.sort();
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    Ok(files)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.file_name().is_some_and(is_image_name) {
            out.push(path);
        }
    }
    Ok(())
}

/// Predict every file of `files` with the cell's model, in batches of the cell's batch size. A
/// file that cannot be decoded is an error under `on_bad_image = "error"`; under `"skip"` it is
/// left out and returned with the reason.
pub fn predict(
    record: &RunRecord,
    model: &CellModel,
    files: &[PathBuf],
) -> anyhow::Result<(Vec<Prediction>, Vec<Skipped>)> {
    let dataset = &record.config.dataset;
    let [h, w] = dataset.image_size.map(|v| v as usize);
    let skip = matches!(dataset.on_bad_image, crate::config::OnBadImage::Skip);
    let mut predictions = Vec::with_capacity(files.len());
    let mut skipped = Vec::new();
    for chunk in files.chunks(dataset.batch_size.max(1)) {
        let mut images = Vec::with_capacity(chunk.len() * h * w * 3);
        let mut paths = Vec::with_capacity(chunk.len());
        for path in chunk {
            match load_image(path, h, w) {
                Ok(image) => {
                    let start = images.len();
                    images.extend_from_slice(&image.data);
                    preprocess(dataset.preprocessing, &mut images[start..]);
                    paths.push(path.clone());
                }
                Err(e) if skip => skipped.push((path.clone(), e.to_string())),
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(
                        "on_bad_image = \"error\" (the cell's setting); a cell trained with \"skip\" leaves such files out",
                    ))
                }
            }
        }
        if paths.is_empty() {
            continue;
        }
        let rows = model.logits(&images, paths.len())?;
        for (path, row) in paths.into_iter().zip(rows) {
            predictions.push(Prediction {
                path,
                probabilities: metrics::probabilities(&row),
                class: metrics::predicted(&row),
            });
        }
    }
    Ok((predictions, skipped))
}

/// The predictions as CSV: path, predicted class, its probability, then each class's probability.
pub fn predictions_csv(predictions: &[Prediction], classes: &[String]) -> String {
    let mut out = String::from("path,class,probability");
    for c in classes {
        out.push_str(&format!(",p_{c}"));
    }
    out.push('\n');
    for p in predictions {
        let path = p.path.display().to_string();
        let quoted = if path.contains([',', '"', '\n']) {
            format!("\"{}\"", path.replace('"', "\"\""))
        } else {
            path
        };
        out.push_str(&format!(
            "{quoted},{},{}",
            classes[p.class], p.probabilities[p.class]
        ));
        for v in &p.probabilities {
            out.push_str(&format!(",{v}"));
        }
        out.push('\n');
    }
    out
}
