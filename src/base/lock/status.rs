//! A lock as an onlooker sees it (`runner status`): free, held, or stale and why, read and
//! judged without touching it.

use std::io;
use std::path::Path;

use super::holder::{judge, observe, Machine, Observed, Settings, Verdict};
use crate::base::process::probe;

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
