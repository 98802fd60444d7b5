//! The results directory's `.cache` folder as `runner cache` sees it: how much each kind of
//! cache holds (decoded images, frozen-layer features, the rest), and clearing it.
//!
//! Every cache there is an execution detail: a hit gives exactly the values that recomputing
//! would, so none is part of a run key, and `results/.cache` may be deleted at any time.

use std::path::Path;

/// What one kind of cache holds on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub kind: &'static str,
    pub files: u64,
    pub bytes: u64,
}

/// The kinds of cache under `results/.cache` and what each holds: `images` (decoded images),
/// `features` (frozen-layer outputs), and the rest (file hashes, generated-data markers).
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

fn add_tree(path: &Path, usage: &mut Usage) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            add_tree(&entry.path(), usage);
        }
    } else {
        usage.files += 1;
        usage.bytes += meta.len();
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
