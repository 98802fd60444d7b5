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

    // A CUDA build records the toolkit it was compiled with ("13.0"), from `nvcc --version`.
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rerun-if-env-changed=PATH");
        let cuda = Command::new("nvcc")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| nvcc_release(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env=RUNNER_CUDA_VERSION={cuda}");
    }
}

/// "13.0" from nvcc's "Cuda compilation tools, release 13.0, V13.0.88".
fn nvcc_release(text: &str) -> Option<String> {
    let rest = &text[text.find("release ")? + "release ".len()..];
    Some(rest.split(',').next()?.trim().to_string())
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
