//! The machine and software a run used.

use super::{Environment, Kernels};
use crate::base::build_info;

/// The environment of this process; `device` is the engine device the run uses (e.g. "cpu").
pub fn environment(device: &str) -> Environment {
    Environment {
        runner_version: build_info::VERSION.to_string(),
        rustc: build_info::RUSTC.to_string(),
        engine: build_info::engine(),
        device: device.to_string(),
        cpu: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| cpu_model(&text))
            .unwrap_or_else(|| "unknown".to_string()),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os: os(std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()),
        kernels: Some(Kernels {
            isa: crate::base::cpu::kernel_isa().to_string(),
            bitwise_portable: crate::base::cpu::bitwise_portable(),
            source_hash: build_info::KERNEL_HASH.to_string(),
        }),
    }
}

/// The first "model name" of a /proc/cpuinfo text.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name" && !value.trim().is_empty()).then(|| value.trim().to_string())
    })
}

/// "linux x86_64", with the kernel release when known: "linux x86_64 (kernel 6.8.0-60-generic)".
fn os(kernel: Option<String>) -> String {
    let base = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
    match kernel.as_deref().map(str::trim) {
        Some(k) if !k.is_empty() => format!("{base} (kernel {k})"),
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\
                    \nprocessor\t: 1\nmodel name\t: Other\n";
        assert_eq!(
            cpu_model(text).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\n"), None);
    }

    #[test]
    fn os_names_the_kernel_when_known() {
        let base = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
        assert_eq!(os(None), base);
        assert_eq!(os(Some("  \n".into())), base);
        assert_eq!(
            os(Some("6.8.0-60-generic\n".into())),
            format!("{base} (kernel 6.8.0-60-generic)")
        );
    }

    #[test]
    fn environment_records_the_build_and_the_machine() {
        let env = environment("cpu");
        assert_eq!(env.runner_version, env!("CARGO_PKG_VERSION"));
        assert!(env.rustc.starts_with("rustc 1."), "{}", env.rustc);
        // The engine version comes from Cargo.lock: it must be the 0.11 line the code is written for.
        assert!(env.engine.starts_with("candle 0.11."), "{}", env.engine);
        assert_eq!(env.device, "cpu");
        assert!(env.threads >= 1);
        assert!(env.os.starts_with(std::env::consts::OS));
        assert!(!env.cpu.is_empty());
    }
}
