//! Seeded initialisers. candle's CPU random initialisation cannot be seeded, so parameters are
//! drawn here, each from its own stream keyed by the run seed and the parameter's name: the values
//! of one parameter never depend on how many others exist or in which order a map yields them.

use crate::base::rng::{stream, uniform_f32};

/// Keras `GlorotUniform`: U[-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)).
/// For a 3x3 convolution, fan_in = 9 * in_channels and fan_out = 9 * out_channels.
pub fn glorot_uniform(
    seed: u64,
    name: &str,
    count: usize,
    fan_in: usize,
    fan_out: usize,
) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    let mut rng = stream(seed, &format!("init/{name}"));
    (0..count)
        .map(|_| uniform_f32(&mut rng, -limit, limit))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The third candle 0.11 defect the README names: CPU random tensors cannot be seeded
    /// (`set_seed` does not make `Tensor::rand` repeat), which is why parameters are drawn from
    /// our own named streams. Fails, saying so, if candle starts to honour the seed.
    #[test]
    fn candle_cpu_random_tensors_still_ignore_the_seed() {
        let device = candle_core::Device::Cpu;
        let draw = || {
            let _ = device.set_seed(7);
            candle_core::Tensor::rand(0f32, 1f32, 64, &device)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_ne!(
            draw(),
            draw(),
            "candle now seeds CPU random tensors: the named streams may no longer be needed"
        );
    }

    #[test]
    fn glorot_limits_match_keras_for_the_notebook_head() {
        // keras-notebook-semantics.md section 4: Dense(256) on 8192 inputs -> 0.0266501; Dense(1) on 256 -> 0.1527950.
        for &(fan_in, fan_out, limit) in &[(8192usize, 256usize, 0.0266501f32), (256, 1, 0.152795)]
        {
            let w = glorot_uniform(3, "dense.weight", 20_000, fan_in, fan_out);
            let max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(
                max <= limit * 1.000_01 && max > limit * 0.99,
                "max |w| {max} vs limit {limit}"
            );
            let mean = w.iter().sum::<f32>() / w.len() as f32;
            assert!(mean.abs() < limit * 0.05);
        }
    }

    #[test]
    fn same_seed_and_name_reproduce_other_names_differ() {
        let a = glorot_uniform(7, "block1_conv1.weight", 100, 27, 576);
        assert_eq!(a, glorot_uniform(7, "block1_conv1.weight", 100, 27, 576));
        assert_ne!(a, glorot_uniform(7, "block1_conv2.weight", 100, 27, 576));
        assert_ne!(a, glorot_uniform(8, "block1_conv1.weight", 100, 27, 576));
    }
}
