//! Two cells in lockstep: cells that draw the same training batches (same images, seed, batch
//! order and augmentation) and share a frozen prefix (the same leading layers and parameters)
//! need that prefix's output only once per batch. `feature_extraction_aug` and
//! `fine_tuning_aug` from one base and seed are such a pair: both run blocks 1 to 4, frozen, on
//! the same augmented images every epoch.
//!
//! Each cell trains on its own thread, through its own `Fit`, as it would alone; only where its
//! training batches come from changes. For batch `k` of epoch `e`, the first of the two to ask
//! assembles the batch and runs the prefix (`Network::forward_prefix`); the other takes that
//! result and drops it. Every cell then runs its own layers from the prefix's end
//! (`Network::forward_from`), which gives the same bits as running all its layers on the images
//! (the property the feature cache rests on too), so a cell's numbers do not depend on whether
//! it trained in lockstep.
//!
//! Nothing waits on a partner that does not come: a cell that ends (done, diverged, failed,
//! interrupted) or never starts training (skipped) leaves, and from then on the other computes
//! every prefix itself. The two join only when they start at the same epoch with the same prefix
//! and batches (`Lockstep::join` compares them); otherwise both train alone.
//!
//! At most one prefix is computed at a time (a cell computes batch `k` only after taking `k - 1`,
//! and waits while the other computes `k`), and a cell runs at most `LEAD` batches ahead of the
//! other, so the pair holds only a few batches of prefix outputs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// How many batches' prefix outputs a cell may compute ahead of the other.
const LEAD: usize = 2;

/// The rendezvous of two cells (participants 0 and 1) over the output of layers `..end`.
#[derive(Debug)]
pub struct Lockstep {
    end: usize,
    state: Mutex<State>,
    changed: Condvar,
    /// Batches whose prefix one cell computed and the other took.
    shared: AtomicUsize,
    /// Batches whose prefix a cell computed for itself alone.
    alone: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    joined: [Option<Joined>; 2],
    left: [bool; 2],
    /// Set once both have joined and agree; cleared (for good) when one leaves.
    paired: bool,
    /// Set when the two joined and disagree (another start epoch, prefix or batches).
    refused: bool,
    entries: BTreeMap<(usize, usize), Entry>,
}

#[derive(Debug, Clone, PartialEq)]
struct Joined {
    first_epoch: usize,
    identity: String,
}

#[derive(Debug)]
enum Entry {
    Computing,
    /// Computed by `by`, not yet taken by the other.
    Ready {
        by: usize,
        values: Arc<Vec<f32>>,
    },
}

/// What `join` tells a participant.
#[derive(Debug, Clone, PartialEq)]
pub enum Joining {
    /// Both joined and agree: batches are shared from here on.
    Paired,
    /// The other left before joining, or the two disagree (the reason): train alone.
    Alone(Option<String>),
}

impl Lockstep {
    /// A rendezvous over the output of layers `..end`.
    pub fn new(end: usize) -> Self {
        Lockstep {
            end,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            shared: AtomicUsize::new(0),
            alone: AtomicUsize::new(0),
        }
    }

    /// The prefix's end: its output is that of layers `..end`.
    pub fn end(&self) -> usize {
        self.end
    }

    /// Participant `id` (0 or 1) starts training at `first_epoch`; `identity` names its prefix
    /// (layers and parameters) and its batches (data, seed, order, augmentation,
    /// preprocessing). Waits until the other has joined or left.
    pub fn join(&self, id: usize, first_epoch: usize, identity: String) -> Joining {
        let mut state = self.state.lock().unwrap();
        state.joined[id] = Some(Joined {
            first_epoch,
            identity,
        });
        self.changed.notify_all();
        loop {
            if state.left[1 - id] || state.left[id] {
                return Joining::Alone(None);
            }
            if state.refused {
                return Joining::Alone(Some(refusal(&state)));
            }
            if state.paired {
                return Joining::Paired;
            }
            if let (Some(a), Some(b)) = (&state.joined[0], &state.joined[1]) {
                if a == b {
                    state.paired = true;
                } else {
                    state.refused = true;
                }
                self.changed.notify_all();
                continue;
            }
            state = self.changed.wait(state).unwrap();
        }
    }

    /// Wait until participant `id` has joined (it is ready to train) or left.
    pub fn wait_for(&self, id: usize) {
        let mut state = self.state.lock().unwrap();
        while state.joined[id].is_none() && !state.left[id] {
            state = self.changed.wait(state).unwrap();
        }
    }

    /// Participant `id` is done with training (or never trained): the other goes on alone.
    /// Calling it again changes nothing.
    pub fn leave(&self, id: usize) {
        let mut state = self.state.lock().unwrap();
        if state.left[id] {
            return;
        }
        state.left[id] = true;
        state.paired = false;
        // What the leaver computed stays for the other; what it was still to take goes.
        state
            .entries
            .retain(|_, e| matches!(e, Entry::Ready { by, .. } if *by == id));
        self.changed.notify_all();
    }

