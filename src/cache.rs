//! What the image cache (`dataset::store`) and the frozen-prefix feature cache
//! (`train::features`) share: the memory budget they draw on, and the identity of the code and
//! CPU that fill them, which is part of every cache key.
//!
//! Both caches are execution details: a hit gives exactly the values that recomputing would, so
//! neither is part of a run key, and `results/.cache` may be deleted at any time.

use std::path::Path;
use std::sync::Mutex;

/// The hash of the sources that decode, resize and preprocess images, run the layers, and lay
/// out the caches, plus Cargo.lock (computed by build.rs). Caches survive commits that change
/// anything else, and never outlive a change to these.
pub const KERNEL_HASH: &str = env!("RUNNER_KERNEL_HASH");

/// What a cached value depends on besides its inputs: the kernel sources, the engine, and the
/// class of CPU that rounds the same way (`cpu::rounding_class`: every x86-64 CPU with FMA gives
/// the same bits, so a results directory shared by a cluster's nodes shares its caches too).
pub fn kernel_identity() -> String {
    format!(
        "kernel {KERNEL_HASH}\nengine {}\ncpu {}\n",
        crate::provenance::environment("cpu").engine,
        crate::cpu::rounding_class()
    )
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
        if idle && pid != std::process::id() && !crate::store::lock::process_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Bytes the caches may hold in memory, shared by all of them. A cache reserves what it is about
/// to hold and falls back (to a file on disk, or to recomputing) when the reservation fails, so
/// the budget is never exceeded by cached values. Memory-mapped cache files are not counted:
/// their pages belong to the kernel's page cache, which reclaims them under pressure.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: Mutex<u64>,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Self {
        MemoryBudget {
            limit,
            used: Mutex::new(0),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take `bytes` if they fit; false (and nothing taken) if not.
    pub fn reserve(&self, bytes: u64) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if used.saturating_add(bytes) <= self.limit {
            *used += bytes;
            true
        } else {
            false
        }
    }

    /// Give back `bytes` taken by `reserve`.
    pub fn release(&self, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(bytes);
    }
}

/// The default memory budget: half of what the kernel says is available (`MemAvailable`), or
/// 2 GiB where that cannot be read.
pub fn default_memory_budget() -> u64 {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
    available.map_or(2 << 30, |bytes| bytes / 2)
}

/// Parse a memory size: a number with an optional unit (B, KiB, MiB, GiB, TiB, or K, M, G, T,
/// KB, MB, GB, TB, all powers of 1024), e.g. `4GiB`, `512M`, `0`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (expected e.g. 4GiB, 512MiB or 0)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    Ok((value * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units_and_bad_ones_say_what_is_expected() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5 kb"), Ok(1536));
        assert!(parse_size("lots")
            .unwrap_err()
            .contains("expected e.g. 4GiB"));
        assert!(parse_size("3 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
    }

    #[test]
    fn a_budget_grants_what_fits_and_gets_it_back() {
        let budget = MemoryBudget::new(100);
        assert!(budget.reserve(60));
        assert!(!budget.reserve(41), "60 + 41 is over the limit");
        assert_eq!(budget.used(), 60, "a refused reservation takes nothing");
        assert!(budget.reserve(40));
        budget.release(60);
        assert_eq!(budget.used(), 40);
        assert!(budget.reserve(60));
    }

    #[test]
    fn the_kernel_identity_names_the_sources_engine_and_cpu() {
        let id = kernel_identity();
        assert_eq!(KERNEL_HASH.len(), 64, "{KERNEL_HASH}");
        assert!(id.contains(KERNEL_HASH), "{id}");
        assert!(id.contains("engine candle "), "{id}");
        assert!(id.contains(std::env::consts::ARCH), "{id}");
    }
}
