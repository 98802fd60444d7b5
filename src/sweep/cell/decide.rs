//! Whether a cell runs (new), resumes (an unfinished run of the same key), or is skipped (done
//! already, failed earlier): decided from what is on disk for it.

use std::path::Path;

use crate::store::{partial_dir, read_record, RunRecord, Status};
use crate::sweep::files::RESUME_CHECKPOINT;

/// What to do with a cell, given what is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run,
    /// Continue the unfinished run in `.partial` after its last checkpointed epoch.
    Resume {
        after_epoch: usize,
    },
    Skip(Skip),
}

/// Why a cell is not run, and the status it has on disk (None: nothing finished or failed under
/// its run key), which says whether the matrix is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub reason: String,
    pub on_disk: Option<Status>,
}

fn skip(reason: impl Into<String>, on_disk: Option<Status>) -> Action {
    Action::Skip(Skip {
        reason: reason.into(),
        on_disk,
    })
}

/// What is on disk for a cell: the finished record, and the unfinished one with its checkpoint epoch.
#[derive(Debug, Default)]
pub struct OnDisk {
    pub finished: Option<RunRecord>,
    pub partial: Option<(RunRecord, Option<usize>)>,
}

/// The decision, apart from any I/O (so it can be tested without a model).
pub fn decide(on_disk: &OnDisk, key: &str, force: bool, retry_failed: bool) -> Action {
    let same = |r: &RunRecord| r.run_key.as_deref() == Some(key);
    let finished = on_disk.finished.as_ref().filter(|r| same(r));
    let partial = on_disk.partial.as_ref().filter(|(r, _)| same(r));
    if retry_failed {
        return match (partial, finished) {
            // A failed cell keeps its checkpoint: it resumes after its last finished epoch.
            (Some((r, epoch)), _) if r.status == Status::Failed => match epoch {
                Some(e) if *e >= 1 => Action::Resume { after_epoch: *e },
                _ => Action::Run,
            },
            (_, Some(r)) => skip(
                format!("{} already (run key {})", r.status, &key[..12]),
                Some(r.status),
            ),
            _ => skip(
                "not run: --retry-failed runs only failed cells; `runner sweep` without it runs \
                 this one",
                None,
            ),
        };
    }
    if force {
        return Action::Run;
    }
    if let Some(r) = finished {
        return skip(
            format!("{} already (run key {})", r.status, &key[..12]),
            Some(r.status),
        );
    }
    match partial {
        Some((r, _)) if r.status == Status::Failed => skip(
            "failed earlier; `runner sweep --retry-failed` resumes it once the cause is fixed",
            Some(Status::Failed),
        ),
        Some((_, Some(epoch))) if *epoch >= 1 => Action::Resume {
            after_epoch: *epoch,
        },
        _ => Action::Run,
    }
}

/// What is on disk for the cell whose final directory is `final_dir`.
pub(super) fn on_disk(final_dir: &Path) -> OnDisk {
    let partial = partial_dir(final_dir);
    let checkpoint_epoch = || -> Option<usize> {
        let path = partial.join(RESUME_CHECKPOINT);
        let all = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).ok()?;
        Some(all.get("meta/epoch")?.to_vec1::<i64>().ok()?[0] as usize)
    };
    OnDisk {
        finished: read_record(final_dir),
        partial: read_record(&partial).map(|r| (r, checkpoint_epoch())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, status: Status) -> RunRecord {
        RunRecord {
            run_key: Some(key.into()),
            status,
            ..RunRecord::test_record()
        }
    }

    const K: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn done_cells_are_skipped_unless_forced_or_their_inputs_changed() {
        let done = OnDisk {
            finished: Some(rec(K, Status::Done)),
            partial: None,
        };
        assert!(
            matches!(decide(&done, K, false, false), Action::Skip(s) if s.reason.starts_with("done already") && s.on_disk == Some(Status::Done))
        );
        assert_eq!(decide(&done, K, true, false), Action::Run);
        assert_eq!(decide(&done, OTHER, false, false), Action::Run);
        assert!(matches!(
            decide(
                &OnDisk {
                    finished: Some(rec(K, Status::Diverged)),
                    partial: None
                },
                K,
                false,
                false
            ),
            Action::Skip(_)
        ));
    }

    #[test]
    fn unfinished_cells_resume_from_their_checkpoint() {
        let interrupted = OnDisk {
            finished: None,
            partial: Some((rec(K, Status::Interrupted), Some(3))),
        };
        assert_eq!(
            decide(&interrupted, K, false, false),
            Action::Resume { after_epoch: 3 }
        );
        // A crashed run still says "running": it resumes too.
        let crashed = OnDisk {
            finished: None,
            partial: Some((rec(K, Status::Running), Some(1))),
        };
        assert_eq!(
            decide(&crashed, K, false, false),
            Action::Resume { after_epoch: 1 }
        );
        // Without a checkpoint, or with other inputs, or forced: start over.
        let no_ckpt = OnDisk {
            finished: None,
            partial: Some((rec(K, Status::Interrupted), None)),
        };
        assert_eq!(decide(&no_ckpt, K, false, false), Action::Run);
        assert_eq!(decide(&interrupted, OTHER, false, false), Action::Run);
        assert_eq!(decide(&interrupted, K, true, false), Action::Run);
    }

    #[test]
    fn failed_cells_wait_for_retry_failed_which_runs_only_them() {
        let failed = OnDisk {
            finished: None,
            partial: Some((rec(K, Status::Failed), Some(2))),
        };
        assert!(
            matches!(decide(&failed, K, false, false), Action::Skip(s) if s.reason.contains("--retry-failed") && s.on_disk == Some(Status::Failed))
        );
        // --retry-failed resumes it from its checkpoint, not from epoch 1.
        assert_eq!(
            decide(&failed, K, false, true),
            Action::Resume { after_epoch: 2 }
        );
        let failed_at_once = OnDisk {
            finished: None,
            partial: Some((rec(K, Status::Failed), None)),
        };
        assert_eq!(decide(&failed_at_once, K, false, true), Action::Run);
        assert!(matches!(
            decide(&OnDisk::default(), K, false, true),
            Action::Skip(Skip { on_disk: None, .. })
        ));
        assert!(matches!(
            decide(
                &OnDisk {
                    finished: Some(rec(K, Status::Done)),
                    partial: None
                },
                K,
                false,
                true
            ),
            Action::Skip(Skip {
                on_disk: Some(Status::Done),
                ..
            })
        ));
    }
}
