//! A fast CPU 3x3 "same" convolution (stride 1, zero padding 1) + bias + ReLU, NCHW input and
//! OIHW kernel, f32, as a candle custom op with its backward pass.
//!
//! Why: candle 0.11's CPU `conv2d` builds its im2col matrix element by element, transposes the
//! result, and leaves bias and ReLU to two more passes over memory; its backward goes through
//! `conv_transpose2d`, which has no matrix-multiply path at all. The VGG16 conv base spends
//! almost all of its time there.
//!
//! How: each image's output pixels are cut into column chunks; a task builds the im2col block
//! of one chunk (rows `(c, ky, kx)` in OIHW's order, so the kernel is used as a `(O, 9C)` matrix
//! without copying; each row is a shifted copy of an input row, so it is built with slice
//! copies), multiplies it with `matmul::matmul` (the `gemm` crate's runtime-dispatched
//! AVX2/FMA/AVX-512 kernels, in a summation order fixed by the shapes), and adds bias and applies
//! ReLU while the block is still in cache.
//!
//! Determinism: the task layout (chunk boundaries, tiles) is a function of the layer's shapes
//! only, never of the thread count or the batch; every task multiplies single-threaded, and
//! gradients that sum over the batch (weight, bias) do so image by image in batch order. So the
//! results are the same bits with any number of threads, and an image's output does not depend
//! on the other images of its batch. Each output element's sum is ordered by `matmul` alone, so the
//! task layout (`Blocking`) does not change a bit either (tested with forced tiny and huge
//! blockings), nor does the CPU (see `matmul`).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::matmul::{matmul, MatMut, MatRef};

/// The fused op. Only the CPU has a forward; other devices use candle's `conv2d`
/// (see `layers::conv3x3_relu`).
struct Conv3x3BiasRelu;

/// 3x3 same convolution + bias + ReLU on the CPU: `x` (B, C, H, W), `weight` (O, C, 3, 3),
/// `bias` (O,). Gradients w.r.t. all three flow through candle's autograd.
pub fn conv3x3_bias_relu(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    let weight = weight.contiguous()?;
    let bias = bias.contiguous()?;
    x.apply_op3(&weight, &bias, Conv3x3BiasRelu)
}

/// Shapes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
}

impl Dims {
    fn hw(&self) -> usize {
        self.h * self.w
    }
    /// Depth of the reduction: one row of the im2col matrix per (input channel, ky, kx).
    fn k(&self) -> usize {
        9 * self.cin
    }
}

/// How the work is cut into tasks. In training it is a function of the shapes only
/// (`Blocking::AUTO`); tests force tiny and huge blockings to show that no bit depends on it.
#[derive(Debug, Clone, Copy, Default)]
struct Blocking {
    /// Output pixels per forward task (`chunk_columns` when None).
    columns: Option<usize>,
    /// Weight-gradient tile: rows (output channels) and columns (im2col rows) per task.
    tile: Option<(usize, usize)>,
    /// Images whose im2col matrices the weight gradient holds at once.
    group: Option<usize>,
}

impl Blocking {
    const AUTO: Blocking = Blocking {
        columns: None,
        tile: None,
        group: None,
    };
}

/// Output pixels per task. An im2col block of about 384 KiB stays in a core's L2 cache while
/// `gemm` streams it; below 192 columns `gemm`'s per-call packing of the kernel matrix costs
/// more than the cache misses save. A function of the shapes only (see the module doc).
fn chunk_columns(d: Dims) -> usize {
    let by_cache = (384 * 1024 / 4) / d.k();
    by_cache.clamp(192, 4096).min(d.hw())
}

/// The f32 data of a custom op's contiguous operand (`op` and `what` name it in errors); shared by
/// the CPU custom ops of `model`.
pub(super) fn f32_slice<'a>(
    op: &str,
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        other => candle_core::bail!("{op}: {what} must be f32, got {:?}", other.dtype()),
    };
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: {what} must be contiguous"),
    }
}

