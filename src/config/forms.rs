//! `Deserialize` for the spec values that take several forms.
//!
//! serde's `untagged` and internally tagged enums answer a wrong form with "data did not match any
//! variant" and lose the key path. These impls accept each documented form, read every value
//! through the caller's deserializer (so a bad value is reported at its own key), and answer
//! anything else with the list of accepted forms.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected};

use super::spec::{
    AugmentStep, Factor, FillMode, FlipMode, Interpolation, OptimizerName, OptimizerSpec,
    WeightsSpec, KERAS_BETA_1, KERAS_BETA_2, KERAS_EPSILON, KERAS_RHO, KNOWN_WEIGHTS,
};

// ---------------------------------------------------------------------------------------------
// Factor: 0.1 or [lower, upper]

struct FactorVisitor;

impl<'de> de::Visitor<'de> for FactorVisitor {
    type Value = Factor;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a number such as 0.1 (meaning the range [-0.1, 0.1]) or a range [lower, upper]",
        )
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Factor, E> {
        Ok(Factor::Symmetric(v as f32))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Factor, E> {
        Ok(Factor::Symmetric(v as f32))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Factor, E> {
        Ok(Factor::Symmetric(v as f32))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Factor, A::Error> {
        let mut bounds = Vec::with_capacity(2);
        while let Some(x) = seq.next_element::<f32>()? {
            bounds.push(x);
        }
        match bounds[..] {
            [lower, upper] => Ok(Factor::Range([lower, upper])),
            _ => Err(de::Error::invalid_length(bounds.len(), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for Factor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FactorVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Weights: "none", a known name, or { file, sha256 }

const WEIGHTS_TABLE_KEYS: &[&str] = &["file", "sha256", "stage"];

struct WeightsVisitor;

impl<'de> de::Visitor<'de> for WeightsVisitor {
    type Value = WeightsSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"none\"")?;
        for name in KNOWN_WEIGHTS {
            write!(f, ", {name:?}")?;
        }
        f.write_str(
            ", a table such as { file = \"weights/vgg16.safetensors\", sha256 = \"...\" }, or \
             { stage = \"pretrain\" }",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<WeightsSpec, E> {
        if v == "none" || KNOWN_WEIGHTS.contains(&v) {
            Ok(WeightsSpec::Named(v.to_string()))
        } else {
            Err(E::invalid_value(Unexpected::Str(v), &self))
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WeightsSpec, A::Error> {
        let (mut file, mut sha256, mut stage) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "file" => file = Some(map.next_value::<String>()?),
                "sha256" => sha256 = Some(map.next_value::<String>()?),
                "stage" => stage = Some(map.next_value::<String>()?),
                _ => return Err(de::Error::unknown_field(&key, WEIGHTS_TABLE_KEYS)),
            }
        }
        match (file, stage) {
            (Some(file), None) => Ok(WeightsSpec::File { file, sha256 }),
            (None, Some(stage)) if sha256.is_none() => Ok(WeightsSpec::Stage { stage }),
            (None, Some(_)) => Err(de::Error::unknown_field("sha256", &["stage"])),
            (Some(_), Some(_)) => Err(de::Error::custom(
                "give either file (with an optional sha256) or stage, not both",
            )),
            (None, None) => Err(de::Error::missing_field("file")),
        }
    }
}

impl<'de> Deserialize<'de> for WeightsSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WeightsVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Optimizer: "adam", "rmsprop", or { name = "...", <parameters> }

const ADAM_KEYS: &[&str] = &["name", "beta_1", "beta_2", "epsilon"];
const RMSPROP_KEYS: &[&str] = &["name", "rho", "momentum", "epsilon", "centered"];

struct OptimizerVisitor;

impl<'de> de::Visitor<'de> for OptimizerVisitor {
    type Value = OptimizerSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"adam\", \"rmsprop\", or a table such as { name = \"rmsprop\", rho = 0.9 }")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<OptimizerSpec, E> {
        match v {
            "adam" => Ok(OptimizerSpec::adam()),
            "rmsprop" => Ok(OptimizerSpec::rmsprop()),
            _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OptimizerSpec, A::Error> {
        // Which parameters are allowed depends on `name`, which may come last: read every value
        // at its own key first, then check the set of keys against the chosen optimizer.
        let mut keys = Vec::new();
        let mut name = None;
        let (mut beta_1, mut beta_2, mut epsilon) = (None, None, None);
        let (mut rho, mut momentum, mut centered) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => name = Some(map.next_value::<OptimizerName>()?),
                "beta_1" => beta_1 = Some(map.next_value::<f64>()?),
                "beta_2" => beta_2 = Some(map.next_value::<f64>()?),
                "epsilon" => epsilon = Some(map.next_value::<f64>()?),
                "rho" => rho = Some(map.next_value::<f64>()?),
                "momentum" => momentum = Some(map.next_value::<f64>()?),
                "centered" => centered = Some(map.next_value::<bool>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            keys.push(key);
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        let allowed = match name {
            OptimizerName::Adam => ADAM_KEYS,
            OptimizerName::Rmsprop => RMSPROP_KEYS,
        };
        if let Some(key) = keys.iter().find(|k| !allowed.contains(&k.as_str())) {
            return Err(de::Error::unknown_field(key, allowed));
        }
        let epsilon = epsilon.unwrap_or(KERAS_EPSILON);
        Ok(match name {
            OptimizerName::Adam => OptimizerSpec::Adam {
                beta_1: beta_1.unwrap_or(KERAS_BETA_1),
                beta_2: beta_2.unwrap_or(KERAS_BETA_2),
                epsilon,
            },
            OptimizerName::Rmsprop => OptimizerSpec::Rmsprop {
                rho: rho.unwrap_or(KERAS_RHO),
                momentum: momentum.unwrap_or(0.0),
                epsilon,
                centered: centered.unwrap_or(false),
            },
        })
    }
}

impl<'de> Deserialize<'de> for OptimizerSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OptimizerVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Augmentation steps: { type = "...", <parameters> }

/// The `type`s of augmentation steps, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum StepType {
    Flip,
    Rotation,
    Zoom,
    Translation,
    Contrast,
}

const FLIP_KEYS: &[&str] = &["type", "mode"];
const ROTATION_KEYS: &[&str] = &["type", "factor", "fill_mode", "fill_value", "interpolation"];
const ZOOM_KEYS: &[&str] = &[
    "type",
    "height_factor",
    "width_factor",
    "fill_mode",
    "fill_value",
    "interpolation",
];
const CONTRAST_KEYS: &[&str] = &["type", "factor"];

struct StepVisitor;

impl<'de> de::Visitor<'de> for StepVisitor {
    type Value = AugmentStep;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table such as { type = \"rotation\", factor = 0.1 }")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AugmentStep, A::Error> {
        // As for optimizers: `type` decides which keys are allowed, and may come last.
        let mut keys = Vec::new();
        let mut kind = None;
        let mut mode = None;
        let (mut factor, mut height_factor, mut width_factor) = (None, None, None);
        let (mut fill_mode, mut fill_value, mut interpolation) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => kind = Some(map.next_value::<StepType>()?),
                "mode" => mode = Some(map.next_value::<FlipMode>()?),
                "factor" => factor = Some(map.next_value::<Factor>()?),
                "height_factor" => height_factor = Some(map.next_value::<Factor>()?),
                "width_factor" => width_factor = Some(map.next_value::<Factor>()?),
                "fill_mode" => fill_mode = Some(map.next_value::<FillMode>()?),
                "fill_value" => fill_value = Some(map.next_value::<f32>()?),
                "interpolation" => interpolation = Some(map.next_value::<Interpolation>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            keys.push(key);
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        let allowed = match kind {
            StepType::Flip => FLIP_KEYS,
            StepType::Rotation => ROTATION_KEYS,
            StepType::Zoom | StepType::Translation => ZOOM_KEYS,
            StepType::Contrast => CONTRAST_KEYS,
        };
        if let Some(key) = keys.iter().find(|k| !allowed.contains(&k.as_str())) {
            return Err(de::Error::unknown_field(key, allowed));
        }
        let fill_mode = fill_mode.unwrap_or_default();
        let fill_value = fill_value.unwrap_or(0.0);
        let interpolation = interpolation.unwrap_or_default();
        let required = |value: Option<Factor>, key: &'static str| {
            value.ok_or_else(|| <A::Error as de::Error>::missing_field(key))
        };
        Ok(match kind {
            StepType::Flip => AugmentStep::Flip {
                mode: mode.unwrap_or_default(),
            },
            StepType::Rotation => AugmentStep::Rotation {
                factor: required(factor, "factor")?,
                fill_mode,
                fill_value,
                interpolation,
            },
            StepType::Zoom => AugmentStep::Zoom {
                height_factor: required(height_factor, "height_factor")?,
                width_factor,
                fill_mode,
                fill_value,
                interpolation,
            },
            StepType::Translation => AugmentStep::Translation {
                height_factor: required(height_factor, "height_factor")?,
                width_factor: required(width_factor, "width_factor")?,
                fill_mode,
                fill_value,
                interpolation,
            },
            StepType::Contrast => AugmentStep::Contrast {
                factor: required(factor, "factor")?,
            },
        })
    }
}

impl<'de> Deserialize<'de> for AugmentStep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StepVisitor)
    }
}
