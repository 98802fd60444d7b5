//! `runner bench`: throughput of the three kinds of work a sweep does, on random data and random
//! (seeded) weights, so it needs no download:
//!
//! - `conv_forward`: the VGG16 conv base's forward pass (what every frozen image costs);
//! - `finetune_step`: forward through the whole network, backward and Adam on block 5 and the
//!   head (a fine-tuning cell's training step with blocks 1-4 frozen);
//! - `head_step`: forward, backward and Adam on the dense head alone, from block-5 features (a
//!   feature-extraction cell's step once the conv base's output is cached).
//!
//! Each reports images per second and GFLOP (2 per multiply-add, convolutions and dense layers,
//! backward passes counted by the products they compute) per wall-clock second and per
//! CPU-second (user + system time of the whole process, all threads: the figure that stays
//! meaningful on a machine shared with other work).

pub mod sweep;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use candle_core::{Device, Tensor, Var};

use crate::config::{ConvInit, HeadSpec, ModelConfig, Optimizer, Weights};
use crate::model::arch::{Architecture, LayerKind};
use crate::model::conv::{force_kernel, ConvKernel};
use crate::model::weights::LoadedWeights;
use crate::model::{layers, Mode, Network};
use crate::train::loss::bce_with_logits;
use crate::train::KerasOptimizer;

/// VGG16's channel widths per block.
const VGG16_CHANNELS: [usize; 5] = [64, 128, 256, 512, 512];

/// What `runner bench` measures, and how.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Timed iterations per benchmark (after one untimed warm-up).
    pub iterations: usize,
    /// Images per batch.
    pub batch: usize,
    /// Input height and width in pixels (at least 32).
    pub image_size: usize,
    /// Worker threads (default: RAYON_NUM_THREADS, else one per core).
    pub threads: Option<usize>,
    /// Also write the table as CSV to this file.
    pub csv: Option<PathBuf>,
    /// Tiny sizes (32x32 images, batch 2, one iteration, an eighth of VGG16's widths).
    pub quick: bool,
    /// Use candle's own CPU convolution instead of the fused kernel.
    pub candle_conv: bool,
    /// The fused kernel's algorithms to measure, one set of rows each.
    pub conv_kernels: Vec<KernelChoice>,
    pub device: crate::config::DeviceChoice,
}

/// A CPU convolution kernel for `runner bench` to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelChoice {
    /// Each layer's own choice.
    Auto,
    Im2col,
    /// Winograd F(2x2, 3x3).
    Wino2,
    /// Winograd F(4x4, 3x3).
    Wino4,
}

impl KernelChoice {
    fn kernel(self) -> Option<ConvKernel> {
        match self {
            KernelChoice::Auto => None,
            KernelChoice::Im2col => Some(ConvKernel::Im2col),
            KernelChoice::Wino2 => Some(ConvKernel::WinogradF2),
            KernelChoice::Wino4 => Some(ConvKernel::WinogradF4),
        }
    }
}

/// One benchmark's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub benchmark: &'static str,
    pub conv: &'static str,
    pub channels: String,
    pub image_size: usize,
    pub batch: usize,
    pub iterations: usize,
    pub threads: usize,
    pub wall_seconds: f64,
    pub cpu_seconds: Option<f64>,
    pub images_per_second: f64,
    pub gflop_per_image: f64,
    pub gflop_per_wall_second: f64,
    pub gflop_per_cpu_second: Option<f64>,
}