    /// The prefix output of batch `batch` (0-based) of epoch `epoch` for participant `id`:
    /// taken from the other when it computed it, else computed here by `compute` (and kept for
    /// the other while both are paired).
    pub fn prefix(
        &self,
        id: usize,
        epoch: usize,
        batch: usize,
        compute: impl FnOnce() -> anyhow::Result<Vec<f32>>,
    ) -> anyhow::Result<Arc<Vec<f32>>> {
        let key = (epoch, batch);
        let mut state = self.state.lock().unwrap();
        loop {
            if !state.paired {
                // Alone, but what the other computed before it left is still good.
                if let Some(Entry::Ready { values, .. }) = state.entries.remove(&key) {
                    self.shared.fetch_add(1, Ordering::Relaxed);
                    return Ok(values);
                }
                drop(state);
                self.alone.fetch_add(1, Ordering::Relaxed);
                return compute().map(Arc::new);
            }
            match state.entries.get(&key) {
                Some(Entry::Ready { by, .. }) if *by != id => {
                    let Some(Entry::Ready { values, .. }) = state.entries.remove(&key) else {
                        unreachable!("the entry was ready")
                    };
                    self.shared.fetch_add(1, Ordering::Relaxed);
                    self.changed.notify_all();
                    return Ok(values);
                }
                Some(_) => {
                    // The other is computing it (or, impossible in order, it is ours).
                    state = self.changed.wait(state).unwrap();
                }
                None => {
                    let ahead = state
                        .entries
                        .values()
                        .filter(|e| matches!(e, Entry::Ready { by, .. } if *by == id))
                        .count();
                    if ahead >= LEAD {
                        state = self.changed.wait(state).unwrap();
                        continue;
                    }
                    state.entries.insert(key, Entry::Computing);
                    drop(state);
                    let computed = compute().map(Arc::new);
                    let mut state = self.state.lock().unwrap();
                    match &computed {
                        Ok(values) if state.paired => {
                            state.entries.insert(
                                key,
                                Entry::Ready {
                                    by: id,
                                    values: values.clone(),
                                },
                            );
                        }
                        _ => {
                            state.entries.remove(&key);
                        }
                    }
                    self.alone.fetch_add(1, Ordering::Relaxed);
                    self.changed.notify_all();
                    return computed;
                }
            }
        }
    }

    /// (batches whose prefix was computed once for both, batches computed for one cell only),
    /// counting each shared batch once.
    pub fn counts(&self) -> (usize, usize) {
        let shared = self.shared.load(Ordering::Relaxed);
        let computed = self.alone.load(Ordering::Relaxed);
        (shared, computed.saturating_sub(shared))
    }
}

fn refusal(state: &State) -> String {
    match (&state.joined[0], &state.joined[1]) {
        (Some(a), Some(b)) if a.first_epoch != b.first_epoch => format!(
            "they start at different epochs ({} and {})",
            a.first_epoch, b.first_epoch
        ),
        _ => "their frozen prefixes or training batches differ".to_string(),
    }
}

/// One participant's place in a `Lockstep`: leaves when dropped.
#[derive(Debug)]
pub struct Seat<'a> {
    pub lockstep: &'a Lockstep,
    pub id: usize,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.lockstep.leave(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn values(epoch: usize, batch: usize) -> Vec<f32> {
        vec![epoch as f32, batch as f32]
    }

    /// Two participants over `epochs` x `batches`; `stop_b` ends participant 1 after that many
    /// batches. Returns what each received and how many times `compute` ran.
    fn run(epochs: usize, batches: usize, stop_b: Option<usize>) -> (Vec<Vec<f32>>, usize) {
        let lockstep = Lockstep::new(3);
        let computed = AtomicUsize::new(0);
        let received = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for id in 0..2 {
                let (lockstep, computed, received) = (&lockstep, &computed, &received);
                s.spawn(move || {
                    let _seat = Seat { lockstep, id };
                    assert_eq!(lockstep.join(id, 1, "same".into()), Joining::Paired);
                    let mut n = 0;
                    for e in 0..epochs {
                        for b in 0..batches {
                            if id == 1 && stop_b == Some(n) {
                                return;
                            }
                            let v = lockstep
                                .prefix(id, e, b, || {
                                    computed.fetch_add(1, Ordering::SeqCst);
                                    // Work of uneven length, so that the two interleave.
                                    std::thread::sleep(std::time::Duration::from_micros(
                                        (100 * (b % 3 + id)) as u64,
                                    ));
                                    Ok(values(e, b))
                                })
                                .unwrap();
                            assert_eq!(*v, values(e, b));
                            received.lock().unwrap().push((*v).clone());
                            n += 1;
                        }
                    }
                });
            }
        });
        assert!(lockstep.state.lock().unwrap().entries.is_empty());
        (
            received.into_inner().unwrap(),
            computed.load(Ordering::SeqCst),
        )
    }

    #[test]
    fn a_pair_computes_each_batch_once_and_both_receive_every_batch() {
        let (received, computed) = run(3, 7, None);
        assert_eq!(received.len(), 2 * 21);
        assert_eq!(computed, 21);
    }

    #[test]
    fn when_one_leaves_the_other_goes_on_alone_and_computes_the_rest() {
        let (received, computed) = run(2, 5, Some(3));
        assert_eq!(received.len(), 10 + 3);
        // Every batch computed once; none is lost or computed twice for the one that went on.
        assert_eq!(computed, 10);
    }

    #[test]
    fn participants_that_disagree_or_never_come_train_alone() {
        let lockstep = Lockstep::new(3);
        std::thread::scope(|s| {
            s.spawn(|| lockstep.leave(1));
            assert_eq!(lockstep.join(0, 1, "a".into()), Joining::Alone(None));
        });
        let lockstep = Lockstep::new(3);
        std::thread::scope(|s| {
            let other = s.spawn(|| lockstep.join(1, 2, "a".into()));
            let mine = lockstep.join(0, 1, "a".into());
            assert!(matches!(&mine, Joining::Alone(Some(r)) if r.contains("epochs (1 and 2)")));
            assert_eq!(other.join().unwrap(), mine);
        });
        // Alone, every batch is computed by its own participant.
        let computed = AtomicUsize::new(0);
        for b in 0..3 {
            lockstep
                .prefix(0, 0, b, || {
                    computed.fetch_add(1, Ordering::SeqCst);
                    Ok(vec![])
                })
                .unwrap();
        }
        assert_eq!(computed.load(Ordering::SeqCst), 3);
    }
}
