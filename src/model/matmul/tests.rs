//! The documented summation order, implemented plainly, against what `matmul` computes with
//! `gemm` on this CPU: bit for bit, for shapes on both sides of every dispatch threshold.

use super::*;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = crate::base::rng::stream(seed, "matmul");
    (0..n)
        .map(|_| crate::base::rng::uniform_f32(&mut rng, -1.0, 1.0))
        .collect()
}

/// The order of the module doc, one element at a time, with no `gemm` involved.
fn reference(
    a: &[f32],
    b: &[f32],
    init: Option<&[f32]>,
    (m, k, n): (usize, usize, usize),
    bt: bool,
) -> Vec<f32> {
    let mut out = init.map_or_else(|| vec![0f32; m * n], <[f32]>::to_vec);
    for i in 0..m {
        for j in 0..n {
            let mut acc = out[i * n + j];
            for (blk, (start, len)) in depth_blocks(k).enumerate() {
                let mut sum = 0f32;
                for d in start..start + len {
                    let bv = if bt { b[j * k + d] } else { b[d * n + j] };
                    sum = a[i * k + d].mul_add(bv, sum);
                }
                acc = if blk == 0 && init.is_none() {
                    sum
                } else {
                    acc + sum
                };
            }
            out[i * n + j] = acc;
        }
    }
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// (m, k, n): small outputs (scalar path), thin and wide outputs (gemv territory), outputs just
/// past 16 x 16, depths of 1-2 and around and far beyond one block (512), VGG16's 4608.
const SHAPES: [(usize, usize, usize); 14] = [
    (1, 700, 9),
    (9, 700, 1),
    (3, 2, 40),
    (8, 27, 8),
    (16, 1024, 16),
    (17, 1024, 16),
    (8, 513, 72),
    (64, 576, 192),
    (40, 1500, 33),
    (64, 4608, 81),
    (32, 8192, 24),
    (96, 300, 2),
    (2, 300, 200),
    (70, 1, 70),
];

#[test]
fn depth_blocks_cover_the_reduction_in_equal_blocks_of_at_most_512() {
    for k in [1, 2, 511, 512, 513, 576, 1024, 1025, 4608, 22500] {
        let blocks: Vec<_> = depth_blocks(k).collect();
        assert_eq!(blocks.len(), k.div_ceil(DEPTH_BLOCK), "k = {k}");
        let mut next = 0;
        for &(start, len) in &blocks {
            assert_eq!(start, next);
            assert!((1..=DEPTH_BLOCK).contains(&len));
            next += len;
        }
        assert_eq!(next, k);
        // Equal lengths but for a shorter last block.
        assert!(blocks.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(blocks[..blocks.len() - 1]
            .windows(2)
            .all(|w| w[0].1 == w[1].1));
    }
    assert_eq!(
        depth_blocks(576).collect::<Vec<_>>(),
        vec![(0, 288), (288, 288)]
    );
}

#[test]
fn gemm_follows_the_documented_order() {
    for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
        let a = random(m * k, 3 * s as u64);
        let b = random(k * n, 3 * s as u64 + 1);
        for bt in [false, true] {
            let b_stored = if bt {
                // The same matrix stored as (n x k).
                let mut t = vec![0f32; k * n];
                for d in 0..k {
                    for j in 0..n {
                        t[j * k + d] = b[d * n + j];
                    }
                }
                t
            } else {
                b.clone()
            };
            let got = matmul_rows(&a, &b_stored, m, k, n, bt);
            let want = reference(&a, &b_stored, None, (m, k, n), bt);
            assert_eq!(
                bits(&got),
                bits(&want),
                "({m} x {k}) * ({k} x {n}), bt {bt}"
            );
        }
    }
}

#[test]
fn accumulating_adds_each_block_sum_to_the_output_in_order() {
    for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
        let a = random(m * k, 7 * s as u64);
        let b = random(k * n, 7 * s as u64 + 1);
        let init = random(m * n, 7 * s as u64 + 2);
        for threads in [false, true] {
            let mut out = init.clone();
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
                    true,
                    MatRef {
                        ptr: a.as_ptr(),
                        rs: k as isize,
                        cs: 1,
                    },
                    MatRef {
                        ptr: b.as_ptr(),
                        rs: n as isize,
                        cs: 1,
                    },
                    threads,
                );
            }
            let want = reference(&a, &b, Some(&init), (m, k, n), false);
            assert_eq!(bits(&out), bits(&want), "({m} x {k}) * ({k} x {n})");
        }
    }
}

/// A column-major output and a transposed left operand: the layouts of the convolution's weight
/// gradient and of a dense layer's backward pass.
#[test]
fn strided_layouts_follow_the_same_order() {
    let (m, k, n) = (33, 1030, 45);
    let a = random(m * k, 11);
    let b = random(k * n, 12);
    // lhs stored as (k x m), i.e. transposed; output stored column-major.
    let mut at = vec![0f32; m * k];
    for i in 0..m {
        for d in 0..k {
            at[d * m + i] = a[i * k + d];
        }
    }
    let mut out = vec![0f32; m * n];
    unsafe {
        matmul(
            m,
            n,
            k,
            MatMut {
                ptr: out.as_mut_ptr(),
                rs: 1,
                cs: m as isize,
            },
            false,
            MatRef {
                ptr: at.as_ptr(),
                rs: 1,
                cs: m as isize,
            },
            MatRef {
                ptr: b.as_ptr(),
                rs: n as isize,
                cs: 1,
            },
            true,
        );
    }
    let want = reference(&a, &b, None, (m, k, n), false);
    let mut got = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            got[i * n + j] = out[j * m + i];
        }
    }
    assert_eq!(bits(&got), bits(&want));
}
