//! `runner bench-sweep`: end-to-end sweep benchmarks with and without the caches.

use std::path::PathBuf;

use crate::bench::sweep::{run_sweep_benchmarks, table, write_csv, SweepBenchOptions};

use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
pub struct BenchSweepArgs {
    /// Scratch directory for the generated data and the timed sweeps.
    #[arg(long, value_name = "DIR", default_value = "results/.bench")]
    pub work_dir: PathBuf,
    /// The CSV file to write.
    #[arg(long, value_name = "FILE", default_value = "bench-sweep.csv")]
    pub csv: PathBuf,
    /// Conv-base channels of the lecture-shaped sweep, comma-separated (VGG16: 64,128,256,512,512).
    #[arg(long, value_name = "C1,..,C5", value_delimiter = ',', default_values_t = [4u32, 8, 16, 32, 32])]
    pub channels: Vec<u32>,
    /// Epochs of the lecture-shaped sweep.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Seeds of the lecture-shaped sweep.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// Generated training images of the lecture-shaped sweep (half per class; an odd
    /// number is rounded up).
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u64).range(2..))]
    pub train_images: u64,
    /// Generated validation images of the lecture-shaped sweep (half per class; an odd
    /// number is rounded up).
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u64).range(2..))]
    pub validation_images: u64,
    /// Skip the demo sweep.
    #[arg(long)]
    pub no_demo: bool,
    /// Cells at once in the runs with caches.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
}

pub fn run(args: BenchSweepArgs) -> anyhow::Result<Outcome> {
    let opts = SweepBenchOptions {
        work_dir: args.work_dir,
        channels: args
            .channels
            .try_into()
            .map_err(|_| anyhow::anyhow!("--channels takes five numbers"))?,
        epochs: args.epochs,
        seeds: args.seeds as usize,
        train_images: args.train_images as usize,
        validation_images: args.validation_images as usize,
        demo: !args.no_demo,
        jobs: args.jobs,
        ..SweepBenchOptions::default()
    };
    let rows = run_sweep_benchmarks(&opts)?;
    print!("{}", table(&rows));
    write_csv(&rows, &args.csv)?;
    println!("wrote {}", args.csv.display());
    Ok(Outcome::Success)
}
