use image::{DynamicImage, ImageFormat, RgbImage};

use super::super::decode_rgb;

#[derive(serde::Deserialize)]
struct Case {
    file: String,
    case: String,
    keep: usize,
    patches: Vec<(usize, u8)>,
    append: String,
    tensorflow_accepts: bool,
    tensorflow_error: Option<String>,
}

#[derive(serde::Deserialize)]
struct Reference {
    tensorflow: String,
    cases: Vec<Case>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Where we refuse a file TensorFlow decodes: the `gif` crate stops at an invalid LZW code,
/// where giflib reports the defect and TensorFlow keeps the partly decoded first frame.
const STRICTER_THAN_TENSORFLOW: [(&str, &str); 1] = [("still.gif", "4 bytes flipped at 1/2")];

/// Verdicts of TensorFlow 2.21's `decode_image`, computed by tests/reference/truncated_images.py
/// on the files it wrote beside it.
#[test]
fn damaged_files_are_refused_where_tensorflow_refuses_them() {
    let reference: Reference = serde_json::from_str(include_str!(
        "../../../../tests/reference/truncated_images.json"
    ))
    .unwrap();
    assert_eq!(reference.tensorflow, "2.21.0");
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/truncated_images");
    let mut wrong = Vec::new();
    let mut refused = 0;
    for case in &reference.cases {
        let original = std::fs::read(dir.join(&case.file)).unwrap();
        assert!(decode_rgb(&original).is_ok(), "{}", case.file);
        let mut bytes = original[..case.keep].to_vec();
        for &(at, value) in &case.patches {
            bytes[at] = value;
        }
        bytes.extend(unhex(&case.append));
        let ours = decode_rgb(&bytes);
        refused += usize::from(ours.is_err());
        let stricter = STRICTER_THAN_TENSORFLOW.contains(&(case.file.as_str(), case.case.as_str()));
        if ours.is_ok() != (case.tensorflow_accepts && !stricter) {
            wrong.push(format!(
                "{} {}: TensorFlow: {}; we: {}",
                case.file,
                case.case,
                case.tensorflow_error.as_deref().unwrap_or("accepts"),
                ours.err().as_deref().unwrap_or("accept"),
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(refused > 80, "only {refused} cases refused");
}

/// A 37x29 image with a gradient and a pattern, so no format compresses it to a few bytes.
fn source() -> DynamicImage {
    RgbImage::from_fn(37, 29, |x, y| {
        let n = (x * 7 + y * 13) % 17;
        image::Rgb([
            (x * 6 + n) as u8,
            (y * 8 + n * 3) as u8,
            ((x ^ y) * 5) as u8,
        ])
    })
    .into()
}

fn encode(format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    source()
        .write_to(&mut std::io::Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

#[test]
fn generated_files_decode_and_any_cut_of_them_is_refused_as_truncated() {
    for format in [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::Bmp,
    ] {
        let bytes = encode(format);
        let image = decode_rgb(&bytes).unwrap();
        assert_eq!((image.height, image.width), (29, 37), "{format:?}");
        let n = bytes.len();
        for keep in [n / 10, n / 2, n * 9 / 10, n - 2] {
            let err = decode_rgb(&bytes[..keep]).unwrap_err();
            assert!(
                err.starts_with(&format!(
                    "{format:?} data could not be decoded: truncated: "
                )),
                "{format:?} cut to {keep} of {n} bytes: {err}"
            );
        }
    }
}

#[test]
fn bytes_after_the_end_are_ignored_except_in_a_bmp_like_tensorflow() {
    for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Gif] {
        let mut bytes = encode(format);
        let clean = decode_rgb(&bytes).unwrap();
        bytes.extend_from_slice(b"trailing bytes\xFF\xD8\x00");
        assert_eq!(decode_rgb(&bytes).unwrap(), clean, "{format:?}");
    }
    let mut bmp = encode(ImageFormat::Bmp);
    bmp.extend_from_slice(&[0, 0]);
    assert_eq!(
        decode_rgb(&bmp).unwrap_err(),
        "Bmp data could not be decoded: 2 bytes after the pixel rows the header declares \
         (TensorFlow's BMP reader refuses a file whose size is not exactly that)"
    );
}

#[test]
fn messages_say_what_is_wrong() {
    let jpeg = encode(ImageFormat::Jpeg);
    let png = encode(ImageFormat::Png);
    let gif = encode(ImageFormat::Gif);
    let bmp = encode(ImageFormat::Bmp);
    let mut bad_crc = png.clone();
    // The IEND chunk's CRC (the last 4 bytes).
    *bad_crc.last_mut().unwrap() ^= 0xFF;
    let cases: [(&[u8], &str); 5] = [
        (
            &jpeg[..jpeg.len() - 2],
            "Jpeg data could not be decoded: truncated: the data ends before the end-of-image marker (FF D9)",
        ),
        (
            &png[..png.len() - 12],
            "Png data could not be decoded: truncated: the data ends before the IEND chunk",
        ),
        (
            &bad_crc,
            "Png data could not be decoded: corrupt: ",
        ),
        (
            &gif[..gif.len() - 2],
            "Gif data could not be decoded: truncated: the data ends before the end of the first image",
        ),
        (
            &bmp[..bmp.len() - 1],
            "Bmp data could not be decoded: truncated: the data ends 1 bytes before the end of the pixel rows the header declares",
        ),
    ];
    for (bytes, want) in cases {
        let err = decode_rgb(bytes).unwrap_err();
        assert!(err.starts_with(want), "{err}\nwanted: {want}");
    }
}

/// A PNG of 5x3 pixels in `color` at `depth`, samples counting up, with a palette and a
/// transparency chunk when given.
fn png_of(
    color: png::ColorType,
    depth: png::BitDepth,
    palette: bool,
    trns: Option<&[u8]>,
) -> Vec<u8> {
    let (w, h) = (5u32, 3u32);
    let bits = depth as usize * color.samples();
    let row = (w as usize * bits).div_ceil(8);
    let data: Vec<u8> = (0..row * h as usize).map(|i| (i * 37 + 11) as u8).collect();
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(color);
        encoder.set_depth(depth);
        if palette {
            encoder.set_palette(
                (0..=255u8)
                    .flat_map(|i| [i, 255 - i, i / 2])
                    .collect::<Vec<_>>(),
            );
        }
        if let Some(t) = trns {
            encoder.set_trns(t.to_vec());
        }
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&data).unwrap();
    }
    out
}

/// PNGs are decoded by the `png` crate here (to check them as libpng does); the pixels must be
/// exactly those the `image` crate gave before, in every colour type and bit depth.
#[test]
fn png_pixels_are_the_image_crates() {
    use png::{BitDepth::*, ColorType::*};
    let cases = [
        png_of(Grayscale, One, false, None),
        png_of(Grayscale, Two, false, None),
        png_of(Grayscale, Four, false, None),
        png_of(Grayscale, Eight, false, None),
        png_of(Grayscale, Eight, false, Some(&[0, 48])),
        png_of(Grayscale, Sixteen, false, None),
        png_of(GrayscaleAlpha, Eight, false, None),
        png_of(GrayscaleAlpha, Sixteen, false, None),
        png_of(Rgb, Eight, false, None),
        png_of(Rgb, Eight, false, Some(&[0, 11, 0, 48, 0, 85])),
        png_of(Rgb, Sixteen, false, None),
        png_of(Rgba, Eight, false, None),
        png_of(Rgba, Sixteen, false, None),
        png_of(Indexed, One, true, None),
        png_of(Indexed, Four, true, None),
        png_of(Indexed, Eight, true, None),
        png_of(Indexed, Eight, true, Some(&[0, 128, 255, 7])),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let ours = super::decode_png(bytes).unwrap();
        let theirs = image::load_from_memory_with_format(bytes, ImageFormat::Png).unwrap();
        assert_eq!(ours, theirs, "case {i}");
    }
}
