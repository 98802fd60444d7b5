//! What the CPU offers the matrix kernels, as recorded in run.json and in cache keys.
//!
//! The `gemm` crate dispatches at run time to AVX-512, AVX2+FMA or plain kernels. Results do not
//! depend on which (see `model::matmul`) as long as multiply-adds are fused, which every x86-64
//! CPU with AVX2 has (x86-64-v3); without FMA, the kernels round each product separately.

/// The instruction set the f32 matrix kernels run with on this CPU: "avx512f", "avx2+fma",
/// "x86_64 without fma", or the architecture's name elsewhere.
pub fn kernel_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512f"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "avx2+fma"
        } else {
            "x86_64 without fma"
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH
    }
}

/// Whether CPU results are covered by the bitwise guarantee across machines: x86-64 with FMA.
pub fn bitwise_portable() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The class of CPUs that give the same bits: what cache keys record instead of the CPU model.
pub fn rounding_class() -> String {
    if bitwise_portable() {
        "x86_64 fma".to_string()
    } else {
        format!("{} {}", std::env::consts::ARCH, kernel_isa())
    }
}
