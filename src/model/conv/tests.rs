//! The fused CPU convolution against candle's `conv2d` (itself checked against Keras and
//! PyTorch in tests/reference), against finite differences, and for determinism.

use super::*;
use crate::model::layers::conv3x3_relu_candle;
use candle_core::{Device, Var};

fn random(n: usize, seed: u64, what: &str, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = crate::base::rng::stream(seed, what);
    (0..n)
        .map(|_| crate::base::rng::uniform_f32(&mut rng, lo, hi))
        .collect()
}

/// Input, kernel and bias of a (batch, cin, h, w) -> cout layer, as variables.
fn layer(shape: (usize, usize, usize, usize), cout: usize, seed: u64) -> (Var, Var, Var) {
    let (b, c, h, w) = shape;
    let dev = Device::Cpu;
    let x = Tensor::from_vec(random(b * c * h * w, seed, "x", -1.0, 1.0), shape, &dev).unwrap();
    let k = Tensor::from_vec(
        random(cout * c * 9, seed, "w", -0.5, 0.5),
        (cout, c, 3, 3),
        &dev,
    )
    .unwrap();
    let bias = Tensor::from_vec(random(cout, seed, "b", -0.3, 0.3), cout, &dev).unwrap();
    (
        Var::from_tensor(&x).unwrap(),
        Var::from_tensor(&k).unwrap(),
        Var::from_tensor(&bias).unwrap(),
    )
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// max |a - b| / max |b|: the error relative to the tensor's scale.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Shapes that exercise odd sizes, one input channel group of 3 (RGB), batch 1 and more,
/// several column chunks per image, and images narrower than the kernel.
const SHAPES: [((usize, usize, usize, usize), usize); 7] = [
    ((1, 3, 5, 7), 4),
    ((2, 3, 9, 9), 8),
    ((3, 5, 1, 1), 3),
    ((1, 2, 2, 1), 2),
    ((2, 16, 13, 11), 12),
    ((2, 8, 33, 31), 16),
    ((1, 64, 24, 24), 64),
];

#[test]
fn forward_and_gradients_match_candle_conv2d() {
    for (i, &(shape, cout)) in SHAPES.iter().enumerate() {
        let (x, k, b) = layer(shape, cout, i as u64);
        let ours = conv3x3_bias_relu(x.as_tensor(), k.as_tensor(), b.as_tensor()).unwrap();
        let theirs = conv3x3_relu_candle(x.as_tensor(), k.as_tensor(), b.as_tensor()).unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let e = rel_err(&flat(&ours), &flat(&theirs));
        assert!(e < 1e-5, "{shape:?} -> {cout}: forward relative error {e}");

        let r = Tensor::from_vec(
            random(ours.elem_count(), i as u64, "r", -1.0, 1.0),
            ours.shape(),
            &Device::Cpu,
        )
        .unwrap();
        let g_ours = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g_theirs = (theirs * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in [("input", &x), ("kernel", &k), ("bias", &b)] {
            let a = flat(g_ours.get(v.as_tensor()).unwrap());
            let t = flat(g_theirs.get(v.as_tensor()).unwrap());
            let e = rel_err(&a, &t);
            assert!(
                e < 1e-5,
                "{shape:?} -> {cout}: {name} gradient relative error {e}"
            );
        }
    }
}

/// Central differences of L = sum(conv(x, w, b) * r) in f64 against the op's gradients. The
/// bias is large enough that no output sits near ReLU's kink, where the derivative jumps.
#[test]
fn gradients_match_finite_differences() {
    let dev = Device::Cpu;
    for (seed, shape, cout) in [
        (1u64, (2usize, 3usize, 5usize, 4usize), 2usize),
        (2, (1, 2, 3, 6), 3),
    ] {
        let (b, c, h, w) = shape;
        let x = random(b * c * h * w, seed, "x", -1.0, 1.0);
        let k = random(cout * c * 9, seed, "w", -0.5, 0.5);
        let bias = random(cout, seed, "b", 6.0, 7.0);
        let r = random(b * cout * h * w, seed, "r", -1.0, 1.0);
        let loss = |x: &[f32], k: &[f32], bias: &[f32]| -> f64 {
            let y = conv3x3_bias_relu(
                &Tensor::from_slice(x, shape, &dev).unwrap(),
                &Tensor::from_slice(k, (cout, c, 3, 3), &dev).unwrap(),
                &Tensor::from_slice(bias, cout, &dev).unwrap(),
            )
            .unwrap();
            flat(&y)
                .iter()
                .zip(&r)
                .map(|(&y, &r)| y as f64 * r as f64)
                .sum()
        };
        let vars = [
            Var::new(x.as_slice(), &dev).unwrap(),
            Var::new(k.as_slice(), &dev).unwrap(),
            Var::new(bias.as_slice(), &dev).unwrap(),
        ];
        let y = conv3x3_bias_relu(
            &vars[0].as_tensor().reshape(shape).unwrap(),
            &vars[1].as_tensor().reshape((cout, c, 3, 3)).unwrap(),
            vars[2].as_tensor(),
        )
        .unwrap();
        assert!(
            flat(&y).iter().all(|&v| v > 1.0),
            "all outputs away from the kink"
        );
        let rt = Tensor::from_slice(&r, y.shape(), &dev).unwrap();
        let grads = (y * rt).unwrap().sum_all().unwrap().backward().unwrap();
        let params = [x, k, bias];
        for (which, var) in vars.iter().enumerate() {
            let g = flat(grads.get(var.as_tensor()).unwrap());
            for i in 0..params[which].len() {
                let eps = 1e-2f32;
                let mut p = params.clone();
                p[which][i] += eps;
                let plus = loss(&p[0], &p[1], &p[2]);
                p[which][i] -= 2.0 * eps;
                let minus = loss(&p[0], &p[1], &p[2]);
                let fd = (plus - minus) / (2.0 * eps as f64);
                assert!(
                    (fd - g[i] as f64).abs() < 2e-3 * (1.0 + fd.abs()),
                    "parameter {which}, element {i}: autograd {} vs finite difference {fd}",
                    g[i]
                );
            }
        }
    }
}

/// Output and all gradients of the layer, computed on a rayon pool of `threads` threads.
fn run_on(threads: usize, x: &Var, k: &Var, b: &Var) -> Vec<Vec<f32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let y = conv3x3_bias_relu(x.as_tensor(), k.as_tensor(), b.as_tensor()).unwrap();
        let r = Tensor::from_vec(
            random(y.elem_count(), 5, "r", -1.0, 1.0),
            y.shape(),
            &Device::Cpu,
        )
        .unwrap();
        let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
        let mut out = vec![flat(&y)];
        for v in [x, k, b] {
            out.push(flat(grads.get(v.as_tensor()).unwrap()));
        }
        out
    })
}

