//! Named random streams derived from a run seed.
//!
//! Every consumer of randomness (initialisation of each parameter, shuffling, augmentation of each
//! image) gets its own stream, keyed by the seed and a purpose string through SHA-256. Streams never
//! share state, so adding a parameter, reordering a map or augmenting one more image cannot disturb
//! any other stream, and the result does not depend on thread scheduling.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

pub use rand::{Rng, RngCore};

/// The random stream for `purpose` under run seed `seed`.
pub fn stream(seed: u64, purpose: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(b"runner-rng-v1\0");
    h.update(seed.to_le_bytes());
    h.update(purpose.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    ChaCha8Rng::from_seed(digest)
}

/// Uniform f32 in [lo, hi), as TF's `stateless_uniform` draws it: 23 random mantissa bits.
pub fn uniform_f32(rng: &mut impl Rng, lo: f32, hi: f32) -> f32 {
    let u = (rng.next_u32() >> 9) as f32 * (1.0 / (1u32 << 23) as f32);
    lo + (hi - lo) * u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_independent() {
        let a: Vec<u32> = (0..4)
            .map(|_| stream(1, "init/dense.weight").next_u32())
            .collect();
        assert!(
            a.windows(2).all(|w| w[0] == w[1]),
            "same seed and purpose must give the same stream"
        );
        assert_ne!(
            stream(1, "init/dense.weight").next_u64(),
            stream(2, "init/dense.weight").next_u64()
        );
        assert_ne!(
            stream(1, "init/dense.weight").next_u64(),
            stream(1, "init/dense.bias").next_u64()
        );
    }

    #[test]
    fn uniform_stays_in_half_open_range() {
        let mut r = stream(0, "t");
        for _ in 0..10_000 {
            let x = uniform_f32(&mut r, -0.5, 0.25);
            assert!((-0.5..0.25).contains(&x));
        }
    }
}
