//! The commands of `runner`: one file each, with its clap arguments (their doc comments are the
//! `--help` text) and a `run` that returns an [`Outcome`].

pub mod augment_preview;
pub mod bench;
pub mod bench_sweep;
pub mod cache;
pub mod cancel;
pub mod check;
pub mod compare;
pub mod device;
pub mod evaluate;
pub mod export_mlflow;
pub mod export_model;
pub mod fetch;
pub mod flags;
pub mod hash;
pub mod interrupt;
pub mod outcome;
pub mod predict;
pub mod report;
pub mod reproduce;
pub mod slurm_task;
pub mod status;
pub mod summary;
pub mod sweep;
pub mod weights;
pub mod why;

use clap::{Parser, Subcommand};

pub use outcome::Outcome;

/// Run transfer-learning experiments (VGG16 feature extraction and fine-tuning) reproducibly.
///
/// An experiment file (TOML) declares a data set, a model, training settings, named variants
/// (freeze masks, augmentation, optimizer, ...) and seeds; `runner sweep` trains every
/// variant x seed cell and writes per-epoch metrics under results/. See
/// experiments/reference.toml for every key and its default.
#[derive(Debug, Parser)]
#[command(name = "runner", version, about, long_about, after_help = outcome::exit_codes_help())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train every cell (variant x seed) of an experiment.
    ///
    /// Without an experiment file, runs the embedded offline demo (experiments/demo.toml): a
    /// small VGG-style network pretrained on nine generated classes of shapes, then the lecture's
    /// four variants and a random-base baseline on a new two-class task, two seeds. Results go to <results>/<experiment>/<variant>/seed-<n>/ (metrics.csv, run.json).
    Sweep(sweep::SweepArgs),
    /// Write a grid of augmented training images: what a variant's model sees.
    ///
    /// Uses the same random streams as training, so the grid shows exactly the images of the
    /// given seed and epoch (before preprocessing).
    AugmentPreview(augment_preview::AugmentPreviewArgs),
    /// Show what the caches under the results directory hold (decoded images, frozen-layer
    /// outputs, file hashes), or delete them. Deleting is always safe: they only save time.
    Cache(cache::CacheArgs),
    /// List the runs on disk: code state, cell, status, epochs, accuracy, run key.
    Status(status::StatusArgs),
    /// Say which inputs of a cell's run key (config, data, weights, code, seed) changed since its last run.
    Why(why::WhyArgs),
    /// Re-run a past cell and check it: every input first (data files, weights, code), then the
    /// metrics of a fresh training run against the recorded ones.
    #[command(long_about = reproduce::long_about())]
    Reproduce(reproduce::ReproduceArgs),
    /// Show the device `--device auto` trains on (GPU name, compute capability, driver and
    /// library versions), and with --check compare it against the CPU.
    ///
    /// The check runs the conv base, the logits and one fine-tuning step (block 5 + head, Adam)
    /// on both devices from the same parameters and prints relative differences; float32
    /// rounding gives about 1e-6, anything above 1e-3 fails (exit 1).
    Device(device::DeviceArgs),
    /// Check an experiment file and show its matrix, without training.
    ///
    /// Prints each variant's trainable layers and parameter counts.
    Check(check::CheckArgs),
    /// Print a Keras-style summary of each variant's model: layers, output shapes, parameter
    /// counts, which layers train, and the totals.
    Summary(summary::SummaryArgs),
    /// Download or convert pretrained weights.
    #[command(subcommand)]
    Weights(weights::WeightsCommand),
    /// Print the root hash of a class-folder directory, as a run records it for a data split.
    ///
    /// Lists the directory as training does and hashes every file (SHA-256); the root hash covers
    /// each file's path, size, content and class.
    Hash(hash::HashArgs),
    /// Write a report of an experiment: statistics across seeds, comparisons, figures.
    ///
    /// Writes report.md, a self-contained report.html and summary.csv (plus plots/ as PNG and
    /// SVG) to <results>/<code-state>/<experiment>/report/. Failed, running and missing cells
    /// are listed, never averaged.
    Report(report::ReportArgs),
    /// Compare two variants of an experiment, or two run directories, in the terminal.
    Compare(compare::CompareArgs),
    /// Write a cell's complete model: its frozen layers rebuilt from the base it was trained
    /// from (checked against the SHA-256 it recorded) and its trained parameters, as safetensors
    /// with Keras layer names.
    ///
    /// A cell stores only the parameters it trained (trained.safetensors, best-trained.safetensors).
    ExportModel(export_model::ExportArgs),
    /// Evaluate a trained cell on a labelled test set it never saw: accuracy, loss, confusion
    /// matrix, precision / recall / F1 per class and ROC AUC.
    ///
    /// The test set is a folder of class folders named as the training classes; images are
    /// read as the cell's training read them. Writes <run>/evaluation/<name>.json and .csv,
    /// which `runner report` shows.
    Evaluate(evaluate::EvaluateArgs),
    /// Predict the class of images with a trained cell: writes path, class and probabilities as
    /// CSV.
    ///
    /// Images are decoded, resized and preprocessed as the cell's training did; folders are
    /// read recursively.
    Predict(predict::PredictArgs),
    /// Measure throughput: conv-base forward, block-5 fine-tuning step, head-only step.
    ///
    /// Full VGG16 widths with random (seeded) weights and images: no download. Prints images/s
    /// and GFLOP per wall-clock second and per CPU-second (user + system time of all threads).
    Bench(bench::BenchArgs),
    /// End-to-end sweep benchmarks: a lecture-shaped sweep (150x150 generated images, 4 variants
    /// x 2 seeds), the same without its augmented variants, and the demo, each without caches,
    /// with decoded images cached, with both caches, and rerun on warm caches; prints seconds,
    /// speedup and peak memory, and writes CSV.
    BenchSweep(bench_sweep::BenchSweepArgs),
    /// Download what an experiment names and lacks: known data sets (`dataset.known`) and known
    /// weights, verified by size and SHA-256, resumable, extracted under a temporary name.
    ///
    /// Data sets go to $RUNNER_HOME/datasets, else $XDG_CACHE_HOME/runner/datasets, else
    /// ~/.cache/runner/datasets; weights as `runner weights fetch` puts them.
    Fetch(fetch::FetchArgs),
    /// Cancel an experiment's pending and running Slurm jobs (`runner sweep --slurm`); with
    /// --variant / --seed, only those cells' tasks.
    Cancel(cancel::CancelArgs),
    /// What a job of `runner sweep --slurm` runs on a node (not for direct use).
    #[command(hide = true)]
    SlurmTask(slurm_task::SlurmTaskArgs),
    /// Export cells to a tracking server (`runner export mlflow`).
    #[command(subcommand)]
    Export(export_mlflow::ExportCommand),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
