use std::collections::BTreeSet;
use std::path::PathBuf;

use candle_core::{Device, Tensor};

use super::*;
use crate::config::{ConvInit, FreezeRule, Optimizer};
use crate::model::Mode;
use crate::store::record::WeightsRecord;
use crate::train::loss::bce_with_logits;
use crate::train::KerasOptimizer;

/// A cell as a sweep leaves it, and what the code before trained-only files would have saved.
struct Cell {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    base: PathBuf,
    record: RunRecord,
    network: Network,
    /// `network.save_safetensors`: the whole model, as cells used to store it.
    whole: PathBuf,
}

fn batch() -> (Vec<f32>, Tensor) {
    let mut rng = crate::base::rng::stream(5, "export-test-batch");
    let images = (0..4 * 32 * 32 * 3)
        .map(|_| crate::base::rng::uniform_f32(&mut rng, 0.0, 1.0))
        .collect();
    let labels = Tensor::new(&[0f32, 1., 1., 0.], &Device::Cpu).unwrap();
    (images, labels)
}

/// A narrow VGG built from a conv-base weights file, layers from `first_trainable` on trained
/// for three Adam steps, its trained parameters saved in `dir` like a finished cell's.
fn trained_cell(first_trainable: &str) -> Cell {
    let tmp = tempfile::tempdir().unwrap();
    let cpu = Device::Cpu;
    let mut record = RunRecord::test_record();
    record.seed = 7;
    record.config.model.channels = [2, 4, 4, 4, 8];
    record.config.model.head.units = vec![6];
    let arch = crate::plan::architecture(&record.config).unwrap();
    let n = arch.layers.len();
    let donor = Network::new(
        arch.clone(),
        ConvInit::HeUniform,
        vec![true; n],
        &LoadedWeights::default(),
        99,
        &cpu,
    )
    .unwrap();
    let base = tmp.path().join("base.safetensors");
    donor.save_conv_base(&base).unwrap();
    record.config.model.weights = Weights::File {
        path: base.clone(),
        sha256: None,
    };
    record.config.training.freeze = FreezeRule::TrainableFrom(first_trainable.into());
    let loaded = weights::load(&record.config.model.weights, &arch, &cpu).unwrap();
    record.weights = WeightsRecord {
        source: Some(base.clone()),
        sha256: loaded.sha256.clone(),
        format: None,
        verified: None,
    };
    let mask = freeze::trainable_mask(&record.config.training.freeze, &arch).unwrap();
    let network = Network::new(
        arch,
        record.config.model.conv_init,
        mask,
        &loaded,
        record.seed,
        &cpu,
    )
    .unwrap();
    record.frozen_sha256 = Some(trained::frozen_hash(&network).unwrap());
    let adam = Optimizer::Adam {
        learning_rate: 1e-2,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-7,
    };
    let mut opt = KerasOptimizer::new(adam, network.trainable_vars()).unwrap();
    let (images, labels) = batch();
    for _ in 0..3 {
        let logits = network.forward(&images, 4, Mode::Train).unwrap();
        let loss = bce_with_logits(&logits, &labels).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    let dir = tmp.path().join("cell");
    std::fs::create_dir(&dir).unwrap();
    trained::save(&network, &dir.join(TRAINED_FILE)).unwrap();
    let whole = tmp.path().join("whole.safetensors");
    network.save_safetensors(&whole).unwrap();
    Cell {
        _tmp: tmp,
        dir,
        base,
        record,
        network,
        whole,
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v.iter().map(|x| x.to_bits()).collect()
}

fn names(path: &Path) -> BTreeSet<String> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_keys()
        .collect()
}

#[test]
fn a_feature_extraction_cell_stores_its_head_and_no_frozen_tensor() {
    let cell = trained_cell("dense");
    let stored = names(&cell.dir.join(TRAINED_FILE));
    let head: BTreeSet<String> = [
        "dense.weight",
        "dense.bias",
        "dense_1.weight",
        "dense_1.bias",
    ]
    .map(String::from)
    .into();
    assert_eq!(stored, head);
    assert_eq!(
        names(&cell.whole).len(),
        2 * 15,
        "13 convolutions and 2 dense layers"
    );
}

/// The exported file is byte for byte the whole model the cell would have saved before, and a
/// network loaded from it gives bitwise the cell's own logits.
#[test]
fn the_exported_model_is_the_whole_trained_model_bitwise() {
    for first in ["dense", "block5_conv1"] {
        let cell = trained_cell(first);
        let out = cell.dir.join("exported.safetensors");
        let exported = export(&cell.dir, &cell.record, false, None, &out).unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&cell.whole).unwrap(),
            "{first}: the exported file differs from the whole model"
        );
        let (trainable, frozen) = cell.network.parameter_counts();
        assert_eq!((exported.trained, exported.frozen), (trainable, frozen));

        let arch = cell.network.architecture().clone();
        let n = arch.layers.len();
        let file = Weights::File {
            path: out,
            sha256: None,
        };
        let loaded = weights::load(&file, &arch, &Device::Cpu).unwrap();
        // A different seed: every parameter must come from the file.
        let reloaded = Network::new(
            arch,
            ConvInit::GlorotUniform,
            vec![false; n],
            &loaded,
            12345,
            &Device::Cpu,
        )
        .unwrap();
        let (images, _) = batch();
        let own = cell.network.forward(&images, 4, Mode::Eval).unwrap();
        let again = reloaded.forward(&images, 4, Mode::Eval).unwrap();
        assert_eq!(bits(&own), bits(&again), "{first}: logits differ");
    }
}

