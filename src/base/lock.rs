//! Per-cell lock files, so that two sweeps over the same results directory never train the same
//! cell (or pretraining stage) at once, whether they run on one machine or on several machines
//! sharing the directory (NFS, a Slurm cluster's shared results directory).
//!
//! **Creation.** The lock's content (JSON naming the holder: host, pid, process start time,
//! Slurm job; see [`Holder`]) is written to a temporary file, which is then hard-linked to the
//! lock's name and unlinked. `link` fails when the name exists, never replaces it, and makes the
//! file appear with its content complete, so no process ever reads a half-written lock. It is
//! also the way to create a file exclusively on NFS, where `O_EXCL` was not atomic before NFSv3
//! and a lost reply can make a successful `link` report an error: the temporary file's link
//! count then says whether it happened (see open(2), O_EXCL).
//!
//! **Heartbeat.** While the lock is held, a background thread sets the file's modification time
//! every [`Settings::heartbeat`] through the handle it was created with. The content is never
//! rewritten, and a handle cannot touch a lock that someone else has since created under the
//! same name: it refers to the old file. `holder::judge` decides when a lock is stale.
//!
//! **Taking over.** A stale lock is removed only under a claim: an exclusive marker file named
//! after that lock's content hash, `.<lock>.<id>.takeover-<n>`. The claimant reads the lock
//! again under its claim and removes it only if it is still the same stale lock; then it links
//! its own lock like anyone else, and the link decides who wins. A holder releasing its lock
//! claims it the same way, so a release never removes a lock someone else has taken over. A
//! marker older than the stale timeout (its claimant died) is passed over by claiming `<n+1>`.
//! This module must never remove or replace a lock without that claim.
//!
//! Like any lease, this assumes that the hosts' clocks agree to well within the stale timeout
//! (the heartbeat is a time set by one host and read by another), and that no process stalls
//! for longer than the timeout in the middle of a takeover.

mod holder;
#[cfg(test)]
mod race_tests;
mod status;
#[cfg(test)]
pub(crate) mod tests;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::hash::sha256_hex;
use super::process::probe;
use holder::{judge, observe, Machine, Verdict};
pub use holder::{Content, Holder, Observed, Settings, HEARTBEAT_ENV, STALE_ENV};

pub use status::{inspect, LockState};

/// How many times `acquire` goes round (link, read, take over) before giving up. Each round
/// either wins, finds a live holder, or removes one stale lock; only locks appearing and
/// vanishing faster than we can read them exhaust it.
const ATTEMPTS: usize = 20;

/// A held lock; its heartbeat stops and the file is removed when it is dropped.
#[derive(Debug)]
pub struct CellLock {
    path: PathBuf,
    id: String,
    settings: Settings,
    heartbeat: Heartbeat,
}

/// A lock that could not be taken: who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBy {
    /// The lock as found.
    pub lock: Observed,
    /// The lock is stale, and another sweep is taking it over right now.
    pub taking_over: bool,
}

impl std::fmt::Display for HeldBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.lock.describe())?;
        if self.taking_over {
            f.write_str("; another sweep is taking over its stale lock")?;
        }
        Ok(())
    }
}

impl CellLock {
    /// Take the lock at `path`, or say who holds it. Stale locks are taken over.
    pub fn acquire(path: &Path) -> anyhow::Result<Result<CellLock, HeldBy>> {
        let machine = Machine::current();
        let holder = machine.holder(|name| std::env::var(name).ok());
        CellLock::acquire_as(path, &holder, machine, &Settings::from_env()?)
    }

