//! `runner weights import`: a VGG16 conv base in any supported format, rewritten as safetensors
//! under the runner's names.

use std::path::Path;

use candle_core::Device;

use super::{file_sha256, parameter_shapes, read_any, select, WeightsError, WeightsFormat};
use crate::config::Weights;
use crate::model::arch::Architecture;

/// VGG16's conv base with the given channel widths (names and layer order do not depend on
/// them); the input size only matters for the head, which `import` leaves out.
fn vgg16_conv_base(channels: [usize; 5]) -> Architecture {
    let model = crate::config::ModelConfig {
        architecture: "vgg16".into(),
        channels,
        weights: Weights::None,
        conv_init: crate::config::ConvInit::default(),
        head: crate::config::HeadSpec::default(),
    };
    Architecture::build(&model, 224, 224).expect("224x224 VGG16 is a valid architecture")
}

/// What `import` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub format: WeightsFormat,
    /// Channel widths of the five blocks, read from the kernels.
    pub channels: [usize; 5],
    pub tensors: usize,
    pub sha256: String,
}

/// Convert the VGG16 conv base in `input` (any supported format) to a safetensors file with the
/// runner's names (`block1_conv1.weight` OIHW, ...), written atomically. Channel widths are taken
/// from the file, so reduced-width networks convert too; every conv-base tensor must be present
/// with consistent shapes. Head and classifier tensors are left out.
pub fn import(input: &Path, output: &Path) -> Result<Imported, WeightsError> {
    let device = Device::Cpu;
    let naming = vgg16_conv_base([64, 128, 256, 512, 512]);
    let (format, mut all) = read_any(input, &naming, &device)?;
    let mut channels = [0usize; 5];
    for (b, c) in channels.iter_mut().enumerate() {
        let name = format!("block{}_conv1.weight", b + 1);
        *c = match all.get(&name) {
            Some(t) => t.dims()[0],
            None => {
                return Err(WeightsError::Missing {
                    path: input.into(),
                    name,
                    available: all.keys().cloned().collect::<Vec<_>>().join(", "),
                })
            }
        };
    }
    let arch = vgg16_conv_base(channels);
    let conv_base: Vec<String> = parameter_shapes(&arch)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("block"))
        .collect();
    all.retain(|name, _| conv_base.contains(name));
    let tensors = select(input, all, &arch)?;
    let dir = output.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let io = |source| WeightsError::Io {
        path: output.into(),
        error: source,
    };
    let result = candle_core::safetensors::save(&tensors, &tmp)
        .map_err(|e| io(std::io::Error::other(e.to_string())))
        .and_then(|()| std::fs::rename(&tmp, output).map_err(io));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    Ok(Imported {
        format,
        channels,
        tensors: tensors.len(),
        sha256: file_sha256(output)?,
    })
}
