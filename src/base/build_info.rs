//! Facts fixed when the runner was built (captured by build.rs): its version, the compiler, the
//! candle version locked, and the hash of the sources that fill the caches, which with the engine
//! and the CPU's rounding class makes the identity part of every cache key.

/// The runner's version (Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `rustc --version` of the compiler that built the runner.
pub const RUSTC: &str = env!("RUNNER_RUSTC_VERSION");
/// The candle-core version in Cargo.lock when the runner was built.
pub const CANDLE: &str = env!("RUNNER_CANDLE_VERSION");

/// The hash of the sources that decode, resize and preprocess images, run the layers, and lay
/// out the caches, plus Cargo.lock (computed by build.rs). Caches survive commits that change
/// anything else, and never outlive a change to these.
pub const KERNEL_HASH: &str = env!("RUNNER_KERNEL_HASH");

/// The engine as run records name it: "candle 0.11.x".
pub fn engine() -> String {
    format!("candle {CANDLE}")
}

/// What a cached value depends on besides its inputs: the kernel sources, the engine, and the
/// class of CPU that rounds the same way (`cpu::rounding_class`: every x86-64 CPU with FMA gives
/// the same bits, so a results directory shared by a cluster's nodes shares its caches too).
pub fn kernel_identity() -> String {
    format!(
        "kernel {KERNEL_HASH}\nengine {}\ncpu {}\n",
        engine(),
        super::cpu::rounding_class()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_identity_names_the_sources_engine_and_cpu() {
        let id = kernel_identity();
        assert_eq!(KERNEL_HASH.len(), 64, "{KERNEL_HASH}");
        assert!(id.contains(KERNEL_HASH), "{id}");
        assert!(id.contains("engine candle "), "{id}");
        assert!(id.contains(std::env::consts::ARCH), "{id}");
    }
}
