//! `runner bench`: throughput of the conv base, a fine-tuning step and a head-only step.

use std::path::PathBuf;

use crate::bench::{self, BenchOptions, KernelChoice};
use crate::config::DeviceChoice;

use super::outcome::Outcome;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Timed iterations per benchmark (after one untimed warm-up).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub iterations: usize,
    /// Images per batch.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub batch: usize,
    /// Input height and width in pixels (at least 32).
    #[arg(long, value_name = "PIXELS", default_value_t = 150)]
    pub image_size: usize,
    /// Worker threads (default: RAYON_NUM_THREADS, else one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Also write the table as CSV to this file.
    #[arg(long, value_name = "PATH")]
    pub csv: Option<PathBuf>,
    /// Tiny sizes (32x32 images, batch 2, one iteration, an eighth of VGG16's widths): checks
    /// that the benchmarks run, measures nothing useful.
    #[arg(long)]
    pub quick: bool,
    /// Use candle's own CPU convolution instead of the fused kernel (for comparison).
    #[arg(long)]
    pub candle_conv: bool,
    /// The CPU convolution kernel(s) to measure, comma-separated: "auto" (each layer's own
    /// choice), "im2col", "wino2" (Winograd F(2x2,3x3)), "wino4" (F(4x4,3x3)).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "auto")]
    pub conv_kernel: Vec<KernelChoice>,
    /// Device to measure: "cpu" (default), "cuda", "cuda:N" or "auto". On a GPU the convolution
    /// is candle's CUDA one and per-CPU-second figures are not meaningful.
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: DeviceChoice,
}

pub fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    bench::run(&BenchOptions {
        iterations: args.iterations,
        batch: args.batch,
        image_size: args.image_size,
        threads: args.threads,
        csv: args.csv,
        quick: args.quick,
        candle_conv: args.candle_conv,
        conv_kernels: args.conv_kernel,
        device: args.device,
    })?;
    Ok(Outcome::Success)
}
