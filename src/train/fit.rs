//! The epoch loop of one cell: Keras `fit` semantics (metrics with pre-update weights, validation
//! after each epoch with the end-of-epoch weights and no augmentation), plus the cell's stop
//! conditions: a non-finite loss ("diverged") and a user interrupt (checked after every batch).

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;

use super::lockstep::{Joining, Lockstep, Seat};
use super::loss::Objective;
use super::metrics::{EpochMetrics, Running};
use super::optim::KerasOptimizer;
use crate::config::DatasetConfig;
use crate::dataset::batches::{epoch_order, Batch, EpochPlan, Split};
use crate::model::{Mode, Network};
use crate::train::features::FeatureSet;

/// How a cell's training ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FitOutcome {
    Completed,
    /// The training loss became NaN or infinite in this epoch (1-based) and batch (1-based).
    Diverged {
        epoch: usize,
        batch: usize,
        loss: f64,
    },
    /// Stopped by the user after a batch of this epoch (1-based); finished epochs are kept.
    Interrupted {
        epoch: usize,
    },
}

/// Progress callbacks, so the loop knows nothing about terminals or files.
pub trait Observer {
    fn on_epoch_start(&mut self, _epoch: usize, _batches: usize) {}
    fn on_batch(&mut self, _epoch: usize, _batch: usize, _running: &Running) {}
    /// Something worth a line in the cell's output (e.g. why it did not train in lockstep).
    fn on_note(&mut self, _text: &str) {}
    /// Called after each finished epoch, before its checkpoint is written; an error stops
    /// training (e.g. the metrics file cannot be written).
    fn on_epoch_end(&mut self, metrics: &EpochMetrics, network: &Network) -> anyhow::Result<()>;
}

pub struct Fit<'a> {
    pub network: &'a Network,
    pub optimizer: &'a mut KerasOptimizer,
    pub train: &'a Split,
    pub validation: &'a Split,
    pub dataset: &'a DatasetConfig,
    pub epochs: usize,
    pub seed: u64,
    pub stop: &'a AtomicBool,
    /// The first epoch to run (1-based): 1, or the epoch after a restored checkpoint.
    pub first_epoch: usize,
    /// Where to write a resumable checkpoint after every epoch, if anywhere.
    pub checkpoint: Option<&'a std::path::Path>,
    /// Cached outputs of the frozen prefix, for the splits that can use them.
    pub features: CellFeatures<'a>,
    /// A partner cell to share training batches' prefix outputs with (`lockstep`), and this
    /// cell's place in it (0 or 1). Used only when the training batches are images (no cached
    /// training set); otherwise this cell leaves at once.
    pub lockstep: Option<(&'a Lockstep, usize)>,
}

/// The frozen-prefix outputs a cell trains and validates from (see `features`): with a set, the
/// network runs only from layer `start` on; without, the full network runs on the images.
#[derive(Debug, Clone, Copy, Default)]
pub struct CellFeatures<'a> {
    pub start: usize,
    pub train: Option<&'a FeatureSet>,
    pub validation: Option<&'a FeatureSet>,
}

