//! End-to-end sweep benchmarks: whole sweeps on generated data, timed from data loading to the
//! last cell, with peak resident memory, in four set-ups:
//! - `none`: no caches (`--no-cache`): every image decoded again each epoch and the full
//!   network run every epoch, as the notebook does;
//! - `images`: the decoded-image cache only;
//! - `all`: decoded images and frozen-prefix features (the default), `--jobs` cells at once;
//! - `all-warm`: the same sweep again on the same results (`--force`): images and features come
//!   from the caches on disk, as for a user who reruns or extends a matrix.
//!
//! The first three start from an empty results directory, so nothing is reused from an earlier
//! run.
//!
//! The lecture-shaped sweep is the notebook's matrix (feature extraction and block-5 fine-tuning,
//! each with and without augmentation, several seeds) on generated 150x150 images; it is also
//! timed without its augmented variants (`lecture-noaug`), where the feature cache applies to
//! every cell. Its conv base
//! comes from a weights file, as the lecture's does from ImageNet weights, so cells with the same
//! frozen prefix share features across seeds and variants. The width of the network is a
//! parameter: full VGG16 widths take hours per sweep on a small CPU, and the speedup from the
//! caches is about the work they avoid, which a narrower base shows in minutes.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::base::fs::write_atomic;
use crate::config::{self, DataSource};
use crate::dataset::synthetic;
use crate::model::arch::Architecture;
use crate::model::weights::LoadedWeights;
use crate::model::Network;
use crate::store::ResultsLayout;
use crate::sweep::{self, Progress, SweepOptions};

/// What to run.
#[derive(Debug, Clone)]
pub struct SweepBenchOptions {
    /// Scratch space (one results directory per sweep; removed afterwards).
    pub work_dir: PathBuf,
    /// Conv-base channels of the lecture-shaped sweep (VGG16: 64, 128, 256, 512, 512).
    pub channels: [u32; 5],
    pub image_size: u32,
    pub train_images: usize,
    pub validation_images: usize,
    pub seeds: usize,
    pub epochs: usize,
    /// Also time the embedded demo sweep.
    pub demo: bool,
    /// Cells trained at once (`--jobs`) in the runs with caches.
    pub jobs: usize,
}

impl Default for SweepBenchOptions {
    fn default() -> Self {
        SweepBenchOptions {
            work_dir: PathBuf::from("results/.bench"),
            channels: [4, 8, 16, 32, 32],
            image_size: 150,
            train_images: 512,
            validation_images: 128,
            seeds: 2,
            epochs: 3,
            demo: true,
            jobs: 1,
        }
    }
}

/// One timed sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub sweep: String,
    /// "none", "images", "all" or "all-warm" (see the module docs).
    pub caches: String,
    pub cells: usize,
    /// Images through the network (or its cached suffix): cells x epochs x (train + validation).
    pub images: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    /// Time without caches over this row's time (1 for the rows without).
    pub speedup: f64,
    /// Peak resident memory during the sweep, MiB (None where it cannot be measured). It
    /// includes the pages of memory-mapped cache files that were touched.
    pub peak_mib: Option<f64>,
    /// Resident memory when the sweep started (what earlier rows left: the allocator keeps
    /// freed memory), MiB.
    pub start_mib: Option<f64>,
}

/// Run the sweep benchmarks and return their rows (lecture-shaped, then demo).
pub fn run_sweep_benchmarks(opts: &SweepBenchOptions) -> anyhow::Result<Vec<Row>> {
    std::fs::create_dir_all(&opts.work_dir)
        .with_context(|| format!("creating {}", opts.work_dir.display()))?;
    let mut rows = Vec::new();
    let lecture = lecture_experiment(opts)?;
    rows.extend(compare("lecture-shaped", &lecture, &[], opts)?);
    let plain = ["feature_extraction".to_string(), "fine_tuning".to_string()];
    rows.extend(compare("lecture-noaug", &lecture, &plain, opts)?);
    if opts.demo {
        let demo =
            crate::plan::parse(crate::config::DEMO_TOML, Path::new("experiments/demo.toml"))?;
        rows.extend(compare("demo", &demo, &[], opts)?);
    }
    Ok(rows)
}

/// The set-ups of the module docs: (name, image cache, feature cache, warm).
const SETUPS: [(&str, bool, bool, bool); 4] = [
    ("none", false, false, false),
    ("images", true, false, false),
    ("all", true, true, false),
    ("all-warm", true, true, true),
];

