//! Known pretrained weights: each name's file, official URL, published hash, and where the file
//! is looked for on this machine. Pure decisions on an explicit environment, so that tests can
//! give their own.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{FileHashes, WeightsError, WeightsFormat};
use crate::config::Preprocessing;

/// The hash a publisher gives for a file, in the form they give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Keras's `get_file(file_hash=...)`: 32 hex digits mean MD5.
    Md5(&'static str),
    /// torch.hub's convention: the file name ends in the first hex digits of its SHA-256.
    Sha256Prefix(&'static str),
}

impl Expected {
    /// Whether `hashes` satisfy this expectation; on mismatch, (what was compared, actual value).
    pub fn check(&self, hashes: &FileHashes) -> Result<(), (&'static str, String)> {
        match self {
            Expected::Md5(md5) if hashes.md5.eq_ignore_ascii_case(md5) => Ok(()),
            Expected::Md5(_) => Err(("MD5", hashes.md5.clone())),
            Expected::Sha256Prefix(prefix) if hashes.sha256.starts_with(prefix) => Ok(()),
            Expected::Sha256Prefix(_) => Err(("SHA-256", hashes.sha256.clone())),
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Md5(h) => write!(f, "md5:{h}"),
            Expected::Sha256Prefix(h) => write!(f, "sha256:{h}..."),
        }
    }
}

/// Where another tool keeps its downloads, so that a file the notebook (Keras) or torchvision
/// already fetched is used without downloading it again (its hash is still checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherCache {
    /// `$KERAS_HOME/models`, else `~/.keras/models` (`keras.utils.get_file(cache_subdir="models")`).
    Keras,
    /// `$TORCH_HOME/hub/checkpoints`, else `$XDG_CACHE_HOME/torch/...`, else `~/.cache/torch/...`.
    TorchHub,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownWeights {
    /// The name used in experiment files, e.g. `keras:vgg16-imagenet`.
    pub name: &'static str,
    /// The file name, as published.
    pub file: &'static str,
    pub url: &'static str,
    pub expected: Expected,
    pub format: WeightsFormat,
    /// The input preprocessing these weights were trained with.
    pub preprocessing: Preprocessing,
    pub other_cache: OtherCache,
}

/// The names `config::KNOWN_WEIGHTS` accepts, with their files (keras-notebook-semantics.md,
/// sections 7 and 8.1).
pub const KNOWN: &[KnownWeights] = &[
    KnownWeights {
        name: "keras:vgg16-imagenet",
        file: "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        url: "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        expected: Expected::Md5("6d6bbae143d832006294945121d1f1fc"),
        format: WeightsFormat::KerasH5,
        preprocessing: Preprocessing::Caffe,
        other_cache: OtherCache::Keras,
    },
    KnownWeights {
        name: "torchvision:vgg16-imagenet",
        file: "vgg16-397923af.pth",
        url: "https://download.pytorch.org/models/vgg16-397923af.pth",
        expected: Expected::Sha256Prefix("397923af"),
        // Published in 2017, before PyTorch's zip format; either is read.
        format: WeightsFormat::TorchLegacy,
        preprocessing: Preprocessing::Torch,
        other_cache: OtherCache::TorchHub,
    },
];

pub fn lookup(name: &str) -> Option<&'static KnownWeights> {
    KNOWN.iter().find(|k| k.name == name)
}

/// The environment variables that decide where weights are looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub runner_home: Option<PathBuf>,
    pub xdg_cache_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub keras_home: Option<PathBuf>,
    pub torch_home: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            runner_home: var("RUNNER_HOME"),
            xdg_cache_home: var("XDG_CACHE_HOME"),
            home: var("HOME"),
            keras_home: var("KERAS_HOME"),
            torch_home: var("TORCH_HOME"),
        }
    }

    /// The runner's own weights cache: `$RUNNER_HOME/weights`, else
    /// `$XDG_CACHE_HOME/runner/weights`, else `~/.cache/runner/weights`.
    pub fn cache_dir(&self) -> PathBuf {
        crate::base::download::cache_root(
            self.runner_home.as_deref(),
            self.xdg_cache_home.as_deref(),
            self.home.as_deref(),
        )
        .join("weights")
    }

    fn other_cache_dir(&self, cache: OtherCache) -> Option<PathBuf> {
        match cache {
            OtherCache::Keras => self
                .keras_home
                .clone()
                .or_else(|| self.home.as_ref().map(|h| h.join(".keras")))
                .map(|d| d.join("models")),
            OtherCache::TorchHub => self
                .torch_home
                .clone()
                .or_else(|| self.xdg_cache_home.as_ref().map(|c| c.join("torch")))
                .or_else(|| self.home.as_ref().map(|h| h.join(".cache").join("torch")))
                .map(|d| d.join("hub").join("checkpoints")),
        }
    }
}

impl KnownWeights {
    /// Where `runner weights fetch` puts the file.
    pub fn cache_path(&self, env: &Env) -> PathBuf {
        env.cache_dir().join(self.file)
    }

