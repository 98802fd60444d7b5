//! A contact sheet of images, for looking at what augmentation does (`runner augment-preview`).
//!
//! Only builds the picture in memory; writing it to a file is the caller's job.

use crate::image::Image;
use image::{Rgb, RgbImage};

const PADDING_COLOUR: Rgb<u8> = Rgb([255, 255, 255]);

/// Tile `images` row by row, `columns` to a row, with `padding` white pixels around and between
/// the cells. Every cell is as large as the largest image; smaller images sit centred in theirs.
/// Values are clamped to 0..255 and rounded to u8 (NaN becomes 0).
///
/// `columns` of 0 counts as 1, and a row never has more columns than there are images. With no
/// images the result is a `padding` x `padding` white square.
pub fn grid(images: &[Image], columns: usize, padding: usize) -> RgbImage {
    let columns = columns.clamp(1, images.len().max(1));
    let rows = images.len().div_ceil(columns);
    let cell_h = images.iter().map(|i| i.height).max().unwrap_or(0);
    let cell_w = images.iter().map(|i| i.width).max().unwrap_or(0);
    let total_w = columns * cell_w + (columns + 1) * padding;
    let total_h = rows * cell_h + (rows + 1) * padding;
    let (total_w, total_h) = if images.is_empty() {
        (padding, padding)
    } else {
        (total_w, total_h)
    };
    let mut out = RgbImage::from_pixel(total_w as u32, total_h as u32, PADDING_COLOUR);
    for (k, img) in images.iter().enumerate() {
        let (row, col) = (k / columns, k % columns);
        let top = padding + row * (cell_h + padding) + (cell_h - img.height) / 2;
        let left = padding + col * (cell_w + padding) + (cell_w - img.width) / 2;
        for y in 0..img.height {
            for x in 0..img.width {
                let px = Rgb([0, 1, 2].map(|c| to_u8(img.at(y, x, c))));
                out.put_pixel((left + x) as u32, (top + y) as u32, px);
            }
        }
    }
    out
}

fn to_u8(v: f32) -> u8 {
    // `as` saturates and maps NaN to 0.
    v.clamp(0.0, 255.0).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(h: usize, w: usize, v: [f32; 3]) -> Image {
        let mut img = Image::new(h, w);
        for px in img.data.chunks_exact_mut(3) {
            px.copy_from_slice(&v);
        }
        img
    }

    #[test]
    fn tiles_with_white_padding_and_rounds_values() {
        let images = [
            filled(2, 3, [0.4, 254.6, 300.0]),
            filled(2, 3, [-7.0, 127.5, 10.0]),
            filled(2, 3, [1.0, 2.0, 3.0]),
        ];
        let g = grid(&images, 2, 1);
        // 2 columns of 3 px + 3 paddings; 2 rows of 2 px + 3 paddings.
        assert_eq!(g.dimensions(), (9, 7));
        assert_eq!(*g.get_pixel(0, 0), PADDING_COLOUR);
        assert_eq!(*g.get_pixel(1, 1), Rgb([0, 255, 255]));
        assert_eq!(*g.get_pixel(3, 2), Rgb([0, 255, 255]));
        assert_eq!(*g.get_pixel(4, 1), PADDING_COLOUR);
        assert_eq!(*g.get_pixel(5, 1), Rgb([0, 128, 10]));
        assert_eq!(*g.get_pixel(1, 4), Rgb([1, 2, 3]));
        // The empty cell of the last row stays white.
        assert_eq!(*g.get_pixel(6, 5), PADDING_COLOUR);
    }

    #[test]
    fn smaller_images_are_centred_and_degenerate_inputs_work() {
        let images = [filled(3, 3, [9.0; 3]), filled(1, 1, [50.0; 3])];
        let g = grid(&images, 5, 0);
        assert_eq!(g.dimensions(), (6, 3));
        assert_eq!(*g.get_pixel(4, 1), Rgb([50; 3]));
        assert_eq!(*g.get_pixel(3, 0), PADDING_COLOUR);
        assert_eq!(grid(&[], 3, 4).dimensions(), (4, 4));
        assert_eq!(grid(&images, 0, 0).dimensions(), (3, 6));
    }
}