    /// `acquire` for a given holder on a given machine (tests play other processes and hosts).
    pub(crate) fn acquire_as(
        path: &Path,
        holder: &Holder,
        here: &Machine,
        settings: &Settings,
    ) -> anyhow::Result<Result<CellLock, HeldBy>> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let mut content = serde_json::to_vec_pretty(holder)?;
        content.push(b'\n');
        let id = sha256_hex(&content)[..16].to_string();
        let context = || format!("lock {}", path.display());
        let file = match take(path, &content, &id, here, settings).with_context(context)? {
            Ok(file) => file,
            Err(held) => return Ok(Err(held)),
        };
        let heartbeat = Heartbeat::start(file, settings.heartbeat).with_context(context)?;
        Ok(Ok(CellLock {
            path: path.to_path_buf(),
            id,
            settings: *settings,
            heartbeat,
        }))
    }

    /// Stop the heartbeat, then remove the file if it is still ours (under a claim, like a
    /// takeover, so that a lock someone took from us meanwhile stays). Errors are ignored: a
    /// lock left behind is stale and is taken over by the next sweep.
    fn release(&mut self) {
        self.heartbeat.stop();
        let Ok(Some(marker)) = claim(&self.path, &self.id, &self.settings) else {
            return;
        };
        let gone = match observe(&self.path) {
            Ok(Some(found)) if found.id == self.id => fs::remove_file(&self.path).is_ok(),
            // Taken over meanwhile, or removed: not ours to remove.
            Ok(_) => true,
            Err(_) => false,
        };
        if gone {
            // This lock is no longer at the path and never comes back: its claims are moot.
            forget(&self.path, &self.id);
        } else {
            let _ = fs::remove_file(&marker);
        }
    }
}

impl Drop for CellLock {
    fn drop(&mut self) {
        self.release();
    }
}

/// The rounds of `acquire`: link ours; else judge the lock in place, and take it over when stale.
fn take(
    path: &Path,
    content: &[u8],
    id: &str,
    here: &Machine,
    settings: &Settings,
) -> anyhow::Result<Result<File, HeldBy>> {
    let tmp = hidden_sibling(path, &format!("{id}.tmp"));
    for _ in 0..ATTEMPTS {
        if let Some(file) = link_new(&tmp, path, content, |a, b| fs::hard_link(a, b))? {
            return Ok(Ok(file));
        }
        let Some(found) = observe(path)? else {
            continue; // released between our link and our read
        };
        match judge(&found, here, settings, probe) {
            Verdict::Held => {
                return Ok(Err(HeldBy {
                    lock: found,
                    taking_over: false,
                }))
            }
            Verdict::Stale(_) => match remove_stale(path, &found, here, settings)? {
                Removal::Done => continue,
                Removal::Alive(lock) => {
                    return Ok(Err(HeldBy {
                        lock: *lock,
                        taking_over: false,
                    }))
                }
                Removal::ClaimedByAnother => {
                    return Ok(Err(HeldBy {
                        lock: found,
                        taking_over: true,
                    }))
                }
            },
        }
    }
    anyhow::bail!("cannot take the lock: it keeps changing (is another sweep starting?); try again")
}

enum Removal {
    /// The stale lock is gone (removed by us, its holder or another taker): link again.
    Done,
    /// Read again under the claim, the lock was alive after all (a late heartbeat).
    Alive(Box<Observed>),
    /// Another process holds the claim on this lock and is taking it over.
    ClaimedByAnother,
}

/// Remove the lock `found`, judged stale, if it is still in place and still stale once claimed.
fn remove_stale(
    path: &Path,
    found: &Observed,
    here: &Machine,
    settings: &Settings,
) -> io::Result<Removal> {
    let Some(marker) = claim(path, &found.id, settings)? else {
        return Ok(Removal::ClaimedByAnother);
    };
    let outcome = match observe(path) {
        Ok(Some(now)) if now.id == found.id => match judge(&now, here, settings, probe) {
            Verdict::Held => Ok(Removal::Alive(Box::new(now))),
            Verdict::Stale(_) => match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(Removal::Done),
            },
        },
        Ok(_) => Ok(Removal::Done),
        Err(e) => Err(e),
    };
    if let Ok(Removal::Done) = outcome {
        // The lock `found` is no longer at the path and never comes back (its content is
        // unique): every claim on it, and a temporary file its holder left, can go.
        forget(path, &found.id);
    } else {
        let _ = fs::remove_file(&marker);
    }
    outcome
}

