//! Decoding (by content, not extension) and TF-style bilinear resizing.
//!
//! Mirrors Keras's `_load_image_tf` (`tf.image.decode_image(channels=3, expand_animations=False)`
//! then `tf.image.resize(method="bilinear")`): the format comes from the magic bytes, grey is
//! replicated to three channels, alpha is dropped (not blended), a GIF gives its first frame and
//! EXIF orientation is ignored. JPEG pixels may differ by a few levels from TF, which decodes with
//! libjpeg's IFAST DCT; bit exactness there is not a goal. A truncated or corrupt file that
//! TensorFlow refuses is refused here too (`strict`), with what is wrong: the `image` crate alone
//! would decode some of them, e.g. a JPEG cut short with its missing part grey.

use std::path::Path;

use image::DynamicImage;

mod strict;

use super::error::DatasetError;
use crate::image::Image;

/// Decode the image at `path` to RGB and resize it to `height` x `width`.
pub fn load_image(path: &Path, height: usize, width: usize) -> Result<Image, DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let decoded = decode_rgb(&bytes).map_err(|message| DatasetError::BadImage {
        path: path.to_path_buf(),
        message,
    })?;
    Ok(resize_bilinear(&decoded, height, width))
}

/// Decode image bytes to 0..255 RGB, or say why they cannot be decoded.
pub fn decode_rgb(bytes: &[u8]) -> Result<Image, String> {
    if bytes.is_empty() {
        return Err("the file is empty".to_string());
    }
    let format = image::guess_format(bytes)
        .map_err(|_| "unknown image format (expected BMP, GIF, JPEG or PNG content)".to_string())?;
    // Only the first frame of an animated GIF is decoded, as TF does with expand_animations=False;
    // no EXIF orientation is applied (the `image` crate only does so when asked).
    // The `image` crate decodes damaged files that TensorFlow refuses; `strict` refuses them too.
    let decoded = match format {
        image::ImageFormat::Png => strict::decode_png(bytes),
        _ => strict::check_complete(format, bytes).and_then(|()| {
            image::load_from_memory_with_format(bytes, format).map_err(|e| e.to_string())
        }),
    }
    .map_err(|why| format!("{format:?} data could not be decoded: {why}"))?;
    Ok(to_rgb(decoded))
}

/// Drop alpha, replicate grey, and bring 16-bit samples to 8 bits the way TF does.
fn to_rgb(decoded: DynamicImage) -> Image {
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    // TF's PNG decoder (libpng `png_set_strip_16`) keeps the high byte of 16-bit samples, where the
    // `image` crate would round (v / 257); see tests/reference/dataset_decode.py.
    let data: Vec<f32> = match decoded {
        DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_) => decoded
            .into_rgb16()
            .into_raw()
            .into_iter()
            .map(|v| f32::from((v >> 8) as u8))
            .collect(),
        other => other
            .into_rgb8()
            .into_raw()
            .into_iter()
            .map(f32::from)
            .collect(),
    };
    Image {
        height: h,
        width: w,
        data,
    }
}

/// One output coordinate's two source indices and the weight of the second.
#[derive(Debug, Clone, Copy)]
struct Tap {
    lo: usize,
    hi: usize,
    t: f32,
}

/// Per-axis taps of TF's `ResizeBilinear` with `half_pixel_centers=True`
/// (`resize_bilinear_op.cc`, `compute_interpolation_weights`, `HalfPixelScaler`), in `f32` as there.
fn taps(in_size: usize, out_size: usize) -> Vec<Tap> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|dst| {
            let src = (dst as f32 + 0.5) * scale - 0.5;
            let floor = src.floor();
            Tap {
                lo: floor.max(0.0) as usize,
                hi: (src.ceil() as usize).min(in_size - 1),
                t: src - floor,
            }
        })
        .collect()
}

