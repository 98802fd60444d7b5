//! Winograd's minimal filtering F(m x m, 3 x 3) for the 3x3 "same" convolution: the output is
//! cut into m x m tiles; each tile's (m + 2) x (m + 2) input patch `d` and each 3 x 3 kernel `g`
//! are transformed (`V = Bᵀ d B`, `U = G g Gᵀ`), multiplied point by point and summed over the
//! input channels, which for each of the (m + 2)² transform positions is one matrix product
//! `(cout x cin) x (cin x tiles)`, and transformed back (`Y = Aᵀ M A`). F(2x2) needs 16 products
//! per output quad instead of 36 (2.25x fewer), F(4x4) 36 per 16 outputs instead of 144 (4x).
//!
//! Order and determinism: the transforms are plain f32 multiplications and additions in a fixed
//! order (Rust never fuses them into FMAs, and vector lanes run across tiles, each lane its own
//! scalar computation, so every CPU computes the same bits); the kernel transform runs in f64 and
//! is rounded once to f32; the products over channels go through `matmul` (its order fixed by the
//! shapes). Tiles are numbered across the batch and cut into chunks of a size fixed by the shapes;
//! no bit depends on the chunk size, the thread count or an image's batch mates (a tile's result
//! uses only its own column of each product).
//!
//! Accuracy (tests/reference/vgg16_conv_base.py, full-width VGG16 at 150x150 against a float64
//! direct convolution, `conv::reference_tests`), max |error| / max |value| of block5_pool:
//! im2col 8.5e-7, F(2x2) 9.2e-7, F(4x4) 2.6e-6 (its transforms' coefficients, up to 8 and 1/24,
//! round more). `ConvKernel::for_layer` decides which kernel runs.

use rayon::prelude::*;

use super::super::matmul::{matmul, MatMut, MatRef};
use super::{Dims, SharedMut};

/// One Winograd variant: output tile `m`, input tile `a = m + 2`, and its three matrices,
/// row-major: `bt` (a x a), `g` (a x 3), `at` (m x a).
pub(super) struct Variant {
    pub m: usize,
    a: usize,
    bt: &'static [f32],
    g: &'static [f64],
    at: &'static [f32],
}

/// F(2x2, 3x3) (Lavin and Gray, 2016): every coefficient is 0, ±1 or ±1/2.
pub(super) const F2: Variant = Variant {
    m: 2,
    a: 4,
    #[rustfmt::skip]
    bt: &[
        1.0, 0.0, -1.0, 0.0,
        0.0, 1.0, 1.0, 0.0,
        0.0, -1.0, 1.0, 0.0,
        0.0, 1.0, 0.0, -1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0, 0.0, 0.0,
        0.5, 0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, -1.0,
    ],
};

/// F(4x4, 3x3) with the interpolation points 0, ±1, ±2 (Lavin and Gray, 2016).
pub(super) const F4: Variant = Variant {
    m: 4,
    a: 6,
    #[rustfmt::skip]
    bt: &[
        4.0, 0.0, -5.0, 0.0, 1.0, 0.0,
        0.0, -4.0, -4.0, 1.0, 1.0, 0.0,
        0.0, 4.0, -4.0, -1.0, 1.0, 0.0,
        0.0, -2.0, -1.0, 2.0, 1.0, 0.0,
        0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
        0.0, 4.0, 0.0, -5.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0 / 4.0, 0.0, 0.0,
        -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
        -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
        1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
        1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
        0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
        0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
    ],
};

/// `dst[t] = Σ_k coefs[k] · src[k · stride + t]` for `t < dst.len()`, k ascending, zero
/// coefficients skipped: one fixed order of f32 operations per element (lanes are independent).
fn combine(dst: &mut [f32], coefs: &[f32], src: &[f32], stride: usize) {
    let n = dst.len();
    let mut first = true;
    for (k, &c) in coefs.iter().enumerate() {
        if c == 0.0 {
            continue;
        }
        let s = &src[k * stride..k * stride + n];
        if first {
            dst.iter_mut().zip(s).for_each(|(d, &x)| *d = c * x);
            first = false;
        } else {
            dst.iter_mut().zip(s).for_each(|(d, &x)| *d += c * x);
        }
    }
    if first {
        dst.fill(0.0);
    }
}

