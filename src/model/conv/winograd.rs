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
#[inline(always)]
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

/// Tiles per task: the transformed inputs of a chunk (a² x cin x tiles) stay about 8 MiB, and
/// the products get at least 32 columns. A function of the shapes only. Measured with `runner
/// bench --conv-kernel auto` (VGG16, 150x150, batch 8, 2-core Xeon with AVX-512): conv-base
/// forward 154-158 GFLOP per CPU-second with 1 MiB, 169-175 with 2, 182-186 with 4, 190-197 with
/// 8, 177-178 with 16.
fn chunk_tiles(v: &Variant, d: Dims) -> usize {
    let per_tile = v.a * v.a * d.cin.max(d.cout) * 4;
    ((8 << 20) / per_tile).clamp(32, 1024)
}

/// The transformed kernel: `u[ξ][o][c] = (G g[o, c] Gᵀ)[ξ]`, computed in f64, rounded once.
fn transform_kernel(v: &Variant, weight: &[f32], d: Dims) -> Vec<f32> {
    let mut u = vec![0f32; v.a * v.a * d.cout * d.cin];
    let dst = SharedMut(u.as_mut_ptr());
    (0..d.cout).into_par_iter().for_each_init(
        || (vec![0f64; 9 * d.cin], vec![0f64; v.a * 3 * d.cin]),
        // SAFETY: task `o` alone writes the elements (ξ, o, c) of every ξ.
        |(gt, t), o| unsafe { kernel_row(v, weight, d, o, &dst, gt, t) },
    );
    u
}

/// Row `o` of the transformed kernel, for all input channels at once (vector lanes run across
/// them): `t = G g` (a x 3), then `u = t Gᵀ`, each element summed from 0.0 in k order.
///
/// # Safety
/// No other thread writes the elements (ξ, o, ·) of `dst` meanwhile.
unsafe fn kernel_row(
    v: &Variant,
    weight: &[f32],
    d: Dims,
    o: usize,
    dst: &SharedMut,
    gt: &mut [f64],
    t: &mut [f64],
) {
    let (a, cin, plane) = (v.a, d.cin, d.cout * d.cin);
    // gt[k][c] = g[o, c, k].
    for (c, g) in weight[o * cin * 9..][..cin * 9].chunks_exact(9).enumerate() {
        for (k, &w) in g.iter().enumerate() {
            gt[k * cin + c] = w as f64;
        }
    }
    for i in 0..a {
        let (g0, g1, g2) = (v.g[i * 3], v.g[i * 3 + 1], v.g[i * 3 + 2]);
        for j in 0..3 {
            let (x0, x1, x2) = (
                &gt[j * cin..][..cin],
                &gt[(3 + j) * cin..][..cin],
                &gt[(6 + j) * cin..][..cin],
            );
            let row = &mut t[(i * 3 + j) * cin..][..cin];
            for c in 0..cin {
                row[c] = 0.0 + g0 * x0[c] + g1 * x1[c] + g2 * x2[c];
            }
        }
    }
    for i in 0..a {
        let (t0, t1, t2) = (
            &t[i * 3 * cin..][..cin],
            &t[(i * 3 + 1) * cin..][..cin],
            &t[(i * 3 + 2) * cin..][..cin],
        );
        for j in 0..a {
            let (h0, h1, h2) = (v.g[j * 3], v.g[j * 3 + 1], v.g[j * 3 + 2]);
            let out = std::slice::from_raw_parts_mut(dst.at((i * a + j) * plane + o * cin), cin);
            for c in 0..cin {
                out[c] = (0.0 + t0[c] * h0 + t1[c] * h1 + t2[c] * h2) as f32;
            }
        }
    }
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
    let m = v.m;
    let mut out = vec![0f32; d.batch * d.cout * d.hw()];
    if out.is_empty() {
        return out;
    }
    let (ty, tx) = (d.h.div_ceil(m), d.w.div_ceil(m));
    let per_image = ty * tx;
    let total = d.batch * per_image;
    let nt = chunk.unwrap_or_else(|| chunk_tiles(v, d)).clamp(1, total);
    let u = transform_kernel(v, weight, d);
    let job = Job {
        v,
        x,
        d,
        u: &u,
        bias,
        relu,
        nt,
        total,
        per_image,
        tx,
        dst: SharedMut(out.as_mut_ptr()),
    };
    let isa = Isa::detect();
    (0..total.div_ceil(nt)).into_par_iter().for_each(|task| {
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            buf.fit(v, d, nt);
            // SAFETY: `Isa::detect` found the features each entry point is compiled for.
            unsafe { isa.run(&job, &mut buf, task) }
        })
    });
    out
}

