//! f32 matrix products whose rounding depends only on the shapes: the same bits on every x86-64
//! CPU with AVX2 and FMA, whatever its vector width, its cache sizes or its thread count.
//!
//! Why: the `gemm` crate picks its kernels and blockings when it runs, from the CPU it finds.
//! Three of its choices change the order in which a dot product is summed, and so the rounding:
//! - the depth blocking `kc`, derived from the L1 cache's geometry and the vector width
//!   (`gemm-common`'s `kernel_params`): each block's products are summed from zero, and the block
//!   sums are then added to the output, so where the blocks start changes the result;
//! - for small outputs (at most 16 x 16) with the reduction contiguous in both operands, it uses
//!   "horizontal" kernels that vectorise *along* the reduction, 8 or 16 lanes wide (AVX2 or
//!   AVX-512), and add the lanes at the end;
//! - matrix-vector products (an output of one row or one column) and depths of 1 or 2 go to
//!   other kernels again.
//!
//! So the same training run rounded differently on a machine with another L1 cache or vector
//! width, and diverged over the epochs. This module fixes the order:
//!
//! **The order.** For each output element, the depth `k` is cut into `ceil(k / 512)` consecutive
//! blocks of `ceil(k / blocks)` (the last one shorter). Each block's products are summed by a
//! chain of fused multiply-adds starting from +0, in depth order; the block sums are added to the
//! output in block order, the first one replacing it unless the call accumulates.
//!
//! `gemm`'s general kernels compute exactly this when a call's depth is at most 512 (then `kc`
//! is the whole depth on every CPU: `kernel_params` never picks less than 512) and the call avoids
//! the special paths above; vectorisation runs across output elements, each lane its own chain.
//! Calls that would take a special path use a scalar loop with the same order instead (they are
//! small). `tests::gemm_follows_the_documented_order` checks this bit for bit against a plain
//! implementation of the order, on whatever CPU runs the tests; CI also runs it under
//! `qemu-x86_64 -cpu Haswell-v4` (AVX2 only), see tests/cli/cross_cpu.rs.
//!
//! GPUs and other architectures are outside this guarantee (see README, "Reproducibility").

use gemm::Parallelism;

/// The longest depth given to one `gemm` call. 512 is the smallest `kc` `gemm` chooses for a long
/// reduction on any CPU, so a call of at most this depth is summed as one block everywhere.
pub const DEPTH_BLOCK: usize = 512;

/// Outputs of at most this many elements take the scalar path (see the module doc: `gemm`'s
/// horizontal kernels serve outputs of up to 16 x 16).
const SMALL_OUTPUT: usize = 16 * 16;

/// A strided f32 matrix: element `(i, j)` is at `ptr + i * rs + j * cs` (strides in elements,
/// non-negative).
#[derive(Clone, Copy, Debug)]
pub struct MatRef {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

/// The mutable counterpart of [`MatRef`].
#[derive(Clone, Copy, Debug)]
pub struct MatMut {
    pub ptr: *mut f32,
    pub rs: isize,
    pub cs: isize,
}

/// The depth blocks of a reduction of length `k`: `(start, len)` in order (see the module doc).
pub fn depth_blocks(k: usize) -> impl Iterator<Item = (usize, usize)> {
    let blocks = k.div_ceil(DEPTH_BLOCK).max(1);
    let len = k.div_ceil(blocks).max(1);
    (0..k)
        .step_by(len)
        .map(move |start| (start, len.min(k - start)))
}

/// `dst (m x n) = [dst +] lhs (m x k) * rhs (k x n)`, in the order of the module doc.
///
/// `threads`: whether `gemm` may split the output over the current rayon pool (the order does not
/// depend on it; callers that already run in parallel tasks pass false).
///
/// # Safety
/// Every element addressed through `dst`, `lhs` and `rhs` for the given shapes and strides must
/// be valid, and the elements of `dst` must not be read or written by anything else meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: MatMut,
    accumulate: bool,
    lhs: MatRef,
    rhs: MatRef,
    threads: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    *dst.ptr.offset(i as isize * dst.rs + j as isize * dst.cs) = 0.0;
                }
            }
        }
        return;
    }
    let general = m >= 2 && n >= 2 && m * n > SMALL_OUTPUT;
    for (b, (start, len)) in depth_blocks(k).enumerate() {
        let read_dst = accumulate || b > 0;
        let lhs_b = lhs.ptr.offset(start as isize * lhs.cs);
        let rhs_b = rhs.ptr.offset(start as isize * rhs.rs);
        if general && len >= 3 {
            gemm::gemm(
                m,
                n,
                len,
                dst.ptr,
                dst.cs,
                dst.rs,
                read_dst,
                lhs_b,
                lhs.cs,
                lhs.rs,
                rhs_b,
                rhs.cs,
                rhs.rs,
                if read_dst { 1.0 } else { 0.0 },
                1.0,
                false,
                false,
                false,
                if threads {
                    Parallelism::Rayon(0)
                } else {
                    Parallelism::None
                },
            );
        } else {
            block_scalar(
                m,
                n,
                len,
                dst,
                read_dst,
                MatRef { ptr: lhs_b, ..lhs },
                MatRef { ptr: rhs_b, ..rhs },
            );
        }
    }
}

/// One depth block in the documented order, element by element.
unsafe fn block_scalar(
    m: usize,
    n: usize,
    k: usize,
    dst: MatMut,
    read_dst: bool,
    lhs: MatRef,
    rhs: MatRef,
) {
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0f32;
            for d in 0..k {
                let a = *lhs.ptr.offset(i as isize * lhs.rs + d as isize * lhs.cs);
                let b = *rhs.ptr.offset(d as isize * rhs.rs + j as isize * rhs.cs);
                sum = a.mul_add(b, sum);
            }
            let out = dst.ptr.offset(i as isize * dst.rs + j as isize * dst.cs);
            *out = if read_dst { *out + sum } else { sum };
        }
    }
}

/// Row-major convenience: `a (m x k) * b (k x n)` into a new `(m x n)` buffer; `bt` says that `b`
/// is stored transposed, as `(n x k)`.
pub fn matmul_rows(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, bt: bool) -> Vec<f32> {
    assert_eq!(a.len(), m * k, "matmul_rows: lhs is not {m} x {k}");
    assert_eq!(b.len(), k * n, "matmul_rows: rhs is not {k} x {n}");
    let mut out = vec![0f32; m * n];
    let rhs = if bt {
        MatRef {
            ptr: b.as_ptr(),
            rs: 1,
            cs: k as isize,
        }
    } else {
        MatRef {
            ptr: b.as_ptr(),
            rs: n as isize,
            cs: 1,
        }
    };
    // SAFETY: the shapes were checked against the slices above; `out` is owned here.
    unsafe {
        matmul(
            m,
            n,
            k,
            MatMut {
                ptr: out.as_mut_ptr(),
                rs: n as isize,
                cs: 1,
            },
            false,
            MatRef {
                ptr: a.as_ptr(),
                rs: k as isize,
                cs: 1,
            },
            rhs,
            true,
        );
    }
    out
}

#[cfg(test)]
mod tests;
