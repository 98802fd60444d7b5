//! Resampling an image through an affine map, exactly as TensorFlow's `ImageProjectiveTransformV3`
//! does it (the op behind Keras's `affine_transform` on the TensorFlow backend).
//!
//! Source: `tensorflow/core/kernels/image/image_ops.h` (`MapCoordinate`, `ProjectiveGenerator`).
//! Every coordinate is computed in `f32` in the kernel's order of operations so that results agree
//! with TensorFlow to a few ulps, including its quirks (see [`map_coordinate`]). The projective
//! terms `c0, c1` are always 0 here (Keras never sets them), so the denominator is exactly 1.

use crate::config::{FillMode, Interpolation};
use crate::image::Image;

/// An affine map from an OUTPUT pixel (x = column, y = row, pixel centres on integers) to the INPUT
/// coordinates it samples: `x_in = a0*x + a1*y + a2`, `y_in = b0*x + b1*y + b2`.
/// These are the first six entries of a TF transform row `[a0, a1, a2, b0, b1, b2, 0, 0]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub a0: f32,
    pub a1: f32,
    pub a2: f32,
    pub b0: f32,
    pub b1: f32,
    pub b2: f32,
}

impl Affine {
    /// Rotation by `angle_radians` about the image centre ((W-1)/2, (H-1)/2), as Keras's
    /// `_compute_affine_matrix` builds it with scale 1, no shear and no translation:
    /// `a0 = cos, a1 = -sin, b0 = sin, b1 = cos`, and the offsets keep the centre fixed.
    /// A positive angle turns the content counter-clockwise on screen.
    pub fn rotation(angle_radians: f32, height: usize, width: usize) -> Affine {
        let (sin, cos) = angle_radians.sin_cos();
        let cx = 0.5 * (width as f32 - 1.0);
        let cy = 0.5 * (height as f32 - 1.0);
        let (a0, a1, b0, b1) = (cos, -sin, sin, cos);
        // Keras: `a2 = translate_x + cx - cx * a0 - cy * a1`, left to right, translate_x = 0.
        Affine {
            a0,
            a1,
            a2: cx - cx * a0 - cy * a1,
            b0,
            b1,
            b2: cy - cx * b0 - cy * b1,
        }
    }

    /// Zoom about the image centre, as Keras's `RandomZoom._get_zoom_matrix`: `zoom_height`
    /// scales rows (`y_in = zh*y + cy*(1-zh)`), `zoom_width` scales columns. A factor above 1
    /// samples a larger area (zooms out); below 1 zooms in.
    pub fn zoom(zoom_height: f32, zoom_width: f32, height: usize, width: usize) -> Affine {
        Affine {
            a0: zoom_width,
            a1: 0.0,
            a2: ((width as f32 - 1.0) / 2.0) * (1.0 - zoom_width),
            b0: 0.0,
            b1: zoom_height,
            b2: ((height as f32 - 1.0) / 2.0) * (1.0 - zoom_height),
        }
    }

    /// Shift by `dy` rows and `dx` columns (pixels), as Keras's
    /// `RandomTranslation._get_translation_matrix`: `x_in = x - dx`, so a positive `dx` moves the
    /// content right and a positive `dy` moves it down.
    pub fn translation(dy: f32, dx: f32) -> Affine {
        Affine {
            a0: 1.0,
            a1: 0.0,
            a2: -dx,
            b0: 0.0,
            b1: 1.0,
            b2: -dy,
        }
    }
}

/// How points are read from the input: what lies outside it, and how to interpolate.
/// The default is Keras's for its geometric layers: reflect, fill value 0, bilinear.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sampling {
    pub fill_mode: FillMode,
    /// Used by `FillMode::Constant` only.
    pub fill_value: f32,
    pub interpolation: Interpolation,
}

