//! The `[training]` section of a cell: epochs, optimizer and which layers train.

use super::Ctx;
use crate::config::spec::{OptimizerSpec, TrainingSpec};
use crate::config::{ConfigError, FreezeRule, Optimizer, TrainingConfig};
use crate::model::arch::Architecture;
use crate::model::freeze::trainable_mask;

impl Ctx<'_> {
    pub(super) fn training(
        &self,
        t: &TrainingSpec,
        arch: &Architecture,
    ) -> Result<TrainingConfig, ConfigError> {
        if t.epochs == 0 {
            return Err(self.err("training.epochs", "must be at least 1"));
        }
        let learning_rate = t.learning_rate;
        if !(learning_rate.is_finite() && learning_rate > 0.0) {
            return Err(self.err(
                "training.learning_rate",
                format!("must be a finite number above 0, found {learning_rate:?}"),
            ));
        }
        let optimizer = self.optimizer(&t.optimizer, learning_rate)?;
        let freeze = self.freeze_rule(t, arch)?;
        Ok(TrainingConfig {
            epochs: t.epochs,
            optimizer,
            freeze,
        })
    }

    pub(super) fn optimizer(
        &self,
        o: &OptimizerSpec,
        learning_rate: f64,
    ) -> Result<Optimizer, ConfigError> {
        let unit = |key: &str, value: f64| {
            if (0.0..1.0).contains(&value) {
                Ok(())
            } else {
                Err(self.err(
                    &format!("training.optimizer.{key}"),
                    format!("must be at least 0 and below 1, found {value:?}"),
                ))
            }
        };
        let epsilon = |value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(self.err(
                    "training.optimizer.epsilon",
                    format!("must be a finite number above 0, found {value:?}"),
                ))
            }
        };
        Ok(match *o {
            OptimizerSpec::Adam {
                beta_1,
                beta_2,
                epsilon: eps,
            } => {
                unit("beta_1", beta_1)?;
                unit("beta_2", beta_2)?;
                epsilon(eps)?;
                Optimizer::Adam {
                    learning_rate,
                    beta_1,
                    beta_2,
                    epsilon: eps,
                }
            }
            OptimizerSpec::Rmsprop {
                rho,
                momentum,
                epsilon: eps,
                centered,
            } => {
                unit("rho", rho)?;
                if !(momentum.is_finite() && momentum >= 0.0) {
                    return Err(self.err(
                        "training.optimizer.momentum",
                        format!("must be a finite number of at least 0, found {momentum:?}"),
                    ));
                }
                epsilon(eps)?;
                Optimizer::Rmsprop {
                    learning_rate,
                    rho,
                    momentum,
                    epsilon: eps,
                    centered,
                }
            }
        })
    }

    pub(super) fn freeze_rule(
        &self,
        t: &TrainingSpec,
        arch: &Architecture,
    ) -> Result<FreezeRule, ConfigError> {
        let mut rules = Vec::new();
        if let Some(name) = &t.trainable_from {
            rules.push(("trainable_from", FreezeRule::TrainableFrom(name.clone())));
        }
        if let Some(globs) = &t.freeze {
            rules.push(("freeze", FreezeRule::Freeze(globs.clone())));
        }
        if let Some(globs) = &t.train {
            rules.push(("train", FreezeRule::Train(globs.clone())));
        }
        let keys: Vec<String> = rules.iter().map(|(k, _)| format!("training.{k}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (key, rule) = match rules.len() {
            0 => return Ok(FreezeRule::AllTrainable),
            1 => (keys[0], rules.remove(0).1),
            _ => {
                let names: Vec<&str> = rules.iter().map(|(k, _)| *k).collect();
                let (last, rest) = names.split_last().unwrap_or((&"", &[]));
                return Err(self.err(
                    self.pick(&keys, keys[keys.len() - 1]),
                    format!(
                        "set at most one of trainable_from, freeze and train (found {} and \
                         {last}); remove the others",
                        rest.join(", ")
                    ),
                ));
            }
        };
        let mask = trainable_mask(&rule, arch).map_err(|message| self.err(key, message))?;
        let trains_weights = arch
            .layers
            .iter()
            .zip(&mask)
            .any(|(layer, &trains)| trains && layer.has_weights());
        if !trains_weights {
            return Err(self.err(key, "no layer with weights would train under this rule"));
        }
        Ok(rule)
    }
}