thread_local! {
    /// Each compute thread's task buffers, kept from call to call: allocating and zeroing them
    /// per call showed as several percent of a profile (memset, page faults), and keeping them
    /// gave 2-3% in `runner bench` (see README). A task writes every value it reads back (the
    /// padding included), so what a buffer held before never reaches a result. They grow to the
    /// largest task a thread has run (about 2 x 8 MiB, `chunk_tiles`). A task body makes no
    /// rayon calls, so a thread never runs two at once.
    static SCRATCH: std::cell::RefCell<Buffers> = const {
        std::cell::RefCell::new(Buffers {
            v: Vec::new(),
            m: Vec::new(),
            patch: Vec::new(),
            tmp: Vec::new(),
            y: Vec::new(),
        })
    };
}

/// One call's inputs, shared by its tasks.
struct Job<'a> {
    v: &'a Variant,
    x: &'a [f32],
    d: Dims,
    u: &'a [f32],
    bias: Option<&'a [f32]>,
    relu: bool,
    nt: usize,
    total: usize,
    per_image: usize,
    tx: usize,
    dst: SharedMut,
}

/// The widest vector instructions this CPU has, for the transforms. Their lanes run across
/// tiles, each lane the same scalar sequence of multiplications and additions (never fused), so
/// the bits do not depend on the choice; it only decides the speed.
#[derive(Clone, Copy)]
enum Isa {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    /// # Safety
    /// The CPU has the features of `self` (as `detect` found them).
    unsafe fn run(self, job: &Job, buf: &mut Buffers, task: usize) {
        match self {
            Isa::Baseline => task_body(job, buf, task),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => task_avx2(job, buf, task),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => task_avx512(job, buf, task),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn task_avx2(job: &Job, buf: &mut Buffers, task: usize) {
    task_body(job, buf, task)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task_avx512(job: &Job, buf: &mut Buffers, task: usize) {
    task_body(job, buf, task)
}

/// One task: the tiles `task * nt ..` of the batch, transformed in, multiplied, transformed out
/// and written to their output pixels.
#[inline(always)]
fn task_body(job: &Job, buf: &mut Buffers, task: usize) {
    let Job {
        v,
        x,
        d,
        u,
        bias,
        relu,
        nt,
        total,
        per_image,
        tx,
        ..
    } = *job;
    let dst = &job.dst;
    let (m, a, hw) = (v.m, v.a, d.hw());
    let t0 = task * nt;
    let n = nt.min(total - t0);
    // Where each tile lies: its image and top-left output pixel, and whether its whole
    // input patch (one pixel of padding around the output tile) and its whole output
    // tile lie inside the image (the fast paths below).
    let tiles: Vec<Tile> = (t0..t0 + n)
        .map(|g| {
            let (img, r, col) = (g / per_image, (g % per_image) / tx, g % tx);
            let (y0, x0) = (r * m, col * m);
            Tile {
                img,
                y0,
                x0,
                patch_inside: y0 >= 1 && x0 >= 1 && y0 + m < d.h && x0 + m < d.w,
                out_inside: y0 + m <= d.h && x0 + m <= d.w,
            }
        })
        .collect();
    let patch_runs = runs(&tiles, |t| t.patch_inside);
    let out_runs = runs(&tiles, |t| t.out_inside);
    // 1. Input transform: V[ξ][c][t].
    let vs = &mut buf.v[..a * a * d.cin * n];
    for c in 0..d.cin {
        let p = &mut buf.patch[..a * a * n];
        for &(t, len) in &patch_runs {
            let tile = &tiles[t];
            let plane = &x[(tile.img * d.cin + c) * hw..][..hw];
            if tile.patch_inside {
                // `len` tiles side by side, m pixels apart: element j of the i-th patch row of
                // tile t + l is pixel x0 - 1 + m l + j of image row y0 - 1 + i.
                for i in 0..a {
                    let row = &plane[(tile.y0 + i - 1) * d.w + tile.x0 - 1..][..m * (len - 1) + a];
                    for j in 0..a {
                        let dst = &mut p[(i * a + j) * n + t..][..len];
                        for (value, &pixel) in dst.iter_mut().zip(row[j..].iter().step_by(m)) {
                            *value = pixel;
                        }
                    }
                }
                continue;
            }
            for i in 0..a {
                let y = (tile.y0 + i).wrapping_sub(1);
                for j in 0..a {
                    let xx = (tile.x0 + j).wrapping_sub(1);
                    p[(i * a + j) * n + t] = if y < d.h && xx < d.w {
                        plane[y * d.w + xx]
                    } else {
                        0.0
                    };
                }
            }
        }
        // tmp[i][j] = Σ_k Bᵀ[i][k] p[k][j]; V[i][j] = Σ_k tmp[i][k] Bᵀ[j][k], each a row of
        // n tiles at a time.
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
    let ys = &mut buf.y[..m * m * n];
    for o in 0..d.cout {
        // tmp[i][j] = Σ_k Aᵀ[i][k] M[k][j] (m x a), M[k][j] = ms[((k a + j) cout + o) n];
        // y[i][j] = Σ_k tmp[i][k] Aᵀ[j][k].
        let tmp = &mut buf.tmp[..m * a * n];
        for i in 0..m {
            for j in 0..a {
                let row = &v.at[i * a..(i + 1) * a];
                let src = &ms[(j * d.cout + o) * n..];
                combine(&mut tmp[(i * a + j) * n..][..n], row, src, a * d.cout * n);
            }
        }
        let b = bias.map_or(0.0, |b| b[o]);
        for i in 0..m {
            for j in 0..m {
                let row = &v.at[j * a..(j + 1) * a];
                let y = &mut ys[(i * m + j) * n..][..n];
                combine(y, row, &tmp[i * a * n..], n);
                if bias.is_some() {
                    y.iter_mut().for_each(|v| *v += b);
                }
                if relu {
                    y.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }
        }
        for &(t, len) in &out_runs {
            let tile = &tiles[t];
            let base = (tile.img * d.cout + o) * hw;
            // A run of whole tiles writes m rows of m len pixels; a tile cut by the image's
            // right or bottom edge writes what lies inside.
            let (rows, cols) = if tile.out_inside {
                (m, m * len)
            } else {
                ((d.h - tile.y0).min(m), (d.w - tile.x0).min(m))
            };
            for i in 0..rows {
                // SAFETY: each output pixel belongs to exactly one tile, each tile to one task,
                // and the row's `cols` pixels lie inside the image row.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(
                        dst.at(base + (tile.y0 + i) * d.w + tile.x0),
                        cols,
                    )
                };
                for j in 0..m.min(cols) {
                    let y = &ys[(i * m + j) * n + t..][..cols.div_ceil(m).min(len)];
                    for (pixel, &value) in out[j..].iter_mut().step_by(m).zip(y) {
                        *pixel = value;
                    }
                }
            }
        }
    }
}

/// Consecutive tiles `(first, count)`: runs of whole tiles side by side in one tile row for which
/// `whole` holds, and every other tile on its own.
fn runs(tiles: &[Tile], whole: impl Fn(&Tile) -> bool) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (t, tile) in tiles.iter().enumerate() {
        if let Some((first, count)) = runs.last_mut() {
            let head = &tiles[*first];
            if whole(head) && whole(tile) && head.img == tile.img && head.y0 == tile.y0 {
                *count += 1;
                continue;
            }
        }
        runs.push((t, 1));
    }
    runs
}

/// A tile of a task: its image, its top-left output pixel, and whether its input patch and its
/// output tile lie wholly inside the image.
struct Tile {
    img: usize,
    y0: usize,
    x0: usize,
    patch_inside: bool,
    out_inside: bool,
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
    /// Grow each buffer to what a task of `nt` tiles of this call needs (they never shrink).
    fn fit(&mut self, v: &Variant, d: Dims, nt: usize) {
        let a2 = v.a * v.a;
        let grow = |buf: &mut Vec<f32>, len: usize| {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
        };
        grow(&mut self.v, a2 * d.cin * nt);
        grow(&mut self.m, a2 * d.cout * nt);
        grow(&mut self.patch, a2 * nt);
        grow(&mut self.tmp, a2 * nt);
        grow(&mut self.y, v.m * v.m * nt);
    }
}