pub fn run(args: &BenchOptions) -> anyhow::Result<()> {
    let mut args = args.clone();
    if args.quick {
        args.image_size = 32;
        args.batch = 2;
        args.iterations = 1;
    }
    anyhow::ensure!(args.iterations > 0, "--iterations must be at least 1");
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    anyhow::ensure!(
        args.image_size >= 32,
        "--image-size must be at least 32 (VGG16 pools five times)"
    );
    let threads = args
        .threads
        .unwrap_or_else(candle_core::utils::get_num_threads);
    anyhow::ensure!(threads > 0, "--threads must be at least 1");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start the worker threads")?;
    layers::use_candle_conv(args.candle_conv);
    let kernels = if args.candle_conv || args.conv_kernels.is_empty() {
        vec![KernelChoice::Auto]
    } else {
        args.conv_kernels.clone()
    };
    let mut rows = Vec::new();
    for choice in kernels {
        force_kernel(choice.kernel());
        let got = pool.install(|| run_all(&args, threads, choice.kernel()));
        force_kernel(None);
        rows.extend(got?);
    }
    layers::use_candle_conv(false);
    print!("{}", table(&rows));
    if let Some(path) = &args.csv {
        let mut w = csv::Writer::from_writer(Vec::new());
        for row in &rows {
            w.serialize(row)?;
        }
        crate::base::fs::write_atomic(path, &w.into_inner()?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn run_all(
    args: &BenchOptions,
    threads: usize,
    kernel: Option<ConvKernel>,
) -> anyhow::Result<Vec<Row>> {
    let channels = if args.quick {
        VGG16_CHANNELS.map(|c| c / 8)
    } else {
        VGG16_CHANNELS
    };
    let model = ModelConfig {
        architecture: "vgg16".into(),
        channels,
        weights: Weights::None,
        conv_init: ConvInit::GlorotUniform,
        head: HeadSpec::default(),
    };
    let arch = Architecture::build(&model, args.image_size, args.image_size)?;
    let opened = crate::model::device::open(args.device)
        .with_context(|| format!("--device {}", args.device))?;
    eprintln!("device: {}", opened.info.describe());
    let dev = opened.device;
    let n = args.batch;
    let mut rng = crate::base::rng::stream(0, "bench-images");
    let images: Vec<f32> = (0..n * args.image_size * args.image_size * 3)
        .map(|_| crate::base::rng::uniform_f32(&mut rng, -120.0, 150.0))
        .collect();
    let labels: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    let y = Tensor::from_slice(&labels, n, &dev)?;
    let adam = Optimizer::Adam {
        learning_rate: 1e-5,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-7,
    };
    let describe = Describe {
        device: dev.clone(),
        args,
        threads,
        channels: channels.map(|c| c.to_string()).join("-"),
        kernel,
    };
    let mut rows = Vec::new();

    let flatten = arch
        .layers
        .iter()
        .position(|l| l.kind == LayerKind::Flatten)
        .expect("a flatten layer");
    let conv_end = flatten;

    // (a) the frozen conv base.
    let frozen = Network::new(
        arch.clone(),
        ConvInit::GlorotUniform,
        vec![false; arch.layers.len()],
        &LoadedWeights::default(),
        0,
        &dev,
    )?;
    let flops = flops_per_image(&arch, 0..conv_end, None);
    rows.push(describe.row("conv_forward", flops, || {
        frozen.conv_base_output(&images, n).map(drop)
    })?);
    drop(frozen);

    // (b) block 5 + head trainable.
    let from = arch
        .layers
        .iter()
        .position(|l| l.name == "block5_conv1")
        .expect("VGG16 has block5_conv1");
    let mask: Vec<bool> = (0..arch.layers.len()).map(|i| i >= from).collect();
    let net = Network::new(
        arch.clone(),
        ConvInit::GlorotUniform,
        mask,
        &LoadedWeights::default(),
        0,
        &dev,
    )?;
    let mut opt = KerasOptimizer::new(adam, net.trainable_vars())?;
    let flops = flops_per_image(&arch, 0..arch.layers.len(), Some(from));
    rows.push(describe.row("finetune_step", flops, || {
        let loss = bce_with_logits(&net.forward(&images, n, Mode::Train)?, &y)?;
        opt.step(&loss.backward()?)
    })?);
    drop((net, opt));

    // (c) the head alone, on block-5 features.
    let features = arch.layers[flatten].output[0];
    let feats: Vec<f32> = (0..n * features)
        .map(|_| crate::base::rng::uniform_f32(&mut rng, 0.0, 2.0))
        .collect();
    let feats = Tensor::from_vec(feats, (n, features), &dev)?;
    let mut head = Vec::new();
    for layer in &arch.layers[flatten + 1..] {
        if let LayerKind::Dense {
            inputs,
            units,
            relu,
        } = layer.kind
        {
            let w = crate::model::init::glorot_uniform(
                0,
                &format!("{}.weight", layer.name),
                inputs * units,
                inputs,
                units,
            );
            let w = Var::from_tensor(&Tensor::from_vec(w, (units, inputs), &dev)?)?;
            let b = Var::zeros(units, candle_core::DType::F32, &dev)?;
            head.push((layer.name.clone(), w, b, relu));
        }
    }
    let vars = head
        .iter()
        .flat_map(|(name, w, b, _)| {
            [
                (format!("{name}.weight"), w.clone()),
                (format!("{name}.bias"), b.clone()),
            ]
        })
        .collect();
    let mut opt = KerasOptimizer::new(adam, vars)?;
    let flops = flops_per_image(&arch, flatten + 1..arch.layers.len(), Some(flatten + 1));
    rows.push(describe.row("head_step", flops, || {
        let mut x = feats.clone();
        for (_, w, b, relu) in &head {
            x = layers::dense(&x, w.as_tensor(), b.as_tensor(), *relu)?;
        }
        let loss = bce_with_logits(&x.squeeze(1)?, &y)?;
        opt.step(&loss.backward()?)
    })?);
    Ok(rows)
}

struct Describe<'a> {
    /// Synchronised before the clock stops, so queued GPU work is counted.
    device: Device,
    args: &'a BenchOptions,
    threads: usize,
    channels: String,
    kernel: Option<ConvKernel>,
}

impl Describe<'_> {
    /// Time `step`: one untimed warm-up, then `iterations` timed calls.
    fn row(
        &self,
        benchmark: &'static str,
        flops_per_image: f64,
        mut step: impl FnMut() -> candle_core::Result<()>,
    ) -> anyhow::Result<Row> {
        step().with_context(|| format!("benchmark {benchmark}"))?;
        self.device.synchronize()?;
        let cpu0 = process_cpu_seconds();
        let t0 = Instant::now();
        for _ in 0..self.args.iterations {
            step().with_context(|| format!("benchmark {benchmark}"))?;
        }
        self.device.synchronize()?;
        let wall = t0.elapsed().as_secs_f64().max(1e-9);
        let cpu = process_cpu_seconds()
            .zip(cpu0)
            .map(|(a, b)| (a - b).max(1e-9));
        let images = (self.args.iterations * self.args.batch) as f64;
        let gflop = flops_per_image * images / 1e9;
        Ok(Row {
            benchmark,
            conv: if self.device.is_cuda() {
                "candle-cuda"
            } else if self.args.candle_conv {
                "candle"
            } else {
                ConvKernel::name(self.kernel)
            },
            channels: self.channels.clone(),
            image_size: self.args.image_size,
            batch: self.args.batch,
            iterations: self.args.iterations,
            threads: self.threads,
            wall_seconds: wall,
            cpu_seconds: cpu,
            images_per_second: images / wall,
            gflop_per_image: flops_per_image / 1e9,
            gflop_per_wall_second: gflop / wall,
            gflop_per_cpu_second: cpu.map(|c| gflop / c),
        })
    }
}

/// Floating-point operations per image of layers `range`, forward and, for layers from
/// `trainable_from` on, the weight gradient, and the input gradient for all but the first
/// trainable layer (its input needs none).
fn flops_per_image(
    arch: &Architecture,
    range: std::ops::Range<usize>,
    trainable_from: Option<usize>,
) -> f64 {
    let mut total = 0.0;
    for (i, layer) in arch.layers.iter().enumerate() {
        if !range.contains(&i) {
            continue;
        }
        let products = match layer.kind {
            LayerKind::Conv {
                in_channels,
                out_channels,
            } => 9 * in_channels * out_channels * layer.output[0] * layer.output[1],
            LayerKind::Dense { inputs, units, .. } => inputs * units,
            LayerKind::Pool | LayerKind::Flatten => 0,
        };
        let passes = match trainable_from {
            Some(t) if i > t => 3,
            Some(t) if i == t => 2,
            _ => 1,
        };
        total += 2.0 * (products * passes) as f64;
    }
    total
}

/// User + system CPU time of this process so far, all threads.
#[cfg(unix)]
fn process_cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a plain struct through a valid pointer.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: initialised by the successful call above.
    let u = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(secs(u.ru_utime) + secs(u.ru_stime))
}

