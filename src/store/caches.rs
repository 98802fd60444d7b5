//! The results directory's `.cache` folder as `runner cache` sees it: how much each kind of
//! cache holds (decoded images, frozen-layer features, the rest), and clearing it.
//!
//! Every cache there is an execution detail: a hit gives exactly the values that recomputing
//! would, so none is part of a run key, and `results/.cache` may be deleted at any time.

use std::path::Path;

use crate::base::fs::remove_orphans;

/// The writer's process id in the name of a cache's temporary file: `.<key>.pixels.<pid>-<n>.tmp`
/// (decoded images), `<split>.tmp-<pid>-<n>` (features), `.<name>.<pid>.tmp` (`write_atomic`).
/// None for every other file.
pub fn temporary_writer_pid(name: &str) -> Option<u32> {
    let writer = match name.rsplit_once(".tmp-") {
        Some((_, writer)) => writer,
        None => {
            name.strip_prefix('.')?
                .strip_suffix(".tmp")?
                .rsplit_once('.')?
                .1
        }
    };
    writer.split('-').next()?.parse().ok()
}

/// A file that is being written, or was left half written by a process that was killed: not
/// part of any cache.
fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| temporary_writer_pid(n).is_some())
}

/// Remove the temporary files that killed writers left anywhere under `cache_dir`
/// (`base::fs::remove_orphans` decides which: a dead writer here, and no write for an hour).
pub fn remove_dead_temporaries(cache_dir: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(cache_dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    remove_orphans(cache_dir, temporary_writer_pid);
    for entry in std::fs::read_dir(cache_dir).into_iter().flatten().flatten() {
        remove_dead_temporaries(&entry.path());
    }
}

/// What one kind of cache holds on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub kind: &'static str,
    pub files: u64,
    pub bytes: u64,
}

/// The kinds of cache under `results/.cache` and what each holds: `images` (decoded images),
/// `features` (frozen-layer outputs), and the rest (file hashes, generated-data markers).
/// Temporary files (being written, or left by a killed writer) are no kind's: see `temporaries`.
pub fn usage(cache_dir: &Path) -> Vec<Usage> {
    let mut out = Vec::new();
    let mut rest = Usage {
        kind: "other",
        files: 0,
        bytes: 0,
    };
    let entries: Vec<_> = std::fs::read_dir(cache_dir)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    for kind in ["images", "features"] {
        let mut u = Usage {
            kind,
            files: 0,
            bytes: 0,
        };
        add_tree(&cache_dir.join(kind), &mut u);
        out.push(u);
    }
    for entry in entries {
        let name = entry.file_name();
        if name != "images" && name != "features" {
            add_tree(&entry.path(), &mut rest);
        }
    }
    out.push(rest);
    out
}

/// The temporary files under `cache_dir` (see `usage`).
pub fn temporaries(cache_dir: &Path) -> Usage {
    let mut u = Usage {
        kind: "temporary",
        files: 0,
        bytes: 0,
    };
    walk(cache_dir, &mut |path, len| {
        if is_temporary(path) {
            u.files += 1;
            u.bytes += len;
        }
    });
    u
}

fn add_tree(path: &Path, usage: &mut Usage) {
    walk(path, &mut |path, len| {
        if !is_temporary(path) {
            usage.files += 1;
            usage.bytes += len;
        }
    });
}

/// Every file under `path` (or `path` itself), with its size.
fn walk(path: &Path, each: &mut dyn FnMut(&Path, u64)) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            walk(&entry.path(), each);
        }
    } else {
        each(path, meta.len());
    }
}

/// `runner cache`: one line per kind of cache, and the total.
pub fn usage_table(cache_dir: &Path) -> String {
    let rows = usage(cache_dir);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut out = format!("{}\n", cache_dir.display());
    for u in &rows {
        out.push_str(&format!(
            "  {:<9} {:>7} files {:>10.1} MiB\n",
            u.kind,
            u.files,
            mib(u.bytes)
        ));
    }
    let total: u64 = rows.iter().map(|u| u.bytes).sum();
    out.push_str(&format!(
        "  {:<9} {:>7}       {:>10.1} MiB\n",
        "total",
        "",
        mib(total)
    ));
    let temporary = temporaries(cache_dir);
    if temporary.files > 0 {
        out.push_str(&format!(
            "  not counted: {} temporary file(s), {:.1} MiB, being written or left by a killed \
             sweep (the next sweep removes those of dead processes after an hour; --clear \
             deletes them)\n",
            temporary.files,
            mib(temporary.bytes)
        ));
    }
    out
}

/// Delete `results/.cache`. Sweeps running meanwhile keep what they have open or mapped, and
/// rebuild what they look for next.
pub fn clear(cache_dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(cache_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(anyhow::anyhow!(
            "{}: cannot delete the caches: {e} (check the permissions, or delete the folder by \
             hand)",
            cache_dir.display()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_of_every_cache_are_recognised() {
        assert_eq!(temporary_writer_pid(".abc.pixels.4242-3.tmp"), Some(4242));
        assert_eq!(temporary_writer_pid("train.f32.tmp-4242-0"), Some(4242));
        assert_eq!(temporary_writer_pid(".hashes.json.4242.tmp"), Some(4242));
        assert_eq!(temporary_writer_pid("abc.pixels"), None);
        assert_eq!(temporary_writer_pid("train.f32"), None);
    }

    /// Temporaries a killed sweep left are no cache's contents: `runner cache` does not count
    /// them, and says they are there.
    #[test]
    fn usage_does_not_count_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        let features = dir.path().join("features").join("k");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&features).unwrap();
        std::fs::write(images.join("abc.pixels"), [0u8; 100]).unwrap();
        std::fs::write(images.join(".abc.pixels.4194999-0.tmp"), [0u8; 1000]).unwrap();
        std::fs::write(features.join("train.f32.tmp-4194999-0"), [0u8; 1000]).unwrap();
        std::fs::write(dir.path().join(".hashes.json.4194999.tmp"), [0u8; 1000]).unwrap();
        let rows = usage(dir.path());
        assert_eq!(
            rows,
            vec![
                Usage {
                    kind: "images",
                    files: 1,
                    bytes: 100
                },
                Usage {
                    kind: "features",
                    files: 0,
                    bytes: 0
                },
                Usage {
                    kind: "other",
                    files: 0,
                    bytes: 0
                },
            ]
        );
        assert_eq!(temporaries(dir.path()).files, 3);
        let table = usage_table(dir.path());
        assert!(
            table.contains("not counted: 3 temporary file(s)"),
            "{table}"
        );
    }
}
