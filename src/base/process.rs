//! Processes of this machine as /proc shows them: whether one still runs, and since when.

use std::path::Path;

/// A process as seen in /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Gone,
    /// Running; its start time when it could be read.
    Running {
        start_time: Option<u64>,
    },
}

/// Look up a process of this machine. Zombies (killed, not yet reaped) count as gone. Outside
/// Linux, or when /proc cannot be read, the process is assumed to run: a lock is then kept
/// rather than taken from a live holder.
pub fn probe(pid: u32) -> Process {
    if !cfg!(target_os = "linux") {
        return Process::Running { start_time: None };
    }
    let text = match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
    {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Process::Gone,
        Err(_) => return Process::Running { start_time: None },
    };
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last
    // ')'; the state is field 3 and the start time field 22.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    if matches!(fields.first(), Some(&"Z") | Some(&"X") | Some(&"x")) {
        return Process::Gone;
    }
    Process::Running {
        start_time: fields.get(19).and_then(|s| s.parse().ok()),
    }
}

/// Whether a process with this id runs on this machine (zombies do not).
pub fn process_alive(pid: u32) -> bool {
    probe(pid) != Process::Gone
}