/// TF's `MapCoordinate`: bring one input coordinate back into `[0, len - 1]` per the fill mode.
/// `Constant` leaves it alone: neighbours outside the image then read the fill value.
///
/// The arithmetic is TF's, including its quirks, so that results match:
/// * reflect is half-sample symmetric (`dcba|abcd|dcba`) and applies to the coordinate, then
///   clamps: a point in (-1, 0) or (len-1, len) reads the edge pixel;
/// * wrap adds or subtracts whole periods of `len` but counts them with `trunc(c / (len - 1))`,
///   and then clamps, so a point in (-1, 0) reads the last pixel rather than blending the last and
///   first, and points beyond one period can land on an edge. That is what TF computes.
///
/// Period counts saturate instead of overflowing for absurd (infinite) coordinates, where TF's
/// float-to-integer cast is undefined.
pub fn map_coordinate(coord: f32, len: usize, mode: FillMode) -> f32 {
    let last = len as f32 - 1.0;
    let mut c = coord;
    match mode {
        FillMode::Reflect => {
            if c < 0.0 {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz2 = 2 * len as i64;
                    // TF guards this with `c < sz2`, always true for a negative c.
                    c += sz2.saturating_mul((-c / sz2 as f32) as i64) as f32;
                    c = if c < -(len as f32) {
                        c + sz2 as f32
                    } else {
                        -c - 1.0
                    };
                }
            } else if c > last {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz2 = 2 * len as i64;
                    c -= sz2.saturating_mul((c / sz2 as f32) as i64) as f32;
                    if c >= len as f32 {
                        c = sz2 as f32 - c - 1.0;
                    }
                }
            }
        }
        FillMode::Wrap => {
            if c < 0.0 {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz = len as i64 - 1;
                    c += (len as i64).saturating_mul(((-c / sz as f32) as i64).saturating_add(1))
                        as f32;
                }
            } else if c > last {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz = len as i64 - 1;
                    c -= (len as i64).saturating_mul((c / sz as f32) as i64) as f32;
                }
            }
        }
        FillMode::Constant => return c,
        FillMode::Nearest => {}
    }
    // Eigen's `scalar_clamp_op(0, len - 1)`.
    c.max(0.0).min(last)
}

/// Resample `image` through `map` (output pixel -> input point), output the same size as input.
pub fn transform(image: &Image, map: &Affine, sampling: Sampling) -> Image {
    let (h, w) = (image.height, image.width);
    if h == 0 || w == 0 {
        return image.clone();
    }
    let mut data = vec![0.0f32; h * w * 3];
    let reader = Reader::new(image, sampling);
    let (mode, interp) = (sampling.fill_mode, sampling.interpolation);
    if map.a1 == 0.0 && map.b0 == 0.0 {
        // Zoom and translation: x_in depends on the column only and y_in on the row only
        // (TF's `a1 * y` and `b0 * x` terms are exactly 0), so every tap is computed once per
        // column and once per row. The values are the ones the general path computes.
        let cols: Vec<Tap> = (0..w)
            .map(|x| map_coordinate(map.a0 * x as f32 + map.a2, w, mode))
            .map(|c| Tap::new(c, interp))
            .collect();
        for (y, row) in data.chunks_exact_mut(w * 3).enumerate() {
            let row_in = map_coordinate(map.b1 * y as f32 + map.b2, h, mode);
            let ty = Tap::new(row_in, interp);
            for (px, tx) in row.chunks_exact_mut(3).zip(&cols) {
                px.copy_from_slice(&reader.sample(ty, *tx));
            }
        }
    } else {
        // TF evaluates `(a0 * x + a1 * y) + a2`; the products depend on one axis only, so they
        // are computed once per column and row. The sums keep TF's order.
        let ax: Vec<f32> = (0..w).map(|x| map.a0 * x as f32).collect();
        let bx: Vec<f32> = (0..w).map(|x| map.b0 * x as f32).collect();
        for (y, row) in data.chunks_exact_mut(w * 3).enumerate() {
            let ay = map.a1 * y as f32;
            let by = map.b1 * y as f32;
            for ((px, &axx), &bxx) in row.chunks_exact_mut(3).zip(&ax).zip(&bx) {
                let x_in = map_coordinate((axx + ay) + map.a2, w, mode);
                let y_in = map_coordinate((bxx + by) + map.b2, h, mode);
                let (ty, tx) = (Tap::new(y_in, interp), Tap::new(x_in, interp));
                px.copy_from_slice(&reader.sample(ty, tx));
            }
        }
    }
    Image {
        height: h,
        width: w,
        data,
    }
}

/// Where one mapped coordinate reads along its axis: for bilinear interpolation the neighbours
/// `i` and `i + 1` with their weights; for nearest interpolation the one neighbour `i`.
/// `i` may lie outside the image; the reader then uses the fill value.
#[derive(Debug, Clone, Copy)]
struct Tap {
    i: i64,
    /// `ceil_position - c`, the weight of `i` (TF's `x_ceil - x`).
    w_floor: f32,
    /// `c - floor_position`, the weight of `i + 1` (TF's `x - x_floor`).
    w_ceil: f32,
}

