//! CPU vs another device on the same inputs: the conv base's output, the logits, one training
//! step's loss and the parameters it updates (`runner device --check`).
//!
//! Both networks start from the same parameters (initialisation runs on the CPU and is copied),
//! see the same images, and take one Adam step with block 5 and the head trainable, as a
//! fine-tuning cell does. Each row is a relative difference ‖a − b‖ / ‖a‖ against the CPU: float32
//! arithmetic summed in another order lands near 1e-6; anything above 1e-3 is a bug.

use candle_core::{Device, Result, Tensor};

use super::loss::bce_with_logits;
use super::KerasOptimizer;
use crate::config::{ConvInit, HeadSpec, ModelConfig, Optimizer, Weights};
use crate::model::arch::Architecture;
use crate::model::weights::LoadedWeights;
use crate::model::{Mode, Network};

/// One compared quantity.
#[derive(Debug, Clone)]
pub struct Difference {
    pub what: String,
    /// ‖a − b‖₂ / ‖a‖₂ with a from the CPU (0 when both are 0).
    pub relative: f64,
    pub max_abs: f64,
}

impl Difference {
    /// Largest relative difference that passes: float32 rounding sits orders of magnitude below.
    pub const TOLERANCE: f64 = 1e-3;

    /// Within tolerance (NaN never is).
    pub fn agrees(&self) -> bool {
        self.relative < Self::TOLERANCE
    }
}

/// What to compare: a VGG16-shaped network of these widths and input size.
#[derive(Debug, Clone, Copy)]
pub struct CheckShape {
    pub channels: [usize; 5],
    pub image_size: usize,
    pub batch: usize,
}

impl CheckShape {
    /// The lecture's network: VGG16 widths at 150x150.
    pub const LECTURE: CheckShape = CheckShape {
        channels: [64, 128, 256, 512, 512],
        image_size: 150,
        batch: 4,
    };
}

/// Relative and largest absolute difference of two tensors of the same shape.
pub fn difference(what: &str, cpu: &Tensor, other: &Tensor) -> Result<Difference> {
    let a: Vec<f32> = cpu.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
    let b: Vec<f32> = other.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
    assert_eq!(a.len(), b.len(), "{what}: shapes differ");
    let (mut num, mut den, mut max_abs) = (0f64, 0f64, 0f64);
    let mut finite = true;
    for (&x, &y) in a.iter().zip(&b) {
        finite &= x.is_finite() && y.is_finite();
        let d = (x as f64 - y as f64).abs();
        num += d * d;
        den += (x as f64) * (x as f64);
        max_abs = max_abs.max(d);
    }
    // NaN or infinity on either side never passes as "close".
    let relative = if !finite {
        f64::INFINITY
    } else if den == 0.0 && num == 0.0 {
        0.0
    } else {
        (num / den.max(f64::MIN_POSITIVE)).sqrt()
    };
    Ok(Difference {
        what: what.to_string(),
        relative,
        max_abs,
    })
}