impl Fit<'_> {
    pub fn run(self, observer: &mut dyn Observer) -> anyhow::Result<FitOutcome> {
        let Fit {
            network,
            optimizer,
            train,
            validation,
            dataset,
            epochs,
            seed,
            stop,
            first_epoch,
            checkpoint,
            features,
            lockstep,
        } = self;
        let batches = train.len().div_ceil(dataset.batch_size);
        let seat = match lockstep {
            // Only a cell whose whole shared prefix is frozen may take its outputs from another.
            Some((lockstep, id))
                if features.train.is_none() && network.frozen_prefix_len() >= lockstep.end() =>
            {
                let seat = Seat { lockstep, id };
                let identity = batch_identity(network, lockstep.end(), train, dataset, seed)?;
                match lockstep.join(id, first_epoch.max(1), identity) {
                    Joining::Paired => Some(seat),
                    Joining::Alone(reason) => {
                        if let Some(reason) = reason {
                            observer.on_note(&format!("  not in lockstep: {reason}"));
                        }
                        None
                    }
                }
            }
            Some((lockstep, id)) => {
                lockstep.leave(id);
                None
            }
            None => None,
        };
        // Training batches hold prefix outputs when they are shared or cached.
        let train_start = match (&seat, features.train) {
            (Some(seat), _) => seat.lockstep.end(),
            (None, Some(_)) => features.start,
            (None, None) => 0,
        };
        for epoch in first_epoch.max(1)..=epochs {
            let started = Instant::now();
            observer.on_epoch_start(epoch, batches);
            let plan = EpochPlan {
                order: epoch_order(
                    train.len(),
                    dataset.shuffle,
                    dataset.batch_size,
                    seed,
                    epoch - 1,
                ),
                batch_size: dataset.batch_size,
                preprocessing: dataset.preprocessing,
                augmentation: Some((dataset.augmentation.as_slice(), seed, epoch - 1)),
            };
            let mut running = Running::default();
            let mut index = 0;
            let mut failure: Option<anyhow::Error> = None;
            let mut diverged = None;
            let step = |batch: Batch| {
                index += 1;
                match train_step(network, optimizer, &batch, train_start) {
                    Ok((loss, correct)) if loss.is_finite() => {
                        running.update(loss, correct, batch.size);
                        observer.on_batch(epoch, index, &running);
                    }
                    Ok((loss, _)) => {
                        diverged = Some(FitOutcome::Diverged {
                            epoch,
                            batch: index,
                            loss,
                        });
                        return ControlFlow::Break(());
                    }
                    Err(e) => {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                if stop.load(Ordering::SeqCst) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            let flow = match (&seat, features.train) {
                (Some(seat), _) => for_each_shared_batch(seat, network, train, &plan, epoch, step)?,
                (None, Some(set)) => for_each_feature_batch(set, train, &plan, step)?,
                (None, None) => train.for_each_batch(&plan, step)?,
            };
            if let Some(e) = failure {
                return Err(e);
            }
            if let Some(d) = diverged {
                return Ok(d);
            }
            if flow.is_break() {
                return Ok(FitOutcome::Interrupted { epoch });
            }
            let (val_loss, val_acc) = match features.validation {
                Some(set) => evaluate_features(network, validation, dataset, features.start, set)?,
                None => evaluate(network, validation, dataset)?,
            };
            let metrics = EpochMetrics {
                epoch,
                train_loss: running.loss(),
                train_acc: running.accuracy(),
                val_loss,
                val_acc,
                seconds: started.elapsed().as_secs_f64(),
            };
            observer.on_epoch_end(&metrics, network)?;
            // Metrics first, checkpoint second: a crash in between leaves a metrics row without
            // a checkpoint, and resuming from the previous checkpoint recomputes that row exactly.
            if let Some(path) = checkpoint {
                super::checkpoint::save(path, epoch, network, optimizer)?;
            }
            if !val_loss.is_finite() {
                return Ok(FitOutcome::Diverged {
                    epoch,
                    batch: index,
                    loss: val_loss,
                });
            }
        }
        Ok(FitOutcome::Completed)
    }
}

/// How many times the loss of guessing (`chance_loss`) an epoch's mean loss may reach before the
/// loss counts as exploded (`loss_explosion`).
pub const EXPLOSION_FACTOR: f64 = 1e3;

/// A warning when the loss exploded while staying finite: some epoch's mean training or
/// validation loss is over `EXPLOSION_FACTOR` times `chance_loss`, the loss of predicting every
/// class with equal probability (ln 2 for a binary head, so above 693). Such a cell finishes, but
/// what it learned is noise; the warning names the first such epoch and the largest loss.
pub fn loss_explosion(metrics: &[EpochMetrics], chance_loss: f64) -> Option<String> {
    let limit = EXPLOSION_FACTOR * chance_loss;
    let first = metrics
        .iter()
        .find(|m| m.train_loss > limit || m.val_loss > limit)?;
    let largest = metrics
        .iter()
        .flat_map(|m| [m.train_loss, m.val_loss])
        .filter(|l| l.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    Some(format!(
        "the loss exploded: from epoch {} it is over {EXPLOSION_FACTOR} times the loss of \
         guessing ({chance_loss:.4}), up to {largest:.3e} (train_loss {:.3e}, val_loss {:.3e} in \
         epoch {}); the results are not meaningful: lower training.learning_rate",
        first.epoch, first.train_loss, first.val_loss, first.epoch
    ))
}

/// Forward, loss, backward, update. Returns the batch's mean loss and correct count, both
/// computed with the pre-update weights, as Keras reports them.
///
/// `start` is 0 for a batch of images, or the first layer to run when the batch holds cached
/// prefix outputs.
fn train_step(
    network: &Network,
    optimizer: &mut KerasOptimizer,
    batch: &Batch,
    start: usize,
) -> anyhow::Result<(f64, usize)> {
    let objective = Objective::of(network);
    let logits = network.forward_from(start, &batch.images, batch.size, Mode::Train)?;
    let loss = objective.loss(&logits, &batch.labels)?;
    let loss_value: f32 = loss.to_scalar()?;
    let correct = objective.correct(&logits.detach(), &batch.labels)?;
    if loss_value.is_finite() {
        optimizer.step(&loss.backward()?)?;
    }
    Ok((loss_value as f64, correct))
}

/// (mean loss, accuracy) over a whole split in file order, without augmentation or gradients.
pub fn evaluate(
    network: &Network,
    split: &Split,
    dataset: &DatasetConfig,
) -> anyhow::Result<(f64, f64)> {
    evaluate_from(network, split, dataset, None)
}

/// `evaluate` on the cached outputs of layers `..start` (`set`, in the split's order).
pub fn evaluate_features(
    network: &Network,
    split: &Split,
    dataset: &DatasetConfig,
    start: usize,
    set: &FeatureSet,
) -> anyhow::Result<(f64, f64)> {
    evaluate_from(network, split, dataset, Some((start, set)))
}

fn evaluate_from(
    network: &Network,
    split: &Split,
    dataset: &DatasetConfig,
    features: Option<(usize, &FeatureSet)>,
) -> anyhow::Result<(f64, f64)> {
    let plan = EpochPlan {
        order: (0..split.len()).collect(),
        batch_size: dataset.batch_size,
        preprocessing: dataset.preprocessing,
        augmentation: None,
    };
    let mut running = Running::default();
    let mut failure = None;
    let start = features.map_or(0, |(start, _)| start);
    let consume = |batch: Batch| {
        let step = || -> anyhow::Result<(f64, usize)> {
            let objective = Objective::of(network);
            let logits = network.forward_from(start, &batch.images, batch.size, Mode::Eval)?;
            let loss: f32 = objective.loss(&logits, &batch.labels)?.to_scalar()?;
            Ok((loss as f64, objective.correct(&logits, &batch.labels)?))
        };
        match step() {
            Ok((loss, correct)) => {
                running.update(loss, correct, batch.size);
                ControlFlow::Continue(())
            }
            Err(e) => {
                failure = Some(e);
                ControlFlow::Break(())
            }
        }
    };
    let _ = match features {
        Some((_, set)) => for_each_feature_batch(set, split, &plan, consume)?,
        None => split.for_each_batch(&plan, consume)?,
    };
    match failure {
        Some(e) => Err(e),
        None => Ok((running.loss(), running.accuracy())),
    }
}

/// What makes two cells' training batches of layers `..end` the same: the prefix (its key in
/// the feature cache: layers, parameters, preprocessing, device, code) and the batches (split,
/// seed, order, augmentation).
fn batch_identity(
    network: &Network,
    end: usize,
    split: &Split,
    dataset: &DatasetConfig,
    seed: u64,
) -> anyhow::Result<String> {
    let prefix = super::features::prefix_key(network, dataset)?
        .context("a cell in lockstep has a frozen prefix")?
        .shorter(end)
        .key;
    Ok(format!(
        "prefix {prefix}\nsplit {} {}\nseed {seed}\nbatch {} {:?}\naugmentation {:?}",
        split.root.display(),
        split.len(),
        dataset.batch_size,
        dataset.shuffle,
        dataset.augmentation,
    ))
}

/// The training batches of one epoch as the output of the shared prefix (layers
/// `..seat.lockstep.end()`): each computed by whichever of the pair asks first (from the
/// augmented images, as `Split::for_each_batch` assembles them), the same order and boundaries.
fn for_each_shared_batch(
    seat: &Seat<'_>,
    network: &Network,
    split: &Split,
    plan: &EpochPlan<'_>,
    epoch: usize,
    consume: impl FnMut(Batch) -> ControlFlow<()>,
) -> anyhow::Result<ControlFlow<()>> {
    let end = seat.lockstep.end();
    for_each_prefix_batch(split, plan, consume, |k, chunk| {
        let values = seat.lockstep.prefix(seat.id, epoch, k, || {
            let batch = split.batch(chunk, plan)?;
            Ok(network.forward_prefix(&batch.images, batch.size, end)?)
        })?;
        Ok(values.as_ref().clone())
    })
}

/// `Split::for_each_batch` over cached prefix outputs: the same order and batch boundaries,
/// each `Batch::images` holding the samples' cached values instead of pixels.
fn for_each_feature_batch(
    set: &FeatureSet,
    split: &Split,
    plan: &EpochPlan<'_>,
    consume: impl FnMut(Batch) -> ControlFlow<()>,
) -> anyhow::Result<ControlFlow<()>> {
    for_each_prefix_batch(split, plan, consume, |_, chunk| set.gather(chunk))
}

/// The batches of `plan` (the same order and boundaries as `Split::for_each_batch`), each
/// holding what `values(k, samples)` gives for batch `k` (prefix outputs, not pixels).
fn for_each_prefix_batch(
    split: &Split,
    plan: &EpochPlan<'_>,
    mut consume: impl FnMut(Batch) -> ControlFlow<()>,
    mut values: impl FnMut(usize, &[usize]) -> anyhow::Result<Vec<f32>>,
) -> anyhow::Result<ControlFlow<()>> {
    for (k, chunk) in plan.order.chunks(plan.batch_size.max(1)).enumerate() {
        let batch = Batch {
            size: chunk.len(),
            height: 0,
            width: 0,
            images: values(k, chunk)?,
            labels: chunk
                .iter()
                .map(|&i| split.samples[i].label as f32)
                .collect(),
        };
        if consume(batch).is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::*;
    use crate::dataset::{Image, Sample};
    use crate::model::arch::Architecture;
    use crate::model::weights::LoadedWeights;
    use crate::train::loss::bce_with_logits;
    use candle_core::Tensor;

    /// `n` random 32x32 images in two classes, in memory (shared with other training tests).
    pub(crate) fn split(n: usize) -> Split {
        let mut rng = crate::base::rng::stream(5, "test-images");
        let images: Vec<Image> = (0..n)
            .map(|_| {
                let mut img = Image::new(32, 32);
                img.data
                    .iter_mut()
                    .for_each(|v| *v = crate::base::rng::uniform_f32(&mut rng, 0.0, 255.0));
                img
            })
            .collect();
        Split::from_images(
            "mem".into(),
            vec!["a".into(), "b".into()],
            (0..n)
                .map(|i| Sample {
                    path: format!("{i}.png").into(),
                    label: (i % 2) as u32,
                })
                .collect(),
            &images,
        )
    }

    fn dataset(augmentation: Vec<AugmentStep>) -> DatasetConfig {
        DatasetConfig {
            source: DataSource::Directories {
                train: "t".into(),
                validation: "v".into(),
            },
            image_size: [32, 32],
            batch_size: 4,
            shuffle: ShuffleMode::Keras,
            preprocessing: Preprocessing::Rescale,
            on_bad_image: OnBadImage::Error,
            augmentation,
            known: None,
        }
    }

    fn lecture_augmentation() -> Vec<AugmentStep> {
        let sampling = |factor| AugmentStep::Rotation {
            factor,
            fill_mode: FillMode::Reflect,
            fill_value: 0.0,
            interpolation: Interpolation::Bilinear,
        };
        vec![
            AugmentStep::Flip {
                mode: FlipMode::Horizontal,
            },
            sampling(Factor::Symmetric(0.1)),
            AugmentStep::Zoom {
                height_factor: Factor::Symmetric(0.1),
                width_factor: None,
                fill_mode: FillMode::Reflect,
                fill_value: 0.0,
                interpolation: Interpolation::Bilinear,
            },
        ]
    }

    fn batches(split: &Split, augmentation: Option<(&[AugmentStep], u64, usize)>) -> Vec<Batch> {
        let plan = EpochPlan {
            order: (0..split.len()).collect(),
            batch_size: 4,
            preprocessing: Preprocessing::Rescale,
            augmentation,
        };
        let mut out = Vec::new();
        let _ = split
            .for_each_batch(&plan, |b| {
                out.push(b);
                ControlFlow::Continue(())
            })
            .unwrap();
        out
    }

    #[test]
    fn the_same_seed_gives_identical_augmented_batches() {
        let split = split(6);
        let steps = lecture_augmentation();
        let a = batches(&split, Some((&steps, 7, 0)));
        assert_eq!(a, batches(&split, Some((&steps, 7, 0))));
        assert_ne!(
            a,
            batches(&split, Some((&steps, 8, 0))),
            "another seed augments differently"
        );
        assert_ne!(
            a,
            batches(&split, Some((&steps, 7, 1))),
            "another epoch augments differently"
        );
        assert_ne!(a, batches(&split, None), "augmentation changes the images");
    }

    #[test]
    fn validation_is_never_augmented() {
        let split = split(10);
        let model = ModelConfig {
            architecture: "vgg16".into(),
            channels: [2, 2, 2, 2, 2],
            weights: Weights::None,
            conv_init: ConvInit::HeUniform,
            head: HeadSpec {
                units: vec![4],
                ..HeadSpec::default()
            },
        };
        let arch = Architecture::build(&model, 32, 32).unwrap();
        let n = arch.layers.len();
        let net = Network::new(
            arch,
            ConvInit::HeUniform,
            vec![true; n],
            &LoadedWeights::default(),
            3,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let plain = evaluate(&net, &split, &dataset(vec![])).unwrap();
        let with_aug = evaluate(&net, &split, &dataset(lecture_augmentation())).unwrap();
        assert_eq!(plain, with_aug);
        // The same network on augmented inputs gives another loss, so the equality above is not vacuous.
        let aug_batches = batches(&split, Some((&lecture_augmentation(), 3, 0)));
        let aug_loss: f32 = {
            let b = &aug_batches[0];
            let logits = net.forward(&b.images, b.size, Mode::Eval).unwrap();
            let y = Tensor::from_slice(&b.labels, b.size, net.device()).unwrap();
            bce_with_logits(&logits, &y).unwrap().to_scalar().unwrap()
        };
        let plain_first: f32 = {
            let b = &batches(&split, None)[0];
            let logits = net.forward(&b.images, b.size, Mode::Eval).unwrap();
            let y = Tensor::from_slice(&b.labels, b.size, net.device()).unwrap();
            bce_with_logits(&logits, &y).unwrap().to_scalar().unwrap()
        };
        assert_ne!(aug_loss, plain_first);
    }

    #[test]
    fn an_exploding_but_finite_loss_is_warned_about_and_a_normal_one_is_not() {
        let m = |epoch, train_loss, val_loss| EpochMetrics {
            epoch,
            train_loss,
            train_acc: 0.5,
            val_loss,
            val_acc: 0.5,
            seconds: 0.0,
        };
        let chance = std::f64::consts::LN_2;
        assert_eq!(
            loss_explosion(&[m(1, 0.7, 0.69), m(2, 5.0, 600.0)], chance),
            None
        );
        let warning = loss_explosion(&[m(1, 0.7, 0.7), m(2, 3.9e17, 2.0e8)], chance).unwrap();
        assert!(warning.contains("from epoch 2"), "{warning}");
        assert!(warning.contains("3.900e17"), "{warning}");
        assert!(warning.contains("learning_rate"), "{warning}");
        // The validation loss counts too, and the limit is 1000 times chance (693.1 here).
        assert!(loss_explosion(&[m(1, 0.7, 694.0)], chance).is_some());
        assert!(loss_explosion(&[m(1, 0.7, 693.0)], chance).is_none());
    }
}
