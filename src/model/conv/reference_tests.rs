//! The full-width VGG16 conv base at 150x150 against a float64 direct convolution
//! (tests/reference/vgg16_conv_base.py): what each kernel costs in accuracy.

use base64::Engine as _;

use super::*;

const REFERENCE: &str = include_str!("../../../tests/reference/vgg16_conv_base.json");

/// VGG16's convolutions (output channels) and pools (0), in order.
const LAYERS: [usize; 18] = [
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];

/// The script's `lowbias32`.
fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The script's `values(stream, n, e)`: exact in f32.
pub(super) fn reference_values(stream: u32, n: usize, e: i32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let k = (lowbias32(stream * (1 << 22) + i) % 2001) as i32 - 1000;
            k as f32 / 1024.0 * 2f32.powi(-e)
        })
        .collect()
}

/// The script's `SCALE`: 2^-e bounds a layer's kernel values.
fn scale(cin: usize) -> i32 {
    match cin {
        3 => 1,
        64 => 3,
        128 | 256 => 4,
        _ => 5,
    }
}

/// 2x2 max pool, stride 2, odd edges dropped.
fn pool(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let (ph, pw) = (h / 2, w / 2);
    let mut out = Vec::with_capacity(c * ph * pw);
    for ch in 0..c {
        for y in 0..ph {
            for xx in 0..pw {
                let at = |dy: usize, dx: usize| x[(ch * h + 2 * y + dy) * w + 2 * xx + dx];
                out.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
            }
        }
    }
    out
}

/// block5_pool of the script's network, each layer by `kernel` (None: its own choice).
fn conv_base(kernel: Option<ConvKernel>, size: usize) -> Vec<f32> {
    let mut x = reference_values(0, 3 * size * size, -6);
    let (mut c, mut h, mut w, mut layer) = (3usize, size, size, 0u32);
    for &cout in &LAYERS {
        if cout == 0 {
            x = pool(&x, c, h, w);
            (h, w) = (h / 2, w / 2);
            continue;
        }
        let d = Dims {
            batch: 1,
            cin: c,
            h,
            w,
            cout,
        };
        let weight = reference_values(1 + 2 * layer, cout * c * 9, scale(c));
        let bias = reference_values(2 + 2 * layer, cout, 6);
        let k = kernel.unwrap_or_else(|| ConvKernel::for_layer(d));
        x = conv_with(k, &x, d, &weight, Some(&bias), true, Blocking::AUTO);
        (c, layer) = (cout, layer + 1);
    }
    x
}

#[test]
fn conv_base_matches_the_float64_reference() {
    let doc: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(doc["block5_pool_f32_base64"].as_str().unwrap())
        .unwrap();
    let want: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let size = doc["image_size"].as_u64().unwrap() as usize;
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let rel = |got: &[f32]| {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale
    };
    let mut report = String::new();
    for kernel in [
        None,
        Some(ConvKernel::Im2col),
        Some(ConvKernel::WinogradF2),
        Some(ConvKernel::WinogradF4),
    ] {
        let e = rel(&conv_base(kernel, size));
        report.push_str(&format!("{}: {e:.2e}; ", ConvKernel::name(kernel)));
        assert!(e < 1e-5, "{}: relative error {e}", ConvKernel::name(kernel));
    }
    eprintln!("VGG16 conv base vs float64, max |error| / max |value|: {report}");
}

/// Each kernel's block5_pool for the reference network at 64x64, bit for bit: the same on every
/// x86-64 CPU with AVX2 and FMA (checked natively on an AVX-512 Xeon and under
/// `qemu-x86_64 -cpu Haswell-v4`). A change of kernel or summation order changes these on purpose.
#[test]
fn conv_base_bits_are_pinned() {
    let mut got = Vec::new();
    for kernel in [
        ConvKernel::Im2col,
        ConvKernel::WinogradF2,
        ConvKernel::WinogradF4,
    ] {
        let out = conv_base(Some(kernel), 64);
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        got.push(crate::base::hash::sha256_hex(&bytes)[..16].to_string());
    }
    assert_eq!(got, PINNED, "block5_pool bits changed");
}

/// im2col, F(2x2), F(4x4).
const PINNED: [&str; 3] = ["2fe01b3ef9d9135b", "0a0c59c735c6f69a", "2758a8e8fc23fee4"];
