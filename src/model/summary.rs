//! A Keras-style model summary: each layer's name and type, output shape, parameter count and
//! whether it trains, then the totals. The numbers are those of Keras's `model.summary()` before
//! `fit` (no optimizer slots): for the notebook's model at 150x150, 16,812,353 in total.
//!
//! Pure text from the architecture description and a freeze mask; printing is the caller's job.

use super::arch::{Architecture, LayerKind};
use crate::base::format::thousands;

/// Keras's class name for each kind of layer, as `model.summary()` shows it.
fn keras_type(kind: LayerKind) -> &'static str {
    match kind {
        LayerKind::Conv { .. } => "Conv2D",
        LayerKind::Pool => "MaxPooling2D",
        LayerKind::Flatten => "Flatten",
        LayerKind::Dense { .. } => "Dense",
    }
}

/// Keras's size note: float32 parameters in MB (2^20 bytes), two decimals.
fn megabytes(params: usize) -> String {
    format!("{:.2} MB", (params * 4) as f64 / (1024.0 * 1024.0))
}

fn shape(dims: &[usize]) -> String {
    let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
    format!("(None, {})", dims.join(", "))
}

/// The table for `arch` with `trainable[i]` saying whether layer i trains. `title` is printed
/// first (e.g. `lecture / fine_tuning`).
pub fn render(title: &str, arch: &Architecture, trainable: &[bool]) -> String {
    let [h, w, c] = arch.input;
    let mut rows: Vec<[String; 4]> = vec![[
        "input_layer (InputLayer)".into(),
        shape(&[h, w, c]),
        "0".into(),
        "-".into(),
    ]];
    let (mut trains, mut frozen) = (0, 0);
    for (layer, &t) in arch.layers.iter().zip(trainable) {
        let params = layer.params();
        if t {
            trains += params;
        } else {
            frozen += params;
        }
        let status = match (layer.has_weights(), t) {
            (false, _) => "-",
            (true, true) => "trainable",
            (true, false) => "frozen",
        };
        rows.push([
            format!("{} ({})", layer.name, keras_type(layer.kind)),
            shape(&layer.output),
            thousands(params),
            status.into(),
        ]);
    }
    let headers = ["Layer (type)", "Output Shape", "Param #", "Trainable"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([headers[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2), width(3)];
    let line = |cells: [&str; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        )
        .trim_end()
        .to_string()
    };
    let rule_len = widths.iter().sum::<usize>() + 6;
    let mut out = format!("Model: {title}\n");
    out.push_str(&"=".repeat(rule_len));
    out.push('\n');
    out.push_str(&line(headers));
    out.push('\n');
    out.push_str(&"=".repeat(rule_len));
    out.push('\n');
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
        out.push('\n');
    }
    out.push_str(&"=".repeat(rule_len));
    out.push('\n');
    let total = trains + frozen;
    for (label, n) in [
        ("Total params", total),
        ("Trainable params", trains),
        ("Non-trainable params", frozen),
    ] {
        out.push_str(&format!("{label}: {} ({})\n", thousands(n), megabytes(n)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FreezeRule, HeadSpec, ModelConfig, Weights};
    use crate::model::freeze::trainable_mask;

    fn notebook(rule: FreezeRule) -> String {
        let model = ModelConfig {
            architecture: "vgg16".into(),
            channels: [64, 128, 256, 512, 512],
            weights: Weights::None,
            conv_init: crate::config::ConvInit::GlorotUniform,
            head: HeadSpec::default(),
        };
        let arch = Architecture::build(&model, 150, 150).unwrap();
        let mask = trainable_mask(&rule, &arch).unwrap();
        render("lecture / test", &arch, &mask)
    }

    /// Totals from Keras's `model.summary()` for the notebook's model
    /// (keras-notebook-semantics.md, section 3).
    #[test]
    fn totals_equal_keras_for_the_notebook_model() {
        let fe = notebook(FreezeRule::Freeze(vec!["block*".into()]));
        assert!(fe.contains("Total params: 16,812,353 (64.13 MB)\n"), "{fe}");
        assert!(
            fe.contains("Trainable params: 2,097,665 (8.00 MB)\n"),
            "{fe}"
        );
        assert!(
            fe.contains("Non-trainable params: 14,714,688 (56.13 MB)\n"),
            "{fe}"
        );
        let ft = notebook(FreezeRule::TrainableFrom("block5_conv1".into()));
        assert!(
            ft.contains("Trainable params: 9,177,089 (35.01 MB)\n"),
            "{ft}"
        );
        assert!(
            ft.contains("Non-trainable params: 7,635,264 (29.13 MB)\n"),
            "{ft}"
        );
    }

    #[test]
    fn rows_show_keras_shapes_counts_and_status() {
        let ft = notebook(FreezeRule::TrainableFrom("block5_conv1".into()));
        let row = |name: &str| {
            ft.lines()
                .find(|l| l.starts_with(&format!("{name} (")))
                .unwrap_or_else(|| panic!("no row {name} in\n{ft}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            row("block1_conv1"),
            "block1_conv1 (Conv2D) (None, 150, 150, 64) 1,792 frozen"
        );
        assert_eq!(
            row("block5_conv3"),
            "block5_conv3 (Conv2D) (None, 9, 9, 512) 2,359,808 trainable"
        );
        assert_eq!(
            row("block5_pool"),
            "block5_pool (MaxPooling2D) (None, 4, 4, 512) 0 -"
        );
        assert_eq!(row("flatten"), "flatten (Flatten) (None, 8192) 0 -");
        assert_eq!(
            row("dense"),
            "dense (Dense) (None, 256) 2,097,408 trainable"
        );
        assert_eq!(row("dense_1"), "dense_1 (Dense) (None, 1) 257 trainable");
    }
}