/// `tf.image.resize(method="bilinear", antialias=False)`: half-pixel centres, no antialiasing.
///
/// Per axis `src = (dst + 0.5) * in / out - 0.5`, `lo = max(floor(src), 0)`,
/// `hi = min(ceil(src), in - 1)`; rows are lerped along x first, then along y. An image already of
/// the requested size is returned unchanged, as TF skips the kernel then.
pub fn resize_bilinear(src: &Image, height: usize, width: usize) -> Image {
    if src.height == height && src.width == width {
        return src.clone();
    }
    let mut out = Image::new(height, width);
    if src.height == 0 || src.width == 0 {
        return out;
    }
    let ys = taps(src.height, height);
    let xs = taps(src.width, width);
    let row = |y: usize| &src.data[y * src.width * 3..(y + 1) * src.width * 3];
    for (oy, ty) in ys.iter().enumerate() {
        let (top, bottom) = (row(ty.lo), row(ty.hi));
        let out_row = &mut out.data[oy * width * 3..(oy + 1) * width * 3];
        for (ox, tx) in xs.iter().enumerate() {
            for c in 0..3 {
                let (l, r) = (tx.lo * 3 + c, tx.hi * 3 + c);
                let t = top[l] + (top[r] - top[l]) * tx.t;
                let b = bottom[l] + (bottom[r] - bottom[l]) * tx.t;
                out_row[ox * 3 + c] = t + (b - t) * ty.t;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use image::{ImageEncoder, Rgb, RgbImage};

    #[derive(serde::Deserialize)]
    struct Case {
        input_shape: [usize; 2],
        output_shape: [usize; 2],
        input: Vec<u8>,
        output: Vec<f32>,
    }

    #[derive(serde::Deserialize)]
    struct Reference {
        cases: Vec<Case>,
    }

    /// Values from TensorFlow 2.21, computed by tests/reference/resize_bilinear.py.
    #[test]
    fn resize_matches_tensorflow() {
        let reference: Reference =
            serde_json::from_str(include_str!("../../tests/reference/resize_bilinear.json"))
                .unwrap();
        assert!(reference.cases.len() >= 5);
        for case in reference.cases {
            let [ih, iw] = case.input_shape;
            let [oh, ow] = case.output_shape;
            let src = Image {
                height: ih,
                width: iw,
                data: case.input.iter().map(|&v| f32::from(v)).collect(),
            };
            let out = resize_bilinear(&src, oh, ow);
            assert_eq!((out.height, out.width), (oh, ow));
            assert_eq!(out.data.len(), case.output.len());
            for (i, (got, want)) in out.data.iter().zip(&case.output).enumerate() {
                assert!(
                    (got - want).abs() <= 1e-4,
                    "{ih}x{iw} -> {oh}x{ow}: value {i}: got {got}, TF gives {want}"
                );
            }
        }
    }

    #[test]
    fn resize_by_two_interpolates_between_neighbours() {
        // 1x2 -> 1x4: src x = (dst + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25.
        let src = Image {
            height: 1,
            width: 2,
            data: vec![0.0, 0.0, 0.0, 100.0, 200.0, 40.0],
        };
        let out = resize_bilinear(&src, 1, 4);
        let red: Vec<f32> = (0..4).map(|x| out.at(0, x, 0)).collect();
        assert_eq!(red, vec![0.0, 25.0, 75.0, 100.0]);
        assert_eq!(out.at(0, 1, 1), 50.0);
        assert_eq!(out.at(0, 2, 2), 30.0);
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn png(img: &DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
        bytes
    }

    #[test]
    fn decodes_by_content_not_extension() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::from_fn(3, 2, |x, y| Rgb([x as u8 * 10, y as u8 * 20, 7]));
        let path = write(dir.path(), "really_a_png.jpg", &png(&img.into()));
        let out = load_image(&path, 2, 3).unwrap();
        assert_eq!(out.at(1, 2, 0), 20.0);
        assert_eq!(out.at(1, 2, 1), 20.0);
        assert_eq!(out.at(0, 0, 2), 7.0);
    }

    #[test]
    fn grey_is_replicated_and_alpha_dropped_not_blended() {
        let grey = image::GrayAlphaImage::from_fn(2, 1, |x, _| image::LumaA([77 + x as u8, 0]));
        let rgba = image::RgbaImage::from_fn(2, 1, |x, _| image::Rgba([10, 20, 30 + x as u8, 0]));
        let out = decode_rgb(&png(&grey.into())).unwrap();
        assert_eq!(out.data, vec![77.0, 77.0, 77.0, 78.0, 78.0, 78.0]);
        let out = decode_rgb(&png(&rgba.into())).unwrap();
        assert_eq!(out.data, vec![10.0, 20.0, 30.0, 10.0, 20.0, 31.0]);
    }

    /// TF keeps the high byte of 16-bit PNG samples (tests/reference/dataset_decode.py prints
    /// [18 18 18 255 0 0] for these values with TensorFlow 2.21).
    #[test]
    fn sixteen_bit_png_keeps_the_high_byte_like_tensorflow() {
        let values = [0x1280u16, 0x12FF, 0x127F, 0xFFFF, 0x0080, 0x00FF];
        let img =
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(6, 1, values.to_vec()).unwrap();
        let out = decode_rgb(&png(&img.into())).unwrap();
        let red: Vec<f32> = (0..6).map(|x| out.at(0, x, 0)).collect();
        assert_eq!(red, vec![18.0, 18.0, 18.0, 255.0, 0.0, 0.0]);
    }

    #[test]
    fn gif_gives_its_first_frame() {
        use image::codecs::gif::GifEncoder;
        use image::{Delay, Frame, Rgba, RgbaImage};
        let frame = |v: u8| {
            Frame::from_parts(
                RgbaImage::from_pixel(2, 2, Rgba([v, 0, 255 - v, 255])),
                0,
                0,
                Delay::from_numer_denom_ms(100, 1),
            )
        };
        let mut bytes = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut bytes);
            enc.encode_frames(vec![frame(200), frame(40)]).unwrap();
        }
        let out = decode_rgb(&bytes).unwrap();
        assert_eq!((out.height, out.width), (2, 2));
        assert_eq!(&out.data[..3], &[200.0, 0.0, 55.0]);
    }

    #[test]
    fn jpeg_and_bmp_decode_close_to_their_source() {
        let img = RgbImage::from_pixel(8, 8, Rgb([120, 60, 200]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .write_image(img.as_raw(), 8, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        let out = decode_rgb(&jpeg).unwrap();
        for (got, want) in out
            .data
            .chunks(3)
            .flatten()
            .zip([120.0, 60.0, 200.0].iter().cycle())
        {
            assert!((got - want).abs() <= 3.0, "jpeg pixel {got} vs {want}");
        }
        let mut bmp = Vec::new();
        DynamicImage::from(img)
            .write_to(&mut std::io::Cursor::new(&mut bmp), image::ImageFormat::Bmp)
            .unwrap();
        let out = decode_rgb(&bmp).unwrap();
        assert_eq!(&out.data[..3], &[120.0, 60.0, 200.0]);
    }

    #[test]
    fn bad_files_name_the_file_and_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let good = png(&RgbImage::from_pixel(16, 16, Rgb([1, 2, 3])).into());
        let cases: [(&str, &[u8], &str); 3] = [
            ("empty.png", b"", "the file is empty"),
            (
                "garbage.jpg",
                b"this is not an image at all",
                "unknown image format (expected BMP, GIF, JPEG or PNG content)",
            ),
            (
                "truncated.png",
                &good[..good.len() / 2],
                "Png data could not be decoded: ",
            ),
        ];
        for (name, bytes, reason) in cases {
            let path = write(dir.path(), name, bytes);
            let err = load_image(&path, 4, 4).unwrap_err();
            let DatasetError::BadImage { path: p, message } = &err else {
                panic!("{name}: expected BadImage, got {err:?}");
            };
            assert_eq!(p, &path);
            assert!(message.starts_with(reason), "{name}: {message}");
            assert_eq!(
                err.to_string(),
                format!(
                    "{}: cannot decode image: {message} (set dataset.on_bad_image = \"skip\" to skip unreadable files)",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.png");
        let err = load_image(&path, 4, 4).unwrap_err();
        assert!(matches!(&err, DatasetError::Io { path: p, .. } if p == &path));
        assert!(err.to_string().starts_with(&path.display().to_string()));
    }
}
