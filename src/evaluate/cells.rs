//! `[evaluation]`: every cell of a sweep evaluated on one test set when the sweep ends, as
//! `runner evaluate` would (the same files), skipping cells that have that evaluation already.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{DataSource, EvaluatedModel, EvaluationSettings, Experiment};
use crate::dataset::index::index_directory;
use crate::store::evaluation::{Evaluation, EVALUATION_DIR};
use crate::store::{read_record, Status};

use super::{default_name, evaluate, write, CellModel};

/// Check `[evaluation] test_dir` before anything trains: a folder of class folders, named as
/// the training classes where those are folders too. The error names the key and the path.
pub fn check_test_dir(experiment: &Experiment) -> anyhow::Result<()> {
    let Some(settings) = &experiment.evaluation else {
        return Ok(());
    };
    let at = || {
        format!(
            "{}: evaluation.test_dir = {}",
            experiment.file.display(),
            settings.test_dir.display()
        )
    };
    let test = index_directory(&settings.test_dir).with_context(at)?;
    for variant in &experiment.variants {
        if let DataSource::Directories { train, .. } = &variant.config.dataset.source {
            let Ok(training) = index_directory(train) else {
                continue; // the data stage reports it
            };
            if training.class_names != test.class_names {
                return Err(anyhow::anyhow!(
                    "the test set's classes [{}] are not the training classes [{}] of {} \
                     (variant \"{}\"); give a folder whose class folders have the training \
                     classes' names",
                    test.class_names.join(", "),
                    training.class_names.join(", "),
                    train.display(),
                    variant.name
                ))
                .with_context(at);
            }
        }
    }
    Ok(())
}

/// What happened to one cell.
pub enum CellEvaluation {
    Written(Box<Evaluation>),
    /// The cell has this evaluation already (same test set, model and run key).
    Stored,
    Failed(anyhow::Error),
}

/// Evaluate each finished (`done`) cell of `cells` on the test set of `settings`, unless it has
/// an evaluation of the same name for the same test files, model and run key.
pub fn evaluate_cells(
    settings: &EvaluationSettings,
    cells: &[PathBuf],
) -> anyhow::Result<Vec<(PathBuf, CellEvaluation)>> {
    let best = settings.model == EvaluatedModel::Best;
    let name = default_name(&settings.test_dir, best);
    let (manifest, _) = crate::fingerprint::manifest_of_dir(
        &settings.test_dir,
        &mut crate::fingerprint::StatCache::in_memory(),
    )?;
    let mut out = Vec::new();
    for dir in cells {
        let Some(record) = read_record(dir).filter(|r| r.status == Status::Done) else {
            continue;
        };
        let model = if best { "best" } else { "final" };
        let stored = stored(dir, &name).is_some_and(|e| {
            e.test_hash == manifest.root && e.model == model && e.run_key == record.run_key
        });
        let outcome = if stored {
            CellEvaluation::Stored
        } else {
            let done = CellModel::load(dir, &record, best)
                .and_then(|m| evaluate(dir, &record, &m, &settings.test_dir, &name))
                .and_then(|e| write(dir, &e).map(|_| e));
            match done {
                Ok(e) => CellEvaluation::Written(Box::new(e)),
                Err(e) => CellEvaluation::Failed(e),
            }
        };
        out.push((dir.clone(), outcome));
    }
    Ok(out)
}

fn stored(dir: &Path, name: &str) -> Option<Evaluation> {
    let text = std::fs::read(dir.join(EVALUATION_DIR).join(format!("{name}.json"))).ok()?;
    serde_json::from_slice(&text).ok()
}

/// `[evaluation]` at the end of a sweep (local, or the report job of a Slurm submission): each
/// done cell on the test set, cells evaluated on it already skipped, one line per cell and a
/// total. A cell whose evaluation fails is a warning: its training stands.
pub fn evaluate_and_tell(settings: &EvaluationSettings, cells: &[PathBuf]) -> anyhow::Result<()> {
    let (mut written, mut stored) = (0, 0);
    for (dir, outcome) in evaluate_cells(settings, cells)? {
        match outcome {
            CellEvaluation::Written(e) => {
                written += 1;
                let m = &e.metrics;
                println!(
                    "evaluated {} ({} model) on {}: accuracy {:.4}, loss {:.4}",
                    dir.display(),
                    e.model,
                    e.name,
                    m.accuracy,
                    m.loss
                );
            }
            CellEvaluation::Stored => stored += 1,
            CellEvaluation::Failed(e) => {
                eprintln!("warning: {}: not evaluated: {e:#}", dir.display())
            }
        }
    }
    println!(
        "evaluation on {}: {written} cell(s) evaluated, {stored} had it already",
        settings.test_dir.display()
    );
    Ok(())
}
