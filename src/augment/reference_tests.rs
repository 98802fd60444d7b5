//! Exact pixel values against Keras 3.15.1 / TensorFlow 2.21 on small hand-made images.
//!
//! Reference: `tests/reference/augment_reference.json`, written by
//! `tests/reference/augment_reference.py` (the script says how to rerun it). Building blocks are
//! compared with the Keras layers' `transform_images` under a fixed transformation (or the raw
//! `ImageProjectiveTransformV3` op); `apply` is compared with the layers called normally, their
//! random source replaced by the same scripted u32 values fed to our stream here.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::base::rng::RngCore;
use crate::config::{FillMode, FlipMode, Interpolation};

/// Absolute tolerance on 0..255 values: a few float32 ulps.
const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Reference {
    images: BTreeMap<String, RefImage>,
    transforms: Vec<TransformCase>,
    apply: Vec<ApplyCase>,
}

#[derive(Deserialize)]
struct RefImage {
    height: usize,
    width: usize,
    data: Vec<f32>,
}

#[derive(Deserialize)]
struct TransformCase {
    name: String,
    image: String,
    op: String,
    mode: Option<FlipMode>,
    angle_radians: Option<f32>,
    zh: Option<f32>,
    zw: Option<f32>,
    dy: Option<f32>,
    dx: Option<f32>,
    factor: Option<f32>,
    matrix: Option<[f32; 6]>,
    fill_mode: Option<FillMode>,
    fill_value: Option<f32>,
    interpolation: Option<Interpolation>,
    expected: Vec<f32>,
}

#[derive(Deserialize)]
struct ApplyCase {
    name: String,
    image: String,
    steps: Vec<AugmentStep>,
    draws: Vec<u32>,
    expected: Vec<f32>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("../../tests/reference/augment_reference.json"))
        .expect("tests/reference/augment_reference.json parses")
}

fn image(reference: &Reference, name: &str) -> Image {
    let r = &reference.images[name];
    assert_eq!(r.data.len(), r.height * r.width * 3);
    Image {
        height: r.height,
        width: r.width,
        data: r.data.clone(),
    }
}

/// Compare and describe every mismatching value (row, column, channel), not just the first.
fn check(name: &str, got: &Image, expected: &[f32]) -> Vec<String> {
    assert_eq!(got.data.len(), expected.len(), "{name}: size");
    let mut errors = Vec::new();
    for (i, (g, e)) in got.data.iter().zip(expected).enumerate() {
        if (g - e).abs() > TOLERANCE || g.is_nan() {
            let (p, c) = (i / 3, i % 3);
            let (y, x) = (p / got.width, p % got.width);
            errors.push(format!("{name}: y={y} x={x} c={c}: got {g}, Keras {e}"));
        }
    }
    errors
}

impl TransformCase {
    fn sampling(&self) -> Sampling {
        Sampling {
            fill_mode: self.fill_mode.expect("fill_mode"),
            fill_value: self.fill_value.expect("fill_value"),
            interpolation: self.interpolation.expect("interpolation"),
        }
    }

    fn run(&self, img: &Image) -> Image {
        let f = |v: Option<f32>| v.unwrap_or_else(|| panic!("{}: missing parameter", self.name));
        match self.op.as_str() {
            "flip" => flip(img, self.mode.expect("mode")),
            "rotate" => rotate(img, f(self.angle_radians), self.sampling()),
            "zoom" => zoom(img, f(self.zh), f(self.zw), self.sampling()),
            "translate" => translate(img, f(self.dy), f(self.dx), self.sampling()),
            "contrast" => adjust_contrast(img, f(self.factor)),
            "affine" => {
                let [a0, a1, a2, b0, b1, b2] = self.matrix.expect("matrix");
                let map = Affine {
                    a0,
                    a1,
                    a2,
                    b0,
                    b1,
                    b2,
                };
                affine::transform(img, &map, self.sampling())
            }
            other => panic!("{}: unknown op {other}", self.name),
        }
    }
}

#[test]
fn building_blocks_match_keras() {
    let reference = reference();
    let mut errors = Vec::new();
    for case in &reference.transforms {
        let got = case.run(&image(&reference, &case.image));
        errors.extend(check(&case.name, &got, &case.expected));
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The reference cases cover every operation, fill mode and interpolation.
#[test]
fn building_block_cases_cover_every_mode() {
    let reference = reference();
    let ops: Vec<&str> = reference.transforms.iter().map(|c| c.op.as_str()).collect();
    for op in ["flip", "rotate", "zoom", "translate", "contrast", "affine"] {
        assert!(ops.contains(&op), "no {op} case");
    }
    for mode in [
        FillMode::Reflect,
        FillMode::Wrap,
        FillMode::Constant,
        FillMode::Nearest,
    ] {
        assert!(reference
            .transforms
            .iter()
            .any(|c| c.fill_mode == Some(mode) && c.op == "rotate"));
    }
    assert!(reference
        .transforms
        .iter()
        .any(|c| c.interpolation == Some(Interpolation::Nearest)));
}

/// A random source that replays the u32 values the reference script fed to Keras.
struct Scripted {
    values: Vec<u32>,
    next: usize,
}

impl RngCore for Scripted {
    fn next_u32(&mut self) -> u32 {
        let v = *self
            .values
            .get(self.next)
            .expect("more draws than the Keras layers made");
        self.next += 1;
        v
    }
    fn next_u64(&mut self) -> u64 {
        unreachable!("augmentation draws u32 values only")
    }
    fn fill_bytes(&mut self, _: &mut [u8]) {
        unreachable!("augmentation draws u32 values only")
    }
}

#[test]
fn apply_matches_keras_layers_with_the_same_draws() {
    let reference = reference();
    let mut errors = Vec::new();
    for case in &reference.apply {
        let mut rng = Scripted {
            values: case.draws.clone(),
            next: 0,
        };
        let got = apply(&case.steps, &image(&reference, &case.image), &mut rng);
        assert_eq!(
            rng.next,
            case.draws.len(),
            "{}: fewer draws than the Keras layers made",
            case.name
        );
        errors.extend(check(&case.name, &got, &case.expected));
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// How exact the match is: every building block but contrast gives TensorFlow's values bit for
/// bit; contrast differs in a few values by one unit in the last place, as the README states.
#[test]
fn building_blocks_are_bitwise_but_contrast_is_within_one_ulp() {
    let reference = reference();
    let (mut contrast_values, mut contrast_off) = (0, 0);
    for case in &reference.transforms {
        let got = case.run(&image(&reference, &case.image));
        for (g, e) in got.data.iter().zip(&case.expected) {
            let ulps = (g.to_bits() as i64 - e.to_bits() as i64).abs();
            if case.op == "contrast" {
                contrast_values += 1;
                contrast_off += usize::from(ulps != 0);
                assert!(ulps <= 1, "{}: got {g}, TensorFlow {e}", case.name);
            } else {
                assert_eq!(
                    g.to_bits(),
                    e.to_bits(),
                    "{}: got {g}, TensorFlow {e}",
                    case.name
                );
            }
        }
    }
    eprintln!("contrast: {contrast_off} of {contrast_values} values differ by 1 ulp");
    assert_eq!((contrast_off, contrast_values), (12, 150));
}
