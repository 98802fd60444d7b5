//! The command line: argument definitions (their doc comments are the `--help` text) and dispatch.
//!
//! Exit codes: 0 success; 1 an error before or outside training (bad experiment file, missing
//! data or weights, unwritable results); 2 bad command-line usage; 3 the sweep ran but at least
//! one cell failed or diverged; 4 `reproduce` found a changed input; 5 `reproduce` found
//! different metrics; 130 interrupted by Ctrl-C (finished epochs are kept).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{DeviceChoice, Experiment};
use crate::dataset::batches::{epoch_order, Split};
use crate::model::arch::Architecture;
use crate::model::freeze;
use crate::store::{ResultsLayout, Status};
use crate::sweep::{self, progress, Progress, SweepOptions};
use crate::{augment, reproduce, store};

/// The demo experiment, embedded so that `runner sweep` works anywhere, offline.
pub const DEMO_TOML: &str = include_str!("../experiments/demo.toml");

/// Run transfer-learning experiments (VGG16 feature extraction and fine-tuning) reproducibly.
///
/// An experiment file (TOML) declares a data set, a model, training settings, named variants
/// (freeze masks, augmentation, optimizer, ...) and seeds; `runner sweep` trains every
/// variant x seed cell and writes per-epoch metrics under results/. See
/// experiments/reference.toml for every key and its default.
#[derive(Debug, Parser)]
#[command(name = "runner", version, about, long_about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES: &str =
    "Exit codes: 0 success; 1 error (experiment file, data, weights, results); 2 usage; \
3 some cells failed or diverged; 4 reproduce: an input changed; 5 reproduce: metrics differ; 130 interrupted.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train every cell (variant x seed) of an experiment.
    ///
    /// Without an experiment file, runs the embedded offline demo (experiments/demo.toml): a
    /// small VGG-style network pretrained on nine generated classes of shapes, then the lecture's
    /// four variants and a random-base baseline on a new two-class task, two seeds. Results go to <results>/<experiment>/<variant>/seed-<n>/ (metrics.csv, run.json).
    Sweep {
        /// The experiment file (TOML). Default: the embedded demo.
        experiment: Option<PathBuf>,
        #[command(flatten)]
        select: Select,
        /// Override the number of epochs of every variant (for a quick try).
        #[arg(long, value_name = "N")]
        epochs: Option<usize>,
        /// Rerun cells that are done already (the earlier result moves to .history/).
        #[arg(long)]
        force: bool,
        /// Rerun only the cells that failed.
        #[arg(long, conflicts_with = "force")]
        retry_failed: bool,
        /// Do not write the report (runner report) at the end of the sweep.
        #[arg(long)]
        no_report: bool,
        /// Print only the final table.
        #[arg(long, short)]
        quiet: bool,
        /// Train on "cpu", "cuda", "cuda:N" or "auto" (a GPU when this build has CUDA and one is
        /// present). Default: the experiment file's `device`, else auto.
        #[arg(long, value_name = "DEVICE")]
        device: Option<DeviceChoice>,
        /// Decode every image again each epoch and run the full network, instead of reusing
        /// decoded images (results/.cache/images) and cached outputs of the frozen layers
        /// (results/.cache/features). The results are identical; this only costs time.
        #[arg(long)]
        no_cache: bool,
        /// Memory for cached features (and for decoded images when they cannot be cached on
        /// disk), e.g. 4GiB or 512MiB; past it features are read from disk. Default: half the
        /// available memory.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        cache_memory: Option<u64>,
        /// Cells trained at once; the CPU threads are divided between them.
        #[arg(long, short = 'j', value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        jobs: u64,
    },
    /// Write a grid of augmented training images: what a variant's model sees.
    ///
    /// Uses the same random streams as training, so the grid shows exactly the images of the
    /// given seed and epoch (before preprocessing).
    AugmentPreview {
        /// The experiment file (TOML). Default: the embedded demo.
        experiment: Option<PathBuf>,
        /// The variant whose augmentation to show.
        #[arg(long, value_name = "NAME")]
        variant: String,
        /// Number of images.
        #[arg(short = 'n', default_value_t = 16)]
        count: usize,
        /// Output PNG file.
        #[arg(short = 'o', long, value_name = "FILE", default_value = "preview.png")]
        output: PathBuf,
        /// Run seed (default: the experiment's first seed).
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Epoch, from 1.
        #[arg(long, value_name = "N", default_value_t = 1)]
        epoch: usize,
        /// Directory for generated data sets.
        #[arg(long, value_name = "DIR", default_value = "results")]
        results: PathBuf,
    },
    /// Show what the caches under the results directory hold (decoded images, frozen-layer
    /// outputs, file hashes), or delete them. Deleting is always safe: they only save time.
    Cache {
        /// The results directory.
        #[arg(long, value_name = "DIR", default_value = "results")]
        results: PathBuf,
        /// Delete every cache (results/.cache); finished runs are not touched.
        #[arg(long)]
        clear: bool,
    },
    /// List the runs on disk: code state, cell, status, epochs, accuracy, run key.
    Status {
        /// An experiment file or name (default: all experiments).
        experiment: Option<String>,
        /// The results directory.
        #[arg(long, value_name = "DIR", default_value = "results")]
        results: PathBuf,
    },
    /// Say which inputs of a cell's run key (config, data, weights, code, seed) changed since its last run.
    Why {
        /// The experiment file.
        experiment: PathBuf,
        #[arg(long, value_name = "NAME")]
        variant: String,
        #[arg(long, value_name = "N")]
        seed: u64,
        /// The results directory.
        #[arg(long, value_name = "DIR", default_value = "results")]
        results: PathBuf,
    },
    /// Re-run a past cell and check it: every input first (data files, weights, code), then the
    /// metrics of a fresh training run against the recorded ones.
    ///
    /// Exit code 0: reproduced; 4: an input changed (nothing trained); 5: the metrics differ.
    Reproduce {
        /// A run directory (results/<code>/<experiment>/<variant>/seed-<n>) or a run key (prefix).
        run: String,
        /// Largest absolute difference accepted in any metric (CPU runs reproduce exactly: 0).
        #[arg(long, default_value_t = 0.0)]
        tolerance: f64,
        /// Device to train on (default: the one the run was recorded on).
        #[arg(long, value_name = "DEVICE")]
        device: Option<DeviceChoice>,
        /// Also train the run's [pretrain] stage again (in a scratch directory) and compare its
        /// metrics and checkpoint bytes with the stored stage, before training the cell from it.
        /// Without it, the stored stage checkpoint is checked by hash and only the cell trains.
        #[arg(long)]
        deep: bool,
        /// The results directory (to find run keys and generated data).
        #[arg(long, value_name = "DIR", default_value = "results")]
        results: PathBuf,
    },
    /// Show the device `--device auto` trains on (GPU name, compute capability, driver and
    /// library versions), and with --check compare it against the CPU.
    ///
    /// The check runs the conv base, the logits and one fine-tuning step (block 5 + head, Adam)
    /// on both devices from the same parameters and prints relative differences; float32
    /// rounding gives about 1e-6, anything above 1e-3 fails (exit 1).
    Device {
        /// The device to show or check (default: auto).
        #[arg(long, value_name = "DEVICE", default_value = "auto")]
        device: DeviceChoice,
        /// Compare the device against the CPU on the same inputs.
        #[arg(long)]
        check: bool,
        /// Image size of the check (VGG16 widths; 150 is the lecture's).
        #[arg(long, value_name = "PIXELS", default_value_t = 150)]
        image_size: usize,
        /// Batch size of the check.
        #[arg(long, value_name = "N", default_value_t = 4)]
        batch: usize,
    },
    /// Check an experiment file and show its matrix, without training.
    ///
    /// Prints each variant's trainable layers and parameter counts.
    Check {
        /// The experiment file (TOML). Default: the embedded demo.
        experiment: Option<PathBuf>,
    },
    /// Print a Keras-style summary of each variant's model: layers, output shapes, parameter
    /// counts, which layers train, and the totals.
    Summary {
        /// The experiment file (TOML). Default: the embedded demo.
        experiment: Option<PathBuf>,
        /// Only this variant.
        #[arg(long, value_name = "NAME")]
        variant: Option<String>,
    },
    /// Download or convert pretrained weights.
    #[command(subcommand)]
    Weights(crate::model::weights::cli::WeightsCommand),
    /// Print the root hash of a class-folder directory, as a run records it for a data split.
    ///
    /// Lists the directory as training does and hashes every file (SHA-256); the root hash covers
    /// each file's path, size, content and class.
    Hash(crate::fingerprint::command::HashArgs),
    /// Write a report of an experiment: statistics across seeds, comparisons, figures.
    ///
    /// Writes report.md, a self-contained report.html and summary.csv (plus plots/ as PNG and
    /// SVG) to <results>/<code-state>/<experiment>/report/. Failed, running and missing cells
    /// are listed, never averaged.
    Report(crate::report::ReportArgs),
    /// Compare two variants of an experiment, or two run directories, in the terminal.
    Compare(crate::report::CompareArgs),
    /// Write a cell's complete model: its frozen layers rebuilt from the base it was trained
    /// from (checked against the SHA-256 it recorded) and its trained parameters, as safetensors
    /// with Keras layer names.
    ///
    /// A cell stores only the parameters it trained (trained.safetensors, best-trained.safetensors).
    ExportModel(crate::export::ExportArgs),
    /// Measure throughput: conv-base forward, block-5 fine-tuning step, head-only step.
    ///
    /// Full VGG16 widths with random (seeded) weights and images: no download. Prints images/s
    /// and GFLOP per wall-clock second and per CPU-second (user + system time of all threads).
    Bench(crate::bench::BenchArgs),
    /// End-to-end sweep benchmarks: a lecture-shaped sweep (150x150 generated images, 4 variants
    /// x 2 seeds), the same without its augmented variants, and the demo, each without caches,
    /// with decoded images cached, with both caches, and rerun on warm caches; prints seconds,
    /// speedup and peak memory, and writes CSV.
    BenchSweep {
        /// Scratch directory for the generated data and the timed sweeps.
        #[arg(long, value_name = "DIR", default_value = "results/.bench")]
        work_dir: PathBuf,
        /// The CSV file to write.
        #[arg(long, value_name = "FILE", default_value = "bench-sweep.csv")]
        csv: PathBuf,
        /// Conv-base channels of the lecture-shaped sweep, comma-separated (VGG16: 64,128,256,512,512).
        #[arg(long, value_name = "C1,..,C5", value_delimiter = ',', default_values_t = [4u32, 8, 16, 32, 32])]
        channels: Vec<u32>,
        /// Epochs of the lecture-shaped sweep.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        /// Seeds of the lecture-shaped sweep.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        /// Generated training images of the lecture-shaped sweep (half per class; an odd
        /// number is rounded up).
        #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u64).range(2..))]
        train_images: u64,
        /// Generated validation images of the lecture-shaped sweep (half per class; an odd
        /// number is rounded up).
        #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u64).range(2..))]
        validation_images: u64,
        /// Skip the demo sweep.
        #[arg(long)]
        no_demo: bool,
        /// Cells at once in the runs with caches.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
}