#[cfg(not(unix))]
fn process_cpu_seconds() -> Option<f64> {
    None
}

/// Peak resident memory (VmHWM) of this process since it started or since the last
/// `reset_peak_memory`, in bytes (Linux only).
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resident memory of this process now (VmRSS), in bytes (Linux only).
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Start a new peak-memory measurement (Linux: writing 5 to `/proc/self/clear_refs` resets
/// VmHWM to the current resident size). False when that is not possible: the next peak then
/// covers the whole process so far.
pub fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The results as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>6} {:>8} {:>5} {:>5} {:>7} {:>9} {:>10} {:>11} {:>10}",
        "benchmark",
        "conv",
        "image",
        "batch",
        "iters",
        "threads",
        "images/s",
        "GFLOP/img",
        "GFLOP/wall-s",
        "GFLOP/CPU-s"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<14} {:>6} {:>8} {:>5} {:>5} {:>7} {:>9.2} {:>10.3} {:>11.1} {:>10}",
            r.benchmark,
            r.conv,
            format!("{0}x{0}", r.image_size),
            r.batch,
            r.iterations,
            r.threads,
            r.images_per_second,
            r.gflop_per_image,
            r.gflop_per_wall_second,
            r.gflop_per_cpu_second
                .map_or("n/a".to_string(), |g| format!("{g:.1}"))
        );
    }
    if let Some(r) = rows.first() {
        let _ = writeln!(out, "channels per block: {}", r.channels);
    }
    out
}