/// Tiles per task: the transformed inputs of a chunk (a² x cin x tiles) stay about 2 MiB, and
/// the products get at least 32 columns (8 MiB and 128 measured slower). A function of the
/// shapes only.
fn chunk_tiles(v: &Variant, d: Dims) -> usize {
    let per_tile = v.a * v.a * d.cin.max(d.cout) * 4;
    ((2 << 20) / per_tile).clamp(32, 1024)
}

/// The transformed kernel: `u[ξ][o][c] = (G g[o, c] Gᵀ)[ξ]`, computed in f64, rounded once.
fn transform_kernel(v: &Variant, weight: &[f32], d: Dims) -> Vec<f32> {
    let (a, plane) = (v.a, d.cout * d.cin);
    let mut u = vec![0f32; a * a * plane];
    let dst = SharedMut(u.as_mut_ptr());
    (0..d.cout).into_par_iter().for_each(|o| {
        for c in 0..d.cin {
            let g = &weight[(o * d.cin + c) * 9..][..9];
            // t = G g (a x 3), then G t ᵀ.
            let mut t = [0f64; 18];
            for i in 0..a {
                for j in 0..3 {
                    t[i * 3 + j] =
                        (0..3).fold(0.0, |s, k| s + v.g[i * 3 + k] * g[k * 3 + j] as f64);
                }
            }
            for i in 0..a {
                for j in 0..a {
                    let x = (0..3).fold(0.0, |s, k| s + t[i * 3 + k] * v.g[j * 3 + k]);
                    // SAFETY: task `o` alone writes element (ξ, o, c) of every ξ.
                    unsafe { *dst.at((i * a + j) * plane + o * d.cin + c) = x as f32 };
                }
            }
        }
    });
    u
}

