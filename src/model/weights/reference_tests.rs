//! Every weights format against a reference implementation: the fixture in tests/reference/
//! (`vgg_fixture.py`, Keras 3.15.1 / TensorFlow 2.21 and torch 2.15) holds the same random
//! reduced-width VGG16 conv base in each format, an image, and Keras's block5_pool output for it.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::*;
use crate::config::{ConvInit, HeadSpec, ModelConfig};
use crate::model::Network;

const CHANNELS: [usize; 5] = [2, 4, 4, 4, 8];
const H: usize = 64;
const W: usize = 80;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(name)
}

fn arch() -> Architecture {
    let model = ModelConfig {
        architecture: "vgg16".into(),
        channels: CHANNELS,
        weights: Weights::None,
        conv_init: ConvInit::GlorotUniform,
        head: HeadSpec::default(),
    };
    Architecture::build(&model, H, W).unwrap()
}

/// (image / 255 as NHWC f32, expected block5_pool output, flattened).
fn io() -> (Vec<f32>, Vec<f32>) {
    let io = candle_core::safetensors::load(fixture("vgg_io.safetensors"), &Device::Cpu).unwrap();
    let image: Vec<u8> = io["image"].flatten_all().unwrap().to_vec1().unwrap();
    let image = image.iter().map(|&p| p as f32 / 255.0).collect();
    assert_eq!(io["expected"].dims(), [1, 2, 2, 8]);
    let expected = io["expected"].flatten_all().unwrap().to_vec1().unwrap();
    (image, expected)
}

fn conv_base_output(loaded: &LoadedWeights) -> Vec<f32> {
    let arch = arch();
    let frozen = vec![false; arch.layers.len()];
    let net = Network::new(
        arch,
        ConvInit::GlorotUniform,
        frozen,
        loaded,
        0,
        &Device::Cpu,
    )
    .unwrap();
    let (image, _) = io();
    let out = net.conv_base_output(&image, 1).unwrap();
    assert_eq!(out.dims(), [1, 2, 2, 8]);
    out.flatten_all().unwrap().to_vec1().unwrap()
}

/// Within 1e-4 relative to each value, with a floor of 1e-4 of the largest value so that
/// near-zero outputs are not held to an impossible standard.
fn assert_close(actual: &[f32], expected: &[f32], what: &str) {
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let tol = 1e-4 * e.abs().max(scale);
        assert!(
            (a - e).abs() <= tol,
            "{what}: output[{i}] = {a}, Keras gives {e}"
        );
    }
}

const FORMATS: [(&str, WeightsFormat); 5] = [
    ("vgg_keras_notop.h5", WeightsFormat::KerasH5),
    ("vgg_keras3.h5", WeightsFormat::KerasH5),
    ("vgg_torchvision.pth", WeightsFormat::TorchZip),
    ("vgg_torchvision_legacy.pth", WeightsFormat::TorchLegacy),
    ("vgg_timm.safetensors", WeightsFormat::Safetensors),
];

#[test]
fn every_format_gives_keras_conv_base_output() {
    let (_, expected) = io();
    // The fixture is a real test only if the output is not dead.
    assert!(expected.iter().filter(|v| **v != 0.0).count() > expected.len() / 2);
    for (file, format) in FORMATS {
        let path = fixture(file);
        let weights = Weights::File {
            path: path.clone(),
            sha256: None,
        };
        let loaded = load(&weights, &arch(), &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.format, Some(format), "{file}");
        assert_eq!(loaded.sha256, Some(file_sha256(&path).unwrap()));
        // The conv base only: classifier / timm head tensors are not taken.
        assert_eq!(loaded.tensors.len(), 26, "{file}");
        assert_close(&conv_base_output(&loaded), &expected, file);
    }
}

#[test]
fn imported_files_and_runner_checkpoints_give_the_same_output() {
    let (_, expected) = io();
    let dir = tempfile::tempdir().unwrap();
    for (file, _) in FORMATS {
        let out = dir.path().join(format!("{file}.safetensors"));
        let imported = import(&fixture(file), &out).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(imported.channels, CHANNELS, "{file}");
        assert_eq!(imported.tensors, 26);
        let loaded = load(
            &Weights::File {
                path: out.clone(),
                sha256: Some(imported.sha256.clone()),
            },
            &arch(),
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(loaded.format, Some(WeightsFormat::Safetensors));
        assert_close(&conv_base_output(&loaded), &expected, file);
    }

    // A network's own checkpoint (Network::save_safetensors) loads back bit for bit, head included.
    let keras = load(
        &Weights::File {
            path: fixture("vgg_keras3.h5"),
            sha256: None,
        },
        &arch(),
        &Device::Cpu,
    )
    .unwrap();
    let arch = arch();
    let n = arch.layers.len();
    let net = Network::new(
        arch.clone(),
        ConvInit::GlorotUniform,
        vec![true; n],
        &keras,
        7,
        &Device::Cpu,
    )
    .unwrap();
    let checkpoint = dir.path().join("checkpoint.safetensors");
    net.save_safetensors(&checkpoint).unwrap();
    let back = load(
        &Weights::File {
            path: checkpoint,
            sha256: None,
        },
        &arch,
        &Device::Cpu,
    )
    .unwrap();
    let before = net.named_parameters().unwrap();
    assert_eq!(back.tensors.len(), before.len(), "head included");
    for (name, t) in &before {
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = back.tensors[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{name}");
    }
    assert_close(&conv_base_output(&back), &expected, "checkpoint");
}

/// The Keras files store HWIO kernels: a loader that forgot the transpose would still produce
/// numbers, so check one kernel element against the torchvision file (OIHW on disk).
#[test]
fn keras_kernels_are_transposed_to_oihw() {
    let get = |file: &str| -> Tensor {
        let (_, all) = read_any(&fixture(file), &arch(), &Device::Cpu).unwrap();
        all["block2_conv1.weight"].clone()
    };
    let keras = get("vgg_keras_notop.h5");
    let torch = get("vgg_torchvision.pth");
    assert_eq!(keras.dims(), [4, 2, 3, 3]);
    let k: Vec<f32> = keras.flatten_all().unwrap().to_vec1().unwrap();
    let t: Vec<f32> = torch.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(k, t);
    let distinct: std::collections::BTreeSet<u32> = k.iter().map(|v| v.to_bits()).collect();
    assert_eq!(
        distinct.len(),
        k.len(),
        "random weights: every element differs"
    );
}