#[test]
fn results_are_the_same_bits_with_any_thread_count() {
    // Several chunks per image and several weight-gradient tiles, so tasks really interleave.
    let (x, k, b) = layer((3, 70, 23, 29), 70, 9);
    let one = run_on(1, &x, &k, &b);
    for threads in [2, 3, 4] {
        let many = run_on(threads, &x, &k, &b);
        for (part, (a, m)) in ["output", "input grad", "kernel grad", "bias grad"]
            .iter()
            .zip(one.iter().zip(&many))
        {
            let same = a.iter().zip(m).all(|(a, m)| a.to_bits() == m.to_bits());
            assert!(same, "{part} differs between 1 and {threads} threads");
        }
    }
    let again = run_on(1, &x, &k, &b);
    assert!(one.iter().zip(&again).all(|(a, b)| a == b));
}

/// A feature cache computes each image's conv output in batches made up differently from
/// training's: an image's output must not depend on its batch companions.
#[test]
fn an_images_output_does_not_depend_on_the_rest_of_its_batch() {
    let dev = Device::Cpu;
    let (c, h, w, cout) = (24, 19, 17, 32);
    let images: Vec<Vec<f32>> = (0..5)
        .map(|i| random(c * h * w, i, "image", -1.0, 1.0))
        .collect();
    let (_, k, b) = layer((1, c, h, w), cout, 3);
    let conv = |ids: &[usize]| -> Vec<Vec<f32>> {
        let data: Vec<f32> = ids.iter().flat_map(|&i| images[i].clone()).collect();
        let x = Tensor::from_vec(data, (ids.len(), c, h, w), &dev).unwrap();
        let y = conv3x3_bias_relu(&x, k.as_tensor(), b.as_tensor()).unwrap();
        (0..ids.len()).map(|i| flat(&y.get(i).unwrap())).collect()
    };
    let alone = conv(&[2]);
    let in_batch = conv(&[0, 1, 2, 3]);
    let reordered = conv(&[4, 2]);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&alone[0]), bits(&in_batch[2]));
    assert_eq!(bits(&alone[0]), bits(&reordered[1]));
}

