//! The augmentation steps of an experiment file, in Keras's parameterisation, and their options.
//! `Deserialize` for `AugmentStep` and `Factor` is in `forms.rs`.

use serde::{Deserialize, Serialize};

/// One augmentation step, in Keras's parameterisation (`type = "flip" | "rotation" | "zoom" | "translation" | "contrast"`).
/// `Deserialize` is in `forms.rs`: it names the keys each `type` accepts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AugmentStep {
    /// `RandomFlip(mode)`.
    Flip {
        #[serde(default)]
        mode: FlipMode,
    },
    /// `RandomRotation(factor)`: angle = factor x 360 degrees, drawn per image.
    Rotation {
        factor: Factor,
        #[serde(default)]
        fill_mode: FillMode,
        #[serde(default)]
        fill_value: f32,
        #[serde(default)]
        interpolation: Interpolation,
    },
    /// `RandomZoom(height_factor, width_factor)`; the same draw on both axes when `width_factor` is absent.
    Zoom {
        height_factor: Factor,
        #[serde(default)]
        #[serde(skip_serializing_if = "Option::is_none")]
        width_factor: Option<Factor>,
        #[serde(default)]
        fill_mode: FillMode,
        #[serde(default)]
        fill_value: f32,
        #[serde(default)]
        interpolation: Interpolation,
    },
    /// `RandomTranslation(height_factor, width_factor)`: fractions of the image size.
    Translation {
        height_factor: Factor,
        width_factor: Factor,
        #[serde(default)]
        fill_mode: FillMode,
        #[serde(default)]
        fill_value: f32,
        #[serde(default)]
        interpolation: Interpolation,
    },
    /// `RandomContrast(factor)`: per image and channel, (x - mean) * c + mean with c in [1-lower, 1+upper].
    Contrast { factor: Factor },
}

/// A Keras factor: a single number `f` meaning (-f, f), or an explicit `[lower, upper]`.
/// `Deserialize` is in `forms.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Factor {
    Symmetric(f32),
    Range([f32; 2]),
}

impl Factor {
    /// (lower, upper) as Keras resolves it.
    pub fn bounds(self) -> (f32, f32) {
        match self {
            Factor::Symmetric(f) => (-f.abs(), f.abs()),
            Factor::Range([lo, hi]) => (lo, hi),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlipMode {
    Horizontal,
    Vertical,
    #[default]
    HorizontalAndVertical,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillMode {
    #[default]
    Reflect,
    Wrap,
    Constant,
    Nearest,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    #[default]
    Bilinear,
    Nearest,
}
