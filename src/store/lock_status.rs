//! How `runner status` shows a cell: the status of its record, corrected by what its lock says
//! (a `running` cell whose sweep is gone shows as `stale`).

use std::path::Path;

use super::Status;
use crate::base::lock::{inspect, LockState, Settings};

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
    let name = cell_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let final_dir = cell_dir.with_file_name(name.strip_suffix(".partial").unwrap_or(&name));
    let path = super::lock_path(&final_dir);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::base::lock::tests::{age_file, host, no_env, plant, settings};

    #[test]
    fn status_shows_a_running_cell_with_a_stale_or_missing_lock_as_stale() {
        let dir = tempfile::tempdir().unwrap();
        let cell = dir.path().join("seed-0.partial");
        let path = dir.path().join("seed-0.lock");
        let s = settings(30_000, 300_000);
        let (shown, line) = shown_status(&cell, Status::Running, &s);
        assert_eq!(shown, "stale");
        assert!(line.unwrap().starts_with("no sweep holds its lock"));
        plant(
            &path,
            &host("node-b", 2).holder(no_env),
            Duration::from_secs(3),
        );
        let (shown, line) = shown_status(&cell, Status::Running, &s);
        assert_eq!(
            (shown.as_str(), line.as_deref()),
            (
                "running",
                Some("held by pid 2 on node-b, last heartbeat 3s ago")
            )
        );
        age_file(&path, Duration::from_secs(400));
        let (shown, line) = shown_status(&cell, Status::Running, &s);
        assert_eq!(
            (shown.as_str(), line.as_deref()),
            (
                "stale",
                Some(
                    "stale lock: pid 2 on node-b, last heartbeat 6m 40s ago; no heartbeat for \
                     6m 40s (stale after 5m); the next sweep takes it over"
                )
            )
        );
        assert_eq!(shown_status(&cell, Status::Done, &s), ("done".into(), None));
    }
}
