//! Refusing truncated and corrupt files where TensorFlow's `decode_image` refuses them.
//!
//! The `image` crate's decoders are lenient: a JPEG cut short decodes with its missing part
//! grey, a PNG without its last chunks or with a wrong zlib checksum decodes, a BMP with bytes
//! missing or added decodes. The notebook's decoder refuses all of these, so its `fit()` would stop
//! on such a file; training on it silently would hide a broken data set. The checks here follow
//! what TensorFlow 2.21 does (checked case by case against `tf.image.decode_image` by
//! tests/reference/truncated_images.py):
//!
//! * JPEG (libjpeg-turbo, `try_recover_truncated=False`): the data must reach the end-of-image
//!   marker. Bytes after it are ignored, and damage inside the entropy-coded data is not an error
//!   (libjpeg warns and decodes what it can).
//! * PNG (libpng): every chunk up to IEND must be complete, critical chunks must have their CRC,
//!   and the zlib stream its Adler-32; an ancillary chunk with a wrong CRC is dropped, bytes after
//!   IEND are ignored.
//! * GIF (giflib `DGifSlurp`): the first image must be complete up to the terminator of its data
//!   blocks; later frames and the trailer may be missing (TensorFlow keeps the frames it read and
//!   uses the first). One difference: a first image whose LZW data holds an invalid code is
//!   refused here (the `gif` crate stops at it), where giflib reports the defect and TensorFlow
//!   keeps the partly decoded image.
//! * BMP (TensorFlow's own reader): the file must be exactly the pixel-data offset plus the rows
//!   its header declares, so a missing or an extra byte is an error.

use std::io::Cursor;

use image::{DynamicImage, ImageBuffer, ImageFormat};

/// The most bytes a PNG may make the decoder allocate: the `image` crate's default
/// `Limits::max_alloc`, which bounded PNG decoding before it was done here.
const PNG_MAX_BYTES: usize = 512 * 1024 * 1024;

/// Whether the file is complete and intact where TensorFlow requires it, for the formats the
/// `image` crate decodes more leniently (PNG is checked while decoding, by `decode_png`).
pub(super) fn check_complete(format: ImageFormat, bytes: &[u8]) -> Result<(), String> {
    match format {
        ImageFormat::Jpeg => jpeg_reaches_end_of_image(bytes),
        ImageFormat::Gif => gif_first_image_complete(bytes),
        ImageFormat::Bmp => bmp_size_matches_header(bytes),
        _ => Ok(()),
    }
}

/// Walk the JPEG's segments from the start as libjpeg reads them (`jdmarker.c`, `next_marker`,
/// and the entropy decoder, which stops at any marker other than a restart marker), and fail if
/// the data ends before the end-of-image marker (FF D9).
///
/// This is TensorFlow's condition: its memory source (`jpeg_handle.cc`, `MemFillInputBuffer`)
/// reports running out of data as an error unless recovery is asked for, and libjpeg reads up to
/// EOI before it finishes. Segments are skipped by their length, so the bytes FF D9 inside a
/// comment or an embedded EXIF thumbnail are not taken for the end of the image.
fn jpeg_reaches_end_of_image(bytes: &[u8]) -> Result<(), String> {
    const TRUNCATED: &str = "truncated: the data ends before the end-of-image marker (FF D9)";
    let byte = |at: usize| bytes.get(at).copied().ok_or(TRUNCATED);
    // `guess_format` recognised the SOI marker (FF D8) at the start.
    let mut at = 2;
    let mut in_scan = false;
    loop {
        // Up to the next 0xFF: entropy-coded data inside a scan, garbage between segments
        // (libjpeg warns "extraneous bytes before marker" and goes on).
        while byte(at)? != 0xFF {
            at += 1;
        }
        // Fill bytes: any number of 0xFF before the marker code.
        while byte(at)? == 0xFF {
            at += 1;
        }
        let code = byte(at)?;
        at += 1;
        match code {
            // A stuffed 0xFF data byte, or a restart marker: both belong to the scan.
            0x00 | 0xD0..=0xD7 if in_scan => {}
            // End of image: what follows is not read.
            0xD9 => return Ok(()),
            // Markers without a length: SOI, TEM, a stray RST or a stuffed byte outside a scan.
            0x00 | 0x01 | 0xD0..=0xD8 => {}
            _ => {
                let length = usize::from(byte(at)?) << 8 | usize::from(byte(at + 1)?);
                if length < 2 {
                    return Err(format!(
                        "corrupt: the segment FF{code:02X} at byte {} has an invalid length {length}",
                        at - 2
                    ));
                }
                at += length;
                // After a start-of-scan header comes entropy-coded data, up to the next marker.
                in_scan = code == 0xDA;
            }
        }
    }
}