impl CustomOp3 for Conv3x3BiasRelu {
    fn name(&self) -> &'static str {
        "conv3x3-bias-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, cin, h, w) = l1.shape().dims4()?;
        let (cout, wc, kh, kw) = l2.shape().dims4()?;
        let nb = l3.shape().dims1()?;
        if wc != cin || kh != 3 || kw != 3 || nb != cout {
            candle_core::bail!(
                "conv3x3: input {:?}, kernel {:?} and bias {:?} do not fit together",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let d = Dims {
            batch,
            cin,
            h,
            w,
            cout,
        };
        let x = f32_slice("conv3x3", s1, l1, "input")?;
        let weight = f32_slice("conv3x3", s2, l2, "kernel")?;
        let bias = f32_slice("conv3x3", s3, l3, "bias")?;
        let out = conv_same(x, d, weight, Some(bias), true, Blocking::AUTO);
        Ok((CpuStorage::F32(out), Shape::from((batch, cout, h, w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, cin, h, w) = x.dims4()?;
        let cout = weight.dim(0)?;
        let d = Dims {
            batch,
            cin,
            h,
            w,
            cout,
        };
        let dev = x.device();
        let vec = |t: &Tensor| -> Result<Vec<f32>> {
            t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
        };
        let y = vec(res)?;
        let dy = vec(grad_res)?;
        // ReLU's gradient: zero where the output is not positive (TensorFlow's and PyTorch's
        // convention at exactly zero).
        let mut g = dy;
        g.par_chunks_mut(4096)
            .zip(y.par_chunks(4096))
            .for_each(|(g, y)| {
                for (g, &y) in g.iter_mut().zip(y) {
                    if y <= 0.0 {
                        *g = 0.0;
                    }
                }
            });
        // Gradients only for tensors that take part in autograd (a frozen layer's kernel, or the
        // input of the first trainable layer, needs none: skipping them halves the backward).
        let dbias = if bias.track_op() {
            Some(Tensor::from_vec(bias_grad(&g, d), cout, dev)?)
        } else {
            None
        };
        let dweight = if weight.track_op() {
            let xs = vec(x)?;
            Some(Tensor::from_vec(
                weight_grad(&xs, &g, d, Blocking::AUTO),
                (cout, cin, 3, 3),
                dev,
            )?)
        } else {
            None
        };
        let dx = if x.track_op() {
            let wv = vec(weight)?;
            Some(Tensor::from_vec(
                input_grad(&g, &wv, d, Blocking::AUTO),
                (batch, cin, h, w),
                dev,
            )?)
        } else {
            None
        };
        Ok((dx, dweight, dbias))
    }
}

/// The im2col block of output pixels `p0..p0 + n` of one image: row `(c * 9 + ky * 3 + kx)`
/// holds input pixel `(y + ky - 1, x + kx - 1)` of channel `c` for each output pixel `(y, x)`,
/// zero outside the image. `cols` has `9 * channels` rows of `n` values.
fn im2col(img: &[f32], channels: usize, h: usize, w: usize, p0: usize, n: usize, cols: &mut [f32]) {
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

/// A pointer that tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every user writes only elements no other task touches (see the call sites).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// Through a method, so that closures capture the whole (Send) wrapper, not its field.
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `out[b, o, p] = act(bias[o] + sum_r weight[o, r] * im2col(x[b])[r, p])` for all images,
/// with `weight` as an `(cout, 9 * cin)` row-major matrix.
fn conv_same(
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

/// dL/dbias[o] = sum over images (in batch order) and pixels of `g`.
fn bias_grad(g: &[f32], d: Dims) -> Vec<f32> {
    let hw = d.hw();
    (0..d.cout)
        .into_par_iter()
        .map(|o| {
            (0..d.batch)
                .map(|b| g[(b * d.cout + o) * hw..][..hw].iter().sum::<f32>())
                .fold(0.0, |acc, s| acc + s)
        })
        .collect()
}

/// dL/dinput: the gradient flows back through the same 3x3 "same" correlation with the kernel
/// flipped in space and its channel axes swapped: `w'[c, o, ky, kx] = w[o, c, 2 - ky, 2 - kx]`.
fn input_grad(g: &[f32], weight: &[f32], d: Dims, blocking: Blocking) -> Vec<f32> {
    let mut flipped = vec![0f32; weight.len()];
    for o in 0..d.cout {
        for c in 0..d.cin {
            for t in 0..9 {
                flipped[(c * d.cout + o) * 9 + (8 - t)] = weight[(o * d.cin + c) * 9 + t];
            }
        }
    }
    let back = Dims {
        batch: d.batch,
        cin: d.cout,
        h: d.h,
        w: d.w,
        cout: d.cin,
    };
    conv_same(g, back, &flipped, None, false, blocking)
}

/// Tile of the weight gradient (rows = output channels, columns = im2col rows) per task.
const TILE_ROWS: usize = 64;
const TILE_COLS: usize = 576;
/// Bytes of im2col matrices held at once by `weight_grad` (images are taken in groups).
const WEIGHT_GRAD_COLS_BYTES: usize = 64 << 20;

/// dL/dweight `(cout, 9 * cin)` = sum over images of `g[b] (cout, hw) x im2col(x[b])^T`.
/// Each tile of the result is one task that adds the images in batch order.
fn weight_grad(x: &[f32], g: &[f32], d: Dims, blocking: Blocking) -> Vec<f32> {
    let (hw, k) = (d.hw(), d.k());
    let mut dw = vec![0f32; d.cout * k];
    if d.batch == 0 || hw == 0 {
        return dw;
    }
    let group = blocking
        .group
        .unwrap_or(WEIGHT_GRAD_COLS_BYTES / (4 * k * hw))
        .clamp(1, d.batch);
    let (tile_rows, tile_cols) = blocking.tile.unwrap_or((TILE_ROWS, TILE_COLS));
    let (tiles_r, tiles_c) = (d.cout.div_ceil(tile_rows), k.div_ceil(tile_cols));
    let mut cols = vec![0f32; group * k * hw];
    let dst = SharedMut(dw.as_mut_ptr());
    for first in (0..d.batch).step_by(group) {
        let count = group.min(d.batch - first);
        cols[..count * k * hw]
            .par_chunks_mut(9 * hw)
            .enumerate()
            .for_each(|(i, rows)| {
                let (img, c) = (first + i / d.cin, i % d.cin);
                let plane = &x[(img * d.cin + c) * hw..][..hw];
                im2col(plane, 1, d.h, d.w, 0, hw, rows);
            });
        let cols = &cols;
        (0..tiles_r * tiles_c).into_par_iter().for_each(|tile| {
            let (r0, c0) = ((tile / tiles_c) * tile_rows, (tile % tiles_c) * tile_cols);
            let (m, n) = (tile_rows.min(d.cout - r0), tile_cols.min(k - c0));
            // This task alone writes rows r0..r0+m, columns c0..c0+n of dw.
            let block = dst.at(r0 * k + c0);
            for i in 0..count {
                let img = first + i;
                // SAFETY: `g[img]` rows r0.. are (m, hw) row-major, the im2col rows c0.. are
                // (n, hw) row-major, read as (hw, n); this task alone writes its tile of dw.
                unsafe {
                    matmul(
                        m,
                        n,
                        hw,
                        MatMut {
                            ptr: block,
                            rs: k as isize,
                            cs: 1,
                        },
                        img > 0,
                        MatRef {
                            ptr: g[(img * d.cout + r0) * hw..].as_ptr(),
                            rs: hw as isize,
                            cs: 1,
                        },
                        MatRef {
                            ptr: cols[(i * k + c0) * hw..].as_ptr(),
                            rs: 1,
                            cs: hw as isize,
                        },
                        false,
                    );
                }
            }
        });
    }
    dw
}

#[cfg(test)]
mod tests;
