//! What can go wrong reading a data set; every error names the file or directory concerned.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{}: {message}", path.display())]
    Index { path: PathBuf, message: String },
    #[error("{}: cannot decode image: {message} (set dataset.on_bad_image = \"skip\" to skip unreadable files)", path.display())]
    BadImage { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} and {} have different class folders ({train_classes:?} and {validation_classes:?}); \
         both must have the same class sub-folders",
        train.display(),
        validation.display()
    )]
    ClassMismatch {
        train: PathBuf,
        validation: PathBuf,
        train_classes: Vec<String>,
        validation_classes: Vec<String>,
    },
    #[error(
        "{}: found {} classes named {classes:?}; binary classification needs exactly 2 class folders",
        path.display(),
        classes.len()
    )]
    NotBinary { path: PathBuf, classes: Vec<String> },
    #[error(
        "{}: found {} class folder(s) {classes:?}; a multi-class task needs at least 2",
        path.display(),
        classes.len()
    )]
    TooFewClasses { path: PathBuf, classes: Vec<String> },
    #[error("dataset.synthetic: {message}")]
    InvalidSynthetic { message: String },
    #[error("{}: cannot write the synthetic data set: {source} (check that the cache directory is writable and has free space)", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}
