//! The order in which an epoch visits the training samples (`dataset.shuffle`).
//!
//! Keras shuffles twice (reference §1.4): once when the data set is created, a global permutation
//! that stays fixed for every epoch, then each epoch through tf.data's streaming shuffle buffer of
//! `8 * batch_size` elements, which only reorders locally. TF's Philox stream cannot be reproduced
//! outside TF, so the semantics are reproduced with the run's own named streams instead.

use rand::Rng;

use crate::base::rng;
use crate::config::ShuffleMode;

/// The order of the training samples in `epoch` (0-based) for run seed `seed`.
///
/// * `None`: file order.
/// * `Full`: an independent Fisher-Yates permutation per epoch.
/// * `Keras`: a global permutation (the same every epoch), then a streaming shuffle buffer of
///   `8 * batch_size` elements over it, drawn afresh each epoch.
pub fn epoch_order(
    n: usize,
    mode: ShuffleMode,
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<usize> {
    let epoch_stream = || rng::stream(seed, &format!("shuffle/epoch-{epoch}"));
    match mode {
        ShuffleMode::None => (0..n).collect(),
        ShuffleMode::Full => permutation(n, &mut epoch_stream()),
        ShuffleMode::Keras => {
            let global = permutation(n, &mut rng::stream(seed, "shuffle/global"));
            buffer_shuffle(&global, 8 * batch_size.max(1), &mut epoch_stream())
        }
    }
}

/// Fisher-Yates from the end, as numpy's `RandomState.shuffle`: for i = n-1 down to 1, swap i
/// with a uniform j in 0..=i.
fn permutation(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

/// tf.data's `shuffle(buffer_size)` (`shuffle_dataset_op.cc`): fill the buffer, then repeatedly
/// emit a uniformly chosen slot and refill it from the input; once the input is exhausted, drain
/// the buffer in random order.
fn buffer_shuffle(input: &[usize], buffer_size: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut rest = input.iter().copied();
    let mut buffer: Vec<usize> = rest.by_ref().take(buffer_size).collect();
    let mut out = Vec::with_capacity(input.len());
    while !buffer.is_empty() {
        let slot = rng.random_range(0..buffer.len());
        out.push(buffer[slot]);
        match rest.next() {
            Some(next) => buffer[slot] = next,
            None => {
                buffer.swap_remove(slot);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [ShuffleMode; 3] = [ShuffleMode::None, ShuffleMode::Full, ShuffleMode::Keras];

    fn is_permutation(order: &[usize], n: usize) -> bool {
        let mut sorted = order.to_vec();
        sorted.sort_unstable();
        sorted == (0..n).collect::<Vec<_>>()
    }

    #[test]
    fn every_order_is_a_deterministic_permutation() {
        for mode in MODES {
            for n in [0, 1, 2, 7, 100, 1000] {
                let order = epoch_order(n, mode, 4, 3, 2);
                assert!(is_permutation(&order, n), "{mode:?} n={n}: {order:?}");
                assert_eq!(order, epoch_order(n, mode, 4, 3, 2), "{mode:?} n={n}");
            }
        }
    }

    #[test]
    fn none_is_file_order() {
        assert_eq!(
            epoch_order(5, ShuffleMode::None, 2, 9, 4),
            vec![0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn shuffled_orders_differ_across_epochs_and_seeds() {
        for mode in [ShuffleMode::Full, ShuffleMode::Keras] {
            let base = epoch_order(200, mode, 4, 1, 0);
            assert_ne!(base, (0..200).collect::<Vec<_>>(), "{mode:?}");
            assert_ne!(base, epoch_order(200, mode, 4, 1, 1), "{mode:?} epochs");
            assert_ne!(base, epoch_order(200, mode, 4, 2, 0), "{mode:?} seeds");
        }
    }

    #[test]
    fn keras_order_is_a_local_reshuffle_of_a_fixed_global_permutation() {
        let (n, batch, seed) = (1000, 4, 5);
        let buffer = 8 * batch;
        let global = permutation(n, &mut rng::stream(seed, "shuffle/global"));
        let mut global_position = vec![0; n];
        for (p, &i) in global.iter().enumerate() {
            global_position[i] = p;
        }
        let mut max_lead = 0;
        for epoch in 0..3 {
            let order = epoch_order(n, ShuffleMode::Keras, batch, seed, epoch);
            for (k, &i) in order.iter().enumerate() {
                // An element can be emitted at the earliest once it has entered the buffer.
                let lead = global_position[i].saturating_sub(k);
                assert!(
                    lead < buffer,
                    "epoch {epoch}: element {i} emitted {lead} early"
                );
                max_lead = max_lead.max(lead);
            }
        }
        // The bound is reached in practice, so the window is the buffer and not something smaller.
        assert!(max_lead >= buffer / 2, "max lead {max_lead}");
        // With a buffer as large as the data set, the result is just another full permutation.
        let whole = epoch_order(20, ShuffleMode::Keras, 100, seed, 0);
        assert!(is_permutation(&whole, 20));
    }

    #[test]
    fn fisher_yates_is_uniform_over_small_permutations() {
        // All 6 orders of 3 elements appear with roughly equal frequency (expected 1000 each).
        let mut counts = std::collections::BTreeMap::new();
        let mut r = rng::stream(0, "test");
        for _ in 0..6000 {
            *counts.entry(permutation(3, &mut r)).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 6);
        assert!(
            counts.values().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }
}
