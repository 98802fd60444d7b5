//! `runner weights ...`: list, fetch and convert pretrained weights.

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::Preprocessing;
use crate::model::weights::known::{self, Env};
use crate::model::weights::{self, fetch, DownloadProgress, KNOWN};

use super::outcome::Outcome;

#[derive(Debug, Subcommand)]
pub enum WeightsCommand {
    /// List the known pretrained weights, where each is looked for, and whether it is there.
    List,
    /// Download known weights into the cache and check the published hash.
    ///
    /// The cache is $RUNNER_HOME/weights, else $XDG_CACHE_HOME/runner/weights, else
    /// ~/.cache/runner/weights. A file whose hash differs from the published one is not kept.
    Fetch {
        /// A known name, e.g. keras:vgg16-imagenet or torchvision:vgg16-imagenet.
        name: String,
        /// Download from this URL instead of the official one (a mirror); the hash is still checked.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Put the file in this directory instead of the cache.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Convert a VGG16 conv base (Keras .h5, PyTorch .pth, safetensors) to a safetensors file
    /// with the runner's tensor names, for `model.weights = { file = ..., sha256 = ... }`.
    Import {
        /// The weights file to convert.
        input: PathBuf,
        /// The safetensors file to write.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
    },
}

pub fn run(command: WeightsCommand) -> anyhow::Result<Outcome> {
    let env = Env::from_process();
    match command {
        WeightsCommand::List => {
            for k in KNOWN {
                let status = match k.locate(&env) {
                    Ok(path) => format!("found: {}", path.display()),
                    Err(_) => format!(
                        "not downloaded (fetch puts it in {})",
                        k.cache_path(&env).display()
                    ),
                };
                println!(
                    "{}\n  {} ({}), expects preprocessing = \"{}\"\n  {}\n  {}",
                    k.name,
                    k.file,
                    k.expected,
                    preprocessing_name(k.preprocessing),
                    k.url,
                    status
                );
            }
            Ok(Outcome::Success)
        }
        WeightsCommand::Fetch {
            name,
            url,
            dir,
            quiet,
        } => {
            let k = known::lookup(&name).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown weights \"{name}\" (known: {})",
                    KNOWN.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                )
            })?;
            let dir = dir.unwrap_or_else(|| env.cache_dir());
            let progress = if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                DownloadProgress::Quiet
            } else {
                DownloadProgress::Bar
            };
            let (path, hashes) = fetch(k, &dir, url.as_deref(), progress)?;
            println!(
                "{name}: {} ({} verified; sha256 {})\nuse it with model.weights = \"{name}\" and dataset.preprocessing = \"{}\"",
                path.display(),
                k.expected,
                hashes.sha256,
                preprocessing_name(k.preprocessing)
            );
            Ok(Outcome::Success)
        }
        WeightsCommand::Import { input, output } => {
            let imported = weights::import(&input, &output)?;
            println!(
                "{} ({}) -> {}: {} tensors, channels {:?}\nmodel.weights = {{ file = \"{}\", sha256 = \"{}\" }}",
                input.display(),
                imported.format.describe(),
                output.display(),
                imported.tensors,
                imported.channels,
                output.display(),
                imported.sha256
            );
            Ok(Outcome::Success)
        }
    }
}

fn preprocessing_name(p: Preprocessing) -> &'static str {
    match p {
        Preprocessing::Rescale => "rescale",
        Preprocessing::Caffe => "caffe",
        Preprocessing::Torch => "torch",
    }
}
