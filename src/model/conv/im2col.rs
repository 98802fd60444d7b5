//! The im2col path of the 3x3 same convolution: each image's output pixels are cut into column
//! chunks; a task builds the im2col block of one chunk, multiplies it with the kernel matrix
//! through `matmul`, and adds bias and ReLU while the block is still in cache.

use rayon::prelude::*;

use super::super::matmul::{matmul, MatMut, MatRef};
use super::{Blocking, Dims, SharedMut};

/// Output pixels per task. An im2col block of about 384 KiB stays in a core's L2 cache while
/// `gemm` streams it; below 192 columns `gemm`'s per-call packing of the kernel matrix costs
/// more than the cache misses save. A function of the shapes only (see the module doc).
fn chunk_columns(d: Dims) -> usize {
    let by_cache = (384 * 1024 / 4) / d.k();
    by_cache.clamp(192, 4096).min(d.hw())
}

/// The im2col block of output pixels `p0..p0 + n` of one image: row `(c * 9 + ky * 3 + kx)`
/// holds input pixel `(y + ky - 1, x + kx - 1)` of channel `c` for each output pixel `(y, x)`,
/// zero outside the image. `cols` has `9 * channels` rows of `n` values.
pub(super) fn im2col(
    img: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    p0: usize,
    n: usize,
    cols: &mut [f32],
) {
    let p1 = p0 + n;
    for c in 0..channels {
        let plane = &img[c * h * w..(c + 1) * h * w];
        for ky in 0..3 {
            for kx in 0..3 {
                let row = &mut cols[(c * 9 + ky * 3 + kx) * n..][..n];
                let mut p = p0;
                while p < p1 {
                    let (y, x0) = (p / w, p % w);
                    let len = ((y + 1) * w).min(p1) - p;
                    let dst = &mut row[p - p0..p - p0 + len];
                    let iy = y + ky;
                    if iy == 0 || iy > h {
                        dst.fill(0.0);
                    } else {
                        let src = &plane[(iy - 1) * w..iy * w];
                        // dst[j] = src[x0 + j + kx - 1] where that index lies inside the row.
                        let lo = (1 - (kx as isize) - x0 as isize).clamp(0, len as isize) as usize;
                        let hi = ((w + 1 - kx) as isize - x0 as isize)
                            .clamp(lo as isize, len as isize)
                            as usize;
                        dst[..lo].fill(0.0);
                        let s0 = x0 + lo + kx - 1;
                        dst[lo..hi].copy_from_slice(&src[s0..s0 + (hi - lo)]);
                        dst[hi..].fill(0.0);
                    }
                    p += len;
                }
            }
        }
    }
}

/// `out[b, o, p] = act(bias[o] + sum_r weight[o, r] * im2col(x[b])[r, p])` for all images,
/// with `weight` as an `(cout, 9 * cin)` row-major matrix.
pub(super) fn conv_im2col(
    x: &[f32],
    d: Dims,
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    blocking: Blocking,
) -> Vec<f32> {
    let (hw, k) = (d.hw(), d.k());
    let mut out = vec![0f32; d.batch * d.cout * hw];
    if out.is_empty() {
        return out;
    }
    let nc = blocking
        .columns
        .unwrap_or_else(|| chunk_columns(d))
        .clamp(1, hw);
    let chunks = hw.div_ceil(nc);
    let dst = SharedMut(out.as_mut_ptr());
    (0..d.batch * chunks).into_par_iter().for_each_init(
        || vec![0f32; k * nc],
        |cols, task| {
            let (img, chunk) = (task / chunks, task % chunks);
            let p0 = chunk * nc;
            let n = nc.min(hw - p0);
            let cols = &mut cols[..k * n];
            im2col(
                &x[img * d.cin * hw..(img + 1) * d.cin * hw],
                d.cin,
                d.h,
                d.w,
                p0,
                n,
                cols,
            );
            // This task alone writes rows 0..cout, columns p0..p0+n of image `img`.
            let block = dst.at(img * d.cout * hw + p0);
            // SAFETY: `weight` is (cout, k) and `cols` (k, n), both row-major; this task alone
            // writes rows 0..cout, columns p0..p0+n of image `img` (stride hw).
            unsafe {
                matmul(
                    d.cout,
                    n,
                    k,
                    MatMut {
                        ptr: block,
                        rs: hw as isize,
                        cs: 1,
                    },
                    false,
                    MatRef {
                        ptr: weight.as_ptr(),
                        rs: k as isize,
                        cs: 1,
                    },
                    MatRef {
                        ptr: cols.as_ptr(),
                        rs: n as isize,
                        cs: 1,
                    },
                    false,
                );
            }
            for o in 0..d.cout {
                // SAFETY: as above, row o of this task's block.
                let row = unsafe { std::slice::from_raw_parts_mut(block.add(o * hw), n) };
                let b = bias.map_or(0.0, |b| b[o]);
                if relu {
                    row.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
                } else if bias.is_some() {
                    row.iter_mut().for_each(|v| *v += b);
                }
            }
        },
    );
    out
}
