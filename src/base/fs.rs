//! Files written whole or not at all (a temporary file and a rename), and the clean-up of
//! temporary files whose writer died.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::process::process_alive;

/// Write `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_with(path, |tmp| fs::File::create(tmp)?.write_all(bytes))
}

/// Have `write` create a temporary file in `path`'s directory, then move it to `path`: for
/// writers that take a path rather than bytes (safetensors). Readers see the old file or the
/// whole new one, never a part; the temporary file is removed if anything fails.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        write(&tmp)?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// How long a temporary file must have gone unwritten before `remove_orphans` may take it.
pub const ORPHAN_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Remove the temporary files in `dir` left by processes that no longer run (killed while
/// writing a cache file). `pid_of` reads the writer's process id from a temporary file's name,
/// and says None for every other file. A file is removed only when no process of that id runs
/// here and nothing has written to it for `ORPHAN_IDLE`: a writer on another machine sharing
/// the results directory (whose id means nothing here) keeps writing to its file while it runs.
/// Errors are ignored: this only frees disk space.
pub fn remove_orphans(dir: &Path, pid_of: impl Fn(&str) -> Option<u32>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = pid_of(&name.to_string_lossy()) else {
            continue;
        };
        let idle = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= ORPHAN_IDLE);
        if idle && pid != std::process::id() && !process_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