impl Tap {
    #[inline(always)]
    fn new(c: f32, interpolation: Interpolation) -> Tap {
        match interpolation {
            Interpolation::Bilinear => {
                let floor = floor(c);
                let ceil = floor + 1.0;
                Tap {
                    // Float-to-integer `as` saturates (and maps NaN to 0).
                    i: floor as i64,
                    w_floor: ceil - c,
                    w_ceil: c - floor,
                }
            }
            Interpolation::Nearest => Tap {
                i: round(c) as i64,
                w_floor: 1.0,
                w_ceil: 0.0,
            },
        }
    }
}

/// `f32::floor` without a libm call (the default x86-64 target has no rounding instruction, and
/// this runs twice per output pixel). Exact for every finite value: from 2^23 on, every float is
/// an integer, and below it the round trip through `i64` is exact.
#[inline]
fn floor(c: f32) -> f32 {
    if c.abs() >= 8_388_608.0 {
        return c;
    }
    let t = c as i64 as f32;
    if t > c {
        t - 1.0
    } else {
        t
    }
}

/// `std::round` (halves away from zero) without a libm call; exact like [`floor`].
#[inline]
fn round(c: f32) -> f32 {
    if c.abs() >= 8_388_608.0 {
        return c;
    }
    let t = c as i64 as f32; // truncated toward zero
    let frac = c - t; // exact
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// Reads one output pixel from the input: TF's `ProjectiveGenerator` once the coordinates are
/// mapped. There is no test for points outside: in the constant mode each neighbour outside the
/// image reads the fill value with its bilinear weight, so the border blends into the fill.
/// (Older TF kernels returned the fill value for any point outside [0, len - 1]; the TF 2.21
/// kernel that Keras 3.15 calls does not, and the reference values agree.)
struct Reader<'a> {
    data: &'a [f32],
    height: i64,
    width: i64,
    sampling: Sampling,
}

impl<'a> Reader<'a> {
    fn new(image: &'a Image, sampling: Sampling) -> Self {
        Reader {
            data: &image.data,
            height: image.height as i64,
            width: image.width as i64,
            sampling,
        }
    }

    #[inline(always)]
    fn sample(&self, ty: Tap, tx: Tap) -> [f32; 3] {
        match self.sampling.interpolation {
            Interpolation::Nearest => self.pixel(ty.i, tx.i),
            Interpolation::Bilinear => self.bilinear(ty, tx),
        }
    }

    /// TF's `bilinear_interpolation`: along x first, then y. Except in the constant mode the
    /// mapped coordinate lies in [0, len - 1], so a neighbour outside only appears at
    /// c = len - 1 exactly, with weight 0.
    #[inline(always)]
    fn bilinear(&self, ty: Tap, tx: Tap) -> [f32; 3] {
        let (p00, p01, p10, p11);
        if (0..self.height - 1).contains(&ty.i) && (0..self.width - 1).contains(&tx.i) {
            // All four neighbours inside: two runs of two pixels, one bounds check each.
            let stride = self.width as usize * 3;
            let i = ty.i as usize * stride + tx.i as usize * 3;
            let top = &self.data[i..i + 6];
            let bottom = &self.data[i + stride..i + stride + 6];
            p00 = [top[0], top[1], top[2]];
            p01 = [top[3], top[4], top[5]];
            p10 = [bottom[0], bottom[1], bottom[2]];
            p11 = [bottom[3], bottom[4], bottom[5]];
        } else {
            let (y1, x1) = (ty.i.saturating_add(1), tx.i.saturating_add(1));
            p00 = self.pixel(ty.i, tx.i);
            p01 = self.pixel(ty.i, x1);
            p10 = self.pixel(y1, tx.i);
            p11 = self.pixel(y1, x1);
        }
        let mut out = [0.0; 3];
        for c in 0..3 {
            let top = tx.w_floor * p00[c] + tx.w_ceil * p01[c];
            let bottom = tx.w_floor * p10[c] + tx.w_ceil * p11[c];
            out[c] = ty.w_floor * top + ty.w_ceil * bottom;
        }
        out
    }