/// The sweep (its `variants`, or all when empty) in each set-up, each but the warm one in a
/// fresh results directory (the data set is generated beforehand, outside the timing).
fn compare(
    name: &str,
    experiment: &config::Experiment,
    variants: &[String],
    opts: &SweepBenchOptions,
) -> anyhow::Result<Vec<Row>> {
    let data_root = opts.work_dir.join("data");
    let mut rows = Vec::new();
    let mut baseline = None;
    let mut previous: Option<PathBuf> = None;
    for (caches, image_cache, feature_cache, warm) in SETUPS {
        let jobs = if feature_cache { opts.jobs.max(1) } else { 1 };
        let results = match (&previous, warm) {
            (Some(dir), true) => dir.clone(),
            _ => opts.work_dir.join(format!("{name}-{caches}")),
        };
        if let Some(old) = previous.take().filter(|old| *old != results) {
            let _ = std::fs::remove_dir_all(old);
        }
        previous = Some(results.clone());
        if !warm {
            let _ = std::fs::remove_dir_all(&results);
        }
        let layout = ResultsLayout::new(results.clone());
        // Share the generated images between the runs: link the data folder into each.
        for v in &experiment.variants {
            if let DataSource::Synthetic(spec) = &v.config.dataset.source {
                synthetic::ensure(spec, &data_root)?;
            }
        }
        std::fs::create_dir_all(&results)?;
        if !warm {
            link_dir(&std::fs::canonicalize(&data_root)?, &layout.datasets_dir())?;
        }
        let options = SweepOptions {
            results: layout,
            variants: variants.to_vec(),
            seeds: vec![],
            epochs: None,
            progress: Progress::Quiet,
            force: true,
            retry_failed: false,
            image_cache,
            feature_cache,
            cache_memory: crate::base::memory::default_memory_budget(),
            jobs,
            pinned_code: None,
            device: Some(crate::config::DeviceChoice::Cpu),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let peak_known = super::reset_peak_memory();
        let start_mib = super::resident_memory_bytes().map(|b| b as f64 / (1 << 20) as f64);
        let started = Instant::now();
        let results_of = sweep::run(experiment, &options, &stop)?;
        let seconds = started.elapsed().as_secs_f64();
        let peak_mib = super::peak_memory_bytes()
            .filter(|_| peak_known)
            .map(|b| b as f64 / (1 << 20) as f64);
        if let Some(bad) = results_of
            .iter()
            .find(|r| r.status.is_none() || r.message.is_some())
        {
            anyhow::bail!(
                "{name}: cell {} / seed {} did not finish: {:?}",
                bad.cell.variant,
                bad.cell.seed,
                bad.message.as_ref().or(bad.skipped.as_ref())
            );
        }
        let cells = results_of.len();
        let images: usize = results_of
            .iter()
            .map(|r| {
                let epochs = r.last.map_or(0, |m| m.epoch);
                let v = experiment.variant(&r.cell.variant).expect("ran");
                epochs * per_epoch_images(&v.config.dataset.source)
            })
            .sum();
        let base = *baseline.get_or_insert(seconds);
        rows.push(Row {
            sweep: name.to_string(),
            caches: caches.to_string(),
            cells,
            images,
            seconds,
            images_per_second: images as f64 / seconds,
            speedup: base / seconds,
            peak_mib,
            start_mib,
        });
    }
    if let Some(last) = previous {
        let _ = std::fs::remove_dir_all(last);
    }
    Ok(rows)
}

fn per_epoch_images(source: &DataSource) -> usize {
    match source {
        DataSource::Synthetic(s) => 2 * (s.train_per_class + s.validation_per_class),
        DataSource::Directories { .. } => 0,
    }
}

#[cfg(unix)]
fn link_dir(target: &Path, link: &Path) -> anyhow::Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

#[cfg(not(unix))]
fn link_dir(_target: &Path, _link: &Path) -> anyhow::Result<()> {
    // Without links each run generates its own copy (before its timing starts is not possible
    // here, so the first epoch includes it); the benchmark is meant for Unix machines.
    Ok(())
}

/// The lecture's matrix on generated data, with a weights file for the conv base (written into
/// the work directory) so that frozen prefixes are shared across seeds as with real weights.
fn lecture_experiment(opts: &SweepBenchOptions) -> anyhow::Result<config::Experiment> {
    let per_class = |n: usize| n.div_ceil(2);
    let seeds: Vec<String> = (0..opts.seeds).map(|s| s.to_string()).collect();
    let c = opts.channels;
    let size = opts.image_size;
    let weights = opts.work_dir.join("conv-base.safetensors");
    let augmentation = r#"dataset.augmentation = [
    { type = "flip", mode = "horizontal" },
    { type = "rotation", factor = 0.1 },
    { type = "zoom", height_factor = 0.1 },
]"#;
    let text = format!(
        r#"
name = "lecture_bench"
seeds = [{seeds}]

[dataset]
image_size = [{size}, {size}]
batch_size = 32

[dataset.synthetic]
seed = 7
train_per_class = {train}
validation_per_class = {validation}
size = {size}

[model]
channels = [{c0}, {c1}, {c2}, {c3}, {c4}]
weights = {{ file = "conv-base.safetensors" }}
conv_init = "he_uniform"
head = {{ units = [256] }}

[training]
epochs = {epochs}
optimizer = "adam"
learning_rate = 1e-3

[[variants]]
name = "feature_extraction"
training.freeze = ["block*"]

[[variants]]
name = "feature_extraction_aug"
training.freeze = ["block*"]
{augmentation}

[[variants]]
name = "fine_tuning"
training.trainable_from = "block5_conv1"

[[variants]]
name = "fine_tuning_aug"
training.trainable_from = "block5_conv1"
{augmentation}
"#,
        seeds = seeds.join(", "),
        train = per_class(opts.train_images),
        validation = per_class(opts.validation_images),
        c0 = c[0],
        c1 = c[1],
        c2 = c[2],
        c3 = c[3],
        c4 = c[4],
        epochs = opts.epochs,
    );
    let file = opts.work_dir.join("lecture_bench.toml");
    // A stand-in for pretrained weights: a seeded He-uniform conv base, saved like a "notop"
    // file before the experiment that names it is loaded.
    let random = text.replace(
        r#"weights = { file = "conv-base.safetensors" }"#,
        r#"weights = "none""#,
    );
    let draft = crate::plan::parse(&random, &file)?;
    let model = &draft.variants[0].config.model;
    let arch = Architecture::build(model, size as usize, size as usize)?;
    let n = arch.layers.len();
    let net = Network::new(
        arch,
        model.conv_init,
        vec![false; n],
        &LoadedWeights::default(),
        1234,
        &crate::model::cpu(),
    )?;
    net.save_conv_base(&weights)?;
    write_atomic(&file, text.as_bytes())?;
    Ok(crate::plan::load(&file)?)
}

