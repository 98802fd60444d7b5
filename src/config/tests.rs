//! Experiment files end to end: exact messages for bad files, variant merging, and the shipped
//! experiment files (the lecture file must be the notebook; the reference must state the defaults).

use std::path::{Path, PathBuf};

use super::spec::OptimizerSpec;
use super::*;
use crate::model::arch::Architecture;
use crate::model::freeze::trainable_mask;
use crate::plan::{load, parse};

const FILE: &str = "experiments/test.toml";

/// Every layer of VGG16 with the default head, as error messages list them.
const LAYERS: &str = "block1_conv1, block1_conv2, block1_pool, block2_conv1, block2_conv2, \
    block2_pool, block3_conv1, block3_conv2, block3_conv3, block3_pool, block4_conv1, \
    block4_conv2, block4_conv3, block4_pool, block5_conv1, block5_conv2, block5_conv3, \
    block5_pool, flatten, dense, dense_1";

fn parse_ok(text: &str) -> Experiment {
    parse(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}\n--- in ---\n{text}"))
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("experiments")
        .join(format!("{name}.toml"))
}

/// A snippet and the exact error it must produce.
#[test]
fn bad_files_get_exact_messages() {
    let syn = "[dataset.synthetic]\n";
    let two_variants =
        "[dataset.synthetic]\n[[variants]]\nname = \"a\"\n[[variants]]\nname = \"b\"\n";
    let cases: Vec<(String, String)> = vec![
        // TOML syntax
        (
            "seeds = [0,\n[dataset]".into(),
            "experiments/test.toml:2: TOML syntax, column 10: unclosed array, expected `]`".into(),
        ),
        (
            "[dataset]\nbatch_size = 32\nbatch_size = 3".into(),
            "experiments/test.toml:3: TOML syntax, column 1: duplicate key \"batch_size\"".into(),
        ),
        // Unknown keys: top level, in a section, in a nested table, in a variant
        (
            format!("lerning_rate = 1\n{syn}"),
            "experiments/test.toml:1: lerning_rate: unknown key \"lerning_rate\" (expected one \
             of: name, description, seeds, device, dataset, model, training, variants, pretrain, slurm, mlflow, evaluation)"
                .into(),
        ),
        (
            format!("{syn}[training]\nepochs = 3\nlerning_rate = 0.1"),
            "experiments/test.toml:4: training.lerning_rate: unknown key \"lerning_rate\" \
             (expected one of: epochs, optimizer, learning_rate, trainable_from, freeze, train)"
                .into(),
        ),
        (
            "[dataset.synthetic]\nsize = 64\nsied = 1".into(),
            "experiments/test.toml:3: dataset.synthetic.sied: unknown key \"sied\" (expected one \
             of: seed, train_per_class, validation_per_class, size, task)"
                .into(),
        ),
        (
            format!("{two_variants}training.lerning_rate = 0.1"),
            "experiments/test.toml:6: variants[1].training.lerning_rate: unknown key \
             \"lerning_rate\" (expected one of: epochs, optimizer, learning_rate, \
             trainable_from, freeze, train)"
                .into(),
        ),
        (
            format!("{syn}[[variants]]\nname = \"a\"\noptimizer = \"adam\""),
            "experiments/test.toml:4: variants[0].optimizer: unknown key \"optimizer\" (expected \
             one of: name, description, dataset, model, training)"
                .into(),
        ),
        // Wrong types and values
        (
            format!("[dataset]\nbatch_size = \"32\"\n{syn}"),
            "experiments/test.toml:2: dataset.batch_size: expected a non-negative integer, found \
             a string \"32\""
                .into(),
        ),
        (
            format!("device = \"gpu\"\n{syn}"),
            "experiments/test.toml:1: device: unknown device \"gpu\": expected \"cpu\", \
             \"cuda\", \"cuda:N\" or \"auto\""
                .into(),
        ),
        (
            format!("seeds = [1, -1]\n{syn}"),
            "experiments/test.toml:1: seeds[1]: expected a non-negative integer, found an \
             integer -1"
                .into(),
        ),
        (
            format!("[dataset]\nimage_size = [150, 150, 3]\n{syn}"),
            "experiments/test.toml:2: dataset.image_size: expected an array of 2 elements, found \
             an array of 3 elements"
                .into(),
        ),
        (
            format!("[dataset]\npreprocessing = \"rescal\"\n{syn}"),
            "experiments/test.toml:2: dataset.preprocessing: unknown value \"rescal\" (expected \
             one of: \"rescale\", \"caffe\", \"torch\")"
                .into(),
        ),
        (
            format!("[dataset]\nshuffle = true\n{syn}"),
            "experiments/test.toml:2: dataset.shuffle: expected one of \"keras\", \"full\", \
             \"none\", found a boolean true"
                .into(),
        ),
        (
            "[dataset]\ntrain_dir = 1979-05-27\nvalidation_dir = \"v\"".into(),
            "experiments/test.toml:2: dataset.train_dir: expected a string, found a date-time \
             1979-05-27"
                .into(),
        ),
        (
            format!("{two_variants}training = 5"),
            "experiments/test.toml:6: variants[1].training: expected a table, found an integer 5"
                .into(),
        ),
        // Optimizer forms
        (
            format!("{syn}[training]\noptimizer = \"sgd\""),
            "experiments/test.toml:3: training.optimizer: expected \"adam\", \"rmsprop\", or a \
             table such as { name = \"rmsprop\", rho = 0.9 }, found a string \"sgd\""
                .into(),
        ),
        (
            format!("{syn}[training]\noptimizer = 3"),
            "experiments/test.toml:3: training.optimizer: expected \"adam\", \"rmsprop\", or a \
             table such as { name = \"rmsprop\", rho = 0.9 }, found an integer 3"
                .into(),
        ),
        (
            format!("{syn}[training]\noptimizer = {{ name = \"adam\", rho = 0.9 }}"),
            "experiments/test.toml:3: training.optimizer.rho: unknown key \"rho\" (expected one \
             of: name, beta_1, beta_2, epsilon)"
                .into(),
        ),
        (
            format!("{syn}[training.optimizer]\nrho = 0.9"),
            "experiments/test.toml:2: training.optimizer: missing key \"name\"".into(),
        ),
        (
            format!("{syn}[training.optimizer]\nname = \"rmsprop\"\nrho = \"high\""),
            "experiments/test.toml:4: training.optimizer.rho: expected a number, found a string \
             \"high\""
                .into(),
        ),
        (
            format!("{syn}[training.optimizer]\nname = \"rmsprop\"\nrho = 1.0"),
            "experiments/test.toml:4: training.optimizer.rho: must be at least 0 and below 1, \
             found 1.0"
                .into(),
        ),
        (
            format!("{syn}[training.optimizer]\nname = \"adam\"\nepsilon = 0"),
            "experiments/test.toml:4: training.optimizer.epsilon: must be a finite number above \
             0, found 0.0"
                .into(),
        ),
        (
            format!("{syn}[training]\nlearning_rate = -1e-3"),
            "experiments/test.toml:3: training.learning_rate: must be a finite number above 0, \
             found -0.001"
                .into(),
        ),
        // Weights forms
        (
            format!("{syn}[model]\nweights = \"imagenet\""),
            "experiments/test.toml:3: model.weights: expected \"none\", \
             \"keras:vgg16-imagenet\", \"torchvision:vgg16-imagenet\", a table such as \
             { file = \"weights/vgg16.safetensors\", sha256 = \"...\" }, or { stage = \
             \"pretrain\" }, found a string \"imagenet\""
                .into(),
        ),
        (
            format!("{syn}[model]\nweights = {{ file = \"w.safetensors\", md5 = \"0\" }}"),
            "experiments/test.toml:3: model.weights.md5: unknown key \"md5\" (expected one of: \
             file, sha256, stage)"
                .into(),
        ),
        (
            format!("{syn}[model.weights]\nfile = \"w.safetensors\"\nsha256 = \"397923af\""),
            "experiments/test.toml:4: model.weights.sha256: expected 64 hexadecimal digits (the \
             file's SHA-256), found \"397923af\""
                .into(),
        ),
        (
            format!("{syn}[model]\nchannels = [16, 32, 64, 64, 64]\nweights = \"keras:vgg16-imagenet\""),
            "experiments/test.toml:3: model.channels: pretrained weights \
             \"keras:vgg16-imagenet\" need VGG16's channels [64, 128, 256, 512, 512], found [16, \
             32, 64, 64, 64]; remove channels or set weights = \"none\""
                .into(),
        ),
        // Augmentation steps and factors
        (
            format!("[dataset]\naugmentation = [{{ type = \"rotation\", factor = \"10%\" }}]\n{syn}"),
            "experiments/test.toml:2: dataset.augmentation[0].factor: expected a number such as \
             0.1 (meaning the range [-0.1, 0.1]) or a range [lower, upper], found a string \"10%\""
                .into(),
        ),
        (
            format!(
                "[dataset]\naugmentation = [\n  {{ type = \"flip\" }},\n  \
                 {{ type = \"zoom\", height_factor = [0.1, 0.2, 0.3] }},\n]\n{syn}"
            ),
            "experiments/test.toml:4: dataset.augmentation[1].height_factor: expected a number \
             such as 0.1 (meaning the range [-0.1, 0.1]) or a range [lower, upper], found an \
             array of 3 elements"
                .into(),
        ),
        (
            format!("[dataset]\naugmentation = [{{ type = \"zoom\", height_factor = [0.2, -0.2] }}]\n{syn}"),
            "experiments/test.toml:2: dataset.augmentation[0].height_factor: the range [0.2, \
             -0.2] has its lower bound above its upper bound"
                .into(),
        ),
        (
            format!("[dataset]\naugmentation = [{{ type = \"flip\", factor = 0.1 }}]\n{syn}"),
            "experiments/test.toml:2: dataset.augmentation[0].factor: unknown key \"factor\" \
             (expected one of: type, mode)"
                .into(),
        ),
        (
            format!("[dataset]\naugmentation = [{{ type = \"rotation\" }}]\n{syn}"),
            "experiments/test.toml:2: dataset.augmentation[0]: missing key \"factor\"".into(),
        ),
        (
            format!("[dataset]\naugmentation = [\"flip\"]\n{syn}"),
            "experiments/test.toml:2: dataset.augmentation[0]: expected a table such as { type = \
             \"rotation\", factor = 0.1 }, found a string \"flip\""
                .into(),
        ),
        // Freeze rules, checked against the real layer names
        (
            format!("{two_variants}training.trainable_from = \"block6_conv1\""),
            format!(
                "experiments/test.toml:6: variants[1].training.trainable_from: unknown layer \
                 \"block6_conv1\" (known: {LAYERS})"
            ),
        ),
        (
            format!("{syn}[training]\nfreeze = [\"block*\", \"dense_2\"]"),
            format!(
                "experiments/test.toml:3: training.freeze: pattern \"dense_2\" matches no layer \
                 (known: {LAYERS})"
            ),
        ),
        (
            format!("{syn}[training]\nfreeze = [\"block*\"]\ntrainable_from = \"block5_conv1\""),
            "experiments/test.toml:3: training.freeze: set at most one of trainable_from, freeze \
             and train (found trainable_from and freeze); remove the others"
                .into(),
        ),
        (
            format!(
                "{syn}[training]\nfreeze = [\"block*\"]\n[[variants]]\nname = \"a\"\n\
                 training.train = [\"dense\"]"
            ),
            "experiments/test.toml:6: variants[0].training.train: set at most one of \
             trainable_from, freeze and train (found freeze and train); remove the others"
                .into(),
        ),
        (
            format!("{syn}[training]\ntrain = [\"*pool\"]"),
            "experiments/test.toml:3: training.train: no layer with weights would train under \
             this rule"
                .into(),
        ),
        // The matrix axes
        (
            format!("seeds = [0, 1, 0]\n{syn}"),
            "experiments/test.toml:1: seeds[2]: seed 0 is already listed (seeds[0]); list each \
             seed once"
                .into(),
        ),
        (
            format!("seeds = []\n{syn}"),
            "experiments/test.toml:1: seeds: the list is empty; give at least one seed, e.g. \
             seeds = [0]"
                .into(),
        ),
        (
            format!("{syn}[[variants]]\nname = \"a\"\n[[variants]]\nname = \"a\""),
            "experiments/test.toml:5: variants[1].name: \"a\" is already the name of \
             variants[0]; variant names must be unique"
                .into(),
        ),
        (
            format!("{syn}[[variants]]\nname = \"fine tuning\""),
            "experiments/test.toml:3: variants[0].name: \"fine tuning\" cannot be used as a \
             directory name; use only letters, digits, '_', '-' and '.'"
                .into(),
        ),
        (
            format!("{syn}[[variants]]\ndescription = \"no name\""),
            "experiments/test.toml:2: variants[0]: missing key \"name\"".into(),
        ),
        (
            format!("name = \"../up\"\n{syn}"),
            "experiments/test.toml:1: name: \"../up\" cannot be used as a directory name; use \
             only letters, digits, '_', '-' and '.'"
                .into(),
        ),
        // Data source
        (
            "[dataset]\nbatch_size = 16".into(),
            "experiments/test.toml:1: dataset: no data source; set train_dir and validation_dir \
             (folders with one sub-folder per class), or add a [dataset.synthetic] table"
                .into(),
        ),
        (
            "seeds = [0]".into(),
            "experiments/test.toml: dataset: no data source; set train_dir and validation_dir \
             (folders with one sub-folder per class), or add a [dataset.synthetic] table"
                .into(),
        ),
        (
            "[dataset]\ntrain_dir = \"a\"\nvalidation_dir = \"b\"\n[dataset.synthetic]".into(),
            "experiments/test.toml:4: dataset.synthetic: give either train_dir and \
             validation_dir, or [dataset.synthetic], not both"
                .into(),
        ),
        (
            "[dataset]\ntrain_dir = \"a\"\nvalidation_dir = \"b\"\n[[variants]]\nname = \"x\"\n\
             [variants.dataset.synthetic]\nsize = 32"
                .into(),
            "experiments/test.toml:6: variants[0].dataset.synthetic: give either train_dir and \
             validation_dir, or [dataset.synthetic], not both"
                .into(),
        ),
        (
            "[dataset]\ntrain_dir = \"a\"".into(),
            "experiments/test.toml:2: dataset.train_dir: validation_dir is missing; give both \
             train_dir and validation_dir (or use [dataset.synthetic] instead)"
                .into(),
        ),
        // Numbers with a minimum
        (
            format!("[dataset]\nbatch_size = 0\n{syn}"),
            "experiments/test.toml:2: dataset.batch_size: must be at least 1".into(),
        ),
        (
            format!("[dataset]\nimage_size = [150, 16]\n{syn}"),
            "experiments/test.toml:2: dataset.image_size: [150, 16] is too small: VGG's five 2x2 \
             poolings need at least [32, 32]"
                .into(),
        ),
        (
            format!("{syn}[training]\nepochs = 0"),
            "experiments/test.toml:3: training.epochs: must be at least 1".into(),
        ),
        (
            format!("{syn}[model]\narchitecture = \"vgg19\""),
            "experiments/test.toml:3: model.architecture: unknown architecture \"vgg19\" (known: \
             vgg16)"
                .into(),
        ),
        (
            format!("{syn}[model.head]\nunits = [256, 0]"),
            "experiments/test.toml:3: model.head.units: every dense layer needs at least 1 unit, \
             found [256, 0]"
                .into(),
        ),
        // The pretraining stage and the weights that refer to it
        (
            format!("{syn}[model]\nweights = {{ stage = \"finetune\" }}"),
            "experiments/test.toml:3: model.weights.stage: unknown stage \"finetune\" (stages: \
             pretrain); write { stage = \"pretrain\" } and declare a [pretrain] table"
                .into(),
        ),
        (
            format!("{syn}[model]\nweights = {{ stage = \"pretrain\" }}"),
            "experiments/test.toml:3: model.weights.stage: the experiment has no [pretrain] \
             table; add one (see experiments/reference.toml) or choose other weights"
                .into(),
        ),
        (
            format!("{syn}[model]\nweights = {{ stage = \"pretrain\", sha256 = \"ab\" }}"),
            "experiments/test.toml:3: model.weights.sha256: unknown key \"sha256\" (expected \
             one of: stage)"
                .into(),
        ),
        (
            format!("{syn}[pretrain]\nepoch = 3\n[pretrain.dataset.synthetic]"),
            "experiments/test.toml:3: pretrain.epoch: unknown key \"epoch\" (expected one of: \
             seed, epochs, optimizer, learning_rate, head, dataset)"
                .into(),
        ),
        (
            format!("{syn}[pretrain]\nepochs = 0\n[pretrain.dataset.synthetic]"),
            "experiments/test.toml:3: pretrain.epochs: must be at least 1".into(),
        ),
        (
            format!("{syn}[pretrain]\nepochs = 2"),
            "experiments/test.toml:2: pretrain.dataset: no data source; set train_dir and \
             validation_dir (folders with one sub-folder per class), or add a [dataset.synthetic] \
             table"
                .into(),
        ),
        (
            format!("{syn}[pretrain.dataset]\nimage_size = [16, 16]\nsynthetic = {{ task = \"source\" }}"),
            "experiments/test.toml:3: pretrain.dataset.image_size: [16, 16] is too small: VGG's \
             five 2x2 poolings need at least [32, 32]"
                .into(),
        ),
        (
            format!("{syn}[pretrain.dataset.synthetic]\ntask = \"imagenet\""),
            "experiments/test.toml:3: pretrain.dataset.synthetic.task: unknown value \
             \"imagenet\" (expected one of: \"target\", \"source\")"
                .into(),
        ),
        (
            format!(
                "{syn}[model]\nweights = {{ stage = \"pretrain\" }}\n[pretrain.dataset.synthetic]\n\
                 [[variants]]\nname = \"a\"\nmodel.channels = [4, 4, 4, 4, 4]"
            ),
            "experiments/test.toml:7: variants[0].model.channels: the pretrain stage trains vgg16 \
             with channels [64, 128, 256, 512, 512] (from [model]); a cell that loads its weights \
             needs the same, found vgg16 with [4, 4, 4, 4, 4]"
                .into(),
        ),
    ];
    let mut failures = Vec::new();
    for (text, expected) in &cases {
        let actual = match parse(text, Path::new(FILE)) {
            Ok(_) => "(parsed without error)".to_string(),
            Err(e) => e.to_string(),
        };
        if &actual != expected {
            failures.push(format!(
                "--- file ---\n{text}\n--- expected ---\n{expected}\n--- actual ---\n{actual}\n"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn errors_keep_their_parts() {
    let err = parse(
        "[dataset.synthetic]\n[training]\nepochs = 0",
        Path::new(FILE),
    )
    .unwrap_err();
    match err {
        ConfigError::Invalid {
            file,
            line,
            key,
            message,
        } => {
            assert_eq!(file, Path::new(FILE));
            assert_eq!(line, Some(3));
            assert_eq!(key, "training.epochs");
            assert_eq!(message, "must be at least 1");
        }
        other => panic!("unexpected {other:?}"),
    }
    let missing = load(Path::new("experiments/does-not-exist.toml")).unwrap_err();
    assert!(matches!(missing, ConfigError::Io { .. }), "{missing:?}");
    assert!(missing
        .to_string()
        .starts_with("experiments/does-not-exist.toml: cannot read the experiment file: "));
}

#[test]
fn a_variant_overrides_one_key_and_keeps_the_rest() {
    let exp = parse_ok(
        r#"
[dataset]
image_size = [64, 48]
batch_size = 16
augmentation = [{ type = "flip", mode = "horizontal" }]

[dataset.synthetic]
seed = 7
size = 40

[training]
epochs = 3
optimizer = { name = "rmsprop", rho = 0.8, momentum = 0.5 }
learning_rate = 1e-4
freeze = ["block*"]

[[variants]]
name = "base"

[[variants]]
name = "more_data"
dataset.synthetic.train_per_class = 10
dataset.augmentation = [{ type = "contrast", factor = 0.2 }]
training.learning_rate = 1e-5

[[variants]]
name = "adam"
training.optimizer = { name = "adam", beta_2 = 0.99 }
"#,
    );
    let names: Vec<&str> = exp.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["base", "more_data", "adam"]);
    let base = &exp.variants[0].config;
    let more = &exp.variants[1].config;
    let adam = &exp.variants[2].config;

    // Tables merge key by key: only train_per_class changes in the synthetic table.
    let DataSource::Synthetic(synthetic) = &more.dataset.source else {
        panic!("{:?}", more.dataset.source)
    };
    assert_eq!(
        *synthetic,
        SyntheticSpec {
            seed: 7,
            train_per_class: 10,
            validation_per_class: 100,
            size: 40,
            task: SyntheticTask::Target,
        }
    );
    assert_eq!(more.dataset.image_size, [64, 48]);
    assert_eq!(more.dataset.batch_size, 16);
    // Arrays replace.
    assert_eq!(
        more.dataset.augmentation,
        [AugmentStep::Contrast {
            factor: Factor::Symmetric(0.2)
        }]
    );
    // The learning rate is folded into the (inherited) optimizer.
    assert_eq!(
        more.training.optimizer,
        Optimizer::Rmsprop {
            learning_rate: 1e-5,
            rho: 0.8,
            momentum: 0.5,
            epsilon: 1e-7,
            centered: false
        }
    );
    assert_eq!(more.training.freeze, base.training.freeze);
    assert_eq!(more.model, base.model);
    assert_eq!(more.training.epochs, 3);

    // An optimizer table replaces the base's whole optimizer: no rho leaks into Adam.
    assert_eq!(
        adam.training.optimizer,
        Optimizer::Adam {
            learning_rate: 1e-4,
            beta_1: 0.9,
            beta_2: 0.99,
            epsilon: 1e-7
        }
    );
    assert_eq!(adam.dataset, base.dataset);
}

#[test]
fn without_variants_there_is_one_named_default() {
    let exp = parse_ok("[dataset.synthetic]\n");
    assert_eq!(exp.name, "test");
    assert_eq!(exp.seeds, [0]);
    assert_eq!(exp.variants.len(), 1);
    assert_eq!(exp.variants[0].name, DEFAULT_VARIANT);
    assert_eq!(
        exp.cells(),
        [Cell {
            variant: "default".into(),
            seed: 0
        }]
    );
}

#[test]
fn paths_resolve_against_the_experiment_directory() {
    let text = r#"
[dataset]
train_dir = "../data/train"
validation_dir = "/srv/data/validation"
[model]
weights = { file = "weights/vgg16.safetensors", sha256 = "397923AF8E79CDBB6A7127F12361ACD7A2F83E06B05044DDF496E83DE57A5BF0" }
"#;
    let exp = parse(text, Path::new("experiments/paths.toml")).unwrap();
    assert_eq!(exp.base_dir, Path::new("experiments"));
    let config = &exp.variants[0].config;
    assert_eq!(
        config.dataset.source,
        DataSource::Directories {
            train: PathBuf::from("experiments/../data/train"),
            validation: PathBuf::from("/srv/data/validation"),
        }
    );
    assert_eq!(
        config.model.weights,
        Weights::File {
            path: PathBuf::from("experiments/weights/vgg16.safetensors"),
            sha256: Some("397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0".into()),
        }
    );
    let bare = parse("[dataset.synthetic]\n", Path::new("bare.toml")).unwrap();
    assert_eq!(bare.base_dir, Path::new("."));
    assert_eq!(bare.name, "bare");
}

fn notebook_augmentation() -> Vec<AugmentStep> {
    vec![
        AugmentStep::Flip {
            mode: FlipMode::Horizontal,
        },
        AugmentStep::Rotation {
            factor: Factor::Symmetric(0.1),
            fill_mode: FillMode::Reflect,
            fill_value: 0.0,
            interpolation: Interpolation::Bilinear,
        },
        AugmentStep::Zoom {
            height_factor: Factor::Symmetric(0.1),
            width_factor: None,
            fill_mode: FillMode::Reflect,
            fill_value: 0.0,
            interpolation: Interpolation::Bilinear,
        },
    ]
}

/// lecture.toml is the notebook: VGG16(weights="imagenet") at 150x150, Flatten-Dense(256)-Dense(1),
/// x/255, batch 32, Adam 1e-3, 10 epochs; frozen base or block5 on; with and without augmentation.
#[test]
fn lecture_file_is_the_notebook() {
    let path = shipped("lecture");
    let exp = load(&path).unwrap();
    let dir = path.parent().unwrap();
    assert_eq!(exp.name, "lecture");
    assert_eq!(exp.seeds, [0, 1, 2]);
    assert_eq!(exp.base_dir, dir);

    // The images are the tutorial's filtered set, fetched into the data cache (wherever that is).
    let source = exp.variants[0].config.dataset.source.clone();
    let DataSource::Directories { train, validation } = &source else {
        panic!("{source:?}");
    };
    assert!(
        train.ends_with("datasets/cats-and-dogs-filtered/train"),
        "{train:?}"
    );
    assert!(
        validation.ends_with("datasets/cats-and-dogs-filtered/validation"),
        "{validation:?}"
    );
    let notebook = CellConfig {
        dataset: DatasetConfig {
            source,
            image_size: [150, 150],
            batch_size: 32,
            shuffle: ShuffleMode::Keras,
            preprocessing: Preprocessing::Rescale,
            on_bad_image: OnBadImage::Error,
            augmentation: vec![],
            known: Some("cats-and-dogs-filtered".into()),
        },
        model: ModelConfig {
            architecture: "vgg16".into(),
            channels: [64, 128, 256, 512, 512],
            weights: Weights::Named("keras:vgg16-imagenet".into()),
            conv_init: crate::config::ConvInit::GlorotUniform,
            head: HeadSpec {
                units: vec![256],
                activation: Activation::Relu,
            },
        },
        training: TrainingConfig {
            epochs: 10,
            optimizer: Optimizer::Adam {
                learning_rate: 1e-3,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
            },
            freeze: FreezeRule::AllTrainable,
        },
    };
    let variant = |freeze: FreezeRule, augmented: bool| {
        let mut config = notebook.clone();
        config.training.freeze = freeze;
        if augmented {
            config.dataset.augmentation = notebook_augmentation();
        }
        config
    };
    let feature_extraction = FreezeRule::Freeze(vec!["block*".into()]);
    let fine_tuning = FreezeRule::TrainableFrom("block5_conv1".into());
    let expected = [
        (
            "feature_extraction",
            variant(feature_extraction.clone(), false),
        ),
        ("feature_extraction_aug", variant(feature_extraction, true)),
        ("fine_tuning", variant(fine_tuning.clone(), false)),
        ("fine_tuning_aug", variant(fine_tuning, true)),
    ];
    assert_eq!(exp.variants.len(), expected.len());
    for (actual, (name, config)) in exp.variants.iter().zip(&expected) {
        assert_eq!(actual.name, *name);
        assert_eq!(actual.config, *config, "variant {name}");
    }

    // Keras's model.summary() trainable counts (keras-notebook-semantics.md, key numbers).
    for (name, trainable_params) in [
        ("feature_extraction", 2_097_665),
        ("fine_tuning", 9_177_089),
    ] {
        let config = &exp.variant(name).unwrap().config;
        let arch = Architecture::build(&config.model, 150, 150).unwrap();
        let mask = trainable_mask(&config.training.freeze, &arch).unwrap();
        let params: usize = arch
            .layers
            .iter()
            .zip(mask)
            .filter(|(_, trains)| *trains)
            .map(|(l, _)| l.params())
            .sum();
        assert_eq!(params, trainable_params, "{name}");
    }
}

#[test]
fn demo_is_the_lecture_on_a_pretrained_base() {
    let demo = load(&shipped("demo")).unwrap();
    let lecture = load(&shipped("lecture")).unwrap();
    assert_eq!(demo.name, "demo");
    assert_eq!(demo.seeds, [0, 1]);
    let names =
        |e: &Experiment| -> Vec<String> { e.variants.iter().map(|v| v.name.clone()).collect() };
    // The random baseline first (the report's default baseline), then the lecture's variants.
    assert_eq!(names(&demo)[0], "baseline_random");
    assert_eq!(names(&demo)[1..], names(&lecture));
    let stage = demo
        .pretrain
        .as_ref()
        .expect("the demo pretrains its conv base");
    let DataSource::Synthetic(source) = &stage.config.dataset.source else {
        panic!("{:?}", stage.config.dataset.source)
    };
    assert_eq!(source.task, SyntheticTask::Source);
    let first = &demo.variants[0].config;
    assert_eq!(stage.config.model.channels, first.model.channels);
    assert_eq!(stage.config.model.conv_init, first.model.conv_init);
    for (d, l) in demo.variants[1..].iter().zip(&lecture.variants) {
        let (d, l) = (&d.config, &l.config);
        assert_eq!(d.training.freeze, l.training.freeze);
        assert_eq!(d.training.optimizer, l.training.optimizer);
        assert_eq!(d.dataset.augmentation, l.dataset.augmentation);
        assert_eq!(d.model.weights, Weights::Stage("pretrain".into()));
        assert_eq!(demo.stage_of(d), Some(stage));
    }
    for v in &demo.variants {
        let d = &v.config;
        let DataSource::Synthetic(target) = &d.dataset.source else {
            panic!("{:?}", d.dataset.source)
        };
        assert_eq!(target.task, SyntheticTask::Target, "{}", v.name);
        assert_eq!(d.dataset.source, first.dataset.source);
        assert_eq!(d.dataset.image_size, first.dataset.image_size);
        assert_eq!(d.model.channels, first.model.channels);
        assert_eq!(d.model.head, first.model.head);
        assert_eq!(d.model.conv_init, ConvInit::HeUniform);
        assert_eq!(d.training.epochs, first.training.epochs);
    }
    // The baseline: the feature-extraction variant on a random base.
    assert_eq!(first.model.weights, Weights::None);
    assert_eq!(
        first.training.freeze,
        demo.variants[1].config.training.freeze
    );
}

/// Every value written in reference.toml is the default: the reference resolves to exactly what a
/// file with nothing but a data source gets.
#[test]
fn reference_file_states_the_defaults() {
    let reference = load(&shipped("reference")).unwrap();
    let minimal = parse("[dataset.synthetic]\n", &shipped("minimal")).unwrap();
    assert_eq!(reference.name, "reference");
    assert_eq!(reference.description, minimal.description);
    assert_eq!(reference.seeds, minimal.seeds);
    assert_eq!(reference.variants.len(), 1);
    let (r, m) = (&reference.variants[0], &minimal.variants[0]);
    assert_eq!(r.name, m.name);
    assert_eq!(r.description, m.description);
    assert_eq!(r.config.dataset, m.config.dataset);
    assert_eq!(r.config.model, m.config.model);
    assert_eq!(r.config.training, m.config.training);
}

/// The commented alternatives in reference.toml are valid, and the long forms it shows state the
/// same defaults as the short forms.
#[test]
fn reference_alternatives_parse() {
    let text = std::fs::read_to_string(shipped("reference")).unwrap();
    let sections = [
        ("# seeds = ", ""),
        ("# shuffle = ", "[dataset]"),
        ("# preprocessing = ", "[dataset]"),
        ("# on_bad_image = ", "[dataset]"),
        ("# channels = ", "[model]"),
        ("# weights = ", "[model]"),
        ("# units = ", "[model.head]"),
        ("# optimizer = ", "[training]"),
        ("# trainable_from = ", "[training]"),
        ("# freeze = ", "[training]"),
        ("# train = ", "[training]"),
    ];
    let mut checked = 0;
    for line in text.lines() {
        let Some((_, header)) = sections.iter().find(|(p, _)| line.starts_with(p)) else {
            continue;
        };
        let mut doc = format!("{header}\n{}\n[dataset.synthetic]\n", &line[2..]);
        if line.contains("stage = ") {
            doc.push_str("[pretrain.dataset.synthetic]\n");
        }
        let exp = parse(&doc, Path::new("alt.toml")).unwrap_or_else(|e| panic!("{line}: {e}"));
        if line.starts_with("# optimizer = {") {
            let name_only = match exp.variants[0].config.training.optimizer {
                Optimizer::Adam { .. } => "adam",
                Optimizer::Rmsprop { .. } => "rmsprop",
            };
            let short = parse_ok(&format!(
                "[training]\noptimizer = \"{name_only}\"\n[dataset.synthetic]"
            ));
            assert_eq!(
                exp.variants[0].config.training.optimizer,
                short.variants[0].config.training.optimizer,
                "{line}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} alternatives found");

    // The commented augmentation block, uncommented.
    let start = text.find("# augmentation = [").unwrap();
    let end = start + text[start..].find("# ]").unwrap() + 3;
    let block: String = text[start..end]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let long = parse_ok(&format!("[dataset]\n{block}\n[dataset.synthetic]"));
    let steps = &long.variants[0].config.dataset.augmentation;
    let short = parse_ok(
        r#"
[dataset]
augmentation = [
    { type = "flip" },
    { type = "rotation", factor = 0.1 },
    { type = "zoom", height_factor = 0.1 },
    { type = "translation", height_factor = 0.1, width_factor = 0.1 },
]
[dataset.synthetic]
"#,
    );
    let short = &short.variants[0].config.dataset.augmentation;
    assert_eq!(steps.len(), 6);
    assert_eq!(
        [&steps[0], &steps[1], &steps[2], &steps[4]],
        [&short[0], &short[1], &short[2], &short[3]]
    );
}

#[test]
fn named_optimizers_take_keras_defaults() {
    assert_eq!(
        OptimizerSpec::default(),
        OptimizerSpec::Adam {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7
        }
    );
    let exp =
        parse_ok("[training]\noptimizer = \"rmsprop\"\nlearning_rate = 2e-5\n[dataset.synthetic]");
    assert_eq!(
        exp.variants[0].config.training.optimizer,
        Optimizer::Rmsprop {
            learning_rate: 2e-5,
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            centered: false
        }
    );
}

#[test]
fn factors_take_both_forms() {
    let exp = parse_ok(
        "[dataset]\naugmentation = [\n  { type = \"rotation\", factor = 1 },\n  \
         { type = \"zoom\", height_factor = [-0.3, 0.2], width_factor = 0 },\n]\n[dataset.synthetic]",
    );
    let steps = &exp.variants[0].config.dataset.augmentation;
    assert!(matches!(
        steps[0],
        AugmentStep::Rotation {
            factor: Factor::Symmetric(f),
            ..
        } if f == 1.0
    ));
    assert!(matches!(
        steps[1],
        AugmentStep::Zoom {
            height_factor: Factor::Range([lo, hi]),
            width_factor: Some(Factor::Symmetric(w)),
            ..
        } if lo == -0.3 && hi == 0.2 && w == 0.0
    ));
}

#[test]
fn the_pretrain_stage_inherits_how_images_are_read_but_not_the_data() {
    let exp = parse_ok(
        r#"
[dataset]
image_size = [48, 40]
batch_size = 8
preprocessing = "torch"
augmentation = [{ type = "flip" }]
[dataset.synthetic]
[model]
channels = [4, 4, 8, 8, 8]
conv_init = "he_uniform"
weights = { stage = "pretrain" }
head = { units = [16] }
[pretrain]
seed = 3
epochs = 2
optimizer = "rmsprop"
[pretrain.dataset]
batch_size = 4
synthetic = { task = "source", train_per_class = 5 }
[[variants]]
name = "fe"
training.freeze = ["block*"]
[[variants]]
name = "random"
model.weights = "none"
"#,
    );
    let stage = exp.pretrain.as_ref().unwrap();
    assert_eq!((stage.name.as_str(), stage.seed), ("pretrain", 3));
    let d = &stage.config.dataset;
    assert_eq!(d.image_size, [48, 40]);
    assert_eq!(d.batch_size, 4);
    assert_eq!(d.preprocessing, Preprocessing::Torch);
    assert!(d.augmentation.is_empty(), "augmentation is not inherited");
    let DataSource::Synthetic(synthetic) = &d.source else {
        panic!("{:?}", d.source)
    };
    assert_eq!(synthetic.task, SyntheticTask::Source);
    assert_eq!(synthetic.train_per_class, 5);
    let m = &stage.config.model;
    assert_eq!(m.channels, [4, 4, 8, 8, 8]);
    assert_eq!(m.conv_init, ConvInit::HeUniform);
    assert_eq!(
        m.weights,
        Weights::None,
        "the stage starts from random weights"
    );
    assert_eq!(m.head.units, [16]);
    assert_eq!(stage.config.training.epochs, 2);
    assert_eq!(stage.config.training.freeze, FreezeRule::AllTrainable);
    assert!(matches!(
        stage.config.training.optimizer,
        Optimizer::Rmsprop { .. }
    ));
    let fe = &exp.variants[0].config;
    assert_eq!(fe.model.weights, Weights::Stage("pretrain".into()));
    assert_eq!(exp.stage_of(fe), Some(stage));
    assert_eq!(exp.stage_of(&exp.variants[1].config), None);
}

#[test]
fn mlflow_and_evaluation_tables_are_checked_and_change_no_run_key() {
    use crate::plan::{InputHashes, Plan};
    let base = "seeds = [0, 1]\n[dataset.synthetic]\n[[variants]]\nname = \"a\"\n";
    let with = format!(
        "{base}[mlflow]\ntracking_uri = \"http://127.0.0.1:5000\"\nexperiment = \"x\"\n\
         [evaluation]\ntest_dir = \"data/test\"\nmodel = \"best\"\n"
    );
    let keys = |e: &Experiment| -> Vec<String> {
        Plan::new(e, None)
            .unwrap()
            .cells
            .iter()
            .map(|c| {
                c.run_key(InputHashes {
                    dataset: "d",
                    weights: None,
                    code: "c",
                    stage: None,
                })
                .1
            })
            .collect()
    };
    let (plain, tracked) = (parse_ok(base), parse_ok(&with));
    assert_eq!(keys(&plain), keys(&tracked));
    let mlflow = tracked.mlflow.as_ref().unwrap();
    assert_eq!(
        mlflow.tracking_uri.as_deref(),
        Some("http://127.0.0.1:5000")
    );
    assert_eq!(mlflow.experiment.as_deref(), Some("x"));
    let evaluation = tracked.evaluation.as_ref().unwrap();
    assert_eq!(evaluation.test_dir, Path::new("experiments/data/test"));
    assert_eq!(evaluation.model, EvaluatedModel::Best);

    let error = |text: String| parse(&text, Path::new(FILE)).unwrap_err().to_string();
    let e = error(format!("{base}[mlflow]\ntrackng_uri = \"http://h:1\"\n"));
    assert!(
        e.starts_with("experiments/test.toml:6: mlflow.trackng_uri: unknown key"),
        "{e}"
    );
    let e = error(format!("{base}[mlflow]\ntracking_uri = \"./mlruns\"\n"));
    assert!(
        e.starts_with("experiments/test.toml:6: mlflow.tracking_uri: \"./mlruns\" is not a tracking server's URL"),
        "{e}"
    );
    let e = error(format!(
        "{base}[evaluation]\ntest_dir = \"t\"\nmodel = \"last\"\n"
    ));
    assert!(e.contains("evaluation.model"), "{e}");
    let e = error(format!("{base}[evaluation]\nmodel = \"best\"\n"));
    assert!(e.contains("test_dir"), "{e}");
}
