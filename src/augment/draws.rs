//! Turning a configured step into a concrete operation for one image: the random draws.
//!
//! Each step draws from the image's stream in a fixed order, mirroring the Keras layer's
//! `get_random_transformation` (Keras 3.15 source, `keras/src/layers/preprocessing/
//! image_preprocessing/`), every draw `rng::uniform_f32(lo, hi)` = U[lo, hi):
//!
//! | step          | draws, in order                                  | parameter                     |
//! |---------------|--------------------------------------------------|-------------------------------|
//! | `flip`        | u ~ U[0, 1) (one draw, also for both axes)       | flip when u <= 0.5            |
//! | `rotation`    | deg ~ U[360 lower, 360 upper)                    | angle = deg * pi/180 (f32)    |
//! | `zoom`        | zh ~ U[1 + lower_h, 1 + upper_h), then zw ~ U[1 + lower_w, 1 + upper_w) only if `width_factor` is set (else zw = zh) | sampling scale per axis |
//! | `translation` | fh ~ U[lower_h, upper_h), then fw ~ U[lower_w, upper_w) | dy = fh * H, dx = fw * W |
//! | `contrast`    | c ~ U[1 - lower, 1 + upper)                      | contrast factor               |
//!
//! A step always makes the same number of draws whatever the values drawn, so the positions of
//! later steps' draws in the stream never depend on earlier outcomes.

use super::affine::Sampling;
use super::steps;
use crate::base::rng::{uniform_f32, Rng};
use crate::config::{AugmentStep, Factor, FillMode, FlipMode, Interpolation};
use crate::image::Image;

/// One step with its random factors drawn: exactly what will be done to one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// Leave the image unchanged (a flip that was not drawn).
    Keep,
    Flip(FlipMode),
    Rotate {
        angle_radians: f32,
        sampling: Sampling,
    },
    Zoom {
        zoom_height: f32,
        zoom_width: f32,
        sampling: Sampling,
    },
    /// In pixels: content moves down by `dy`, right by `dx`.
    Translate {
        dy: f32,
        dx: f32,
        sampling: Sampling,
    },
    Contrast {
        factor: f32,
    },
}

impl Op {
    pub fn apply(&self, image: &Image) -> Image {
        match *self {
            Op::Keep => image.clone(),
            Op::Flip(mode) => steps::flip(image, mode),
            Op::Rotate {
                angle_radians,
                sampling,
            } => steps::rotate(image, angle_radians, sampling),
            Op::Zoom {
                zoom_height,
                zoom_width,
                sampling,
            } => steps::zoom(image, zoom_height, zoom_width, sampling),
            Op::Translate { dy, dx, sampling } => steps::translate(image, dy, dx, sampling),
            Op::Contrast { factor } => steps::adjust_contrast(image, factor),
        }
    }
}

/// Draw the parameters of `step` for one image of `height` x `width` pixels.
pub fn draw(step: &AugmentStep, height: usize, width: usize, rng: &mut impl Rng) -> Op {
    match *step {
        AugmentStep::Flip { mode } => {
            // `less_equal(uniform(), 0.5)`; "horizontal_and_vertical" flips both axes on the same
            // single draw, so it is a 180-degree turn or nothing.
            if uniform_f32(rng, 0.0, 1.0) <= 0.5 {
                Op::Flip(mode)
            } else {
                Op::Keep
            }
        }
        AugmentStep::Rotation {
            factor,
            fill_mode,
            fill_value,
            interpolation,
        } => {
            // `BaseImagePreprocessingLayer._set_factor` with bounds (-1, 1).
            let (lo, hi) = keras_bounds(factor, -1.0);
            let degrees = uniform_f32(rng, times(lo, 360.0), times(hi, 360.0));
            // Keras multiplies by `convert_to_tensor(math.pi / 180.0)`, a float32.
            let angle_radians = degrees * (std::f64::consts::PI / 180.0) as f32;
            Op::Rotate {
                angle_radians,
                sampling: sampling(fill_mode, fill_value, interpolation),
            }
        }
        AugmentStep::Zoom {
            height_factor,
            width_factor,
            fill_mode,
            fill_value,
            interpolation,
        } => {
            let (lo, hi) = keras_bounds(height_factor, f32::NEG_INFINITY);
            let zoom_height = uniform_f32(rng, one_plus(lo), one_plus(hi));
            let zoom_width = match width_factor {
                Some(f) => {
                    let (lo, hi) = keras_bounds(f, f32::NEG_INFINITY);
                    uniform_f32(rng, one_plus(lo), one_plus(hi))
                }
                None => zoom_height,
            };
            Op::Zoom {
                zoom_height,
                zoom_width,
                sampling: sampling(fill_mode, fill_value, interpolation),
            }
        }
        AugmentStep::Translation {
            height_factor,
            width_factor,
            fill_mode,
            fill_value,
            interpolation,
        } => {
            let (lo, hi) = keras_bounds(height_factor, f32::NEG_INFINITY);
            let dy = uniform_f32(rng, lo, hi) * height as f32;
            let (lo, hi) = keras_bounds(width_factor, f32::NEG_INFINITY);
            let dx = uniform_f32(rng, lo, hi) * width as f32;
            Op::Translate {
                dy,
                dx,
                sampling: sampling(fill_mode, fill_value, interpolation),
            }
        }
        AugmentStep::Contrast { factor } => {
            // RandomContrast's factor bounds are (0, 1): a single number f resolves to (0, f), so
            // c ~ U[1, 1 + f) and the layer only ever raises contrast. That is the Keras 3 source
            // (`_FACTOR_BOUNDS = (0, 1)`, `lower = max(-f, 0)`), although its docstring and the
            // reference notes describe [1 - f, 1 + f]. A range [a, b] gives U[1 - a, 1 + b).
            let (lo, hi) = keras_bounds(factor, 0.0);
            let factor = uniform_f32(rng, one_minus(lo), one_plus(hi));
            Op::Contrast { factor }
        }
    }
}

