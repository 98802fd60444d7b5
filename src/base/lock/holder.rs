//! Who holds a lock, and whether that holder is still alive: the content of a lock file, the
//! identity of this machine and process, the heartbeat settings, and the judgement that decides
//! between "held" and "stale". Nothing here writes a file; `observe` reads one.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::base::hash::sha256_hex;
use crate::base::process::{probe, Process};

/// Seconds between two heartbeats of a held lock (default 30).
pub const HEARTBEAT_ENV: &str = "RUNNER_LOCK_HEARTBEAT_SECS";
/// Seconds without a heartbeat after which a lock is stale wherever its holder ran (default 300).
pub const STALE_ENV: &str = "RUNNER_LOCK_STALE_SECS";

/// How often a holder proves it is alive, and how long a silent lock is still respected.
///
/// A heartbeat every 30 s costs one attribute update per running cell, nothing even on a busy
/// NFS server. Five minutes (ten missed heartbeats) rides out what delays a heartbeat without
/// the holder being dead: an NFS server that stalls for a minute, clients that cache file
/// attributes for up to 60 s (`acregmax`), clocks of cluster nodes a few seconds apart, a
/// machine under heavy swapping. The price is that a sweep killed on another host leaves its
/// cells to the next sweep only after five minutes; on the same host a dead holder is noticed
/// at once from its process id, so the wait only applies across hosts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub heartbeat: Duration,
    pub stale_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat: Duration::from_secs(30),
            stale_after: Duration::from_secs(300),
        }
    }
}

impl Settings {
    /// The defaults, overridden by `RUNNER_LOCK_HEARTBEAT_SECS` / `RUNNER_LOCK_STALE_SECS`
    /// (seconds, fractions allowed: tests use a fraction of a second).
    pub fn from_env() -> anyhow::Result<Settings> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
        let seconds = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            let Some(text) = lookup(name) else {
                return Ok(default);
            };
            match text.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
                _ => anyhow::bail!(
                    "environment variable {name}: expected a positive number of seconds, got \"{text}\"; \
                     unset it to use the default ({} s)",
                    default.as_secs()
                ),
            }
        };
        let defaults = Settings::default();
        let settings = Settings {
            heartbeat: seconds(HEARTBEAT_ENV, defaults.heartbeat)?,
            stale_after: seconds(STALE_ENV, defaults.stale_after)?,
        };
        if settings.stale_after <= settings.heartbeat {
            anyhow::bail!(
                "environment variables {STALE_ENV} ({} s) and {HEARTBEAT_ENV} ({} s): the stale \
                 timeout must be longer than the heartbeat interval, or a live holder looks dead \
                 between two heartbeats",
                settings.stale_after.as_secs_f64(),
                settings.heartbeat.as_secs_f64()
            );
        }
        Ok(settings)
    }
}

/// The content of a lock file: who took it. Written once, whole, when the lock is created; the
/// heartbeat is the file's modification time (see `super`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// When the process started (clock ticks after boot, /proc/<pid>/stat field 22), so that a
    /// later process given the same pid is not mistaken for the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// The kernel's boot id and the pid namespace: a pid can be checked only from the same boot
    /// of the same machine, in the same namespace (containers that share a host name do not
    /// share pids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<String>,
    /// The Slurm job (SLURM_JOB_ID) and array task, when the holder ran under Slurm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_array_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_array_task_id: Option<String>,
    pub acquired_at: String,
    /// Unique to this lock: two locks of one process never have the same content.
    pub token: String,
}

/// This machine and process, as far as lock holders are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Machine {
    pub host: String,
    pub boot_id: Option<String>,
    pub pid_namespace: Option<String>,
    pub pid: u32,
    pub start_time: Option<u64>,
}

impl Machine {
    pub fn current() -> &'static Machine {
        static MACHINE: OnceLock<Machine> = OnceLock::new();
        MACHINE.get_or_init(|| {
            let read = |path: &str| {
                std::fs::read_to_string(path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            };
            let pid = std::process::id();
            Machine {
                host: read("/proc/sys/kernel/hostname")
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| "unknown-host".into()),
                boot_id: read("/proc/sys/kernel/random/boot_id"),
                pid_namespace: std::fs::read_link("/proc/self/ns/pid")
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned()),
                pid,
                start_time: match probe(pid) {
                    Process::Running { start_time } => start_time,
                    Process::Gone => None,
                },
            }
        })
    }

    /// Whether the holder's pid can be checked here: same host, same boot, same pid namespace.
    /// Unknown boot id or namespace (not Linux) means no: then only the heartbeat decides.
    pub fn shares_pids_with(&self, h: &Holder) -> bool {
        self.host == h.host
            && self.boot_id.is_some()
            && self.boot_id == h.boot_id
            && self.pid_namespace.is_some()
            && self.pid_namespace == h.pid_namespace
    }

    /// A fresh holder record for a lock taken now by this process; `env` reads the Slurm
    /// variables.
    pub fn holder(&self, env: impl Fn(&str) -> Option<String>) -> Holder {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let seed = format!(
            "{} {:?} {} {:?} {nanos} {count}",
            self.host, self.boot_id, self.pid, self.start_time
        );
        Holder {
            host: self.host.clone(),
            pid: self.pid,
            start_time: self.start_time,
            boot_id: self.boot_id.clone(),
            pid_namespace: self.pid_namespace.clone(),
            slurm_job_id: env("SLURM_JOB_ID"),
            slurm_array_job_id: env("SLURM_ARRAY_JOB_ID"),
            slurm_array_task_id: env("SLURM_ARRAY_TASK_ID"),
            acquired_at: crate::base::clock::now(),
            token: sha256_hex(seed.as_bytes())[..16].to_string(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)?;
        match (
            &self.slurm_array_job_id,
            &self.slurm_array_task_id,
            &self.slurm_job_id,
        ) {
            (Some(array), Some(task), _) => write!(f, ", Slurm job {array}_{task}"),
            (_, _, Some(job)) => write!(f, ", Slurm job {job}"),
            _ => Ok(()),
        }
    }
}

