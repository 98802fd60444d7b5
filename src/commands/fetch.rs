//! `runner fetch EXPERIMENT.toml`: download what an experiment names and lacks (known data sets
//! and known weights), verified; `runner fetch --list`: the known ones and where they go.

use std::path::PathBuf;

use crate::base::download::Progress;
use crate::config::{Experiment, Weights};
use crate::dataset::{fetch as data_fetch, known as data_known};
use crate::fingerprint::{manifest_of_dir, StatCache};
use crate::model::weights::known::{self as weights_known, Env};

use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
#[command(arg_required_else_help = true)]
pub struct FetchArgs {
    /// The experiment file whose known data sets (`dataset.known`) and known weights
    /// (`model.weights`) are downloaded when missing.
    #[arg(value_name = "EXPERIMENT", required_unless_present = "list")]
    pub experiment: Option<PathBuf>,
    /// List the known data sets and weights: sizes, where they go, whether they are there.
    #[arg(long, conflicts_with = "experiment")]
    pub list: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: FetchArgs) -> anyhow::Result<Outcome> {
    if args.list {
        return list();
    }
    let Some(path) = &args.experiment else {
        anyhow::bail!("give an experiment file, or --list");
    };
    let experiment = crate::plan::load(path)?;
    let progress = Progress::for_terminal(args.quiet);
    let root = data_known::data_root();
    for name in known_datasets(&experiment) {
        let known = data_known::lookup(&name)?;
        let fetched = data_fetch::fetch(&known, &root, progress, &mut |line| eprintln!("{line}"))?;
        let r = &fetched.record;
        if fetched.already {
            println!("{name}: present in {}", fetched.dir.display());
        } else {
            println!(
                "{name}: {} ({} training and {} validation files; archive SHA-256 {})",
                fetched.dir.display(),
                r.train_files,
                r.validation_files,
                r.sha256
            );
            for (why, files) in [
                ("no JFIF marker", &r.dropped_not_jfif),
                ("cannot be decoded", &r.dropped_undecodable),
            ] {
                if !files.is_empty() {
                    println!("  left out, {why} ({}): {}", files.len(), files.join(", "));
                }
            }
        }
        // The root hashes a run records for these directories (`runner hash`), for comparison.
        let mut cache = StatCache::in_memory();
        for split in ["train", "validation"] {
            let (manifest, _) = manifest_of_dir(&fetched.dir.join(split), &mut cache)?;
            println!("  {split} root hash {}", manifest.root);
        }
    }
    let env = Env::from_process();
    for name in known_weights(&experiment) {
        let Some(k) = weights_known::lookup(&name) else {
            continue;
        };
        match k.locate(&env) {
            Ok(path) => println!("{name}: present in {}", path.display()),
            Err(_) => {
                let (path, hashes) =
                    crate::model::weights::fetch(k, &env.cache_dir(), None, progress)?;
                println!("{name}: {} (sha256 {})", path.display(), hashes.sha256);
            }
        }
    }
    Ok(Outcome::Success)
}

/// The `dataset.known` names of every variant and the pretraining stage, once each, in order.
fn known_datasets(experiment: &Experiment) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for cfg in configs(experiment) {
        if let Some(name) = &cfg.dataset.known {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    out
}

fn known_weights(experiment: &Experiment) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for cfg in configs(experiment) {
        if let Weights::Named(name) = &cfg.model.weights {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    out
}

fn configs(experiment: &Experiment) -> impl Iterator<Item = &crate::config::CellConfig> {
    experiment
        .variants
        .iter()
        .map(|v| &v.config)
        .chain(experiment.pretrain.iter().map(|s| &s.config))
}

fn list() -> anyhow::Result<Outcome> {
    let root = data_known::data_root();
    println!("data sets (dataset.known), in {}:", root.display());
    for k in data_known::catalogue()? {
        let status = if k.is_present(&root) {
            "present"
        } else {
            "not fetched"
        };
        let sha = match &k.sha256 {
            data_known::Sha256::Published(s) => format!("sha256 {s}"),
            data_known::Sha256::RecordedOnFirstDownload => {
                "sha256 recorded on first download (none published)".to_string()
            }
        };
        println!(
            "  {}: {} ({} bytes, {sha})\n    {}\n    {status}: {}",
            k.name,
            k.archive,
            k.size,
            k.url,
            k.dir(&root).display()
        );
    }
    let env = Env::from_process();
    println!("weights (model.weights), in {}:", env.cache_dir().display());
    for k in weights_known::KNOWN {
        let status = match k.locate(&env) {
            Ok(path) => format!("present: {}", path.display()),
            Err(_) => format!("not fetched: {}", k.cache_path(&env).display()),
        };
        println!(
            "  {}: {} ({})\n    {}\n    {status}",
            k.name, k.file, k.expected, k.url
        );
    }
    Ok(Outcome::Success)
}
