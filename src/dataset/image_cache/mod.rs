//! The decoded-image cache: each split's files decoded and resized once, keyed by their content,
//! and shared by every epoch, seed, variant and cell of a sweep, and by later sweeps.
//!
//! `pixels` is how a split's values are laid out and read back, `disk` the protocol of the
//! cache files (key, description, publishing, loading), and `fill` the decoding of a split on
//! all cores into the cache.
//!
//! A store's key covers the content hash, path and label of every listed file, the image size,
//! the resize method, the `on_bad_image` policy and the code that decodes and resizes
//! (`base::build_info::kernel_identity`); a hit therefore holds exactly the pixels decoding would
//! give.
//!
//! Pixels are kept losslessly. An image whose resized values are all whole numbers in 0..=255
//! (one already at the target size, for instance) is stored as `u8`, a quarter of the memory.
//! Keras's bilinear resize gives fractional values otherwise, and rounding them to `u8` would
//! change every result against the notebook's, so such an image is stored as `f32`.
//!
//! Where the values live (`Residency`):
//! * `Mapped`: a file under `results/.cache/images/` (`<key>.pixels`, with `<key>.json`
//!   describing it), written to a temporary name and renamed, then memory-mapped. Its pages
//!   belong to the kernel's page cache: shared between cells, sweeps and processes, evicted
//!   under memory pressure and read back on demand, so they never count against the budget.
//! * `Memory`: without a cache directory (or when no file can be created in it), within the
//!   memory budget.
//! * `Files`: caching turned off (`--no-cache`), or neither of the above possible (the images
//!   exceed the budget, or writing the cache file failed part-way): every image is decoded from
//!   its file again each time a batch needs it, as the notebook's `tf.data` pipeline does. Every
//!   file is still decoded once up front, so a broken file is reported (or skipped) before
//!   training starts, and a file that changes afterwards is an error.
//!
//! A split with a file skipped for a reason that may pass (an I/O error rather than bad
//! content) is cached for this sweep only: its store is not published for later sweeps.

mod disk;
mod fill;
mod pixels;
#[cfg(test)]
mod tests;

pub use disk::store_key;
pub(super) use fill::decode_split;
pub use fill::ImageCache;
pub(super) use pixels::Pixels;
pub use pixels::{Origin, Residency};
