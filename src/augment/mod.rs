//! Random image augmentation with the maths of Keras 3's preprocessing layers (`RandomFlip`,
//! `RandomRotation`, `RandomZoom`, `RandomTranslation`, `RandomContrast`) on the TensorFlow
//! backend.
//!
//! Works on one `image::Image` (0..255, HWC) at a time with a caller-provided random stream;
//! applied to training batches only, never to validation. It must never keep state between
//! images: everything random comes from the stream it is given, so an image's augmentation
//! depends only on that stream.
//!
//! * `draws`: a step's random factors per image, in a documented order (the layers'
//!   `get_random_transformation`);
//! * `steps`: the deterministic operations with explicit parameters;
//! * `affine`: resampling exactly like TF's `ImageProjectiveTransformV3` (fill modes,
//!   interpolation);
//! * `preview`: a contact sheet for looking at the result.
//!
//! Checked against Keras 3.15.1 / TensorFlow 2.21 by `tests/reference/augment_reference.py`.

pub mod affine;
pub mod draws;
pub mod preview;
pub mod steps;

#[cfg(test)]
mod reference_tests;

pub use affine::{Affine, Sampling};
pub use draws::{draw, Op};
pub use steps::{adjust_contrast, flip, rotate, translate, zoom};

use crate::base::rng::Rng;
use crate::config::AugmentStep;
use crate::image::Image;

/// The random stream that augments sample `index` of the training split in `epoch` (0-based)
/// under run seed `seed`. One stream per image keeps the result independent of threading and of
/// every other random stream of the run (shuffling, initialisation).
pub fn image_stream(seed: u64, epoch: usize, index: usize) -> rand_chacha::ChaCha8Rng {
    crate::base::rng::stream(seed, &format!("augment/epoch-{epoch}/sample-{index}"))
}

/// Apply `steps` in order to `image`, drawing every random factor from `rng`.
///
/// Each geometric step resamples on its own (rotation then zoom is two bilinear passes, as in a
/// Keras `Sequential` of layers, not one composed transform).
pub fn apply(steps: &[AugmentStep], image: &Image, rng: &mut impl Rng) -> Image {
    let mut current: Option<Image> = None;
    for step in steps {
        let input = current.as_ref().unwrap_or(image);
        match draw(step, input.height, input.width, rng) {
            Op::Keep => {}
            op => current = Some(op.apply(input)),
        }
    }
    current.unwrap_or_else(|| image.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::rng::stream;
    use crate::config::{Factor, FillMode, FlipMode, Interpolation};

    fn photo(h: usize, w: usize) -> Image {
        let mut img = Image::new(h, w);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = ((i * 37 + i / 7) % 256) as f32;
        }
        img
    }

    fn notebook() -> Vec<AugmentStep> {
        vec![
            AugmentStep::Flip {
                mode: FlipMode::Horizontal,
            },
            AugmentStep::Rotation {
                factor: Factor::Symmetric(0.1),
                fill_mode: FillMode::Reflect,
                fill_value: 0.0,
                interpolation: Interpolation::Bilinear,
            },
            AugmentStep::Zoom {
                height_factor: Factor::Symmetric(0.1),
                width_factor: None,
                fill_mode: FillMode::Reflect,
                fill_value: 0.0,
                interpolation: Interpolation::Bilinear,
            },
        ]
    }

    #[test]
    fn same_stream_same_output_different_stream_different_output() {
        let img = photo(12, 15);
        let steps = notebook();
        let a = apply(&steps, &img, &mut stream(3, "augment/epoch0/image5"));
        let b = apply(&steps, &img, &mut stream(3, "augment/epoch0/image5"));
        let c = apply(&steps, &img, &mut stream(3, "augment/epoch0/image6"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, img);
    }

    #[test]
    fn no_steps_returns_the_image_unchanged() {
        let img = photo(5, 4);
        assert_eq!(apply(&[], &img, &mut stream(0, "x")), img);
    }

    #[test]
    fn zero_factors_are_identity_up_to_float_error() {
        let img = photo(9, 11);
        let steps = [
            AugmentStep::Rotation {
                factor: Factor::Symmetric(0.0),
                fill_mode: FillMode::Reflect,
                fill_value: 0.0,
                interpolation: Interpolation::Bilinear,
            },
            AugmentStep::Zoom {
                height_factor: Factor::Symmetric(0.0),
                width_factor: Some(Factor::Range([0.0, 0.0])),
                fill_mode: FillMode::Wrap,
                fill_value: 0.0,
                interpolation: Interpolation::Nearest,
            },
            AugmentStep::Translation {
                height_factor: Factor::Symmetric(0.0),
                width_factor: Factor::Symmetric(0.0),
                fill_mode: FillMode::Constant,
                fill_value: 0.0,
                interpolation: Interpolation::Bilinear,
            },
            AugmentStep::Contrast {
                factor: Factor::Symmetric(0.0),
            },
        ];
        let out = apply(&steps, &img, &mut stream(5, "zero"));
        for (a, b) in out.data.iter().zip(&img.data) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    /// Prints the time per image; not run by default (timings on a shared machine are noise).
    /// `cargo test --release --lib augment::tests::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timing() {
        let img = photo(150, 150);
        let steps = notebook();
        let n = 200;
        let start = std::time::Instant::now();
        for i in 0..n {
            let out = apply(&steps, &img, &mut stream(i, "timing"));
            std::hint::black_box(out);
        }
        let per_image = start.elapsed() / n as u32;
        println!("flip + rotation + zoom on 150x150: {per_image:?} per image");
    }
}
