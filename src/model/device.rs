//! Which device a sweep trains on: `--device cpu|cuda|cuda:N|auto` and the experiment file's
//! `device` key.
//!
//! CUDA support is a cargo feature (`cuda`, built by `scripts/build-cuda.sh`). A build without it
//! still accepts `--device cuda` and answers with one sentence saying how to get a CUDA build, so
//! the flag means the same thing in every build. `auto` picks the first GPU when the build has
//! CUDA and a GPU is there, and the CPU otherwise.
//!
//! The device is an execution detail, not part of a run key: a CPU result and a GPU result of the
//! same cell are the same experiment, and run.json records which device produced each. CPU
//! results are bitwise reproducible; CUDA results agree with them to float32 rounding (cuBLAS and
//! cuDNN sum in other orders), which run.json's `nondeterminism` says.

use candle_core::Device;
use serde::{Deserialize, Serialize};

pub use crate::config::DeviceChoice;

/// Whether this binary was built with the `cuda` feature.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The answer to `--device cuda` in a build without CUDA: what to do, in one sentence.
pub const NO_CUDA_BUILD: &str = "this runner was built without CUDA support: build one with \
     scripts/build-cuda.sh (or `cargo build --release --features cuda` where a CUDA toolkit is \
     installed), or use --device cpu";

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{NO_CUDA_BUILD}")]
    NotBuilt,
    #[error("cannot open CUDA device {ordinal}: {source} (is the NVIDIA driver loaded, and does `nvidia-smi` list the GPU? Use --device cpu to train on the CPU)")]
    Open {
        ordinal: usize,
        source: candle_core::Error,
    },
}

/// An opened device and what run.json records about it.
#[derive(Debug, Clone)]
pub struct OpenDevice {
    pub device: Device,
    pub info: DeviceInfo,
}

/// The device a run used, as recorded in run.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// "cpu" or "cuda:N".
    pub kind: String,
    /// The GPU's name (e.g. "NVIDIA H200"); absent on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// The CUDA version the driver supports, e.g. "13.0".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_cuda_version: Option<String>,
    /// The CUDA toolkit version the runner was built against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_cuda_version: Option<String>,
    /// The cuDNN library version loaded, when the build uses cuDNN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cudnn_version: Option<String>,
}

impl DeviceInfo {
    pub fn cpu() -> Self {
        DeviceInfo {
            kind: "cpu".into(),
            name: None,
            compute_capability: None,
            memory_bytes: None,
            driver_cuda_version: None,
            build_cuda_version: None,
            cudnn_version: None,
        }
    }

    /// One line for logs: "cpu" or "cuda:0 (NVIDIA H200, compute 9.0, driver CUDA 13.0)".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = &self.name {
            parts.push(n.clone());
        }
        if let Some(c) = &self.compute_capability {
            parts.push(format!("compute {c}"));
        }
        if let Some(d) = &self.driver_cuda_version {
            parts.push(format!("driver CUDA {d}"));
        }
        if let Some(d) = &self.cudnn_version {
            parts.push(format!("cuDNN {d}"));
        }
        if parts.is_empty() {
            self.kind.clone()
        } else {
            format!("{} ({})", self.kind, parts.join(", "))
        }
    }

    /// What keeps results on this device from being bitwise reproducible (run.json's
    /// `nondeterminism`); nothing on the CPU.
    pub fn nondeterminism(&self) -> Vec<String> {
        if self.kind == "cpu" {
            return vec![];
        }
        vec![
            "cuda: cuBLAS/cuDNN kernels sum in their own order: results match the CPU's to float32 rounding, not bitwise, and may differ between GPU models or library versions".into(),
        ]
    }
}

/// Open the device asked for.
pub fn open(choice: DeviceChoice) -> Result<OpenDevice, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(OpenDevice {
            device: Device::Cpu,
            info: DeviceInfo::cpu(),
        }),
        DeviceChoice::Cuda(ordinal) => open_cuda(ordinal),
        DeviceChoice::Auto => match open_cuda(0) {
            Ok(d) => Ok(d),
            Err(_) => open(DeviceChoice::Cpu),
        },
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> Result<OpenDevice, DeviceError> {
    Err(DeviceError::NotBuilt)
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<OpenDevice, DeviceError> {
    let device =
        Device::new_cuda(ordinal).map_err(|source| DeviceError::Open { ordinal, source })?;
    let info = cuda_info(&device, ordinal);
    Ok(OpenDevice { device, info })
}

#[cfg(feature = "cuda")]
fn cuda_info(device: &Device, ordinal: usize) -> DeviceInfo {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let mut info = DeviceInfo::cpu();
    info.kind = format!("cuda:{ordinal}");
    if let Device::Cuda(cuda) = device {
        let stream = cuda.cuda_stream();
        let ctx = stream.context();
        info.name = ctx.name().ok();
        info.compute_capability = ctx
            .compute_capability()
            .ok()
            .map(|(major, minor)| format!("{major}.{minor}"));
        info.memory_bytes = ctx.total_mem().ok().map(|m| m as u64);
    }
    let mut version = 0i32;
    // SAFETY: cuDriverGetVersion only writes the int it is given.
    if unsafe { sys::cuDriverGetVersion(&mut version) } == sys::cudaError_enum::CUDA_SUCCESS {
        info.driver_cuda_version = Some(format!("{}.{}", version / 1000, (version % 1000) / 10));
    }
    info.build_cuda_version = option_env!("RUNNER_CUDA_VERSION").map(str::to_string);
    #[cfg(feature = "cudnn")]
    {
        let v = candle_core::cuda_backend::cudarc::cudnn::result::get_version();
        info.cudnn_version = Some(format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100));
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_opens_and_records_no_nondeterminism() {
        let d = open(DeviceChoice::Cpu).unwrap();
        assert!(d.device.is_cpu());
        assert_eq!(d.info.kind, "cpu");
        assert_eq!(d.info.describe(), "cpu");
        assert!(d.info.nondeterminism().is_empty());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_feature_cuda_says_how_to_build_and_auto_is_the_cpu() {
        let err = open(DeviceChoice::Cuda(0)).unwrap_err().to_string();
        assert!(err.contains("scripts/build-cuda.sh"), "{err}");
        assert!(err.contains("--features cuda"), "{err}");
        assert!(open(DeviceChoice::Auto).unwrap().device.is_cpu());
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_opens_and_describes_the_gpu() {
        let d = open(DeviceChoice::Cuda(0)).expect("a CUDA GPU");
        assert!(d.device.is_cuda());
        assert_eq!(d.info.kind, "cuda:0");
        assert!(d.info.name.is_some(), "{:?}", d.info);
        assert!(d.info.driver_cuda_version.is_some(), "{:?}", d.info);
        assert_eq!(d.info.nondeterminism().len(), 1);
        assert!(open(DeviceChoice::Auto).unwrap().device.is_cuda());
    }
}
