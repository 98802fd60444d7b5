//! `runner predict`: class probabilities of any images from a trained cell's model.

use std::path::PathBuf;

use crate::base::fs::write_atomic;
use crate::evaluate::{self, CellModel};
use crate::store::ResultsLayout;

use super::flags::ResultsDir;
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
#[command(mut_arg("results", |a| a.help("The results directory (to find run keys)")))]
pub struct PredictArgs {
    /// A run directory (results/<code>/<experiment>/<variant>/seed-<n>) or a run key (prefix).
    pub run: String,
    /// Image files, or folders (read recursively).
    #[arg(value_name = "IMAGES", required = true)]
    pub inputs: Vec<PathBuf>,
    /// The CSV file to write: path, class, probability, then each class's probability.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    /// Use the epoch with the best validation accuracy instead of the last one.
    #[arg(long)]
    pub best: bool,
    #[command(flatten)]
    pub results: ResultsDir,
}

pub fn run(args: PredictArgs) -> anyhow::Result<Outcome> {
    let found = crate::reproduce::locate(&ResultsLayout::new(&args.results.results), &args.run)?;
    let files = evaluate::image_files(&args.inputs)?;
    if files.is_empty() {
        anyhow::bail!(
            "no image files (.bmp, .gif, .jpeg, .jpg, .png) in {}",
            args.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let model = CellModel::load(&found.dir, &found.record, args.best)?;
    let (predictions, skipped) = evaluate::predict(&found.record, &model, &files)?;
    for (path, why) in &skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    write_atomic(
        &args.output,
        evaluate::predictions_csv(&predictions, &model.classes).as_bytes(),
    )?;
    let mut counts = vec![0usize; model.classes.len()];
    predictions.iter().for_each(|p| counts[p.class] += 1);
    let per_class: Vec<String> = model
        .classes
        .iter()
        .zip(&counts)
        .map(|(c, n)| format!("{n} {c}"))
        .collect();
    println!(
        "wrote {}: {} images ({}){}",
        args.output.display(),
        predictions.len(),
        per_class.join(", "),
        if skipped.is_empty() {
            String::new()
        } else {
            format!("; {} skipped", skipped.len())
        }
    );
    Ok(Outcome::Success)
}
