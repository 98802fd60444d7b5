//! Files written whole or not at all (a temporary file and a rename), the errors that say which
//! file could not be written, and the clean-up of temporary files whose writer died.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::process::process_alive;

/// A file that could not be written: its path and the system's error, said once
/// (`cannot write PATH: No space left on device (os error 28)`). It has no `source`, so that an
/// error chain printed with `{:#}` does not repeat the cause.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for WriteError {}

impl WriteError {
    pub fn new(path: &Path, error: std::io::Error) -> Self {
        WriteError {
            path: path.to_path_buf(),
            error,
        }
    }

    /// Whether the error is the machine's, not the data's or the code's: the disk or quota is
    /// full, the file system is read-only, or the device failed (ENOSPC, EDQUOT, EROFS, EIO).
    /// Every later write would fail the same way.
    pub fn is_environmental(&self) -> bool {
        matches!(
            self.error.raw_os_error(),
            Some(libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EIO)
        )
    }
}

/// The environmental write error (`WriteError::is_environmental`) somewhere in `error`'s chain.
pub fn environmental(error: &anyhow::Error) -> Option<&WriteError> {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<WriteError>())
        .find(|w| w.is_environmental())
}

/// `fs::create_dir_all`, failing with a `WriteError` that names the directory.
pub fn create_dir_all(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).map_err(|e| WriteError::new(dir, e).into())
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename.
/// A failure is a [`WriteError`] (see [`environmental`]).
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
    let tmp = temporary_name(path);
    let result = (|| {
        write(&tmp)?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| WriteError::new(path, e).into())
}

/// The I/O error under `error` (one of its sources), for a writer whose library wraps it: the
/// same OS error, so that [`WriteError::is_environmental`] still sees it, and said once; an error
/// with no I/O error under it becomes `io::Error::other` with its text.
pub fn io_error_of(error: &(dyn std::error::Error + 'static)) -> std::io::Error {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(io.kind(), io.to_string()),
            };
        }
        next = e.source();
    }
    std::io::Error::other(error.to_string())
}

/// `write_atomic`'s temporary file for `path`: `.<name>.<pid>.tmp` in the same directory.
pub fn temporary_name(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// The writer's process id in a name of `write_atomic`'s temporary files (`.<name>.<pid>.tmp`).
pub fn temporary_writer_pid(name: &str) -> Option<u32> {
    let stem = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    stem.rsplit_once('.')?.1.parse().ok()
}

/// Remove every one of `write_atomic`'s temporary files in `dir` (not below it), whoever wrote
/// them: for a directory that only its caller writes to, before it is renamed into place.
pub fn remove_temporaries(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if temporary_writer_pid(&entry.file_name().to_string_lossy()).is_some() {
            let _ = fs::remove_file(entry.path());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_error_names_the_file_and_its_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("run.json");
        let e = write_atomic(&path, b"{}").unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.starts_with(&format!("cannot write {}: ", path.display())),
            "{text}"
        );
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
        assert!(
            environmental(&e).is_none(),
            "a missing directory is not the machine's fault"
        );
        let full = anyhow::Error::from(WriteError::new(
            &path,
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        ))
        .context("the cell's checkpoint");
        assert_eq!(environmental(&full).unwrap().path, path);
    }

    #[test]
    fn temporaries_are_recognised_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = temporary_name(&dir.path().join("metrics.csv"));
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(temporary_writer_pid(&name), Some(std::process::id()));
        assert_eq!(temporary_writer_pid("metrics.csv"), None);
        assert_eq!(temporary_writer_pid(".hidden.tmp"), None);
        std::fs::write(&tmp, b"half").unwrap();
        std::fs::write(dir.path().join("metrics.csv"), b"whole").unwrap();
        remove_temporaries(dir.path());
        assert!(!tmp.exists());
        assert!(dir.path().join("metrics.csv").exists());
    }
}
