//! `runner check`: validate an experiment file and show its matrix, without training.

use crate::config::{DataSource, Experiment};
use crate::plan::Plan;

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
    Ok(Outcome::Success)
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
