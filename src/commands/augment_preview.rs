//! `runner augment-preview`: a grid of a variant's augmented training images.

use std::path::PathBuf;

use crate::dataset::batches::{epoch_order, Split};
use crate::store::ResultsLayout;
use crate::{augment, sweep};

use super::flags::{ExperimentFile, ResultsDir};
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
#[command(mut_arg("results", |a| a.help("Directory for generated data sets")))]
pub struct AugmentPreviewArgs {
    #[command(flatten)]
    pub experiment: ExperimentFile,
    /// The variant whose augmentation to show.
    #[arg(long, value_name = "NAME")]
    pub variant: String,
    /// Number of images.
    #[arg(short = 'n', default_value_t = 16)]
    pub count: usize,
    /// Output PNG file.
    #[arg(short = 'o', long, value_name = "FILE", default_value = "preview.png")]
    pub output: PathBuf,
    /// Run seed (default: the experiment's first seed).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Epoch, from 1.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub epoch: usize,
    #[command(flatten)]
    pub results: ResultsDir,
}

pub fn run(args: AugmentPreviewArgs) -> anyhow::Result<Outcome> {
    let experiment = args.experiment.load()?;
    let variant = &args.variant;
    let v = experiment.require_variant(variant)?;
    let seed = args.seed.unwrap_or(experiment.seeds[0]);
    let dataset = &v.config.dataset;
    let (train_dir, _) =
        sweep::data_dirs(&dataset.source, &ResultsLayout::new(args.results.results))?;
    let split = Split::open(&train_dir, dataset)?;
    let epoch0 = args.epoch.max(1) - 1;
    let order = epoch_order(
        split.len(),
        dataset.shuffle,
        dataset.batch_size,
        seed,
        epoch0,
    );
    let images = order
        .iter()
        .take(args.count)
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
    crate::base::fs::write_atomic(&args.output, &png)?;
    println!(
        "{} augmented training images of {} / {variant} (seed {seed}, epoch {}, {} steps) -> {}",
        images.len(),
        experiment.name,
        epoch0 + 1,
        dataset.augmentation.len(),
        args.output.display()
    );
    Ok(Outcome::Success)
}
