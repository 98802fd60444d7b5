use super::compute::{load, open_temp, temp_writer_pid};
use super::*;
use std::fs::File;
use std::io::Write;
use std::path::Path;

#[test]
fn a_set_read_from_its_file_gathers_what_the_memory_copy_does() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<f32> = (0..15).map(|i| i as f32 * 0.37 - 2.0).collect();
    let path = dir.path().join("k").join("s.f32");
    let (mut w, tmp, path) = open_temp(&path).unwrap();
    for v in &values {
        w.write_all(&v.to_le_bytes()).unwrap();
    }
    drop(w);
    std::fs::rename(tmp, &path).unwrap();
    let memory = FeatureSet::in_memory(3, values.clone());
    let disk = load(&path, 3, 5, false).unwrap().unwrap();
    assert!(!disk.in_memory_now());
    let loaded = load(&path, 3, 5, true).unwrap().unwrap();
    assert!(loaded.in_memory_now());
    for order in [vec![4, 0, 2], vec![1], vec![3, 3]] {
        let want = memory.gather(&order).unwrap();
        assert_eq!(disk.gather(&order).unwrap(), want);
        assert_eq!(loaded.gather(&order).unwrap(), want);
    }
    assert_eq!(memory.gather(&[4, 0]).unwrap()[..3], values[12..15]);
    // A file of the wrong size is not used.
    assert!(load(&path, 3, 6, true).unwrap().is_none());
    // Writing in a key directory removes what a killed writer left there.
    let dead = path.with_extension("tmp-4000000000-3");
    std::fs::write(&dead, b"partial").unwrap();
    let long_ago = std::time::SystemTime::now() - crate::base::fs::ORPHAN_IDLE * 2;
    let file = File::options().write(true).open(&dead).unwrap();
    file.set_modified(long_ago).unwrap();
    drop(file);
    assert_eq!(temp_writer_pid("s.tmp-4000000000-3"), Some(4_000_000_000));
    drop(open_temp(&dir.path().join("k").join("t.f32")).unwrap());
    if cfg!(target_os = "linux") {
        assert!(!dead.exists());
    }
    assert!(path.exists());
}

mod shared_prefixes {
    use super::*;
    use crate::config::*;
    use crate::model::arch::Architecture;
    use crate::model::weights::LoadedWeights;

    use crate::train::fit::tests::split;

    fn dataset() -> DatasetConfig {
        DatasetConfig {
            source: DataSource::Directories {
                train: "t".into(),
                validation: "v".into(),
            },
            image_size: [32, 32],
            batch_size: 4,
            shuffle: ShuffleMode::Keras,
            preprocessing: Preprocessing::Rescale,
            on_bad_image: OnBadImage::Error,
            augmentation: Vec::new(),
            known: None,
        }
    }

    /// A narrow VGG trained from layer `first` on (seeded initialisation).
    fn network(first: &str, seed: u64) -> Network {
        let model = ModelConfig {
            architecture: "vgg16".into(),
            channels: [4, 4, 8, 8, 8],
            weights: Weights::None,
            conv_init: ConvInit::GlorotUniform,
            head: HeadSpec {
                units: vec![8],
                ..HeadSpec::default()
            },
        };
        let arch = Architecture::build(&model, 32, 32).unwrap();
        let start = arch.layers.iter().position(|l| l.name == first).unwrap();
        let trainable = (0..arch.layers.len()).map(|i| i >= start).collect();
        let loaded = LoadedWeights::default();
        let cpu = candle_core::Device::Cpu;
        Network::new(
            arch,
            ConvInit::GlorotUniform,
            trainable,
            &loaded,
            seed,
            &cpu,
        )
        .unwrap()
    }

    fn cache(dir: &Path) -> FeatureCache {
        let budget = Arc::new(MemoryBudget::new(1 << 30));
        FeatureCache::new(Some(dir.to_path_buf()), budget)
    }

    fn bits(set: &FeatureSet) -> Vec<u32> {
        let all: Vec<usize> = (0..set.count).collect();
        let values = set.gather(&all).unwrap();
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// Feature extraction's `flatten` outputs computed from fine-tuning's cached `block4_pool`
    /// outputs (running only block 5) are the same bits, and the same cache file, as computed
    /// from the images; the shorter set is kept on the way when asked, and found on disk by a
    /// later cache. A different base (another seed) shares nothing.
    #[test]
    fn a_longer_prefix_computed_from_a_shorter_ones_outputs_is_the_same_bits() {
        let (fe, ft) = (network("dense", 7), network("block5_conv1", 7));
        let ds = dataset();
        let split = split(10);
        let stop = AtomicBool::new(false);
        let fe_key = prefix_key(&fe, &ds).unwrap().unwrap();
        let ft_key = prefix_key(&ft, &ds).unwrap().unwrap();
        assert_eq!(
            (fe_key.last_layer.as_str(), ft_key.last_layer.as_str()),
            ("flatten", "block4_pool")
        );
        let b4 = ft_key.end;
        assert_eq!(
            fe_key.shorter(b4).key,
            ft_key.key,
            "the common prefix has one key"
        );
        let other = prefix_key(&network("dense", 8), &ds).unwrap().unwrap();
        assert_ne!(other.shorter(b4).key, ft_key.key);

        let (plain, shared) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let obtain = |cache: &FeatureCache, net: &Network, key: &PrefixKey, keep: &[usize]| {
            cache
                .obtain(net, key, keep, &split, "s", &ds, &stop)
                .unwrap()
                .unwrap()
        };
        let from_images = cache(plain.path());
        let (want, origin) = obtain(&from_images, &fe, &fe_key, &[]);
        assert_eq!(origin, Origin::Computed);
        assert!(
            !plain.path().join(&ft_key.key).exists(),
            "nothing kept unasked"
        );

        // Asked to keep block4_pool (fine-tuning wants it): computed first, flatten from it.
        let sharing = cache(shared.path());
        let (got, origin) = obtain(&sharing, &fe, &fe_key, &[b4]);
        assert_eq!(
            origin,
            Origin::Derived {
                from: b4,
                kept: true
            }
        );
        assert_eq!(bits(&got), bits(&want));
        let file = |dir: &Path, key: &str| std::fs::read(dir.join(key).join("s.f32")).unwrap();
        assert!(file(shared.path(), &fe_key.key) == file(plain.path(), &fe_key.key));
        let (_, origin) = obtain(&sharing, &ft, &ft_key, &[]);
        assert_eq!(origin, Origin::Shared, "fine-tuning finds block4_pool held");
        let (b4_from_images, _) = obtain(&cache(plain.path()), &ft, &ft_key, &[]);
        assert!(file(shared.path(), &ft_key.key) == file(plain.path(), &ft_key.key));

        // A later sweep with only block4_pool on disk computes flatten from it.
        std::fs::remove_dir_all(shared.path().join(&fe_key.key)).unwrap();
        let (got, origin) = obtain(&cache(shared.path()), &fe, &fe_key, &[]);
        assert_eq!(
            origin,
            Origin::Derived {
                from: b4,
                kept: false
            }
        );
        assert_eq!(bits(&got), bits(&want));
        assert_eq!(b4_from_images.count, 10);
    }
}
