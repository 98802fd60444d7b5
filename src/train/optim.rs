//! Keras's Adam and RMSprop, update for update (keras/src/optimizers/adam.py, rmsprop.py).
//!
//! They differ from PyTorch's: Adam adds epsilon (1e-7) to the *uncorrected* sqrt(v) and folds
//! the bias correction into the step size; RMSprop puts epsilon *inside* the square root.
//! The arithmetic runs in f32 in Keras's order, so values match Keras to rounding.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use crate::config::Optimizer;

struct Slots {
    /// Adam: first moment; RMSprop: momentum buffer (when momentum > 0).
    first: Option<Tensor>,
    /// Adam: second moment; RMSprop: velocity (mean square).
    second: Tensor,
    /// RMSprop centered: running mean gradient.
    mean_grad: Option<Tensor>,
}

/// An optimizer over a fixed list of named variables (the trainable ones when it is created, as
/// Keras builds its slots on the first `apply`).
pub struct KerasOptimizer {
    config: Optimizer,
    vars: Vec<(String, Var)>,
    slots: Vec<Slots>,
    /// Number of steps taken (Keras's `iterations`).
    pub iterations: u64,
}

impl KerasOptimizer {
    pub fn new(config: Optimizer, vars: Vec<(String, Var)>) -> Result<Self> {
        let slots = vars
            .iter()
            .map(|(_, v)| {
                let z = v.as_tensor().zeros_like()?;
                Ok(match config {
                    Optimizer::Adam { .. } => Slots {
                        first: Some(z.clone()),
                        second: z,
                        mean_grad: None,
                    },
                    Optimizer::Rmsprop {
                        momentum, centered, ..
                    } => Slots {
                        first: (momentum > 0.0).then(|| z.clone()),
                        mean_grad: centered.then(|| z.clone()),
                        second: z,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KerasOptimizer {
            config,
            vars,
            slots,
            iterations: 0,
        })
    }

    /// One update from the gradients of a backward pass. Variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let t = (self.iterations + 1) as f32;
        for ((_, var), slots) in self.vars.iter().zip(self.slots.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let w = var.as_tensor();
            let new_w = match self.config {
                Optimizer::Adam {
                    learning_rate,
                    beta_1,
                    beta_2,
                    epsilon,
                } => {
                    let (lr, b1, b2) = (learning_rate as f32, beta_1 as f32, beta_2 as f32);
                    let alpha = lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
                    let m = slots.first.as_ref().expect("adam has a first moment");
                    let m = (m + (g - m)?.affine(1.0 - beta_1, 0.0)?)?;
                    let v =
                        (&slots.second + (g.sqr()? - &slots.second)?.affine(1.0 - beta_2, 0.0)?)?;
                    let update = (m.affine(alpha as f64, 0.0)? / (v.sqrt()? + epsilon)?)?;
                    slots.first = Some(m);
                    slots.second = v;
                    (w - update)?
                }
                Optimizer::Rmsprop {
                    learning_rate,
                    rho,
                    momentum,
                    epsilon,
                    centered,
                } => {
                    let v = (slots.second.affine(rho, 0.0)? + g.sqr()?.affine(1.0 - rho, 0.0)?)?;
                    let denominator = if centered {
                        let mg = slots
                            .mean_grad
                            .as_ref()
                            .expect("centered rmsprop has a mean gradient");
                        let mg = (mg.affine(rho, 0.0)? + g.affine(1.0 - rho, 0.0)?)?;
                        let d = ((&v - mg.sqr()?)? + epsilon)?;
                        slots.mean_grad = Some(mg);
                        d
                    } else {
                        (&v + epsilon)?
                    };
                    slots.second = v;
                    let increment =
                        (g.affine(learning_rate as f32 as f64, 0.0)? / denominator.sqrt()?)?;
                    if let Some(mom) = slots.first.as_ref() {
                        let mom = (mom.affine(momentum, 0.0)? + increment)?;
                        let new_w = (w - &mom)?;
                        slots.first = Some(mom);
                        new_w
                    } else {
                        (w - increment)?
                    }
                }
            };
            var.set(&new_w)?;
        }
        self.iterations += 1;
        Ok(())
    }

    /// Restore the state written by `state` (after `iterations` steps), e.g. from a checkpoint.
    /// Every slot must be present with its variable's shape.
    pub fn restore(
        &mut self,
        state: &BTreeMap<String, Tensor>,
        iterations: u64,
    ) -> anyhow::Result<()> {
        for ((name, var), slots) in self.vars.iter().zip(self.slots.iter_mut()) {
            let get = |suffix: &str| -> anyhow::Result<Tensor> {
                let key = format!("{name}.{suffix}");
                let t = state
                    .get(&key)
                    .ok_or_else(|| anyhow::anyhow!("optimizer state \"{key}\" is missing"))?;
                anyhow::ensure!(
                    t.dims() == var.as_tensor().dims(),
                    "optimizer state \"{key}\" has shape {:?}, expected {:?}",
                    t.dims(),
                    var.as_tensor().dims()
                );
                Ok(t.clone())
            };
            if slots.first.is_some() {
                slots.first = Some(get("first")?);
            }
            slots.second = get("second")?;
            if slots.mean_grad.is_some() {
                slots.mean_grad = Some(get("mean_grad")?);
            }
        }
        self.iterations = iterations;
        Ok(())
    }

    /// The optimizer's state tensors by name (`<param>.m`, `<param>.v`, ...), e.g. for checkpoints.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for ((name, _), s) in self.vars.iter().zip(&self.slots) {
            if let Some(f) = &s.first {
                out.insert(format!("{name}.first"), f.clone());
            }
            out.insert(format!("{name}.second"), s.second.clone());
            if let Some(m) = &s.mean_grad {
                out.insert(format!("{name}.mean_grad"), m.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Values from `tests/reference/optimizers.py` (real Keras optimizers, see that file).
    const REFERENCE: &str = include_str!("../../tests/reference/optimizers.json");

    fn run(config: Optimizer, w0: &[f32], grads: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::from_slice(w0, w0.len(), &dev).unwrap()).unwrap();
        let mut opt = KerasOptimizer::new(config, vec![("w".into(), var.clone())]).unwrap();
        let mut out = Vec::new();
        for g in grads {
            // A loss whose gradient with respect to w is exactly g: sum(w * g).
            let gt = Tensor::from_slice(g, g.len(), &dev).unwrap();
            let loss = (var.as_tensor() * gt).unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
            out.push(var.as_tensor().to_vec1::<f32>().unwrap());
        }
        out
    }

    fn parse_optimizer(v: &serde_json::Value) -> Optimizer {
        let f = |k: &str| v[k].as_f64().unwrap();
        match v["name"].as_str().unwrap() {
            "adam" => Optimizer::Adam {
                learning_rate: f("learning_rate"),
                beta_1: f("beta_1"),
                beta_2: f("beta_2"),
                epsilon: f("epsilon"),
            },
            "rmsprop" => Optimizer::Rmsprop {
                learning_rate: f("learning_rate"),
                rho: f("rho"),
                momentum: f("momentum"),
                epsilon: f("epsilon"),
                centered: v["centered"].as_bool().unwrap(),
            },
            other => panic!("unknown optimizer {other}"),
        }
    }

    #[test]
    fn matches_keras_step_by_step() {
        let cases: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
        let cases = cases["cases"].as_array().unwrap();
        assert!(cases.len() >= 5);
        for case in cases {
            let to_vec = |v: &serde_json::Value| -> Vec<f32> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            };
            let w0 = to_vec(&case["w0"]);
            let grads: Vec<Vec<f32>> = case["grads"]
                .as_array()
                .unwrap()
                .iter()
                .map(to_vec)
                .collect();
            let expected: Vec<Vec<f32>> = case["weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(to_vec)
                .collect();
            let got = run(parse_optimizer(&case["optimizer"]), &w0, &grads);
            for (step, (g, e)) in got.iter().zip(&expected).enumerate() {
                for (a, b) in g.iter().zip(e) {
                    let tol = 1e-6 * b.abs().max(1.0);
                    assert!(
                        (a - b).abs() <= tol,
                        "{}: step {}: got {a}, Keras {b}",
                        case["label"],
                        step + 1
                    );
                }
            }
        }
    }

    /// The first Adam step moves each weight by about lr * sign(g) (bias correction), unlike a
    /// PyTorch-style epsilon for tiny gradients; checked directly from the formula.
    #[test]
    fn adam_first_step_formula() {
        let cfg = Optimizer::Adam {
            learning_rate: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        };
        let got = run(cfg, &[1.0, 1.0], &[vec![0.5, -1e-6]]);
        // alpha = lr*sqrt(1-b2)/(1-b1); m = 0.1 g; v = 0.001 g^2; step = alpha*m/(sqrt(v)+eps)
        for (i, g) in [0.5f64, -1e-6].iter().enumerate() {
            let alpha = 1e-3 * (1.0f64 - 0.999).sqrt() / (1.0 - 0.9);
            let step = alpha * 0.1 * g / ((0.001 * g * g).sqrt() + 1e-7);
            assert!(
                (got[0][i] as f64 - (1.0 - step)).abs() < 1e-6,
                "{i}: {} vs {}",
                got[0][i],
                1.0 - step
            );
        }
    }
}
