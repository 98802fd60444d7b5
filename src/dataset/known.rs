//! Known data sets (`dataset.known = "..."`): each one's archive, URL, published size and
//! SHA-256, and how its archive is laid out. `runner fetch` downloads and extracts them into
//! `<cache>/datasets/<name>/{train,validation}/<class>/`, where experiments find them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// How an archive's files become `train/<class>/` and `validation/<class>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `cats_and_dogs_filtered/{train,validation}/{cats,dogs}/*`: kept as the archive splits it;
    /// anything else in the archive (a script) is left out.
    Filtered,
    /// `PetImages/{Cat,Dog}/<n>.jpg` (Microsoft's Asirra set): files without the JFIF marker are
    /// left out as TensorFlow Datasets does, the rest split by a hash of the path
    /// (see `dataset::fetch`), classes `cats` and `dogs`.
    PetImages,
}

/// The archive's SHA-256: published, or recorded from the first download where none is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sha256 {
    Published(String),
    /// No public checksum exists: the first download's SHA-256 is recorded beside the cache
    /// (`<cache>/datasets/<archive>.sha256`) and every later download must match it.
    RecordedOnFirstDownload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDataset {
    pub name: String,
    /// The archive's file name.
    pub archive: String,
    pub url: String,
    /// The archive's size in bytes.
    pub size: u64,
    pub sha256: Sha256,
    pub layout: Layout,
    /// Where the size and checksum come from.
    pub source: String,
}

/// The built-in catalogue.
///
/// - `cats-and-dogs-filtered`: the subset of Kaggle's Dogs vs. Cats used by TensorFlow's
///   transfer-learning tutorials (2,000 training and 1,000 validation images). Size 68,606,236
///   bytes, as the tutorial's download prints it (tensorflow/docs,
///   site/en/tutorials/images/transfer_learning.ipynb, output of `tf.keras.utils.get_file`; also
///   the `Content-Length` wget shows for this URL). No SHA-256 is published for it.
/// - `cats-vs-dogs`: `kagglecatsanddogs_5340.zip`, the archive TensorFlow Datasets'
///   `cats_vs_dogs` builder downloads (tensorflow/datasets,
///   tensorflow_datasets/image_classification/cats_vs_dogs.py, `_URL`). Size and SHA-256 from
///   huggingface/datasets, datasets/cats_vs_dogs/dataset_infos.json (`download_checksums`,
///   commit 0129d93b38026ee51eb079480e77fd8202f6091a), which downloads the same URL; TFDS's own
///   url_checksums/cats_vs_dogs.txt still lists the older `kagglecatsanddogs_3367a.zip`.
pub fn builtin() -> Vec<KnownDataset> {
    vec![
        KnownDataset {
            name: "cats-and-dogs-filtered".into(),
            archive: "cats_and_dogs_filtered.zip".into(),
            url: "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip".into(),
            size: 68_606_236,
            sha256: Sha256::RecordedOnFirstDownload,
            layout: Layout::Filtered,
            source: "size: TensorFlow transfer-learning tutorial; no published SHA-256".into(),
        },
        KnownDataset {
            name: "cats-vs-dogs".into(),
            archive: "kagglecatsanddogs_5340.zip".into(),
            url: "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip".into(),
            size: 824_887_076,
            sha256: Sha256::Published(
                "b7974bd00a84a99921f36ee4403f089853777b5ae8d151c76a86e64900334af9".into(),
            ),
            layout: Layout::PetImages,
            source: "huggingface/datasets cats_vs_dogs dataset_infos.json".into(),
        },
    ]
}

/// The environment variable naming a catalogue file that replaces the built-in one (TOML,
/// `[[dataset]]` tables with `name`, `archive`, `url`, `size`, `sha256` (optional), `layout`):
/// for mirrors and for tests against a local server.
pub const CATALOGUE_ENV: &str = "RUNNER_DATASET_CATALOGUE";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    dataset: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    archive: String,
    url: String,
    size: u64,
    #[serde(default)]
    sha256: Option<String>,
    layout: Layout,
}

/// The catalogue in effect: the file `$RUNNER_DATASET_CATALOGUE` names, else the built-in one.
pub fn catalogue() -> anyhow::Result<Vec<KnownDataset>> {
    let Some(path) = std::env::var_os(CATALOGUE_ENV).filter(|v| !v.is_empty()) else {
        return Ok(builtin());
    };
    let path = PathBuf::from(path);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{CATALOGUE_ENV}={}: cannot read it", path.display()))?;
    let file: CatalogueFile = toml::from_str(&text).with_context(|| {
        format!(
            "{CATALOGUE_ENV}={}: not a data set catalogue",
            path.display()
        )
    })?;
    Ok(file
        .dataset
        .into_iter()
        .map(|e| KnownDataset {
            name: e.name,
            archive: e.archive,
            url: e.url,
            size: e.size,
            sha256: e
                .sha256
                .map_or(Sha256::RecordedOnFirstDownload, Sha256::Published),
            layout: e.layout,
            source: path.display().to_string(),
        })
        .collect())
}

/// The known data set called `name`, or an error listing the known names.
pub fn lookup(name: &str) -> anyhow::Result<KnownDataset> {
    let all = catalogue()?;
    let names: Vec<&str> = all.iter().map(|k| k.name.as_str()).collect();
    let list = names.join(", ");
    all.iter()
        .find(|k| k.name == name)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("unknown data set \"{name}\" (known: {list})"))
}

/// Where fetched data sets live: `<cache root>/datasets` (`$RUNNER_HOME/datasets`, else
/// `$XDG_CACHE_HOME/runner/datasets`, else `~/.cache/runner/datasets`).
pub fn data_root() -> PathBuf {
    crate::base::download::cache_root_from_env().join("datasets")
}

impl KnownDataset {
    /// `<root>/<name>`: holds `train/`, `validation/` and `fetched.json`.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.name)
    }

    pub fn train_dir(&self, root: &Path) -> PathBuf {
        self.dir(root).join("train")
    }

    pub fn validation_dir(&self, root: &Path) -> PathBuf {
        self.dir(root).join("validation")
    }

    /// The record a finished fetch writes last: its presence means the data set is complete.
    pub fn record_path(&self, root: &Path) -> PathBuf {
        self.dir(root).join("fetched.json")
    }

    pub fn is_present(&self, root: &Path) -> bool {
        self.record_path(root).is_file()
    }

    /// Where the SHA-256 of the first download is kept when none is published.
    pub fn recorded_sha256_path(&self, root: &Path) -> PathBuf {
        root.join(format!("{}.sha256", self.archive))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_sets_have_distinct_names_and_https_urls() {
        let all = builtin();
        assert_eq!(
            all.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
            ["cats-and-dogs-filtered", "cats-vs-dogs"]
        );
        assert!(all
            .iter()
            .all(|k| k.url.starts_with("https://") && k.url.ends_with(&k.archive)));
    }

    #[test]
    fn a_catalogue_file_without_sha256_records_the_first_download() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[dataset]]\nname = \"x\"\narchive = \"x.zip\"\nurl = \"http://127.0.0.1:1/x.zip\"\nsize = 3\nlayout = \"pet-images\"\n",
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let file: CatalogueFile = toml::from_str(&text).unwrap();
        assert_eq!(file.dataset[0].layout, Layout::PetImages);
        assert_eq!(file.dataset[0].sha256, None);
    }
}