#[derive(Debug, clap::Args)]
pub struct Select {
    /// Run only this variant (repeat for several).
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    /// Run only this seed (repeat for several).
    #[arg(long = "seed", value_name = "N")]
    pub seeds: Vec<u64>,
    /// Directory for results and generated data sets.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results: PathBuf,
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Sweep {
            experiment,
            select,
            epochs,
            quiet,
            force,
            retry_failed,
            no_report,
            device,
            no_cache,
            cache_memory,
            jobs,
        } => {
            let file = experiment.clone();
            let experiment = load_experiment(experiment.as_deref())?;
            let stop = install_interrupt_handler();
            let progress = if quiet {
                Progress::Quiet
            } else {
                Progress::detect()
            };
            let results_root = select.results.clone();
            let options = SweepOptions {
                results: ResultsLayout::new(select.results),
                variants: select.variants,
                seeds: select.seeds,
                epochs,
                progress,
                force,
                retry_failed,
                device,
                image_cache: !no_cache,
                feature_cache: !no_cache,
                cache_memory: cache_memory.unwrap_or_else(crate::cache::default_memory_budget),
                jobs: jobs as usize,
            };
            let results = match sweep::run(&experiment, &options, &stop) {
                Ok(results) => results,
                Err(e) => match e.downcast_ref::<sweep::stage::StageInterrupted>() {
                    Some(stopped) => {
                        eprintln!("interrupted: {stopped}");
                        return Ok(ExitCode::from(130));
                    }
                    None => return Err(e),
                },
            };
            println!("\n{}", progress::summary_table(&results));
            if !no_report && !stop.load(Ordering::SeqCst) {
                write_sweep_report(file.as_deref(), &results, results_root);
            }
            if results
                .iter()
                .any(|r| r.status == Some(Status::Interrupted))
                || stop.load(Ordering::SeqCst)
            {
                eprintln!(
                    "interrupted: finished epochs are kept in the cells' .partial directories"
                );
                return Ok(ExitCode::from(130));
            }
            if results
                .iter()
                .any(|r| matches!(r.status, Some(Status::Failed | Status::Diverged)))
            {
                return Ok(ExitCode::from(3));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::AugmentPreview {
            experiment,
            variant,
            count,
            output,
            seed,
            epoch,
            results,
        } => {
            let experiment = load_experiment(experiment.as_deref())?;
            let v = experiment.require_variant(&variant)?;
            let seed = seed.unwrap_or(experiment.seeds[0]);
            let dataset = &v.config.dataset;
            let (train_dir, _) = sweep::data_dirs(&dataset.source, &ResultsLayout::new(results))?;
            let split = Split::open(&train_dir, dataset)?;
            let epoch0 = epoch.max(1) - 1;
            let order = epoch_order(
                split.len(),
                dataset.shuffle,
                dataset.batch_size,
                seed,
                epoch0,
            );
            let images = order
                .iter()
                .take(count)
                .map(|&i| {
                    Ok(augment::apply(
                        &dataset.augmentation,
                        &split.image(i)?,
                        &mut augment::image_stream(seed, epoch0, i),
                    ))
                })
                .collect::<Result<Vec<_>, crate::dataset::DatasetError>>()?;
            let columns = (images.len() as f64).sqrt().ceil() as usize;
            let grid = augment::preview::grid(&images, columns, 2);
            let mut png = Vec::new();
            grid.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
            store::write_atomic(&output, &png)?;
            println!(
                "{} augmented training images of {} / {variant} (seed {seed}, epoch {}, {} steps) -> {}",
                images.len(),
                experiment.name,
                epoch0 + 1,
                dataset.augmentation.len(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache { results, clear } => {
            let dir = ResultsLayout::new(results).cache_dir();
            print!("{}", crate::cache::usage_table(&dir));
            if clear {
                crate::cache::clear(&dir)?;
                println!("deleted {}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            experiment,
            results,
        } => {
            let name = match experiment {
                Some(e) if Path::new(&e).is_file() => Some(crate::plan::load(Path::new(&e))?.name),
                other => other,
            };
            let here = crate::provenance::CodeState::read_excluding(
                Path::new("."),
                std::slice::from_ref(&results),
            )?
            .dir_name;
            print!(
                "{}",
                reproduce::status(&ResultsLayout::new(results), name.as_deref(), &here)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Why {
            experiment,
            variant,
            seed,
            results,
        } => {
            let experiment = crate::plan::load(&experiment)?;
            print!(
                "{}",
                reproduce::why(&experiment, &variant, seed, &ResultsLayout::new(results))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Reproduce {
            run,
            tolerance,
            device,
            deep,
            results,
        } => {
            let layout = ResultsLayout::new(results);
            let found = reproduce::locate(&layout, &run)?;
            println!(
                "reproducing {} (run key {})",
                found.dir.display(),
                found.record.run_key.as_deref().unwrap_or("none")
            );
            let scratch = tempfile_dir(&layout)?;
            let verdict = reproduce::reproduce(
                &found,
                &layout,
                scratch.path(),
                tolerance,
                device,
                deep,
                Progress::detect(),
            );
            let verdict = verdict?;
            Ok(match verdict {
                reproduce::Verdict::Reproduced { epochs } => {
                    println!("REPRODUCED: all {epochs} epochs match (tolerance {tolerance})");
                    ExitCode::SUCCESS
                }
                reproduce::Verdict::InputsChanged(what) => {
                    println!("NOT REPRODUCIBLE: inputs changed since the run:");
                    what.iter().for_each(|w| println!("  {w}"));
                    ExitCode::from(4)
                }
                reproduce::Verdict::MetricsDiffer(what) => {
                    println!("MISMATCH: the metrics differ (tolerance {tolerance}):");
                    what.iter().take(20).for_each(|w| println!("  {w}"));
                    ExitCode::from(5)
                }
            })
        }
        Command::Report(args) => crate::report::run_report(&args),
        Command::Compare(args) => crate::report::run_compare(&args),
        Command::ExportModel(args) => crate::export::run(&args),
        Command::Device {
            device,
            check,
            image_size,
            batch,
        } => {
            use crate::model::device_check::{self, CheckShape};
            let opened =
                crate::model::device::open(device).with_context(|| format!("--device {device}"))?;
            println!("device: {}", opened.info.describe());
            println!(
                "build: CUDA {}",
                if crate::model::device::CUDA_BUILT {
                    "enabled"
                } else {
                    "not built in (scripts/build-cuda.sh builds it)"
                }
            );
            if !check {
                return Ok(ExitCode::SUCCESS);
            }
            anyhow::ensure!(
                !opened.device.is_cpu(),
                "--check compares a GPU against the CPU, and the device here is the CPU ({})",
                crate::model::device::NO_CUDA_BUILD
            );
            let shape = CheckShape {
                image_size,
                batch,
                ..CheckShape::LECTURE
            };
            let rows = device_check::compare(&opened.device, shape)?;
            print!("{}", device_check::table(&rows));
            if !rows.iter().all(device_check::Difference::agrees) {
                eprintln!("error: a relative difference is above 1e-3");
                return Ok(ExitCode::from(1));
            }
            println!("OK: {} agrees with the CPU", opened.info.kind);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { experiment } => {
            let experiment = load_experiment(experiment.as_deref())?;
            print!("{}", describe(&experiment)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Summary {
            experiment,
            variant,
        } => {
            let experiment = load_experiment(experiment.as_deref())?;
            print!("{}", crate::plan::summary(&experiment, variant.as_deref())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Weights(command) => crate::model::weights::cli::run(command),
        Command::Hash(args) => crate::fingerprint::command::run(&args),
        Command::Bench(args) => crate::bench::run(&args),
        Command::BenchSweep {
            work_dir,
            csv,
            channels,
            epochs,
            seeds,
            train_images,
            validation_images,
            no_demo,
            jobs,
        } => {
            use crate::bench::sweep::{run_sweep_benchmarks, table, write_csv, SweepBenchOptions};
            let opts = SweepBenchOptions {
                work_dir,
                channels: channels
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("--channels takes five numbers"))?,
                epochs,
                seeds: seeds as usize,
                train_images: train_images as usize,
                validation_images: validation_images as usize,
                demo: !no_demo,
                jobs,
                ..SweepBenchOptions::default()
            };
            let rows = run_sweep_benchmarks(&opts)?;
            print!("{}", table(&rows));
            write_csv(&rows, &csv)?;
            println!("wrote {}", csv.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// After a sweep, the report of the code state it ran under (when a cell has results). A report
/// that cannot be written is a warning: the sweep's own outcome decides the exit code.
fn write_sweep_report(file: Option<&Path>, results: &[sweep::CellResult], root: PathBuf) {
    let finished = results.iter().find(|r| r.last.is_some());
    let Some(state) = finished
        .and_then(|r| r.dir.ancestors().nth(3))
        .and_then(|d| d.file_name())
    else {
        return;
    };
    let args = crate::report::ReportArgs {
        experiment: file.map(|f| f.display().to_string()),
        commit: Some(state.to_string_lossy().into_owned()),
        against: None,
        baseline: None,
        metric: crate::report::Metric::FinalValAcc,
        results: root,
    };
    println!();
    if let Err(e) = crate::report::run_report(&args) {
        eprintln!("warning: the report could not be written: {e:#} (try `runner report`)");
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    crate::cache::parse_size(text)
}

fn load_experiment(path: Option<&Path>) -> anyhow::Result<Experiment> {
    Ok(match path {
        Some(p) => crate::plan::load(p)?,
        None => crate::plan::parse(DEMO_TOML, Path::new("experiments/demo.toml"))
            .context("the embedded demo experiment")?,
    })
}

/// A short description of the matrix: variants, trainable layers, parameter counts, seeds.
pub fn describe(experiment: &Experiment) -> anyhow::Result<String> {
    let mut out = format!(
        "{}: {} variants x {} seeds = {} cells\n",
        experiment.name,
        experiment.variants.len(),
        experiment.seeds.len(),
        experiment.variants.len() * experiment.seeds.len()
    );
    for v in &experiment.variants {
        let [h, w] = v.config.dataset.image_size;
        let arch = Architecture::build(&v.config.model, h as usize, w as usize)?;
        let mask =
            freeze::trainable_mask(&v.config.training.freeze, &arch).map_err(anyhow::Error::msg)?;
        let trainable: usize = arch
            .layers
            .iter()
            .zip(&mask)
            .filter(|(_, &t)| t)
            .map(|(l, _)| l.params())
            .sum();
        let layers: Vec<&str> = arch
            .layers
            .iter()
            .zip(&mask)
            .filter(|(l, &t)| t && l.has_weights())
            .map(|(l, _)| l.name.as_str())
            .collect();
        out.push_str(&format!(
            "  {:<24} trainable {:>10} / {:>10} params; trains {}; augmentation steps: {}\n",
            v.name,
            trainable,
            arch.total_params(),
            if layers.is_empty() {
                "nothing".to_string()
            } else {
                layers.join(", ")
            },
            v.config.dataset.augmentation.len()
        ));
    }
    let seeds: Vec<String> = experiment.seeds.iter().map(u64::to_string).collect();
    out.push_str(&format!("  seeds: {}\n", seeds.join(", ")));
    if let Some(stage) = &experiment.pretrain {
        let users: Vec<&str> = experiment
            .variants
            .iter()
            .filter(|v| experiment.stage_of(&v.config).is_some())
            .map(|v| v.name.as_str())
            .collect();
        let [h, w] = stage.config.dataset.image_size;
        let data = match &stage.config.dataset.source {
            crate::config::DataSource::Directories { train, .. } => {
                format!("the class folders of {}", train.display())
            }
            crate::config::DataSource::Synthetic(_) => "a generated source task".to_string(),
        };
        out.push_str(&format!(
            "  [{}] stage: trains every layer from scratch on {data} at {h}x{w}, {} epochs, \
             seed {}, before any cell; its conv base is the weights of {}\n",
            stage.name,
            stage.config.training.epochs,
            stage.seed,
            if users.is_empty() {
                "no variant (it will not run)".to_string()
            } else {
                users.join(", ")
            }
        ));
    }
    Ok(out)
}

/// A scratch directory beside the results (same file system), removed when dropped.
fn tempfile_dir(layout: &ResultsLayout) -> anyhow::Result<ScratchDir> {
    std::fs::create_dir_all(&layout.root)?;
    let path = layout
        .root
        .join(format!(".reproduce-{}", std::process::id()));
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(ScratchDir(path))
}

struct ScratchDir(PathBuf);

impl ScratchDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// First Ctrl-C: finish the current batch, keep what was written, stop. Second: exit at once.
///
/// The signal is watched by a tokio task on its own thread; on Unix the handler is registered
/// before this returns, so a Ctrl-C right after the start is not lost.
fn install_interrupt_handler() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let on_signal = move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now");
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current batch (press Ctrl-C again to exit at once)");
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warning: Ctrl-C handling is unavailable: {e}");
            return stop;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let registered = {
            let _context = runtime.enter();
            signal(SignalKind::interrupt())
        };
        match registered {
            Ok(mut interrupts) => {
                std::thread::spawn(move || {
                    runtime.block_on(async move {
                        while interrupts.recv().await.is_some() {
                            on_signal();
                        }
                    })
                });
            }
            Err(e) => eprintln!("warning: Ctrl-C handling is unavailable: {e}"),
        }
    }
    #[cfg(not(unix))]
    std::thread::spawn(move || {
        runtime.block_on(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                on_signal();
            }
        })
    });
    stop
}
