//! The image every stage passes on: RGB, channels last, `f32` values in 0..=255. Decoding
//! (`dataset`) makes them and augmentation (`augment`) transforms them.

/// An RGB image, channels last (HWC), values in 0..=255 as `f32` (what Keras's resize produces).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    /// `height * width * 3` values, row-major, RGB interleaved.
    pub data: Vec<f32>,
}

impl Image {
    pub fn new(height: usize, width: usize) -> Self {
        Image {
            height,
            width,
            data: vec![0.0; height * width * 3],
        }
    }

    /// Value at row `y`, column `x`, channel `c`.
    pub fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.data[(y * self.width + x) * 3 + c]
    }
}