    /// TF's `read_with_fill_value`.
    #[inline(always)]
    fn pixel(&self, y: i64, x: i64) -> [f32; 3] {
        if (0..self.height).contains(&y) && (0..self.width).contains(&x) {
            let i = (y * self.width + x) as usize * 3;
            let p = &self.data[i..i + 3];
            [p[0], p[1], p[2]]
        } else {
            [self.sampling.fill_value; 3]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(h: usize, w: usize) -> Image {
        let mut img = Image::new(h, w);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = (i * 7 % 256) as f32;
        }
        img
    }

    #[test]
    fn identity_map_returns_the_image_in_every_mode() {
        let img = gradient(4, 5);
        let id = Affine::translation(0.0, 0.0);
        for fill_mode in [
            FillMode::Reflect,
            FillMode::Wrap,
            FillMode::Constant,
            FillMode::Nearest,
        ] {
            for interpolation in [Interpolation::Bilinear, Interpolation::Nearest] {
                let s = Sampling {
                    fill_mode,
                    fill_value: 99.0,
                    interpolation,
                };
                assert_eq!(
                    transform(&img, &id, s),
                    img,
                    "{fill_mode:?} {interpolation:?}"
                );
            }
        }
    }

    #[test]
    fn reflect_is_half_sample_symmetric_about_the_pixel_edge() {
        // P(-1 - k) = P(k) and P(len + k) = P(len - 1 - k), period 2 len.
        let m = |c| map_coordinate(c, 4, FillMode::Reflect);
        assert_eq!(m(-1.0), 0.0);
        assert_eq!(m(-2.0), 1.0);
        assert_eq!(m(-4.0), 3.0);
        assert_eq!(m(-5.0), 3.0);
        assert_eq!(m(-9.0), 0.0);
        assert_eq!(m(4.0), 3.0);
        assert_eq!(m(5.0), 2.0);
        assert_eq!(m(8.0), 0.0);
        assert_eq!(m(13.0), 2.0);
        assert!((m(-1.25) - 0.25).abs() < 1e-6);
        // Between the edge pixel and its mirror image: clamped to the edge.
        assert_eq!(m(-0.5), 0.0);
        assert_eq!(m(3.5), 3.0);
        assert_eq!(map_coordinate(-3.0, 1, FillMode::Reflect), 0.0);
    }

    #[test]
    fn wrap_nearest_and_constant_coordinates_follow_tf() {
        let wrap = |c| map_coordinate(c, 4, FillMode::Wrap);
        assert_eq!(wrap(-1.0), 3.0);
        assert_eq!(wrap(-0.5), 3.0); // 3.5 clamped, as in TF
        assert_eq!(wrap(4.0), 0.0);
        assert_eq!(wrap(4.5), 0.5);
        assert_eq!(wrap(6.5), 0.0); // TF subtracts len * trunc(6.5 / 3) = 8, then clamps
        assert_eq!(map_coordinate(-7.5, 4, FillMode::Nearest), 0.0);
        assert_eq!(map_coordinate(7.5, 4, FillMode::Nearest), 3.0);
        assert_eq!(map_coordinate(-7.5, 4, FillMode::Constant), -7.5);
    }

    #[test]
    fn constant_fill_blends_neighbours_outside_with_their_weight() {
        let img = gradient(3, 3);
        let s = Sampling {
            fill_mode: FillMode::Constant,
            fill_value: -5.0,
            interpolation: Interpolation::Bilinear,
        };
        // Shift right by a quarter pixel: column 0 samples x = -0.25, between the fill (x = -1)
        // and column 0.
        let out = transform(&img, &Affine::translation(0.0, 0.25), s);
        assert_eq!(out.at(1, 0, 2), 0.25 * -5.0 + 0.75 * img.at(1, 0, 2));
        assert_eq!(
            out.at(1, 1, 2),
            0.25 * img.at(1, 0, 2) + 0.75 * img.at(1, 1, 2)
        );
        // Two pixels to the right: columns 0 and 1 read only the fill value.
        let out = transform(&img, &Affine::translation(0.0, 2.0), s);
        assert_eq!(out.at(2, 1, 0), -5.0);
        assert_eq!(out.at(2, 2, 0), img.at(2, 0, 0));
    }

    #[test]
    fn floor_and_round_match_std() {
        let mut values = vec![
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999997,
            -0.49999997,
        ];
        values.extend([
            8_388_607.5,
            -8_388_607.5,
            8_388_608.0,
            3.0e9,
            -3.0e9,
            1e30,
            f32::INFINITY,
        ]);
        values.extend((-2000..2000).map(|i| i as f32 * 0.173));
        for v in values {
            assert_eq!(floor(v), v.floor(), "floor({v})");
            assert_eq!(round(v), v.round(), "round({v})");
        }
    }

    #[test]
    fn nan_and_empty_inputs_do_not_panic() {
        let img = gradient(2, 2);
        let nan = Affine::rotation(f32::NAN, 2, 2);
        for fill_mode in [FillMode::Reflect, FillMode::Wrap, FillMode::Constant] {
            let s = Sampling {
                fill_mode,
                ..Sampling::default()
            };
            let _ = transform(&img, &nan, s);
        }
        let empty = Image::new(0, 3);
        assert_eq!(transform(&empty, &nan, Sampling::default()), empty);
    }
}
