//! A fast CPU 3x3 "same" convolution (stride 1, zero padding 1) + bias + ReLU, NCHW input and
//! OIHW kernel, f32, as a candle custom op with its backward pass.
//!
//! Why: candle 0.11's CPU `conv2d` builds its im2col matrix element by element, transposes the
//! result, and leaves bias and ReLU to two more passes over memory; its backward goes through
//! `conv_transpose2d`, which has no matrix-multiply path at all. The VGG16 conv base spends
//! almost all of its time there.
//!
//! How: each image's output pixels are cut into column chunks; a task builds the im2col block
//! of one chunk (`im2col`), multiplies it with `matmul::matmul` (the `gemm` crate's
//! AVX2/FMA/AVX-512 kernels, in a summation order fixed by the shapes), and adds bias and applies
//! ReLU while the block is still in cache. The input gradient is itself a 3x3 same convolution
//! (kernel flipped and transposed); the weight gradient multiplies the output gradient with each
//! image's im2col matrix. Winograd F(2x2, 3x3) and F(4x4, 3x3) (`winograd`) compute the same
//! convolution with 2.25x and 4x fewer multiplications; `ConvKernel::for_layer` picks one of the
//! three per layer from its shapes (forward and input gradient alike).
//!
//! Determinism: the kernel choice and the task layout (chunk boundaries, tiles) are functions of
//! the layer's shapes only, never of the thread count or the batch; every task multiplies
//! single-threaded, and
//! gradients that sum over the batch (weight, bias) do so image by image in batch order. So the
//! results are the same bits with any number of threads, and an image's output does not depend
//! on the other images of its batch. Each output element's sum is ordered by `matmul` alone, so the
//! task layout (`Blocking`) does not change a bit either (tested with forced tiny and huge
//! blockings), nor does the CPU (see `matmul`; Winograd's transforms are plain f32 arithmetic in
//! a fixed order).

use std::sync::atomic::{AtomicU8, Ordering};

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

mod im2col;
mod winograd;

use im2col::{conv_im2col, im2col};

/// The algorithm behind a 3x3 same convolution (forward and input gradient) on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKernel {
    /// im2col blocks times the kernel matrix: 9 products per output and input channel.
    Im2col,
    /// Winograd F(2x2, 3x3): 4 products per output and input channel.
    WinogradF2,
    /// Winograd F(4x4, 3x3): 2.25 products per output and input channel.
    WinogradF4,
}

/// 0: each layer's own choice (`ConvKernel::for_layer`); else 1 + the forced kernel.
static FORCED: AtomicU8 = AtomicU8::new(0);

/// Force one kernel for every layer (`runner bench` compares them), or `None` for each layer's
/// own choice. Process-wide.
pub fn force_kernel(kernel: Option<ConvKernel>) {
    let code = match kernel {
        None => 0,
        Some(ConvKernel::Im2col) => 1,
        Some(ConvKernel::WinogradF2) => 2,
        Some(ConvKernel::WinogradF4) => 3,
    };
    FORCED.store(code, Ordering::Relaxed);
}

impl ConvKernel {
    /// The kernel a layer of these shapes uses: a function of the shapes only.
    fn for_layer(d: Dims) -> ConvKernel {
        match FORCED.load(Ordering::Relaxed) {
            1 => return ConvKernel::Im2col,
            2 => return ConvKernel::WinogradF2,
            3 => return ConvKernel::WinogradF4,
            _ => {}
        }
        // Measured layer by layer (VGG16 at 150x150, batch 8, one thread, optimised build, a
        // 2-core Xeon with AVX-512; milliseconds for im2col / F(2x2) / F(4x4)): with few input
        // channels the transforms cost more than the products they save (3 -> 64 at 150x150:
        // 26 / 48 / 53); F(4x4) is the fastest or even on maps of 32 pixels and more (64 -> 64
        // at 150x150: 108 / 124 / 112; 128 -> 128 at 75x75: 77 / 76 / 62; 256 -> 256 at 37x37:
        // 73 / 54 / 51), F(2x2) on smaller ones, where F(4x4)'s tiles overhang the map
        // (512 -> 512 at 18x18: 70 / 44 / 75; at 9x9: 21 / 18 / 45). Below 8 pixels a map is
        // one or two tiles wide and im2col does it directly.
        let side = d.h.min(d.w);
        if d.cin < 16 || side < 8 {
            ConvKernel::Im2col
        } else if side < 32 {
            ConvKernel::WinogradF2
        } else {
            ConvKernel::WinogradF4
        }
    }

    /// The name `runner bench` prints.
    pub fn name(kernel: Option<ConvKernel>) -> &'static str {
        match kernel {
            None => "auto",
            Some(ConvKernel::Im2col) => "im2col",
            Some(ConvKernel::WinogradF2) => "wino2",
            Some(ConvKernel::WinogradF4) => "wino4",
        }
    }
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
    /// Winograd tiles per forward task.
    tiles: Option<usize>,
}

impl Blocking {
    const AUTO: Blocking = Blocking {
        columns: None,
        tile: None,
        group: None,
        tiles: None,
    };
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

/// `out[b, o] = act(bias[o] + conv3x3_same(x[b], weight[o]))` for all images, by the layer's
/// kernel (`ConvKernel::for_layer`).
fn conv_same(
    x: &[f32],
    d: Dims,
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    blocking: Blocking,
) -> Vec<f32> {
    conv_with(ConvKernel::for_layer(d), x, d, weight, bias, relu, blocking)
}

/// `conv_same` by the given kernel.
fn conv_with(
    kernel: ConvKernel,
    x: &[f32],
    d: Dims,
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    blocking: Blocking,
) -> Vec<f32> {
    let variant = match kernel {
        ConvKernel::Im2col => return conv_im2col(x, d, weight, bias, relu, blocking),
        ConvKernel::WinogradF2 => &winograd::F2,
        ConvKernel::WinogradF4 => &winograd::F4,
    };
    winograd::conv(variant, x, d, weight, bias, relu, blocking.tiles)
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

#[cfg(test)]
mod reference_tests;
