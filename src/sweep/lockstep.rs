//! Which cells of a sweep train in lockstep (`train::lockstep`), and running such a pair.
//!
//! Two cells pair when they will train (neither is skipped), both train on augmented images
//! (so no feature cache serves their training batches), both have a frozen prefix, and they
//! draw the same batches from the same network start: the same data, weights, seed, input size,
//! batch size, order, preprocessing and augmentation. The prefix they share is the shorter of
//! their two frozen prefixes. In the lecture's matrix that is `feature_extraction_aug` with
//! `fine_tuning_aug` for every seed: blocks 1 to 4 run once per batch for both. Whether their
//! prefixes really hold the same parameters, and whether both start at the same epoch, is
//! checked again when they start training (`Lockstep::join`); if not, each trains alone.
//!
//! Only the serial loop pairs cells (`--jobs N` already keeps the cores busy with whole cells,
//! and a Slurm array runs every cell as its own task). A cell pairs with at most one other,
//! in matrix order.

use std::sync::atomic::{AtomicBool, Ordering};

use super::cell::run_cell;
use super::inputs::Inputs;
use super::{CellResult, SweepOptions};
use crate::model::network::frozen_prefix_len;
use crate::model::OpenDevice;
use crate::plan::{CellPlan, Plan};
use crate::train::lockstep::{Lockstep, Seat};

/// A pair of cells (indices into the sweep's cells, `first < second`) and the end of the
/// frozen prefix they share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub first: usize,
    pub second: usize,
    pub end: usize,
}

/// What must be equal for two cells to draw the same batches into the same prefix, or `None`
/// when `cell` cannot train in lockstep (no augmentation, or no frozen prefix).
fn batches_key(cell: &CellPlan) -> Option<String> {
    let variant = &cell.variant;
    let dataset = &variant.config.dataset;
    if dataset.augmentation.is_empty() || frozen_end(cell) == 0 {
        return None;
    }
    Some(format!(
        "{} {} {} {:?} {} {:?} {:?} {:?}",
        variant.weights_key,
        variant.data_key,
        cell.cell.seed,
        variant.architecture.input,
        dataset.batch_size,
        dataset.shuffle,
        dataset.preprocessing,
        dataset.augmentation,
    ))
}

/// The pairs among `cells` whose `trains` flag is set, in matrix order.
pub fn pairs(cells: &[CellPlan], trains: &[bool]) -> Vec<Pair> {
    let keys: Vec<Option<String>> = cells
        .iter()
        .zip(trains)
        .map(|(c, &t)| if t { batches_key(c) } else { None })
        .collect();
    let mut taken = vec![false; cells.len()];
    let mut out = Vec::new();
    for first in 0..cells.len() {
        let Some(key) = keys[first].as_ref().filter(|_| !taken[first]) else {
            continue;
        };
        let found = (first + 1..cells.len())
            .filter(|&j| !taken[j] && keys[j].as_ref() == Some(key))
            .map(|j| (j, frozen_end(&cells[first]).min(frozen_end(&cells[j]))))
            .find(|&(j, end)| prefix_identical(&cells[first], &cells[j], end));
        if let Some((second, end)) = found {
            taken[first] = true;
            taken[second] = true;
            out.push(Pair { first, second, end });
        }
    }
    out
}

/// The end of `cell`'s frozen prefix: its output is that of layers `..frozen_end`.
fn frozen_end(cell: &CellPlan) -> usize {
    frozen_prefix_len(&cell.variant.architecture, &cell.variant.trainable)
}

/// Whether the two architectures agree on their layers `..end`.
fn prefix_identical(a: &CellPlan, b: &CellPlan, end: usize) -> bool {
    let (a, b) = (
        &a.variant.architecture.layers,
        &b.variant.architecture.layers,
    );
    a.len() >= end
        && b.len() >= end
        && a[..end]
            .iter()
            .zip(&b[..end])
            .all(|(x, y)| x.name == y.name && x.kind == y.kind && x.output == y.output)
}

/// Train the pair's two cells at once, each on its own thread (their kernels share the
/// machine's compute threads), sharing the prefix outputs of their training batches. Returns
/// both results (the first's, the second's; `None` for a cell not started because the sweep was
/// stopping); an error or a panic of either stops the other after its current batch, as with
/// `--jobs`.
pub fn run_pair(
    plan: &Plan,
    cells: (&CellPlan, &CellPlan),
    pair: Pair,
    inputs: &Inputs,
    device: &OpenDevice,
    options: &SweepOptions,
    stop: &AtomicBool,
) -> anyhow::Result<(Option<CellResult>, Option<CellResult>)> {
    let lockstep = Lockstep::new(pair.end);
    let layer = &cells.0.variant.architecture.layers[pair.end - 1].name;
    options.progress.line(&format!(
        "{} and {}, seed {}: in lockstep, layers up to {layer} run once per training batch for both",
        cells.0.cell.variant, cells.1.cell.variant, cells.0.cell.seed
    ));
    let run = |index: usize, cell: &CellPlan, id: usize| {
        // Leaves whichever way the cell ends (trained, skipped, failed, or a panic), so that the
        // other never waits for it.
        let _seat = Seat {
            lockstep: &lockstep,
            id,
        };
        let _stops_on_panic = StopOnPanic(stop);
        if stop.load(Ordering::SeqCst) {
            // The other cell failed while this one waited to start.
            return Ok(None);
        }
        let options = SweepOptions {
            progress: options.progress.for_cell(index),
            ..options.clone()
        };
        options.progress.cell_started();
        let result = run_cell(
            plan,
            cell,
            inputs,
            device,
            &options,
            Some((&lockstep, id)),
            stop,
        );
        match &result {
            Ok(r) => options.progress.cell_ended(r),
            Err(_) => stop.store(true, Ordering::SeqCst),
        }
        result.map(Some)
    };
    // One sets up while the other waits: the cell with the shorter frozen prefix first, so that
    // the other's validation features come from its cached ones (`train::features`), and two
    // full-size prefixes never run at once (memory). `lead` is 0 when the first cell leads.
    let lead = usize::from(frozen_end(cells.1) < frozen_end(cells.0));
    let (first, second) = std::thread::scope(|scope| {
        let (lockstep, run) = (&lockstep, &run);
        let second = scope.spawn(move || {
            if lead == 0 {
                lockstep.wait_for(0);
            }
            run(pair.second, cells.1, 1)
        });
        if lead == 1 {
            lockstep.wait_for(1);
        }
        let first = run(pair.first, cells.0, 0);
        let second = second
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (first, second)
    });
    let (shared, alone) = lockstep.counts();
    if shared > 0 {
        options.progress.line(&format!(
            "lockstep: {shared} training batches' prefix outputs computed once for both cells, \
             {alone} for one of them"
        ));
    }
    Ok((first?, second?))
}

