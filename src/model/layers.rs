//! The network's building blocks as tensor functions, with the fixes candle 0.11 needs.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Result, Tensor, D};

/// Set by `runner bench --candle-conv` only, to measure candle's CPU convolution for comparison.
static CANDLE_CONV: AtomicBool = AtomicBool::new(false);

/// Route CPU convolutions through candle's `conv2d` (true) or the fused kernel (false, the
/// default). For benchmarks: the two differ in rounding, so a run must not switch midway.
pub fn use_candle_conv(yes: bool) {
    CANDLE_CONV.store(yes, Ordering::Relaxed);
}

/// 3x3 "same" convolution (stride 1, zero padding 1) + bias + ReLU, NCHW input, OIHW kernel.
///
/// On the CPU (f32) this is the fused kernel of `model::conv`, several times faster than
/// candle's `conv2d` there; other devices keep candle's `conv2d`.
pub fn conv3x3_relu(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let f32_all = [x, weight, bias].iter().all(|t| t.dtype() == DType::F32);
    if x.device().is_cpu() && f32_all && !CANDLE_CONV.load(Ordering::Relaxed) {
        return super::conv::conv3x3_bias_relu(x, weight, bias);
    }
    conv3x3_relu_candle(x, weight, bias)
}

/// The same layer from candle's own ops (the reference the fused CPU kernel is tested against).
pub fn conv3x3_relu_candle(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let c = bias.dim(0)?;
    x.conv2d(weight, 1, 1, 1, 1)?
        .broadcast_add(&bias.reshape((1, c, 1, 1))?)?
        .relu()
}

/// 2x2 max pooling with stride 2 and "valid" padding (output floor(n/2)), NCHW.
///
/// candle 0.11's `max_pool2d` has a wrong backward pass (the gradient is a quarter of the true
/// value, and misplaced when a size is odd, e.g. 9 -> 4), so pooling is built from ops whose
/// gradients are right: crop to even sizes, view the windows as `(b, c, h/2, 2, w/2, 2)`, and
/// reduce the two window axes.
///
/// When gradients flow, the maximum is taken with `argmax` + `gather`, so that a window whose
/// maximum is tied sends its gradient to one element (the first in row-major window order), as
/// TensorFlow's and PyTorch's pooling do; a plain `max` would send the full gradient to every
/// tied element. Inputs that need no gradient (the frozen prefix) take the cheaper `max` path:
/// the forward values are identical.
pub fn max_pool_2x2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.narrow(2, 0, 2 * h2)?.narrow(3, 0, 2 * w2)?
    } else {
        x.clone()
    };
    let windows = x.reshape((b, c, h2, 2, w2, 2))?;
    if !x.track_op() {
        return windows.max(5)?.max(3);
    }
    let windows = windows
        .permute((0, 1, 2, 4, 3, 5))?
        .contiguous()?
        .reshape((b, c, h2, w2, 4))?;
    let first_max = windows.argmax_keepdim(D::Minus1)?;
    windows.gather(&first_max, D::Minus1)?.squeeze(D::Minus1)
}

/// Keras `Flatten` on channels-last data: NCHW is viewed as NHWC first, so feature
/// `(h * W + w) * C + c` matches a Keras-trained `Dense` kernel row for row.
pub fn flatten_channels_last(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.permute((0, 2, 3, 1))?
        .contiguous()?
        .reshape((b, h * w * c))
}

