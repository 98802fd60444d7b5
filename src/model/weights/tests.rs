use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::*;
use crate::config::{ConvInit, HeadSpec, ModelConfig};

fn arch(channels: [usize; 5]) -> Architecture {
    let model = ModelConfig {
        architecture: "vgg16".into(),
        channels,
        weights: Weights::None,
        conv_init: ConvInit::GlorotUniform,
        head: HeadSpec {
            units: vec![3],
            ..HeadSpec::default()
        },
    };
    Architecture::build(&model, 32, 32).unwrap()
}

const SMALL: [usize; 5] = [1, 1, 1, 1, 1];

/// A safetensors file holding `tensors` (name -> shape, filled with 0.5).
fn write_safetensors(dir: &Path, name: &str, tensors: &[(&str, Vec<usize>)]) -> PathBuf {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, s)| {
            let t = (Tensor::ones(s.as_slice(), DType::F32, &Device::Cpu).unwrap() * 0.5).unwrap();
            (n.to_string(), t)
        })
        .collect();
    let path = dir.join(name);
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

fn refs(v: &[(String, Vec<usize>)]) -> Vec<(&str, Vec<usize>)> {
    v.iter().map(|(n, s)| (n.as_str(), s.clone())).collect()
}

fn small_conv_base() -> Vec<(String, Vec<usize>)> {
    parameter_shapes(&arch(SMALL))
        .into_iter()
        .filter(|(n, _)| n.starts_with("block"))
        .collect()
}

fn file(path: &Path) -> Weights {
    Weights::File {
        path: path.into(),
        sha256: None,
    }
}

/// keras-notebook-semantics.md 8.1: torchvision's `features` indices of VGG16's convolutions.
#[test]
fn torchvision_indices_match_the_published_table() {
    let a = arch([64, 128, 256, 512, 512]);
    let got: Vec<(usize, &str)> = torchvision_feature_indices(&a);
    let expected = [
        (0, "block1_conv1"),
        (2, "block1_conv2"),
        (5, "block2_conv1"),
        (7, "block2_conv2"),
        (10, "block3_conv1"),
        (12, "block3_conv2"),
        (14, "block3_conv3"),
        (17, "block4_conv1"),
        (19, "block4_conv2"),
        (21, "block4_conv3"),
        (24, "block5_conv1"),
        (26, "block5_conv2"),
        (28, "block5_conv3"),
    ];
    assert_eq!(got, expected);
}

#[test]
fn torchvision_and_timm_names_become_keras_names_and_heads_are_dropped() {
    let t = || Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
    let raw: BTreeMap<String, Tensor> = [
        "features.0.weight",
        "module.features.28.bias",
        "features.4.weight", // a pooling index: nothing there
        "features.99.weight",
        "classifier.0.weight",
        "pre_logits.fc1.weight",
        "head.fc.bias",
        "dense.bias",
        "block3_conv2.weight",
        "block3_conv2.kernel",
    ]
    .into_iter()
    .map(|n| (n.to_string(), t()))
    .collect();
    let names: Vec<String> = to_runner_names(raw, &arch(SMALL)).into_keys().collect();
    assert_eq!(
        names,
        [
            "block1_conv1.weight",
            "block3_conv2.weight",
            "block5_conv3.bias",
            "dense.bias"
        ]
    );
}

