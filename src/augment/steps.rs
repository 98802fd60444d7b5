//! The deterministic building blocks: each augmentation with its parameters given explicitly.
//!
//! These never draw random numbers (that is `draws`'s job), so they can be tested against values
//! computed by the Keras layers with a fixed transformation.

use super::affine::{transform, Affine, Sampling};
use crate::config::FlipMode;
use crate::image::Image;

/// Reverse the width axis (`Horizontal`), the height axis (`Vertical`) or both, exactly: no
/// resampling. Keras `RandomFlip._flip_inputs`.
pub fn flip(image: &Image, mode: FlipMode) -> Image {
    let (h, w) = (image.height, image.width);
    let horizontal = matches!(mode, FlipMode::Horizontal | FlipMode::HorizontalAndVertical);
    let vertical = matches!(mode, FlipMode::Vertical | FlipMode::HorizontalAndVertical);
    let mut data = vec![0.0f32; image.data.len()];
    if w == 0 {
        return image.clone();
    }
    for (y, out_row) in data.chunks_exact_mut(w * 3).enumerate() {
        let src_y = if vertical { h - 1 - y } else { y };
        let row = &image.data[src_y * w * 3..(src_y + 1) * w * 3];
        if horizontal {
            for (dst, src) in out_row.chunks_exact_mut(3).zip(row.chunks_exact(3).rev()) {
                dst.copy_from_slice(src);
            }
        } else {
            out_row.copy_from_slice(row);
        }
    }
    Image {
        height: h,
        width: w,
        data,
    }
}

/// Rotate about the image centre by `angle_radians` (counter-clockwise on screen for a positive
/// angle). Keras `RandomRotation` with its angle fixed.
pub fn rotate(image: &Image, angle_radians: f32, sampling: Sampling) -> Image {
    let map = Affine::rotation(angle_radians, image.height, image.width);
    transform(image, &map, sampling)
}

/// Zoom about the image centre with input-sampling factors per axis (above 1 zooms out, below 1
/// zooms in). Keras `RandomZoom` with `height_zoom = zoom_height`, `width_zoom = zoom_width`,
/// i.e. 1 plus the drawn factor.
pub fn zoom(image: &Image, zoom_height: f32, zoom_width: f32, sampling: Sampling) -> Image {
    let map = Affine::zoom(zoom_height, zoom_width, image.height, image.width);
    transform(image, &map, sampling)
}

/// Move the content down by `dy` and right by `dx` pixels. Keras `RandomTranslation` with the
/// translations fixed (the layer's draws times the image height and width).
pub fn translate(image: &Image, dy: f32, dx: f32, sampling: Sampling) -> Image {
    transform(image, &Affine::translation(dy, dx), sampling)
}

/// `(x - mean) * factor + mean` per channel, the mean taken over the whole image (over the height,
/// then over the width, as Keras's `_adjust_contrast` does), then clipped to 0..255, Keras
/// `RandomContrast`'s default `value_range`.
pub fn adjust_contrast(image: &Image, factor: f32) -> Image {
    let (h, w) = (image.height, image.width);
    if h == 0 || w == 0 {
        return image.clone();
    }
    let mut data = image.data.clone();
    // Column means, then their mean: each stage rounded to f32 like the two reductions in Keras.
    // Sums in f64 keep each stage within an ulp of any summation order.
    let mut columns = vec![[0.0f64; 3]; w];
    for row in image.data.chunks_exact(w * 3) {
        for (sum, px) in columns.iter_mut().zip(row.chunks_exact(3)) {
            for c in 0..3 {
                sum[c] += px[c] as f64;
            }
        }
    }
    let mut total = [0.0f64; 3];
    for sum in &columns {
        for c in 0..3 {
            total[c] += (sum[c] / h as f64) as f32 as f64;
        }
    }
    let mean = total.map(|t| (t / w as f64) as f32);
    for px in data.chunks_exact_mut(3) {
        for (v, m) in px.iter_mut().zip(mean) {
            *v = ((*v - m) * factor + m).clamp(0.0, 255.0);
        }
    }
    Image {
        height: h,
        width: w,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(h: usize, w: usize) -> Image {
        let mut img = Image::new(h, w);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = i as f32;
        }
        img
    }

    #[test]
    fn flips_reverse_the_right_axis_and_are_involutions() {
        let img = numbered(2, 3);
        let hf = flip(&img, FlipMode::Horizontal);
        assert_eq!(hf.at(0, 0, 0), img.at(0, 2, 0));
        assert_eq!(hf.at(1, 2, 1), img.at(1, 0, 1));
        let vf = flip(&img, FlipMode::Vertical);
        assert_eq!(vf.at(0, 1, 2), img.at(1, 1, 2));
        let both = flip(&img, FlipMode::HorizontalAndVertical);
        assert_eq!(both.at(0, 0, 0), img.at(1, 2, 0));
        for mode in [
            FlipMode::Horizontal,
            FlipMode::Vertical,
            FlipMode::HorizontalAndVertical,
        ] {
            assert_eq!(flip(&flip(&img, mode), mode), img);
        }
    }

    #[test]
    fn contrast_one_is_identity_and_zero_gives_the_channel_means() {
        let img = numbered(2, 2); // channel 0: 0, 3, 6, 9 -> mean 4.5
        assert_eq!(adjust_contrast(&img, 1.0), img);
        let flat = adjust_contrast(&img, 0.0);
        assert_eq!(flat.at(1, 1, 0), 4.5);
        assert_eq!(flat.at(0, 0, 2), 6.5);
        // Stretching clips at 0 and 255.
        let hard = adjust_contrast(&img, 100.0);
        assert_eq!(hard.at(0, 0, 0), 0.0);
        assert_eq!(hard.at(1, 1, 0), 255.0);
    }

    #[test]
    fn rotation_by_zero_and_full_turn_is_identity() {
        let img = numbered(4, 5);
        let same = rotate(&img, 0.0, Sampling::default());
        assert_eq!(same, img);
        let turned = rotate(&img, std::f32::consts::TAU, Sampling::default());
        for (a, b) in turned.data.iter().zip(&img.data) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }
}