/// Decode a PNG with the checks libpng makes: the CRC of every critical chunk, the zlib
/// stream's Adler-32 (the `png` crate skips it by default, and the `image` crate keeps that
/// default), and every chunk read up to IEND (the `image` crate stops after the pixel data).
pub(super) fn decode_png(bytes: &[u8]) -> Result<DynamicImage, String> {
    let failed = |e: png::DecodingError| png_failure(&e);
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: PNG_MAX_BYTES,
        },
    );
    decoder.ignore_checksums(false);
    // Palette to RGB(A), transparency to alpha, fewer than 8 bits to 8; as the `image` crate.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(failed)?;
    let size = reader
        .output_buffer_size()
        .ok_or("the image dimensions are too large")?;
    let mut buffer = vec![0u8; size];
    let frame = reader.next_frame(&mut buffer).map_err(failed)?;
    reader.finish().map_err(failed)?;
    buffer.truncate(frame.buffer_size());
    let (w, h) = (frame.width, frame.height);
    use png::ColorType::{Grayscale, GrayscaleAlpha, Rgb, Rgba};
    let image = match frame.bit_depth {
        png::BitDepth::Eight => match frame.color_type {
            Grayscale => ImageBuffer::from_raw(w, h, buffer).map(DynamicImage::ImageLuma8),
            GrayscaleAlpha => ImageBuffer::from_raw(w, h, buffer).map(DynamicImage::ImageLumaA8),
            Rgb => ImageBuffer::from_raw(w, h, buffer).map(DynamicImage::ImageRgb8),
            Rgba => ImageBuffer::from_raw(w, h, buffer).map(DynamicImage::ImageRgba8),
            png::ColorType::Indexed => None,
        },
        png::BitDepth::Sixteen => {
            // PNG samples are big-endian.
            let wide: Vec<u16> = buffer
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect();
            match frame.color_type {
                Grayscale => ImageBuffer::from_raw(w, h, wide).map(DynamicImage::ImageLuma16),
                GrayscaleAlpha => ImageBuffer::from_raw(w, h, wide).map(DynamicImage::ImageLumaA16),
                Rgb => ImageBuffer::from_raw(w, h, wide).map(DynamicImage::ImageRgb16),
                Rgba => ImageBuffer::from_raw(w, h, wide).map(DynamicImage::ImageRgba16),
                png::ColorType::Indexed => None,
            }
        }
        // EXPAND leaves only 8 and 16 bits per sample, and no palette.
        _ => None,
    };
    image.ok_or_else(|| {
        format!(
            "the decoder gave {:?} samples of {:?} that do not make a {w}x{h} image",
            frame.color_type, frame.bit_depth
        )
    })
}

/// Say "truncated" when the data ran out, else what the `png` crate found wrong.
fn png_failure(e: &png::DecodingError) -> String {
    let text = e.to_string();
    let ran_out = match e {
        png::DecodingError::IoError(io) => io.kind() == std::io::ErrorKind::UnexpectedEof,
        _ => text.contains("nexpected end"),
    };
    if ran_out {
        "truncated: the data ends before the IEND chunk".to_string()
    } else {
        format!("corrupt: {text}")
    }
}

/// Walk the GIF's blocks up to the end of its first image's data, as giflib's `DGifSlurp` reads
/// them: TensorFlow refuses the file when that much is not there (and accepts it when only
/// later frames or the trailer are missing).
fn gif_first_image_complete(bytes: &[u8]) -> Result<(), String> {
    const TRUNCATED: &str = "truncated: the data ends before the end of the first image";
    let byte = |at: usize| bytes.get(at).copied().ok_or(TRUNCATED);
    // Sub-blocks: a length byte and that many bytes, until a zero length.
    let skip_sub_blocks = |mut at: usize| -> Result<usize, &str> {
        loop {
            match byte(at)? {
                0 => return Ok(at + 1),
                n => at += 1 + usize::from(n),
            }
        }
    };
    let colour_table = |flags: u8| {
        if flags & 0x80 != 0 {
            3 << ((flags & 7) + 1)
        } else {
            0
        }
    };
    // Header (6 bytes), logical screen descriptor (7, flags at offset 10), global colour table.
    let mut at = 13 + colour_table(byte(10)?);
    loop {
        match byte(at)? {
            // Extension: introducer, label, sub-blocks.
            0x21 => at = skip_sub_blocks(at + 2)?,
            // Image: descriptor (10 bytes, flags last), local colour table, LZW code size,
            // data sub-blocks.
            0x2C => {
                let flags = byte(at + 9)?;
                let data = at + 10 + colour_table(flags) + 1;
                skip_sub_blocks(data)?;
                return Ok(());
            }
            0x3B => return Err("no image before the trailer".to_string()),
            other => {
                return Err(format!(
                    "corrupt: the block at byte {at} (type 0x{other:02X}) is neither an image nor an extension"
                ))
            }
        }
    }
}

/// TensorFlow's BMP reader (`decode_image_op.cc`, `DecodeBmpV2`) requires the file to be exactly
/// the pixel-data offset plus `|height|` rows of `ceil(bits per pixel * width / 32) * 4` bytes.
/// Checked for uncompressed BMPs (`BI_RGB`, `BI_BITFIELDS`, `BI_ALPHABITFIELDS`) with a
/// `BITMAPINFOHEADER` or later; for the rest the `image` crate's decoder decides.
fn bmp_size_matches_header(bytes: &[u8]) -> Result<(), String> {
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let header = (
        u32_at(10),
        u32_at(14),
        u32_at(18),
        u32_at(22),
        u16_at(28),
        u32_at(30),
    );
    let (Some(offset), Some(dib), Some(width), Some(height), Some(bpp), Some(compression)) = header
    else {
        return Err("truncated: the data ends inside the header".to_string());
    };
    if dib < 40 || !matches!(compression, 0 | 3 | 6) {
        return Ok(());
    }
    // Width and height are signed; a negative height means rows are stored top-down.
    let width = u64::from((width as i32).unsigned_abs());
    let height = u64::from((height as i32).unsigned_abs());
    let row = (u64::from(bpp) * width).div_ceil(32) * 4;
    let expected = u64::from(offset) + row * height;
    let actual = bytes.len() as u64;
    match actual.cmp(&expected) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(format!(
            "truncated: the data ends {} bytes before the end of the pixel rows the header declares",
            expected - actual
        )),
        std::cmp::Ordering::Greater => Err(format!(
            "{} bytes after the pixel rows the header declares (TensorFlow's BMP reader refuses \
             a file whose size is not exactly that)",
            actual - expected
        )),
    }
}

#[cfg(test)]
mod tests;
