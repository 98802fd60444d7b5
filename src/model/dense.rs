//! The dense layer's product `x W^T` on the CPU as a candle custom op whose forward and backward
//! passes go through `matmul`, so that their rounding depends on the shapes only (candle's own
//! `matmul` calls `gemm` directly and rounds differently from one CPU to another; see
//! `model::matmul`).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::conv::f32_slice;
use super::matmul::matmul_rows;

struct DenseProduct;

/// `x (batch, in) W^T` with `weight` in (out, in) layout, f32 on the CPU.
pub fn dense_product(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, DenseProduct)
}

impl CustomOp2 for DenseProduct {
    fn name(&self) -> &'static str {
        "dense-product"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, inputs) = l1.shape().dims2()?;
        let (outputs, w_inputs) = l2.shape().dims2()?;
        if inputs != w_inputs {
            candle_core::bail!(
                "dense: input {:?} and kernel {:?} do not fit together",
                l1.shape(),
                l2.shape()
            );
        }
        let x = f32_slice("dense", s1, l1, "input")?;
        let w = f32_slice("dense", s2, l2, "kernel")?;
        let y = matmul_rows(x, w, batch, inputs, outputs, true);
        Ok((CpuStorage::F32(y), Shape::from((batch, outputs))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (batch, inputs) = x.dims2()?;
        let outputs = weight.dim(0)?;
        let dev = x.device();
        let vec = |t: &Tensor| -> Result<Vec<f32>> {
            t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
        };
        let g = vec(grad_res)?;
        // dx = g (batch, out) W (out, in).
        let dx = if x.track_op() {
            let w = vec(weight)?;
            let dx = matmul_rows(&g, &w, batch, outputs, inputs, false);
            Some(Tensor::from_vec(dx, (batch, inputs), dev)?)
        } else {
            None
        };
        // dW = g^T (out, batch) x (batch, in).
        let dw = if weight.track_op() {
            let xs = vec(x)?;
            let gt = transpose(&g, batch, outputs);
            let dw = matmul_rows(&gt, &xs, outputs, batch, inputs, false);
            Some(Tensor::from_vec(dw, (outputs, inputs), dev)?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// A row-major (rows, cols) matrix as (cols, rows).
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::base::rng::stream(seed, "dense");
        (0..n)
            .map(|_| crate::base::rng::uniform_f32(&mut rng, -1.0, 1.0))
            .collect()
    }

    fn close(a: &Tensor, b: &Tensor) {
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let err = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale;
        assert!(err < 1e-5, "relative error {err}");
    }

    /// Forward and both gradients against candle's `matmul` (float32 rounding apart), for a head
    /// (one output), a hidden layer and a reduction longer than one depth block.
    #[test]
    fn forward_and_gradients_match_candle_matmul() {
        let dev = Device::Cpu;
        for (i, &(b, inputs, outputs)) in
            [(4, 10, 1), (32, 256, 64), (8, 1300, 7)].iter().enumerate()
        {
            let x = Var::from_vec(random(b * inputs, i as u64), (b, inputs), &dev).unwrap();
            let w = Var::from_vec(
                random(outputs * inputs, 9 + i as u64),
                (outputs, inputs),
                &dev,
            )
            .unwrap();
            let r =
                Tensor::from_vec(random(b * outputs, 20 + i as u64), (b, outputs), &dev).unwrap();
            let ours = dense_product(x.as_tensor(), w.as_tensor()).unwrap();
            let theirs = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
            close(&ours, &theirs);
            let g1 = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            close(
                g1.get(x.as_tensor()).unwrap(),
                g2.get(x.as_tensor()).unwrap(),
            );
            close(
                g1.get(w.as_tensor()).unwrap(),
                g2.get(w.as_tensor()).unwrap(),
            );
        }
    }
}
