//! The wall-clock time as run records and lock files write it.

use std::time::SystemTime;

/// The current time as RFC 3339 UTC, seconds precision.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