#[test]
fn formats_are_told_apart_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], Result<WeightsFormat, String>); 5] = [
        (
            "a.bin",
            b"\x89HDF\r\n\x1a\n\0\0\0\0",
            Ok(WeightsFormat::KerasH5),
        ),
        ("b.bin", b"PK\x03\x04rest", Ok(WeightsFormat::TorchZip)),
        (
            "c.bin",
            b"\x80\x02\x8a\x0al\xfc\x9cF",
            Ok(WeightsFormat::TorchLegacy),
        ),
        (
            "d.h5",
            b"\x10\0\0\0\0\0\0\0{\"a\":1}",
            Ok(WeightsFormat::Safetensors),
        ),
        (
            "e.pth",
            b"hello",
            Err(
                "e.pth: unknown weights format (first bytes 68656c6c6f); supported: safetensors, \
                 Keras HDF5 (.h5), PyTorch (.pth, zip or legacy)"
                    .into(),
            ),
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let got = WeightsFormat::detect(&path).map_err(|e| {
            e.to_string()
                .replace(&format!("{}/", dir.path().display()), "")
        });
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let a = arch(SMALL);
    let mut shapes = small_conv_base();
    let owned: Vec<(String, Vec<usize>)> = shapes.clone();
    // Complete: loads, the head is left to initialisation.
    let ok = write_safetensors(dir.path(), "ok.safetensors", &refs(&owned));
    let loaded = load(&file(&ok), &a, &Device::Cpu).unwrap();
    assert_eq!(loaded.tensors.len(), 26);
    assert_eq!(loaded.verified, None);

    shapes.retain(|(n, _)| n != "block4_conv2.bias");
    let missing = write_safetensors(dir.path(), "missing.safetensors", &refs(&shapes));
    let err = load(&file(&missing), &a, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{}: tensor \"block4_conv2.bias\" is missing (the file has: block1_conv1.bias, ",
            missing.display()
        )),
        "{err}"
    );

    let mut wrong = owned.clone();
    wrong[0].1 = vec![1, 3, 5, 5];
    let wrong = write_safetensors(dir.path(), "wrong.safetensors", &refs(&wrong));
    let err = load(&file(&wrong), &a, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}: tensor \"block1_conv1.weight\" has shape [1, 3, 5, 5], the model needs [1, 3, 3, 3]",
            wrong.display()
        )
    );

    // A head of the wrong size (another input size) is an error too, not silently dropped.
    let mut head = owned.clone();
    head.push(("dense.weight".into(), vec![3, 99]));
    let head = write_safetensors(dir.path(), "head.safetensors", &refs(&head));
    let err = load(&file(&head), &a, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tensor \"dense.weight\" has shape [3, 99], the model needs [3, 1]"),
        "{err}"
    );

    let none = write_safetensors(dir.path(), "none.safetensors", &[("x", vec![1])]);
    let err = load(&file(&none), &a, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("(the file has: no tensor with a VGG16 layer name)"),
        "{err}"
    );
}

#[test]
fn a_file_with_the_wrong_sha256_is_refused_and_the_right_one_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = small_conv_base();
    let path = write_safetensors(dir.path(), "w.safetensors", &refs(&shapes));
    let actual = file_sha256(&path).unwrap();
    let wrong = Weights::File {
        path: path.clone(),
        sha256: Some("0".repeat(64)),
    };
    let err = load(&wrong, &arch(SMALL), &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, WeightsError::HashMismatch { actual: a, .. } if *a == actual),
        "{err}"
    );
    let right = Weights::File {
        path,
        sha256: Some(actual.clone()),
    };
    let loaded = load(&right, &arch(SMALL), &Device::Cpu).unwrap();
    assert_eq!(loaded.sha256.as_deref(), Some(actual.as_str()));
    assert_eq!(loaded.verified, Some(format!("sha256:{actual}")));
}

#[test]
fn damaged_files_are_format_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "bad.h5",
            b"\x89HDF\r\n\x1a\n\0\0\0\0\0\0\0\0",
            "not a Keras HDF5 file the runner can read: ",
        ),
        (
            "bad.pth",
            b"PK\x03\x04\0\0",
            "not a PyTorch (zip) file the runner can read: ",
        ),
        (
            "bad-legacy.pth",
            b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9",
            "not a PyTorch (legacy) file the runner can read: ",
        ),
    ];
    for (name, bytes, message) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = load(&file(&path), &arch(SMALL), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("{}: {message}", path.display())),
            "{name}: {err}"
        );
    }
}

#[test]
fn md5_and_sha256_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abc");
    std::fs::write(&path, b"abc").unwrap();
    // RFC 1321 and FIPS 180-2 test vectors for "abc".
    assert_eq!(
        hash_file(&path).unwrap(),
        FileHashes {
            md5: "900150983cd24fb0d6963f7d28e17f72".into(),
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
        }
    );
}