/// The forward pass, the input gradient and the weight gradient cut into tasks of one pixel or one
/// weight, into the production layout, and into one task for everything, with a reduction long
/// enough (576 and 4608) to span several depth blocks: the same bits every time.
#[test]
fn results_do_not_depend_on_the_blocking() {
    for (shape, cout) in [((3, 64, 7, 6), 40), ((2, 512, 3, 3), 24)] {
        let (b, c, h, w) = shape;
        let d = Dims {
            batch: b,
            cin: c,
            h,
            w,
            cout,
        };
        let x = random(b * c * h * w, 5, "x", -1.0, 1.0);
        let k = random(cout * c * 9, 5, "w", -0.5, 0.5);
        let bias = random(cout, 5, "b", -0.3, 0.3);
        let g = random(b * cout * h * w, 5, "g", -1.0, 1.0);
        let run = |blocking: Blocking| {
            (
                conv_same(&x, d, &k, Some(&bias), true, blocking),
                input_grad(&g, &k, d, blocking),
                weight_grad(&x, &g, d, blocking),
                bias_grad(&g, d),
            )
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let auto = run(Blocking::AUTO);
        for forced in [
            Blocking {
                columns: Some(1),
                tile: Some((1, 1)),
                group: Some(1),
                tiles: Some(1),
            },
            Blocking {
                columns: Some(5),
                tile: Some((3, 7)),
                group: Some(2),
                tiles: Some(5),
            },
            Blocking {
                columns: Some(usize::MAX),
                tile: Some((usize::MAX / 2, usize::MAX / 2)),
                group: Some(usize::MAX),
                tiles: Some(usize::MAX),
            },
        ] {
            let other = run(forced);
            assert_eq!(bits(&auto.0), bits(&other.0), "forward, {forced:?}");
            assert_eq!(bits(&auto.1), bits(&other.1), "input gradient, {forced:?}");
            assert_eq!(bits(&auto.2), bits(&other.2), "weight gradient, {forced:?}");
            assert_eq!(bits(&auto.3), bits(&other.3), "bias gradient");
        }
    }
}

/// Both Winograd variants against im2col on the shapes above (with bias and ReLU, and plain as
/// the input gradient uses it), and their bits with 1 and 3 threads and with tiles per task
/// forced to 1, 5 and everything.
#[test]
fn winograd_matches_im2col_and_does_not_depend_on_threads_or_blocking() {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (i, &((b, c, h, w), cout)) in SHAPES.iter().enumerate() {
        let d = Dims {
            batch: b,
            cin: c,
            h,
            w,
            cout,
        };
        let x = random(b * c * h * w, i as u64, "x", -1.0, 1.0);
        let k = random(cout * c * 9, i as u64, "w", -0.5, 0.5);
        let bias = random(cout, i as u64, "b", -0.3, 0.3);
        for (bias, relu) in [(Some(bias.as_slice()), true), (None, false)] {
            let want = conv_with(ConvKernel::Im2col, &x, d, &k, bias, relu, Blocking::AUTO);
            for kernel in [ConvKernel::WinogradF2, ConvKernel::WinogradF4] {
                let run = |threads: usize, tiles: Option<usize>| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let blocking = Blocking {
                        tiles,
                        ..Blocking::AUTO
                    };
                    pool.install(|| conv_with(kernel, &x, d, &k, bias, relu, blocking))
                };
                let got = run(1, None);
                let e = rel_err(&got, &want);
                assert!(e < 1e-5, "{kernel:?} {d:?}: relative error {e}");
                for (threads, tiles) in
                    [(3, None), (1, Some(1)), (2, Some(5)), (2, Some(usize::MAX))]
                {
                    assert_eq!(
                        bits(&got),
                        bits(&run(threads, tiles)),
                        "{kernel:?} {d:?}: {threads} threads, tiles {tiles:?}"
                    );
                }
            }
        }
    }
}