    /// The places the file is looked for, in order: the runner's cache, then the cache of the
    /// tool that publishes it.
    pub fn candidates(&self, env: &Env) -> Vec<PathBuf> {
        let mut out = vec![self.cache_path(env)];
        if let Some(dir) = env.other_cache_dir(self.other_cache) {
            out.push(dir.join(self.file));
        }
        out
    }

    /// The first candidate that exists, or an error that says which URL to fetch and where to put it.
    pub fn locate(&self, env: &Env) -> Result<PathBuf, WeightsError> {
        self.candidates(env)
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| WeightsError::NotDownloaded {
                name: self.name.into(),
                url: self.url.into(),
                path: self.cache_path(env),
                hash: self.expected.to_string(),
            })
    }

    /// Check `path`'s hashes against the published one.
    pub fn verify(&self, path: &Path, hashes: &FileHashes) -> Result<(), WeightsError> {
        self.expected
            .check(hashes)
            .map_err(|(what, actual)| WeightsError::KnownHashMismatch {
                path: path.into(),
                name: self.name.into(),
                what,
                expected: self.expected.to_string(),
                actual,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configurable_name_is_known_and_only_those() {
        let names: Vec<&str> = KNOWN.iter().map(|k| k.name).collect();
        assert_eq!(names, crate::config::KNOWN_WEIGHTS);
    }

    /// experiments/lecture-preprocessing.toml pairs each weights source with the preprocessing
    /// it was trained with, except the one variant that reproduces the notebook's x / 255.
    #[test]
    fn preprocessing_experiment_matches_each_source() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("experiments")
            .join("lecture-preprocessing.toml");
        let exp = crate::plan::load(&path).unwrap();
        let mut sources = Vec::new();
        for v in &exp.variants {
            let crate::config::Weights::Named(name) = &v.config.model.weights else {
                panic!("{}: expected a known weights name", v.name);
            };
            let known = lookup(name).unwrap();
            let expected = if v.name.contains("_rescale_") {
                Preprocessing::Rescale
            } else {
                known.preprocessing
            };
            assert_eq!(v.config.dataset.preprocessing, expected, "{}", v.name);
            sources.push(known.name);
        }
        sources.dedup();
        assert_eq!(
            sources,
            ["keras:vgg16-imagenet", "torchvision:vgg16-imagenet"]
        );
    }

    #[test]
    fn cache_directory_follows_runner_home_then_xdg_then_home() {
        let mut env = Env {
            home: Some("/home/u".into()),
            ..Env::default()
        };
        assert_eq!(env.cache_dir(), Path::new("/home/u/.cache/runner/weights"));
        env.xdg_cache_home = Some("/xdg".into());
        assert_eq!(env.cache_dir(), Path::new("/xdg/runner/weights"));
        env.runner_home = Some("/r".into());
        assert_eq!(env.cache_dir(), Path::new("/r/weights"));
    }

    #[test]
    fn other_tools_caches_are_searched_after_the_runners() {
        let env = Env {
            home: Some("/home/u".into()),
            ..Env::default()
        };
        let keras = lookup("keras:vgg16-imagenet").unwrap();
        assert_eq!(
            keras.candidates(&env),
            [
                PathBuf::from(
                    "/home/u/.cache/runner/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
                ),
                PathBuf::from(
                    "/home/u/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
                ),
            ]
        );
        let torch = lookup("torchvision:vgg16-imagenet").unwrap();
        let env = Env {
            torch_home: Some("/t".into()),
            ..env
        };
        assert_eq!(
            torch.candidates(&env)[1],
            Path::new("/t/hub/checkpoints/vgg16-397923af.pth")
        );
    }

    #[test]
    fn a_missing_file_names_the_url_and_the_destination() {
        let env = Env {
            runner_home: Some("/nonexistent/runner-home".into()),
            keras_home: Some("/nonexistent/keras".into()),
            ..Env::default()
        };
        let err = lookup("keras:vgg16-imagenet")
            .unwrap()
            .locate(&env)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "weights \"keras:vgg16-imagenet\" are not downloaded: fetch \
             https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
             and save it as /nonexistent/runner-home/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
             (or run `runner weights fetch keras:vgg16-imagenet`, which also checks its md5:6d6bbae143d832006294945121d1f1fc)"
        );
    }

    #[test]
    fn published_hashes_are_compared_in_their_own_form() {
        let hashes = FileHashes {
            sha256: "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0".into(),
            md5: "6d6bbae143d832006294945121d1f1fc".into(),
        };
        assert!(Expected::Md5("6D6BBAE143D832006294945121D1F1FC")
            .check(&hashes)
            .is_ok());
        assert!(Expected::Sha256Prefix("397923af").check(&hashes).is_ok());
        assert_eq!(
            Expected::Md5("00000000000000000000000000000000").check(&hashes),
            Err(("MD5", hashes.md5.clone()))
        );
        assert_eq!(
            Expected::Sha256Prefix("397923ae").check(&hashes),
            Err(("SHA-256", hashes.sha256.clone()))
        );
    }
}
