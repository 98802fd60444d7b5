//! The `[dataset]` section of a cell: its data source, image size, batch size and augmentation.

use super::Ctx;
use crate::config::locate::KeyPath;
use crate::config::spec::{DatasetSpec, Factor};
use crate::config::{AugmentStep, ConfigError, DataSource, DatasetConfig};

impl Ctx<'_> {
    pub(super) fn dataset(&self, d: &DatasetSpec) -> Result<DatasetConfig, ConfigError> {
        const SOURCE_KEYS: [&str; 3] = [
            "dataset.synthetic",
            "dataset.train_dir",
            "dataset.validation_dir",
        ];
        let source = if let Some(name) = &d.known {
            self.known_source(d, name)?
        } else {
            match (&d.train_dir, &d.validation_dir, &d.synthetic) {
                (Some(train), Some(validation), None) => DataSource::Directories {
                    train: self.path("dataset.train_dir", train)?,
                    validation: self.path("dataset.validation_dir", validation)?,
                },
                (None, None, Some(synthetic)) => {
                    for (key, value) in [
                        ("train_per_class", synthetic.train_per_class),
                        ("validation_per_class", synthetic.validation_per_class),
                        ("size", synthetic.size as usize),
                    ] {
                        if value == 0 {
                            return Err(
                                self.err(&format!("dataset.synthetic.{key}"), "must be at least 1")
                            );
                        }
                    }
                    DataSource::Synthetic(synthetic.clone())
                }
                (None, None, None) => {
                    let key = if self.scope.is_pretrain() {
                        self.scope.place(&KeyPath::parse("dataset"))
                    } else {
                        KeyPath::parse("dataset")
                    };
                    return Err(self.src.error(
                        &key,
                        "no data source; set train_dir and validation_dir (folders with one \
                     sub-folder per class), or add a [dataset.synthetic] table",
                    ));
                }
                (_, _, Some(_)) => return Err(self.err(
                    self.pick(&SOURCE_KEYS, "dataset.synthetic"),
                    "give either train_dir and validation_dir, or [dataset.synthetic], not both",
                )),
                (Some(_), None, None) => {
                    return Err(self.err(
                        "dataset.train_dir",
                        "validation_dir is missing; give both train_dir and validation_dir \
                     (or use [dataset.synthetic] instead)",
                    ))
                }
                (None, Some(_), None) => {
                    return Err(self.err(
                        "dataset.validation_dir",
                        "train_dir is missing; give both train_dir and validation_dir \
                     (or use [dataset.synthetic] instead)",
                    ))
                }
            }
        };

        let [height, width] = d.image_size;
        if height < 32 || width < 32 {
            return Err(self.err(
                "dataset.image_size",
                format!(
                    "[{height}, {width}] is too small: VGG's five 2x2 poolings need at least \
                     [32, 32]"
                ),
            ));
        }
        if d.batch_size == 0 {
            return Err(self.err("dataset.batch_size", "must be at least 1"));
        }
        for (i, step) in d.augmentation.iter().enumerate() {
            self.augment_step(i, step)?;
        }

        Ok(DatasetConfig {
            source,
            image_size: d.image_size,
            batch_size: d.batch_size,
            shuffle: d.shuffle,
            preprocessing: d.preprocessing,
            on_bad_image: d.on_bad_image,
            augmentation: d.augmentation.clone(),
            known: d.known.clone(),
        })
    }

    /// `dataset.known`: the fetched copy's directories in the data cache (present or not; the
    /// sweep says to run `runner fetch` when they are missing).
    fn known_source(&self, d: &DatasetSpec, name: &str) -> Result<DataSource, ConfigError> {
        if d.train_dir.is_some() || d.validation_dir.is_some() || d.synthetic.is_some() {
            return Err(self.err(
                "dataset.known",
                "give either known, or train_dir and validation_dir, or [dataset.synthetic], \
                 not several",
            ));
        }
        let known = crate::dataset::known::lookup(name)
            .map_err(|e| self.err("dataset.known", e.to_string()))?;
        let root = crate::dataset::known::data_root();
        Ok(DataSource::Directories {
            train: known.train_dir(&root),
            validation: known.validation_dir(&root),
        })
    }

    pub(super) fn augment_step(&self, index: usize, step: &AugmentStep) -> Result<(), ConfigError> {
        let at = |key: &str| format!("dataset.augmentation[{index}].{key}");
        let factor = |key: &str, f: &Factor| -> Result<(f32, f32), ConfigError> {
            let (lower, upper) = f.bounds();
            if !lower.is_finite() || !upper.is_finite() {
                return Err(self.err(&at(key), "must be finite"));
            }
            if lower > upper {
                return Err(self.err(
                    &at(key),
                    format!(
                        "the range [{lower}, {upper}] has its lower bound above its upper bound"
                    ),
                ));
            }
            Ok((lower, upper))
        };
        let fill = |value: f32| {
            if value.is_finite() {
                Ok(())
            } else {
                Err(self.err(&at("fill_value"), "must be finite"))
            }
        };
        match step {
            AugmentStep::Flip { .. } => {}
            AugmentStep::Rotation {
                factor: f,
                fill_value,
                ..
            } => {
                factor("factor", f)?;
                fill(*fill_value)?;
            }
            AugmentStep::Zoom {
                height_factor,
                width_factor,
                fill_value,
                ..
            } => {
                let mut factors = vec![("height_factor", height_factor)];
                factors.extend(width_factor.as_ref().map(|w| ("width_factor", w)));
                for (key, f) in factors {
                    // Keras's RandomZoom rejects -1 and below: the zoomed image would have no size.
                    if factor(key, f)?.0 <= -1.0 {
                        return Err(self.err(&at(key), "zoom factors must be above -1"));
                    }
                }
                fill(*fill_value)?;
            }
            AugmentStep::Translation {
                height_factor,
                width_factor,
                fill_value,
                ..
            } => {
                factor("height_factor", height_factor)?;
                factor("width_factor", width_factor)?;
                fill(*fill_value)?;
            }
            AugmentStep::Contrast { factor: f } => {
                factor("factor", f)?;
            }
        }
        Ok(())
    }
}