/// Compare `device` against the CPU on `shape`.
pub fn compare(device: &Device, shape: CheckShape) -> Result<Vec<Difference>> {
    let model = ModelConfig {
        architecture: "vgg16".into(),
        channels: shape.channels,
        weights: Weights::None,
        conv_init: ConvInit::HeUniform,
        head: HeadSpec {
            units: vec![64],
            ..HeadSpec::default()
        },
    };
    let arch = Architecture::build(&model, shape.image_size, shape.image_size)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let start = arch
        .layers
        .iter()
        .position(|l| l.name == "block5_conv1")
        .expect("vgg16 has block5_conv1");
    let mask: Vec<bool> = (0..arch.layers.len()).map(|i| i >= start).collect();
    let build = |d: &Device| {
        Network::new(
            arch.clone(),
            model.conv_init,
            mask.clone(),
            &LoadedWeights::default(),
            7,
            d,
        )
    };
    let (cpu, other) = (build(&Device::Cpu)?, build(device)?);

    let n = shape.batch;
    let mut rng = crate::base::rng::stream(11, "device-check");
    let images: Vec<f32> = (0..n * shape.image_size * shape.image_size * 3)
        .map(|_| crate::base::rng::uniform_f32(&mut rng, 0.0, 1.0))
        .collect();
    let labels: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();

    let mut rows = vec![difference(
        "conv base output",
        &cpu.conv_base_output(&images, n)?,
        &other.conv_base_output(&images, n)?,
    )?];
    rows.push(difference(
        "logits",
        &cpu.forward(&images, n, Mode::Eval)?,
        &other.forward(&images, n, Mode::Eval)?,
    )?);

    let adam = Optimizer::Adam {
        learning_rate: 1e-3,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-7,
    };
    let step = |net: &Network| -> Result<Tensor> {
        let mut opt = KerasOptimizer::new(adam, net.trainable_vars())?;
        let y = Tensor::from_slice(&labels, n, net.device())?;
        let loss = bce_with_logits(&net.forward(&images, n, Mode::Train)?, &y)?;
        opt.step(&loss.backward()?)?;
        Ok(loss)
    };
    rows.push(difference("training loss", &step(&cpu)?, &step(&other)?)?);
    let (after_cpu, after_other) = (cpu.named_parameters()?, other.named_parameters()?);
    let mut worst: Option<Difference> = None;
    for (name, a) in &after_cpu {
        if !cpu.trainable_vars().iter().any(|(n, _)| n == name) {
            continue;
        }
        let d = difference(name, a, &after_other[name])?;
        if worst.as_ref().is_none_or(|w| d.relative > w.relative) {
            worst = Some(d);
        }
    }
    if let Some(w) = worst {
        rows.push(Difference {
            what: format!("updated parameters (worst: {})", w.what),
            ..w
        });
    }
    Ok(rows)
}

/// The comparison as a text table.
pub fn table(rows: &[Difference]) -> String {
    let width = rows.iter().map(|r| r.what.len()).max().unwrap_or(0).max(8);
    let mut out = format!(
        "{:<width$}  {:>12}  {:>12}\n",
        "quantity", "relative", "max |diff|"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<width$}  {:>12.3e}  {:>12.3e}\n",
            r.what, r.relative, r.max_abs
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: CheckShape = CheckShape {
        channels: [4, 4, 8, 8, 8],
        image_size: 32,
        batch: 3,
    };

    #[test]
    fn difference_is_relative_and_nan_never_passes() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[3f32, 4.0], &dev).unwrap();
        let b = Tensor::new(&[3f32, 4.5], &dev).unwrap();
        let d = difference("x", &a, &b).unwrap();
        assert!((d.relative - 0.1).abs() < 1e-12, "{d:?}");
        assert!((d.max_abs - 0.5).abs() < 1e-12);
        assert_eq!(difference("x", &a, &a).unwrap().relative, 0.0);
        let nan = Tensor::new(&[3f32, f32::NAN], &dev).unwrap();
        assert!(difference("x", &a, &nan).unwrap().relative.is_infinite());
    }

    /// The CPU against itself is exact: the check's own plumbing adds no difference.
    #[test]
    fn cpu_against_cpu_is_exact() {
        let rows = compare(&Device::Cpu, SMALL).unwrap();
        assert_eq!(rows.len(), 4);
        for r in &rows {
            assert_eq!(r.relative, 0.0, "{r:?}");
        }
        assert!(table(&rows).contains("conv base output"));
    }

    /// The device variant: CUDA agrees with the CPU to float32 rounding.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_matches_cpu() {
        let device = Device::new_cuda(0).expect("a CUDA GPU");
        for shape in [
            SMALL,
            CheckShape {
                channels: [8, 16, 32, 64, 64],
                image_size: 64,
                batch: 8,
            },
        ] {
            let rows = compare(&device, shape).unwrap();
            eprint!("{}", table(&rows));
            for r in &rows {
                assert!(r.agrees(), "{r:?}");
            }
        }
    }
}
