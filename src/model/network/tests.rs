use super::*;
use crate::config::{HeadSpec, ModelConfig, Optimizer, Weights};
use crate::train::loss::bce_with_logits;
use crate::train::KerasOptimizer;

fn arch() -> Architecture {
    let model = ModelConfig {
        architecture: "vgg16".into(),
        channels: [4, 4, 8, 8, 8],
        weights: Weights::None,
        conv_init: crate::config::ConvInit::GlorotUniform,
        head: HeadSpec {
            units: vec![8],
            ..HeadSpec::default()
        },
    };
    Architecture::build(&model, 32, 32).unwrap()
}

fn trainable_from(arch: &Architecture, name: &str) -> Vec<bool> {
    let start = arch.layers.iter().position(|l| l.name == name).unwrap();
    (0..arch.layers.len()).map(|i| i >= start).collect()
}

fn batch(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = crate::base::rng::stream(99, "test-batch");
    let images = (0..n * 32 * 32 * 3)
        .map(|_| crate::base::rng::uniform_f32(&mut rng, 0.0, 1.0))
        .collect();
    let labels = (0..n).map(|i| (i % 2) as f32).collect();
    (images, labels)
}

#[test]
fn frozen_parameters_stay_bitwise_unchanged_and_trainable_ones_move() {
    let arch = arch();
    let mask = trainable_from(&arch, "block5_conv1");
    let net = Network::new(
        arch,
        ConvInit::GlorotUniform,
        mask,
        &LoadedWeights::default(),
        1,
        &Device::Cpu,
    )
    .unwrap();
    let before = net.named_parameters().unwrap();
    let vars = net.trainable_vars();
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.len(),
        2 * 5,
        "block5_conv1..3, dense, dense_1: weight and bias each"
    );
    assert!(names
        .iter()
        .all(|n| n.starts_with("block5_") || n.starts_with("dense")));
    let adam = Optimizer::Adam {
        learning_rate: 1e-2,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-7,
    };
    let mut opt = KerasOptimizer::new(adam, vars).unwrap();
    let (images, labels) = batch(4);
    let y = Tensor::from_slice(&labels, 4, &Device::Cpu).unwrap();
    for _ in 0..3 {
        let loss = bce_with_logits(&net.forward(&images, 4, Mode::Train).unwrap(), &y).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    let after = net.named_parameters().unwrap();
    for (name, t0) in &before {
        let a: Vec<f32> = t0.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = after[name].flatten_all().unwrap().to_vec1().unwrap();
        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
        let trains = name.starts_with("block5_conv") || name.starts_with("dense");
        // Biases start at zero and every trainable weight gets a gradient here, so all move.
        assert_eq!(
            !same, trains,
            "{name}: trainable = {trains}, but changed = {}",
            !same
        );
    }
}

#[test]
fn frozen_network_builds_no_autograd_graph() {
    let arch = arch();
    let n = arch.layers.len();
    let (images, _) = batch(2);
    let frozen = Network::new(
        arch.clone(),
        ConvInit::GlorotUniform,
        vec![false; n],
        &LoadedWeights::default(),
        0,
        &Device::Cpu,
    )
    .unwrap();
    assert!(!frozen.forward(&images, 2, Mode::Train).unwrap().track_op());
    let head_only = Network::new(
        arch.clone(),
        ConvInit::GlorotUniform,
        trainable_from(&arch, "dense"),
        &LoadedWeights::default(),
        0,
        &Device::Cpu,
    )
    .unwrap();
    assert!(head_only
        .forward(&images, 2, Mode::Train)
        .unwrap()
        .track_op());
    assert!(!head_only
        .forward(&images, 2, Mode::Eval)
        .unwrap()
        .track_op());
    assert_eq!(head_only.parameter_counts().0, 8 * 8 + 8 + 8 + 1);
}

/// The seam the feature cache relies on: the suffix run on prefix outputs computed one image
/// at a time gives bitwise the logits and gradients of the full network on the whole batch.
#[test]
fn suffix_on_prefix_outputs_equals_the_full_network_bitwise() {
    let arch = arch();
    for first in ["block5_conv1", "dense"] {
        let mask = trainable_from(&arch, first);
        let net = Network::new(
            arch.clone(),
            ConvInit::HeUniform,
            mask,
            &LoadedWeights::default(),
            4,
            &Device::Cpu,
        )
        .unwrap();
        let end = net.frozen_prefix_len();
        assert_eq!(arch.layers[end].name, first);
        let (images, labels) = batch(4);
        let per_image = 32 * 32 * 3;
        let features: Vec<f32> = images
            .chunks(per_image)
            .flat_map(|img| net.forward_prefix(img, 1, end).unwrap())
            .collect();
        assert_eq!(features.len(), 4 * net.prefix_output_len(end));
        let y = Tensor::from_slice(&labels, 4, &Device::Cpu).unwrap();
        let run = |logits: Tensor| {
            let loss = bce_with_logits(&logits, &y).unwrap();
            let grads = loss.backward().unwrap();
            let bits = |t: &Tensor| -> Vec<u32> {
                let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                v.iter().map(|x| x.to_bits()).collect()
            };
            let mut out = vec![bits(&logits)];
            for (_, var) in net.trainable_vars() {
                out.push(bits(grads.get(var.as_tensor()).unwrap()));
            }
            out
        };
        let full = run(net.forward(&images, 4, Mode::Train).unwrap());
        let cached = run(net.forward_from(end, &features, 4, Mode::Train).unwrap());
        assert_eq!(full, cached, "{first}");
    }
}

#[test]
fn initialisation_depends_on_seed_only() {
    let arch = arch();
    let n = arch.layers.len();
    let p = |seed| {
        Network::new(
            arch.clone(),
            ConvInit::HeUniform,
            vec![true; n],
            &LoadedWeights::default(),
            seed,
            &Device::Cpu,
        )
        .unwrap()
        .named_parameters()
        .unwrap()
    };
    let flat = |m: &BTreeMap<String, Tensor>, k: &str| -> Vec<f32> {
        m[k].flatten_all().unwrap().to_vec1().unwrap()
    };
    let (a, b, c) = (p(5), p(5), p(6));
    assert_eq!(
        flat(&a, "block3_conv2.weight"),
        flat(&b, "block3_conv2.weight")
    );
    assert_ne!(
        flat(&a, "block3_conv2.weight"),
        flat(&c, "block3_conv2.weight")
    );
    assert!(flat(&a, "dense.bias").iter().all(|&x| x == 0.0));
}
