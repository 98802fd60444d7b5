//! Per-cell lock files, so that two sweeps over the same results directory never train the same
//! cell at once. A lock holds the owner's process id; a lock whose process is gone (a killed
//! sweep) is stale and is taken over.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A held lock; released (the file removed) when dropped.
#[derive(Debug)]
pub struct CellLock {
    path: PathBuf,
}

/// Who holds a lock that could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBy {
    pub pid: u32,
}

impl CellLock {
    /// Take the lock at `path`, or report the live process that holds it.
    pub fn acquire(path: &Path) -> anyhow::Result<Result<CellLock, HeldBy>> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        for _ in 0..3 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    return Ok(Ok(CellLock {
                        path: path.to_path_buf(),
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = fs::read_to_string(path)
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok());
                    match pid {
                        Some(pid) if process_alive(pid) && pid != std::process::id() => {
                            return Ok(Err(HeldBy { pid }))
                        }
                        // Stale (its process is gone) or unreadable (a crash between create and
                        // write): take it over.
                        _ => {
                            let _ = fs::remove_file(path);
                        }
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create lock {}", path.display()))
                }
            }
        }
        anyhow::bail!(
            "{}: cannot take the lock (it keeps reappearing); is another sweep starting?",
            path.display()
        )
    }
}

impl Drop for CellLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether a process with this id exists (Linux: /proc; elsewhere assume it does, which is safe:
/// the cell is skipped rather than run twice).
pub(crate) fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_holder_blocks_and_a_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cell.lock");
        // A crashed owner leaves its file behind.
        std::mem::forget(CellLock::acquire(&path).unwrap().unwrap());
        // Simulate another live process: pid 1 always exists.
        fs::write(&path, "1\n").unwrap();
        assert_eq!(
            CellLock::acquire(&path).unwrap().unwrap_err(),
            HeldBy { pid: 1 }
        );
        // A pid beyond any pid_max is stale and is taken over.
        fs::write(&path, "4294967294\n").unwrap();
        let lock = CellLock::acquire(&path).unwrap().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(lock);
        assert!(!path.exists());
    }
}