/// `x W^T + b` with `weight` in (out, in) layout, optionally followed by ReLU.
///
/// On the CPU (f32) the product is `dense::dense_product`, rounded the same way on every CPU;
/// other devices keep candle's `matmul`.
pub fn dense(x: &Tensor, weight: &Tensor, bias: &Tensor, relu: bool) -> Result<Tensor> {
    let f32_all = [x, weight].iter().all(|t| t.dtype() == DType::F32);
    let product = if x.device().is_cpu() && f32_all && x.rank() == 2 {
        super::dense::dense_product(x, weight)?
    } else {
        x.matmul(&weight.t()?)?
    };
    let y = product.broadcast_add(bias)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn input(shape: (usize, usize, usize, usize), seed: u64) -> Vec<f32> {
        // Distinct values (no ties), so the finite-difference derivative is well defined.
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let mut v: Vec<f32> = (0..n)
            .map(|i| ((i as u64 * 7919 + seed * 104729) % 1009) as f32 / 97.0 - 5.0)
            .collect();
        for (i, x) in v.iter_mut().enumerate() {
            *x += i as f32 * 1e-3;
        }
        v
    }

    /// d/dx of sum(pool(x) * r) by central differences, compared with autograd, for even and odd sizes.
    #[test]
    fn pooling_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        for &(h, w) in &[(4usize, 4usize), (9, 9), (5, 8), (7, 3)] {
            let shape = (2, 3, h, w);
            let data = input(shape, (h * w) as u64);
            let x =
                Var::from_tensor(&Tensor::from_vec(data.clone(), shape, &dev).unwrap()).unwrap();
            let out = max_pool_2x2(x.as_tensor()).unwrap();
            assert_eq!(out.dims(), &[2, 3, h / 2, w / 2]);
            let r_len = out.elem_count();
            let r: Vec<f32> = (0..r_len).map(|i| 1.0 + (i % 5) as f32 * 0.25).collect();
            let r = Tensor::from_vec(r, out.shape(), &dev).unwrap();
            let loss = (out * &r).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let g: Vec<f32> = grads
                .get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();

            let f = |d: &[f32]| -> f64 {
                let t = Tensor::from_vec(d.to_vec(), shape, &dev).unwrap();
                let p = max_pool_2x2(&t).unwrap();
                (p * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let eps = 1e-2f32;
            for i in 0..data.len() {
                let mut plus = data.clone();
                plus[i] += eps;
                let mut minus = data.clone();
                minus[i] -= eps;
                let fd = (f(&plus) - f(&minus)) / (2.0 * eps as f64);
                assert!(
                    (fd - g[i] as f64).abs() < 1e-2,
                    "size {h}x{w}, element {i}: autograd {} vs finite difference {fd}",
                    g[i]
                );
            }
        }
    }

    /// Documents why `max_pool_2x2` exists: if candle's own pooling gradient is ever fixed, this
    /// test fails and the workaround can go.
    #[test]
    fn candle_max_pool2d_backward_is_still_wrong() {
        let dev = Device::Cpu;
        let shape = (1, 1, 4, 4);
        let x = Var::from_tensor(&Tensor::from_vec(input(shape, 1), shape, &dev).unwrap()).unwrap();
        let theirs = x
            .as_tensor()
            .max_pool2d(2)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let ours = max_pool_2x2(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let sum = |g: &candle_core::backprop::GradStore| -> f32 {
            g.get(x.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        assert_eq!(sum(&ours), 4.0, "one unit of gradient per output");
        assert_ne!(sum(&theirs), 4.0);
    }

    #[test]
    fn tied_window_sends_gradient_to_one_element() {
        let dev = Device::Cpu;
        let x =
            Var::from_tensor(&Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &dev).unwrap())
                .unwrap();
        let y = max_pool_2x2(x.as_tensor()).unwrap().sum_all().unwrap();
        let g: Vec<f32> = y
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(g, vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn pooling_forward_floors_odd_sizes_and_agrees_between_paths() {
        let dev = Device::Cpu;
        let shape = (1, 2, 9, 9);
        let t = Tensor::from_vec(input(shape, 3), shape, &dev).unwrap();
        let plain = max_pool_2x2(&t).unwrap();
        let var = Var::from_tensor(&t).unwrap();
        let tracked = max_pool_2x2(var.as_tensor()).unwrap();
        assert_eq!(plain.dims(), &[1, 2, 4, 4]);
        let a: Vec<f32> = plain.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = tracked.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
        // Element (0,0) of channel 0 is the max of rows 0-1, columns 0-1.
        let d = input(shape, 3);
        let expect = d[0].max(d[1]).max(d[9]).max(d[10]);
        assert_eq!(a[0], expect);
    }

    #[test]
    fn flatten_uses_keras_channels_last_order() {
        let dev = Device::Cpu;
        // (b=1, c=2, h=2, w=2): value = 100*c + 10*h + w
        let v: Vec<f32> = (0..2)
            .flat_map(|c| {
                (0..2).flat_map(move |h| (0..2).map(move |w| (100 * c + 10 * h + w) as f32))
            })
            .collect();
        let t = Tensor::from_vec(v, (1, 2, 2, 2), &dev).unwrap();
        let f: Vec<f32> = flatten_channels_last(&t)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(f, vec![0.0, 100.0, 1.0, 101.0, 10.0, 110.0, 11.0, 111.0]);
    }
}
