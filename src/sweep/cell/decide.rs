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
    Skip(String),
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
        return match partial {
            Some((r, _)) if r.status == Status::Failed => Action::Run,
            _ => Action::Skip("not a failed cell (--retry-failed runs only those)".into()),
        };
    }
    if force {
        return Action::Run;
    }
    if let Some(r) = finished {
        return Action::Skip(format!("{} already (run key {})", r.status, &key[..12]));
    }
    match partial {
        Some((r, _)) if r.status == Status::Failed => {
            Action::Skip("failed earlier; --retry-failed reruns failed cells".into())
        }
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
            matches!(decide(&done, K, false, false), Action::Skip(r) if r.starts_with("done already"))
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
            matches!(decide(&failed, K, false, false), Action::Skip(r) if r.contains("--retry-failed"))
        );
        assert_eq!(decide(&failed, K, false, true), Action::Run);
        assert!(matches!(
            decide(&OnDisk::default(), K, false, true),
            Action::Skip(_)
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
            Action::Skip(_)
        ));
    }
}
