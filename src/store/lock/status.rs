//! What `runner status` says about a cell's lock: whether a cell recorded as `running` is
//! still being trained, and by whom.

use std::io;
use std::path::Path;

use super::holder::{judge, probe, Machine, Verdict};
use super::{file_name, observe, Observed, Settings};
use crate::store::Status;

/// A lock as `runner status` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    Free,
    Held(Observed),
    Stale { lock: Observed, reason: String },
}

/// Read and judge the lock at `path`, without touching it.
pub fn inspect(path: &Path, settings: &Settings) -> io::Result<LockState> {
    Ok(match observe(path)? {
        None => LockState::Free,
        Some(lock) => match judge(&lock, Machine::current(), settings, probe) {
            Verdict::Held => LockState::Held(lock),
            Verdict::Stale(reason) => LockState::Stale { lock, reason },
        },
    })
}

/// How `runner status` shows a cell (`cell_dir` is `seed-<n>` or `seed-<n>.partial`): the
/// status of its record, except that a `running` cell whose lock is stale or missing, whose
/// sweep is gone, shows as `stale`; and for a `running` cell, a line saying who holds or held
/// its lock.
pub fn shown_status(
    cell_dir: &Path,
    status: Status,
    settings: &Settings,
) -> (String, Option<String>) {
    if status != Status::Running {
        return (status.to_string(), None);
    }
    let name = file_name(cell_dir);
    let final_dir = cell_dir.with_file_name(name.strip_suffix(".partial").unwrap_or(&name));
    let path = crate::store::lock_path(&final_dir);
    let takes_over = "the next sweep takes it over";
    match inspect(&path, settings) {
        Ok(LockState::Held(lock)) => (
            "running".into(),
            Some(format!("held by {}", lock.describe())),
        ),
        Ok(LockState::Stale { lock, reason }) => (
            "stale".into(),
            Some(format!(
                "stale lock: {}; {reason}; {takes_over}",
                lock.describe()
            )),
        ),
        Ok(LockState::Free) => (
            "stale".into(),
            Some(format!(
                "no sweep holds its lock ({}); {takes_over}",
                path.display()
            )),
        ),
        Err(e) => (
            status.to_string(),
            Some(format!("cannot read its lock {}: {e}", path.display())),
        ),
    }
}
