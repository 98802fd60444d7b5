//! Build-time facts the runner records with every run (`provenance::environment`): the compiler's
//! version and the candle version actually locked, neither of which is known at run time.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RUNNER_RUSTC_VERSION={version}");

    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let candle = Path::new(&manifest_dir)
        .ancestors()
        .find_map(|dir| std::fs::read_to_string(dir.join("Cargo.lock")).ok())
        .and_then(|lock| locked_version(&lock, "candle-core"))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RUNNER_CANDLE_VERSION={candle}");
}

/// The version of package `name` in a Cargo.lock (`[[package]]` blocks of `name = ...` and
/// `version = ...` lines).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line == wanted {
            let version = lines.next()?.strip_prefix("version = \"")?;
            return version.strip_suffix('"').map(str::to_string);
        }
    }
    None
}