/// What a lock file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Holder(Box<Holder>),
    /// A bare process id: a lock of an older runner, which wrote no more and sent no heartbeat.
    LegacyPid(u32),
    /// Empty or not understood (a damaged file, or one being written on a file system without
    /// hard links, see `super::link_new`).
    Unreadable,
}

impl Content {
    pub fn parse(bytes: &[u8]) -> Content {
        if let Ok(holder) = serde_json::from_slice::<Holder>(bytes) {
            return Content::Holder(Box::new(holder));
        }
        match std::str::from_utf8(bytes).map(|t| t.trim().parse::<u32>()) {
            Ok(Ok(pid)) => Content::LegacyPid(pid),
            _ => Content::Unreadable,
        }
    }
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Holder(h) => h.fmt(f),
            Content::LegacyPid(pid) => write!(f, "pid {pid} (a lock of an older runner)"),
            Content::Unreadable => f.write_str("an unreadable lock file"),
        }
    }
}

/// A lock file as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub content: Content,
    /// Time since the holder's last heartbeat (the file's modification time); zero when the
    /// holder's clock is ahead of ours.
    pub heartbeat_age: Duration,
    /// A hash of the file's bytes: names this particular lock (its content holds a unique token).
    pub id: String,
}

impl Observed {
    pub fn new(bytes: &[u8], modified: SystemTime) -> Observed {
        Observed {
            content: Content::parse(bytes),
            heartbeat_age: SystemTime::now()
                .duration_since(modified)
                .unwrap_or(Duration::ZERO),
            id: sha256_hex(bytes)[..16].to_string(),
        }
    }

    /// "pid 123 on node7, Slurm job 88, last heartbeat 4s ago"
    pub fn describe(&self) -> String {
        format!(
            "{}, last heartbeat {} ago",
            self.content,
            humantime::format_duration(Duration::from_secs(self.heartbeat_age.as_secs()))
        )
    }
}

/// The lock at `path` as it is now; `None` when there is none. Content and modification time
/// come from one open file (on NFS, opening revalidates the cached attributes).
pub(super) fn observe(path: &Path) -> std::io::Result<Option<Observed>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let modified = file.metadata()?.modified()?;
    Ok(Some(Observed::new(&bytes, modified)))
}

/// The verdict on a lock found in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Held,
    /// Stale, and why.
    Stale(String),
}

/// Whether a lock is still held. A heartbeat older than `stale_after` makes any lock stale,
/// wherever its holder ran. On this machine (same host, boot and pid namespace) a holder whose
/// process is gone, or whose pid now belongs to a process started at another time, is stale at
/// once. On another machine only the heartbeat decides: its pids mean nothing here.
pub fn judge(
    observed: &Observed,
    here: &Machine,
    settings: &Settings,
    probe: impl Fn(u32) -> Process,
) -> Verdict {
    let age = observed.heartbeat_age;
    let silent = || {
        Verdict::Stale(format!(
            "no heartbeat for {} (stale after {})",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime::format_duration(settings.stale_after)
        ))
    };
    match &observed.content {
        // An older runner never refreshed its lock: judge it by its pid as that runner did.
        Content::LegacyPid(pid) => match probe(*pid) {
            Process::Gone => Verdict::Stale(format!("process {pid} is gone")),
            Process::Running { .. } => Verdict::Held,
        },
        _ if age > settings.stale_after => silent(),
        Content::Unreadable => Verdict::Held,
        Content::Holder(h) if here.shares_pids_with(h) => match probe(h.pid) {
            Process::Gone => Verdict::Stale(format!("process {} is gone", h.pid)),
            Process::Running {
                start_time: Some(now),
            } if h.start_time.is_some_and(|then| then != now) => Verdict::Stale(format!(
                "process {} is gone (its pid now belongs to a later process)",
                h.pid
            )),
            Process::Running { .. } => Verdict::Held,
        },
        Content::Holder(_) => Verdict::Held,
    }
}
