//! `runner evaluate`: a finished cell's model on a labelled test set it never saw.

use std::path::PathBuf;

use crate::evaluate::{self, CellModel};
use crate::store::evaluation::Evaluation;
use crate::store::ResultsLayout;

use super::flags::ResultsDir;
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
#[command(mut_arg("results", |a| a.help("The results directory (to find run keys)")))]
pub struct EvaluateArgs {
    /// A run directory (results/<code>/<experiment>/<variant>/seed-<n>) or a run key (prefix).
    pub run: String,
    /// The test set: a folder with one subfolder of images per class, named as the training
    /// classes.
    #[arg(value_name = "TEST_DIR")]
    pub test_dir: PathBuf,
    /// Evaluate the epoch with the best validation accuracy instead of the last one.
    #[arg(long)]
    pub best: bool,
    /// The name of the written files (<run>/evaluation/<NAME>.json and .csv). Default: the test
    /// folder's name, with "-best" for --best.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub results: ResultsDir,
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<Outcome> {
    let found = crate::reproduce::locate(&ResultsLayout::new(&args.results.results), &args.run)?;
    let name = match args.name {
        Some(name) => name,
        None => evaluate::default_name(&args.test_dir, args.best),
    };
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        || name.starts_with('.')
    {
        anyhow::bail!("--name {name:?}: use only letters, digits, '_', '-' and '.'");
    }
    let model = CellModel::load(&found.dir, &found.record, args.best)?;
    let evaluation = evaluate::evaluate(&found.dir, &found.record, &model, &args.test_dir, &name)?;
    let (json, csv) = evaluate::write(&found.dir, &evaluation)?;
    print!("{}", table(&evaluation));
    println!("wrote {} and {}", json.display(), csv.display());
    Ok(Outcome::Success)
}

/// What the terminal shows: the headline numbers, the per-class scores and the confusion matrix.
fn table(e: &Evaluation) -> String {
    let m = &e.metrics;
    let num = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    let mut out = format!(
        "{} ({} model) on {}: {} images{}\n  accuracy {:.4}  loss {:.4}  ROC AUC {}\n",
        e.run_key
            .as_deref()
            .map_or("cell", |k| &k[..k.len().min(12)]),
        e.model,
        e.test_dir.display(),
        m.images,
        if e.skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} skipped, listed in the JSON)", e.skipped.len())
        },
        m.accuracy,
        m.loss,
        num(m.roc_auc)
    );
    let width = m
        .per_class
        .iter()
        .map(|c| c.class.len())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "  {:<width$}  precision  recall     f1  support  predicted as: {}\n",
        "class",
        m.per_class
            .iter()
            .map(|c| c.class.as_str())
            .collect::<Vec<_>>()
            .join(" / ")
    ));
    for (c, row) in m.per_class.iter().zip(&m.confusion) {
        let counts: Vec<String> = row.iter().map(usize::to_string).collect();
        out.push_str(&format!(
            "  {:<width$}  {:>9}  {:>6}  {:>6}  {:>7}  {}\n",
            c.class,
            num(c.precision),
            num(c.recall),
            num(c.f1),
            c.support,
            counts.join(" / ")
        ));
    }
    out
}
