//! Keras HDF5 weight files, as `model.save_weights("x.h5")` / `legacy_h5_format` write them and
//! as `keras.applications.VGG16(weights="imagenet")` downloads them.
//!
//! Layout (keras/src/legacy/saving/legacy_h5_format.py): the root (or, in a whole-model file,
//! the `model_weights` group) has a `layer_names` attribute; each layer's group has a
//! `weight_names` attribute listing its datasets, relative to the group. Dataset names differ
//! between Keras versions (`block1_conv1_W_1:0` in the ImageNet file, `block1_conv1/kernel` from
//! Keras 3), so they are read from `weight_names`, never assumed. Kernels are HWIO (conv) and
//! (in, out) (dense); they are transposed to OIHW and (out, in).
//!
//! Read with `hdf5-reader`, a pure-Rust decoder: no HDF5 C library at build or run time.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use hdf5_reader::Hdf5File;

use super::{WeightsError, WeightsFormat};

pub fn read(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let err = |e: &dyn std::fmt::Display| WeightsError::format(path, WeightsFormat::KerasH5, e);
    let file = Hdf5File::open(path).map_err(|e| err(&e))?;
    let root = file.root_group().map_err(|e| err(&e))?;
    // A whole-model file keeps the weights in `model_weights`; a weights file at the root.
    let (prefix, layer_names) = match root.attribute("layer_names") {
        Ok(attr) => ("", attr.read_strings().map_err(|e| err(&e))?),
        Err(_) => {
            let group = file
                .group("model_weights")
                .map_err(|_| err(&"no \"layer_names\" attribute at the root or in \"model_weights\": not a Keras weights file"))?;
            let attr = group
                .attribute("layer_names")
                .map_err(|e| err(&format!("model_weights: {e}")))?;
            ("model_weights/", attr.read_strings().map_err(|e| err(&e))?)
        }
    };
    let mut out = BTreeMap::new();
    for layer in &layer_names {
        let group_path = format!("{prefix}{layer}");
        let group = file
            .group(&group_path)
            .map_err(|e| err(&format!("layer \"{layer}\" is listed in layer_names: {e}")))?;
        let weight_names = match group.attribute("weight_names") {
            // Keras writes `np.asarray([])` for a layer without weights: an empty float array.
            Ok(attr) if attr.num_elements().unwrap_or(0) == 0 => continue,
            Ok(attr) => attr
                .read_strings()
                .map_err(|e| err(&format!("{group_path}: weight_names: {e}")))?,
            Err(_) => continue,
        };
        for weight in &weight_names {
            let dataset_path = format!("{group_path}/{weight}");
            let ds = file
                .dataset(&dataset_path)
                .map_err(|e| err(&format!("{dataset_path} (listed in weight_names): {e}")))?;
            let shape: Vec<usize> = ds.shape().iter().map(|&d| d as usize).collect();
            let mut values = vec![0f32; shape.iter().product()];
            ds.read_into(&mut values)
                .map_err(|e| err(&format!("{dataset_path}: {e}")))?;
            let t = Tensor::from_vec(values, shape.as_slice(), device).map_err(|e| err(&e))?;
            let (suffix, t) = match shape.len() {
                // HWIO -> OIHW: keras-notebook-semantics.md 8.3, torch = keras.permute(3, 2, 0, 1).
                4 => ("weight", t.permute((3, 2, 0, 1))),
                2 => ("weight", t.t()),
                1 => ("bias", Ok(t)),
                _ => {
                    return Err(err(&format!(
                        "{dataset_path}: unexpected shape {shape:?} (expected a kernel or a bias)"
                    )))
                }
            };
            let t = t.and_then(|t| t.contiguous()).map_err(|e| err(&e))?;
            let name = format!("{layer}.{suffix}");
            if out.insert(name.clone(), t).is_some() {
                return Err(err(&format!(
                    "layer \"{layer}\" has more than one {suffix} in weight_names {weight_names:?}"
                )));
            }
        }
    }
    Ok(out)
}
