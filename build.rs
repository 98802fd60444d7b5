//! Build-time facts the runner records with every run (`provenance::environment`): the compiler's
//! version and the candle version actually locked, neither of which is known at run time; and
//! the hash of the code that turns files into pixels and pixels into features, which keys the
//! image and feature caches (`RUNNER_KERNEL_HASH`).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The sources whose behaviour the caches depend on: decoding, resizing and preprocessing
/// (`dataset`, `image`), the layers and their kernels (`model`), and the cache code itself. A
/// change to any of them, or to the dependencies (Cargo.toml, Cargo.lock), gives new cache keys; a
/// change anywhere else (the report, the CLI) keeps the caches valid.
const KERNEL_SOURCES: [&str; 4] = [
    "src/dataset",
    "src/image.rs",
    "src/model",
    "src/train/features",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=Cargo.toml");

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

    let root = Path::new(&manifest_dir);
    let mut hasher = Sha256::new();
    // Cargo.toml too: a dependency's features (e.g. which image formats decode) can change
    // without Cargo.lock changing.
    for manifest in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(bytes) = std::fs::read(root.join(manifest)) {
            hasher.update(format!("{manifest} {}\n", bytes.len()).as_bytes());
            hasher.update(&bytes);
        }
    }
    for source in KERNEL_SOURCES {
        println!("cargo:rerun-if-changed={source}");
        let mut files = Vec::new();
        list_files(&root.join(source), &mut files);
        files.sort();
        for file in files {
            let rel = file.strip_prefix(root).unwrap_or(&file);
            let bytes = std::fs::read(&file).unwrap_or_default();
            hasher.update(format!("{} {}\n", rel.display(), bytes.len()).as_bytes());
            hasher.update(&bytes);
        }
    }
    let kernel: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=RUNNER_KERNEL_HASH={kernel}");

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

/// Every file under `path` (or `path` itself when it is a file).
fn list_files(path: &Path, out: &mut Vec<PathBuf>) {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                list_files(&entry.path(), out);
            }
        }
        Err(_) if path.is_file() => out.push(path.to_path_buf()),
        Err(_) => {}
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