/// Sets the stop flag when dropped during a panic, so that the other cell of the pair stops
/// after its batch instead of training to its end before the panic is reported.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Vec<CellPlan> {
        let experiment = crate::plan::parse(text, std::path::Path::new("e.toml")).unwrap();
        Plan::new(&experiment, None).unwrap().cells
    }

    const BASE: &str = r#"
name = "pairs"
seeds = [0, 1]
[dataset]
image_size = [32, 32]
batch_size = 8
[dataset.synthetic]
seed = 3
train_per_class = 4
validation_per_class = 2
[model]
channels = [4, 4, 4, 4, 4]
weights = "none"
head = { units = [4] }
[[variants]]
name = "fe"
training.freeze = ["block*"]
[[variants]]
name = "fe_aug"
training.freeze = ["block*"]
dataset.augmentation = [{ type = "flip", mode = "horizontal" }]
[[variants]]
name = "ft"
training.trainable_from = "block5_conv1"
[[variants]]
name = "ft_aug"
training.trainable_from = "block5_conv1"
dataset.augmentation = [{ type = "flip", mode = "horizontal" }]
"#;

    fn names(cells: &[CellPlan], pairs: &[Pair]) -> Vec<String> {
        pairs
            .iter()
            .map(|p| {
                let (a, b) = (&cells[p.first].cell, &cells[p.second].cell);
                format!("{}/{}+{}/{}", a.variant, a.seed, b.variant, b.seed)
            })
            .collect()
    }

    #[test]
    fn the_augmented_variants_pair_per_seed_and_share_the_shorter_prefix() {
        let cells = plan(BASE);
        let pairs = pairs(&cells, &vec![true; cells.len()]);
        assert_eq!(
            names(&cells, &pairs),
            ["fe_aug/0+ft_aug/0", "fe_aug/1+ft_aug/1"]
        );
        let ft = cells.iter().find(|c| c.cell.variant == "ft_aug").unwrap();
        let ft_end = frozen_end(ft);
        assert_eq!(pairs[0].end, ft_end);
        assert_eq!(
            ft.variant.architecture.layers[ft_end - 1].name,
            "block4_pool"
        );
    }

    #[test]
    fn a_cell_pairs_with_the_next_one_whose_prefix_is_the_same() {
        // ft_aug's layers differ from fe_aug's (other widths), ft2_aug's do not.
        let text = BASE.replace(
            "name = \"ft_aug\"\n",
            "name = \"ft_aug\"\nmodel.channels = [8, 8, 8, 8, 8]\n",
        )
            + "[[variants]]\nname = \"ft2_aug\"\ntraining.trainable_from = \"block5_conv1\"\n\
             dataset.augmentation = [{ type = \"flip\", mode = \"horizontal\" }]\n";
        let cells = plan(&text);
        let pairs = pairs(&cells, &vec![true; cells.len()]);
        assert_eq!(
            names(&cells, &pairs),
            ["fe_aug/0+ft2_aug/0", "fe_aug/1+ft2_aug/1"]
        );
    }

    #[test]
    fn cells_that_do_not_train_or_draw_other_batches_do_not_pair() {
        let cells = plan(BASE);
        let mut trains = vec![true; cells.len()];
        let skipped = cells
            .iter()
            .position(|c| c.cell.variant == "ft_aug" && c.cell.seed == 0)
            .unwrap();
        trains[skipped] = false;
        assert_eq!(
            names(&cells, &pairs(&cells, &trains)),
            ["fe_aug/1+ft_aug/1"]
        );
        let text = BASE.replace(
            "name = \"ft_aug\"\ntraining.trainable_from = \"block5_conv1\"\n\
             dataset.augmentation = [{ type = \"flip\", mode = \"horizontal\" }]",
            "name = \"ft_aug\"\ntraining.trainable_from = \"block5_conv1\"\n\
             dataset.augmentation = [{ type = \"flip\", mode = \"vertical\" }]",
        );
        assert_ne!(text, BASE);
        let cells = plan(&text);
        assert!(pairs(&cells, &vec![true; cells.len()]).is_empty());
        let text = BASE.replace(
            "name = \"ft_aug\"\n",
            "name = \"ft_aug\"\ndataset.batch_size = 4\n",
        );
        let cells = plan(&text);
        assert!(pairs(&cells, &vec![true; cells.len()]).is_empty());
    }
}
