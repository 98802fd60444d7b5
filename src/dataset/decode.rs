//! Decoding (by content, not extension) and TF-style bilinear resizing.

use std::path::Path;

use super::{DatasetError, Image};

/// Decode the image at `path` to RGB and resize it to `height` x `width`.
pub fn load_image(path: &Path, height: usize, width: usize) -> Result<Image, DatasetError> {
    let _ = (path, height, width);
    todo!("dataset::decode::load_image")
}

/// `tf.image.resize(method="bilinear", antialias=False)`: half-pixel centres, no antialiasing.
pub fn resize_bilinear(src: &Image, height: usize, width: usize) -> Image {
    let _ = (src, height, width);
    todo!("dataset::decode::resize_bilinear")
}