/// `out = act(bias + conv3x3_same(x, weight))` for all images, by Winograd `v`; `chunk` forces
/// the tiles per task (tests), else `chunk_tiles`.
pub(super) fn conv(
    v: &Variant,
    x: &[f32],
    d: Dims,
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    chunk: Option<usize>,
) -> Vec<f32> {
    let (m, a, hw) = (v.m, v.a, d.hw());
    let mut out = vec![0f32; d.batch * d.cout * hw];
    if out.is_empty() {
        return out;
    }
    let (ty, tx) = (d.h.div_ceil(m), d.w.div_ceil(m));
    let per_image = ty * tx;
    let total = d.batch * per_image;
    let nt = chunk.unwrap_or_else(|| chunk_tiles(v, d)).clamp(1, total);
    let u = transform_kernel(v, weight, d);
    let dst = SharedMut(out.as_mut_ptr());
    (0..total.div_ceil(nt)).into_par_iter().for_each_init(
        || Buffers::new(v, d, nt),
        |buf, task| {
            let t0 = task * nt;
            let n = nt.min(total - t0);
            // The tile `t0 + t`: image, tile row, tile column.
            let tile = |t: usize| {
                let g = t0 + t;
                (g / per_image, (g % per_image) / tx, g % tx)
            };
            // 1. Input transform: V[ξ][c][t].
            let vs = &mut buf.v[..a * a * d.cin * n];
            for c in 0..d.cin {
                let p = &mut buf.patch[..a * a * n];
                for t in 0..n {
                    let (img, r, col) = tile(t);
                    let plane = &x[(img * d.cin + c) * hw..][..hw];
                    for i in 0..a {
                        let y = (r * m + i) as isize - 1;
                        for j in 0..a {
                            let xx = (col * m + j) as isize - 1;
                            let inside =
                                y >= 0 && (y as usize) < d.h && xx >= 0 && (xx as usize) < d.w;
                            p[(i * a + j) * n + t] = if inside {
                                plane[y as usize * d.w + xx as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
                // tmp[i][j] = Σ_k Bᵀ[i][k] p[k][j]; V[i][j] = Σ_k tmp[i][k] Bᵀ[j][k].
                let tmp = &mut buf.tmp[..a * a * n];
                for i in 0..a {
                    for j in 0..a {
                        let row = &v.bt[i * a..(i + 1) * a];
                        combine(&mut tmp[(i * a + j) * n..][..n], row, &p[j * n..], a * n);
                    }
                }
                for i in 0..a {
                    for j in 0..a {
                        let row = &v.bt[j * a..(j + 1) * a];
                        let xi = i * a + j;
                        let dst = &mut vs[(xi * d.cin + c) * n..][..n];
                        combine(dst, row, &tmp[i * a * n..], n);
                    }
                }
            }
            // 2. Per transform position: M[ξ] (cout x n) = U[ξ] (cout x cin) · V[ξ] (cin x n).
            let ms = &mut buf.m[..a * a * d.cout * n];
            for xi in 0..a * a {
                // SAFETY: U[ξ] is (cout, cin) row-major, V[ξ] (cin, n), M[ξ] (cout, n); all
                // three lie inside their buffers, and the buffers belong to this task.
                unsafe {
                    matmul(
                        d.cout,
                        n,
                        d.cin,
                        MatMut {
                            ptr: ms[xi * d.cout * n..].as_mut_ptr(),
                            rs: n as isize,
                            cs: 1,
                        },
                        false,
                        MatRef {
                            ptr: u[xi * d.cout * d.cin..].as_ptr(),
                            rs: d.cin as isize,
                            cs: 1,
                        },
                        MatRef {
                            ptr: vs[xi * d.cin * n..].as_ptr(),
                            rs: n as isize,
                            cs: 1,
                        },
                        false,
                    );
                }
            }
            // 3. Output transform, bias, ReLU: Y = Aᵀ M A, written where inside the image.
            for o in 0..d.cout {
                let q = &mut buf.patch[..a * a * n];
                for xi in 0..a * a {
                    q[xi * n..][..n].copy_from_slice(&ms[(xi * d.cout + o) * n..][..n]);
                }
                // tmp[i][j] = Σ_k Aᵀ[i][k] q[k][j] (m x a); y[i][j] = Σ_k tmp[i][k] Aᵀ[j][k].
                let tmp = &mut buf.tmp[..m * a * n];
                for i in 0..m {
                    for j in 0..a {
                        let row = &v.at[i * a..(i + 1) * a];
                        combine(&mut tmp[(i * a + j) * n..][..n], row, &q[j * n..], a * n);
                    }
                }
                let b = bias.map_or(0.0, |b| b[o]);
                let y = &mut buf.y[..n];
                for i in 0..m {
                    for j in 0..m {
                        let row = &v.at[j * a..(j + 1) * a];
                        combine(y, row, &tmp[i * a * n..], n);
                        if bias.is_some() {
                            y.iter_mut().for_each(|v| *v += b);
                        }
                        if relu {
                            y.iter_mut().for_each(|v| *v = v.max(0.0));
                        }
                        for (t, &val) in y.iter().enumerate() {
                            let (img, r, col) = tile(t);
                            let (py, px) = (r * m + i, col * m + j);
                            if py < d.h && px < d.w {
                                let at = (img * d.cout + o) * hw + py * d.w + px;
                                // SAFETY: each output pixel belongs to exactly one tile, and
                                // each tile to one task.
                                unsafe { *dst.at(at) = val };
                            }
                        }
                    }
                }
            }
        },
    );
    out
}

/// One task's scratch space, reused across the tasks of a thread.
struct Buffers {
    v: Vec<f32>,
    m: Vec<f32>,
    patch: Vec<f32>,
    tmp: Vec<f32>,
    y: Vec<f32>,
}

impl Buffers {
    fn new(v: &Variant, d: Dims, nt: usize) -> Buffers {
        let a2 = v.a * v.a;
        Buffers {
            v: vec![0f32; a2 * d.cin * nt],
            m: vec![0f32; a2 * d.cout * nt],
            patch: vec![0f32; a2 * nt],
            tmp: vec![0f32; a2 * nt],
            y: vec![0f32; nt],
        }
    }
}