#[test]
fn export_refuses_a_missing_or_changed_base_naming_the_file() {
    let cell = trained_cell("dense");
    let out = cell.dir.join("exported.safetensors");
    let moved = cell.base.with_file_name("moved.safetensors");
    std::fs::rename(&cell.base, &moved).unwrap();
    let err = export(&cell.dir, &cell.record, false, None, &out)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{}: the frozen base of {} is missing (a weights file with SHA-256 {})",
            cell.base.display(),
            cell.dir.display(),
            cell.record.weights.sha256.as_deref().unwrap()
        )) && err.ends_with("pass --base FILE with a copy"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written");
    // The same file elsewhere, named by --base, is accepted.
    export(&cell.dir, &cell.record, false, Some(&moved), &out).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&cell.whole).unwrap()
    );

    // Another file under the recorded name is refused.
    let arch = cell.network.architecture().clone();
    let n = arch.layers.len();
    let other = Network::new(
        arch,
        ConvInit::HeUniform,
        vec![true; n],
        &LoadedWeights::default(),
        100,
        &Device::Cpu,
    )
    .unwrap();
    other.save_conv_base(&cell.base).unwrap();
    let changed = weights::file_sha256(&cell.base).unwrap();
    std::fs::remove_file(&out).unwrap();
    let err = export(&cell.dir, &cell.record, false, None, &out)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}: SHA-256 is {changed}, but {} was trained from a base with SHA-256 {}: the file \
             changed since; pass --base FILE with the original",
            cell.base.display(),
            cell.dir.display(),
            cell.record.weights.sha256.as_deref().unwrap()
        )
    );
    assert!(!out.exists(), "nothing is written");
}

/// The rebuilt frozen layers are checked, not only the base file: a seeded base has no file.
#[test]
fn export_refuses_frozen_layers_that_rebuild_differently() {
    let cell = trained_cell("block5_conv1");
    let mut record = cell.record.clone();
    record.frozen_sha256 = Some("0".repeat(64));
    let err = rebuild(&cell.dir, &record, false, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("the frozen layers rebuilt from") && err.contains("differ from those"),
        "{err}"
    );
}

#[test]
fn trained_files_load_only_into_a_network_that_trains_the_same_layers() {
    let head_only = trained_cell("dense");
    let fine_tuning = trained_cell("block5_conv1");
    let file = fine_tuning.dir.join(TRAINED_FILE);
    let err = trained::load_into(&file, &head_only.network)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{}: tensor \"block5_conv1.bias\" is not a trainable parameter of this network",
            file.display()
        )),
        "{err}"
    );
    let err = trained::load_into(&head_only.dir.join(TRAINED_FILE), &fine_tuning.network)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tensor \"block5_conv1.weight\" is missing"),
        "{err}"
    );
}

/// A trained-parameter file given as the weights of an experiment says how to get the model.
#[test]
fn a_trained_file_as_weights_says_to_export_the_model() {
    let cell = trained_cell("dense");
    let arch = cell.network.architecture().clone();
    let path = cell.dir.join(TRAINED_FILE);
    let file = Weights::File {
        path: path.clone(),
        sha256: None,
    };
    let err = weights::load(&file, &arch, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}: a cell's trained layers only, without the frozen ones (\"block1_conv1.weight\" \
             is not there); `runner export-model <the cell's directory> -o model.safetensors` \
             writes the complete model, which can serve as weights",
            path.display()
        )
    );
}

#[test]
fn cells_that_predate_trained_files_are_named_as_complete_already() {
    let cell = trained_cell("dense");
    std::fs::remove_file(cell.dir.join(TRAINED_FILE)).unwrap();
    std::fs::copy(&cell.whole, cell.dir.join("model.safetensors")).unwrap();
    let err = rebuild(&cell.dir, &cell.record, false, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.ends_with("its model.safetensors is the complete model already"),
        "{err}"
    );
}
