//! The memory budget the caches draw on, and sizes as the command line writes them (`4GiB`).

use std::sync::Mutex;

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
}