/// (lower, upper) as the Keras layer resolves its factor: a single number `f` gives
/// `(max(-|f|, floor), |f|)`, a pair is sorted. (`Factor::bounds` neither sorts nor applies the
/// per-layer floor, so it is not used here.)
pub fn keras_bounds(factor: Factor, floor: f32) -> (f32, f32) {
    match factor {
        Factor::Symmetric(f) => ((-f.abs()).max(floor), f.abs()),
        Factor::Range([a, b]) => (a.min(b), a.max(b)),
    }
}

// Keras does this arithmetic on Python floats and casts the result to float32.
fn times(a: f32, b: f64) -> f32 {
    (a as f64 * b) as f32
}
fn one_plus(a: f32) -> f32 {
    (1.0 + a as f64) as f32
}
fn one_minus(a: f32) -> f32 {
    (1.0 - a as f64) as f32
}

fn sampling(fill_mode: FillMode, fill_value: f32, interpolation: Interpolation) -> Sampling {
    Sampling {
        fill_mode,
        fill_value,
        interpolation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::rng::stream;

    fn rotation(factor: Factor) -> AugmentStep {
        AugmentStep::Rotation {
            factor,
            fill_mode: FillMode::Reflect,
            fill_value: 0.0,
            interpolation: Interpolation::Bilinear,
        }
    }

    #[test]
    fn keras_factor_resolution() {
        assert_eq!(keras_bounds(Factor::Symmetric(0.1), -1.0), (-0.1, 0.1));
        assert_eq!(keras_bounds(Factor::Symmetric(-0.1), -1.0), (-0.1, 0.1));
        assert_eq!(keras_bounds(Factor::Range([0.3, -0.2]), -1.0), (-0.2, 0.3));
        assert_eq!(keras_bounds(Factor::Symmetric(0.2), 0.0), (0.0, 0.2));
    }

    #[test]
    fn drawn_parameters_stay_within_their_bounds() {
        let mut rng = stream(7, "augment/bounds");
        let step = rotation(Factor::Symmetric(0.1));
        let zoom = AugmentStep::Zoom {
            height_factor: Factor::Range([-0.2, 0.1]),
            width_factor: None,
            fill_mode: FillMode::Reflect,
            fill_value: 0.0,
            interpolation: Interpolation::Bilinear,
        };
        let translation = AugmentStep::Translation {
            height_factor: Factor::Symmetric(0.25),
            width_factor: Factor::Range([0.1, 0.3]),
            fill_mode: FillMode::Reflect,
            fill_value: 0.0,
            interpolation: Interpolation::Bilinear,
        };
        let contrast = AugmentStep::Contrast {
            factor: Factor::Symmetric(0.4),
        };
        let max_angle = 36.0f32.to_radians();
        let (mut flips, mut min_angle_seen, mut max_angle_seen) = (0, 0.0f32, 0.0f32);
        for _ in 0..2000 {
            match draw(&step, 8, 10, &mut rng) {
                Op::Rotate { angle_radians, .. } => {
                    assert!(angle_radians.abs() <= max_angle + 1e-6);
                    min_angle_seen = min_angle_seen.min(angle_radians);
                    max_angle_seen = max_angle_seen.max(angle_radians);
                }
                other => panic!("{other:?}"),
            }
            match draw(&zoom, 8, 10, &mut rng) {
                Op::Zoom {
                    zoom_height,
                    zoom_width,
                    ..
                } => {
                    assert!((0.8..1.1).contains(&zoom_height), "{zoom_height}");
                    assert_eq!(zoom_width, zoom_height, "one draw for both axes");
                }
                other => panic!("{other:?}"),
            }
            match draw(&translation, 8, 10, &mut rng) {
                Op::Translate { dy, dx, .. } => {
                    assert!((-2.0..2.0).contains(&dy), "{dy}");
                    assert!((1.0..3.0).contains(&dx), "{dx}");
                }
                other => panic!("{other:?}"),
            }
            match draw(&contrast, 8, 10, &mut rng) {
                Op::Contrast { factor } => assert!((1.0..1.4).contains(&factor), "{factor}"),
                other => panic!("{other:?}"),
            }
            let flip = AugmentStep::Flip {
                mode: FlipMode::Horizontal,
            };
            if draw(&flip, 8, 10, &mut rng) == Op::Flip(FlipMode::Horizontal) {
                flips += 1;
            }
        }
        // The draws cover the range rather than sticking to one value.
        assert!(min_angle_seen < -0.9 * max_angle && max_angle_seen > 0.9 * max_angle);
        assert!((850..1150).contains(&flips), "{flips} flips in 2000");
    }

    #[test]
    fn rotation_factor_zero_draws_angle_zero() {
        let mut rng = stream(1, "augment/zero");
        for _ in 0..10 {
            let op = draw(&rotation(Factor::Symmetric(0.0)), 4, 4, &mut rng);
            assert!(matches!(op, Op::Rotate { angle_radians, .. } if angle_radians == 0.0));
        }
    }
}