/// Claim the right to remove lock `id` at `path`: create the first free marker
/// `.<lock>.<id>.takeover-<n>`, passing over markers older than the stale timeout (claimants
/// that died). `None` when a live claim exists.
fn claim(path: &Path, id: &str, settings: &Settings) -> io::Result<Option<PathBuf>> {
    let mut n = 1;
    let mut tries = 0;
    while tries < 4 * ATTEMPTS {
        tries += 1;
        let marker = hidden_sibling(path, &format!("{id}.takeover-{n}"));
        // A marker is never read, so `O_EXCL` (exclusive on NFS since NFSv3) is enough here:
        // there is no content to see half written.
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
        {
            Ok(_) => return Ok(Some(marker)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match fs::metadata(&marker).and_then(|m| m.modified()) {
            Ok(modified) => {
                let age = SystemTime::now()
                    .duration_since(modified)
                    .unwrap_or(Duration::ZERO);
                if age <= settings.stale_after {
                    return Ok(None);
                }
                n += 1;
            }
            // Removed since: try the same number again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "{}: too many takeover markers; remove the files starting with .{} beside it",
        path.display(),
        file_name(path)
    )))
}

/// Remove every file `.<lock>.<id>.*` (claims on lock `id`, its leftover temporary file).
fn forget(path: &Path, id: &str) {
    let prefix = format!(".{}.{id}.", file_name(path));
    let Some(dir) = path.parent() else {
        return;
    };
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Create `path` with `content`, whole, unless it exists: write `tmp`, hard-link it to `path`,
/// remove `tmp`. Returns a handle on the new file, or `None` when `path` exists.
///
/// On a file system without hard links (FAT, some FUSE and SMB mounts) the file is created with
/// `O_EXCL` and written: still exclusive, but a reader may briefly see it empty, which
/// `holder::judge` treats as held, never as stale.
fn link_new(
    tmp: &Path,
    path: &Path,
    content: &[u8],
    link: impl Fn(&Path, &Path) -> io::Result<()>,
) -> io::Result<Option<File>> {
    let written = || -> io::Result<File> {
        let mut f = File::create(tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        Ok(f)
    };
    let file = match written() {
        Ok(f) => f,
        Err(e) => {
            let _ = fs::remove_file(tmp);
            return Err(e);
        }
    };
    let linked = match link(tmp, path) {
        Ok(()) => Ok(true),
        // A lost NFS reply: the link happened if our file now has two names.
        Err(_) if link_count(&file) == Some(2) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
            ) =>
        {
            let _ = fs::remove_file(tmp);
            return create_exclusive(path, content);
        }
        Err(e) => Err(e),
    };
    let _ = fs::remove_file(tmp);
    Ok(linked?.then_some(file))
}

/// `O_EXCL` creation, for file systems without hard links.
fn create_exclusive(path: &Path, content: &[u8]) -> io::Result<Option<File>> {
    let mut f = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e),
    };
    f.write_all(content)?;
    f.sync_all()?;
    Ok(Some(f))
}

#[cfg(unix)]
fn link_count(file: &File) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    file.metadata().ok().map(|m| m.nlink())
}

#[cfg(not(unix))]
fn link_count(_: &File) -> Option<u64> {
    None
}

/// `.<lock file name>.<suffix>` beside the lock: hidden, and on the same file system (a hard
/// link cannot cross file systems).
fn hidden_sibling(path: &Path, suffix: &str) -> PathBuf {
    path.with_file_name(format!(".{}.{suffix}", file_name(path)))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The thread that keeps a held lock fresh.
#[derive(Debug)]
struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    fn start(file: File, every: Duration) -> io::Result<Heartbeat> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lock-heartbeat".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    // A failed touch (the NFS server away for a moment) is retried at the next
                    // beat; the stale timeout leaves room for several.
                    let _ = file.set_modified(SystemTime::now());
                }
            })?;
        Ok(Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