/// The rows as a table for the terminal.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<16} {:<9} {:>5} {:>8} {:>9} {:>9} {:>8} {:>9} {:>10}\n",
        "sweep",
        "caches",
        "cells",
        "images",
        "seconds",
        "images/s",
        "speedup",
        "peak MiB",
        "start MiB"
    );
    let mib = |m: Option<f64>| m.map_or("-".to_string(), |m| format!("{m:.0}"));
    for r in rows {
        out.push_str(&format!(
            "{:<16} {:<9} {:>5} {:>8} {:>9.1} {:>9.1} {:>7.2}x {:>9} {:>10}\n",
            r.sweep,
            r.caches,
            r.cells,
            r.images,
            r.seconds,
            r.images_per_second,
            r.speedup,
            mib(r.peak_mib),
            mib(r.start_mib)
        ));
    }
    out
}

/// Write the rows as CSV (temporary file, then rename).
pub fn write_csv(rows: &[Row], path: &Path) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "sweep",
        "caches",
        "cells",
        "images",
        "seconds",
        "images_per_second",
        "speedup",
        "peak_mib",
        "start_mib",
    ])?;
    for r in rows {
        w.write_record([
            r.sweep.clone(),
            r.caches.clone(),
            r.cells.to_string(),
            r.images.to_string(),
            format!("{:.3}", r.seconds),
            format!("{:.2}", r.images_per_second),
            format!("{:.3}", r.speedup),
            r.peak_mib.map_or(String::new(), |m| format!("{m:.1}")),
            r.start_mib.map_or(String::new(), |m| format!("{m:.1}")),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    write_atomic(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sweep_runs_in_every_setup_and_the_work_dir_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SweepBenchOptions {
            work_dir: dir.path().join("bench"),
            channels: [2, 2, 2, 2, 2],
            image_size: 32,
            train_images: 8,
            validation_images: 4,
            seeds: 1,
            epochs: 1,
            demo: false,
            jobs: 1,
        };
        let rows = run_sweep_benchmarks(&opts).unwrap();
        let got: Vec<(&str, &str, usize, usize)> = rows
            .iter()
            .map(|r| (r.sweep.as_str(), r.caches.as_str(), r.cells, r.images))
            .collect();
        let mut want = Vec::new();
        for (sweep, cells) in [("lecture-shaped", 4), ("lecture-noaug", 2)] {
            for caches in ["none", "images", "all", "all-warm"] {
                // One epoch over 8 + 4 images per cell.
                want.push((sweep, caches, cells, cells * 12));
            }
        }
        assert_eq!(got, want);
        for r in &rows {
            assert!(r.seconds > 0.0, "{r:?}");
            if r.caches == "none" {
                assert_eq!(r.speedup, 1.0, "{r:?}");
            }
            if cfg!(target_os = "linux") {
                assert!(r.peak_mib.is_some_and(|m| m > 1.0), "{r:?}");
            }
        }
        // Only the generated data and the experiment are left behind.
        let mut left: Vec<String> = std::fs::read_dir(&opts.work_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["conv-base.safetensors", "data", "lecture_bench.toml"],
            "{left:?}"
        );
        let csv = dir.path().join("rows.csv");
        write_csv(&rows, &csv).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        assert!(text.starts_with(
            "sweep,caches,cells,images,seconds,images_per_second,speedup,peak_mib,start_mib\n"
        ));
        assert_eq!(text.lines().count(), 9);
    }
}
