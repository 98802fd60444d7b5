//! `runner hash DIR`: the root hash of a class-folder directory, as a run would record it.

use std::path::PathBuf;

use crate::fingerprint::{manifest_of_dir, StatCache};

use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
pub struct HashArgs {
    /// A directory with one sub-folder per class (a train or validation split).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the whole manifest (JSON: classes, and each file's path, size, SHA-256 and label)
    /// instead of the root hash alone.
    #[arg(long)]
    pub manifest: bool,
    /// Keep file hashes in this directory and reuse them while a file's size and times are
    /// unchanged (created when missing).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// Print the root hash (or the manifest) on stdout and a one-line summary on stderr.
pub fn run(args: HashArgs) -> anyhow::Result<Outcome> {
    let mut cache = match &args.cache {
        Some(dir) => StatCache::open(dir),
        None => StatCache::in_memory(),
    };
    let (manifest, stats) = manifest_of_dir(&args.dir, &mut cache)?;
    cache.save()?;
    if args.manifest {
        print!("{}", String::from_utf8_lossy(&manifest.to_json()));
    } else {
        println!("{}", manifest.root);
    }
    eprintln!(
        "{}: {} files in {} classes; {} read ({} bytes), {} from the cache",
        args.dir.display(),
        stats.files,
        manifest.classes.len(),
        stats.hashed,
        stats.bytes_hashed,
        stats.files - stats.hashed
    );
    Ok(Outcome::Success)
}
