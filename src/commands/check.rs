//! `runner check`: validate an experiment file and show its matrix, then open every input a
//! sweep would open before training (data sets, weights files), through the sweep's own
//! preparation, so that it fails where `runner sweep` would, with the same message.

use crate::config::{DataSource, Experiment, Weights};
use crate::plan::{CellPlan, Plan};
use crate::store::ResultsLayout;
use crate::sweep::stage::{StageNotTrained, Training};
use crate::sweep::{self, Progress, SweepOptions};

use super::flags::ExperimentFile;
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub experiment: ExperimentFile,
}

pub fn run(args: CheckArgs) -> anyhow::Result<Outcome> {
    let experiment = args.experiment.load()?;
    print!("{}", describe(&experiment)?);
    let checked = check_inputs(&experiment)?;
    println!("{checked}");
    if let Some(settings) = &experiment.evaluation {
        crate::evaluate::cells::check_test_dir(&experiment)?;
        println!(
            "evaluation: every cell on {} ({} model) when a sweep ends",
            settings.test_dir.display(),
            match settings.model {
                crate::config::EvaluatedModel::Final => "final",
                crate::config::EvaluatedModel::Best => "best",
            }
        );
    }
    Ok(Outcome::Success)
}

/// Open every data set and weights file the matrix names, as `runner sweep` does before it
/// trains (listing and classes, decoding every image, hashing, the weights' SHA-256 and
/// contents), without training and without writing under the results directory: generated data
/// sets are made in a scratch directory, and a `[pretrain]` stage's data is opened but the stage
/// is not trained. Returns a line saying what was checked.
pub fn check_inputs(experiment: &Experiment) -> anyhow::Result<String> {
    let plan = Plan::new(experiment, None)?;
    // Cells that read something from the user: a data set directory or a weights file or name
    // (their own or their stage's). One cell per data set and weights pair is enough.
    let mut seen = std::collections::BTreeSet::new();
    let cells: Vec<&CellPlan> = plan
        .cells
        .iter()
        .filter(|c| reads_user_input(&plan, c))
        .filter(|c| seen.insert((c.variant.data_key.clone(), c.variant.weights_key.clone())))
        .collect();
    if cells.is_empty() {
        return Ok("inputs: generated data sets and no weights file: nothing to open".into());
    }
    let scratch = super::reproduce::ScratchDir::create(
        std::env::temp_dir().join(format!("runner-check-{}", std::process::id())),
    )?;
    let options = SweepOptions {
        results: ResultsLayout::new(scratch.path()),
        variants: vec![],
        seeds: vec![],
        epochs: None,
        progress: Progress::Lines,
        force: false,
        retry_failed: false,
        device: None,
        image_cache: false,
        feature_cache: false,
        cache_memory: 0,
        jobs: 1,
        pinned_code: None,
    };
    for cell in &cells {
        // One cell at a time: a stage that is not trained stops `prepare` after it has opened
        // the cell's data and the stage's own.
        match sweep::prepare(
            &plan,
            std::slice::from_ref(*cell),
            &options,
            Training::Never,
        ) {
            Ok(_) => {}
            Err(e) if e.is::<StageNotTrained>() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(format!(
        "inputs: opened as a sweep would ({} data set and weights combination{}): no error",
        cells.len(),
        if cells.len() == 1 { "" } else { "s" }
    ))
}

/// Whether a cell reads a data set directory or a weights file (or its stage does).
fn reads_user_input(plan: &Plan, cell: &CellPlan) -> bool {
    let cfg = &cell.variant.config;
    let stage_dirs = plan.stage_of(&cell.variant).is_some_and(|s| {
        matches!(
            s.stage.config.dataset.source,
            DataSource::Directories { .. }
        )
    });
    matches!(cfg.dataset.source, DataSource::Directories { .. })
        || matches!(cfg.model.weights, Weights::File { .. } | Weights::Named(_))
        || stage_dirs
}

/// A short description of the matrix: variants, trainable layers, parameter counts, seeds.
pub fn describe(experiment: &Experiment) -> anyhow::Result<String> {
    let mut out = format!(
        "{}: {} variants x {} seeds = {} cells\n",
        experiment.name,
        experiment.variants.len(),
        experiment.seeds.len(),
        experiment.variants.len() * experiment.seeds.len()
    );
    let plan = Plan::new(experiment, None)?;
    for v in &plan.variants {
        let arch = &v.architecture;
        let trainable: usize = arch
            .layers
            .iter()
            .zip(&v.trainable)
            .filter(|(_, &t)| t)
            .map(|(l, _)| l.params())
            .sum();
        let layers: Vec<&str> = arch
            .layers
            .iter()
            .zip(&v.trainable)
            .filter(|(l, &t)| t && l.has_weights())
            .map(|(l, _)| l.name.as_str())
            .collect();
        out.push_str(&format!(
            "  {:<24} trainable {:>10} / {:>10} params; trains {}; augmentation steps: {}\n",
            v.name,
            trainable,
            arch.total_params(),
            if layers.is_empty() {
                "nothing".to_string()
            } else {
                layers.join(", ")
            },
            v.config.dataset.augmentation.len()
        ));
    }
    let seeds: Vec<String> = experiment.seeds.iter().map(u64::to_string).collect();
    out.push_str(&format!("  seeds: {}\n", seeds.join(", ")));
    if let Some(stage) = &experiment.pretrain {
        let users: Vec<&str> = experiment
            .variants
            .iter()
            .filter(|v| experiment.stage_of(&v.config).is_some())
            .map(|v| v.name.as_str())
            .collect();
        let [h, w] = stage.config.dataset.image_size;
        let data = match &stage.config.dataset.source {
            DataSource::Directories { train, .. } => {
                format!("the class folders of {}", train.display())
            }
            DataSource::Synthetic(_) => "a generated source task".to_string(),
        };
        out.push_str(&format!(
            "  [{}] stage: trains every layer from scratch on {data} at {h}x{w}, {} epochs, \
             seed {}, before any cell; its conv base is the weights of {}\n",
            stage.name,
            stage.config.training.epochs,
            stage.seed,
            if users.is_empty() {
                "no variant (it will not run)".to_string()
            } else {
                users.join(", ")
            }
        ));
    }
    Ok(out)
}
