//! `runner cache`: what the caches under the results directory hold, or delete them.

use crate::store::ResultsLayout;

use super::flags::ResultsDir;
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(flatten)]
    pub results: ResultsDir,
    /// Delete every cache (results/.cache); finished runs are not touched.
    #[arg(long)]
    pub clear: bool,
}

pub fn run(args: CacheArgs) -> anyhow::Result<Outcome> {
    let dir = ResultsLayout::new(args.results.results).cache_dir();
    print!("{}", crate::store::caches::usage_table(&dir));
    if args.clear {
        crate::store::caches::clear(&dir)?;
        println!("deleted {}", dir.display());
    }
    Ok(Outcome::Success)
}
