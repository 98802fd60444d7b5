//! Listing a class-folder directory exactly as Keras `image_dataset_from_directory` does.
//!
//! Source: `keras/src/utils/dataset_utils.py` (`index_directory`, `iter_valid_files`,
//! `index_subdirectory`), Keras 3.15.1:
//! * classes are the immediate sub-directories (symlinks to directories count) whose names do not
//!   start with ".", sorted by code point, so "Cat" < "Dog" < "cat"; the label is the position;
//! * each class folder is walked recursively like `os.walk(followlinks=False)`: symlinked
//!   sub-directories are not entered; the roots are sorted by their path string and the files of
//!   a root by name;
//! * a file is kept when its lower-cased name ends with .bmp, .gif, .jpeg, .jpg or .png; hidden
//!   files are kept too (Keras does not filter them).
//!
//! Nothing is decoded here: a broken file with an allowed name is listed and fails later.
//!
//! One difference on purpose: Keras keeps a class folder that holds no image file as a class
//! with no examples (its label is never seen, and training goes on without a word); here it is
//! an error naming the folder, since a class with no images cannot be learned.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::DatasetError;

/// A file of the data set and its class index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    pub label: u32,
}

/// Extensions Keras accepts (`ALLOWLIST_FORMATS`), compared case-insensitively.
pub const IMAGE_EXTENSIONS: [&str; 5] = [".bmp", ".gif", ".jpeg", ".jpg", ".png"];

/// The classes (sorted sub-folder names) and every image file, in (class, root path, file name) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassIndex {
    pub root: PathBuf,
    pub class_names: Vec<String>,
    pub samples: Vec<Sample>,
}

/// Index `dir`: one class per immediate non-hidden sub-directory, files found recursively.
pub fn index_directory(dir: &Path) -> Result<ClassIndex, DatasetError> {
    let layout = format!(
        "expected one sub-folder per class, laid out as {}/<class_name>/<image files>",
        dir.display()
    );
    let invalid = |what: &str| DatasetError::Index {
        path: dir.to_path_buf(),
        message: format!("{what}; {layout}"),
    };
    match fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(invalid("no such directory"))
        }
        Err(source) => {
            return Err(DatasetError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
        Ok(meta) if !meta.is_dir() => return Err(invalid("not a directory")),
        Ok(_) => {}
    }

    let mut classes: Vec<OsString> = read_dir_names(dir)?
        .into_iter()
        .filter(|name| !name.as_encoded_bytes().starts_with(b"."))
        .filter(|name| dir.join(name).is_dir())
        .collect();
    classes.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    if classes.is_empty() {
        return Err(invalid(
            "no class folders found (sub-directories whose names do not start with \".\")",
        ));
    }

    let mut samples = Vec::new();
    let mut empty_class = None;
    for (label, class) in classes.iter().enumerate() {
        let files = image_files(&dir.join(class))?;
        if files.is_empty() {
            empty_class.get_or_insert(dir.join(class));
        }
        samples.extend(files.into_iter().map(|path| Sample {
            path,
            label: label as u32,
        }));
    }
    let class_names: Vec<String> = classes
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let extensions = IMAGE_EXTENSIONS.join(", ");
    if samples.is_empty() {
        return Err(invalid(&format!(
            "no image files ({extensions}) in the class folders {class_names:?}"
        )));
    }
    if let Some(class_dir) = empty_class {
        return Err(DatasetError::Index {
            path: class_dir,
            message: format!(
                "this class folder holds no image files ({extensions}), and a class without \
                 images cannot be learned; add its images or remove the folder"
            ),
        });
    }
    Ok(ClassIndex {
        root: dir.to_path_buf(),
        class_names,
        samples,
    })
}

/// Whether Keras would list a file of this name.
pub fn is_image_name(name: &std::ffi::OsStr) -> bool {
    let lower = name.as_encoded_bytes().to_ascii_lowercase();
    IMAGE_EXTENSIONS
        .iter()
        .any(|ext| lower.ends_with(ext.as_bytes()))
}

/// The image files under `class_dir`, ordered by (root path string, file name) like
/// `sorted(os.walk(class_dir), key=root)` with each root's files sorted.
fn image_files(class_dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut roots: Vec<(PathBuf, Vec<OsString>)> = Vec::new();
    let mut pending = vec![class_dir.to_path_buf()];
    while let Some(root) = pending.pop() {
        let mut files = Vec::new();
        for name in read_dir_names(&root)? {
            let path = root.join(&name);
            let is_symlink = fs::symlink_metadata(&path)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            // As `os.walk`: a symlink to a directory is a directory (not entered); anything else,
            // including a dangling symlink, is a file.
            if path.is_dir() {
                if !is_symlink {
                    pending.push(path);
                }
            } else if is_image_name(&name) {
                files.push(name);
            }
        }
        files.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        roots.push((root, files));
    }
    roots.sort_by(|a, b| {
        a.0.as_os_str()
            .as_encoded_bytes()
            .cmp(b.0.as_os_str().as_encoded_bytes())
    });
    Ok(roots
        .into_iter()
        .flat_map(|(root, files)| files.into_iter().map(move |f| root.join(f)))
        .collect())
}

fn read_dir_names(dir: &Path) -> Result<Vec<OsString>, DatasetError> {
    let io = |source| DatasetError::Io {
        path: dir.to_path_buf(),
        source,
    };
    fs::read_dir(dir)
        .map_err(io)?
        .map(|entry| entry.map(|e| e.file_name()).map_err(io))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    fn listing(index: &ClassIndex) -> Vec<(u32, String)> {
        index
            .samples
            .iter()
            .map(|s| {
                let rel = s.path.strip_prefix(&index.root).unwrap();
                (s.label, rel.to_string_lossy().replace('\\', "/"))
            })
            .collect()
    }

    #[test]
    fn classes_are_sorted_by_code_point_and_hidden_folders_are_not_classes() {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "cat/a.jpg",
            "Dog/a.jpg",
            "Cat/a.jpg",
            ".ipynb_checkpoints/a.jpg",
            "_x/a.png",
        ] {
            touch(dir.path(), rel);
        }
        touch(dir.path(), "not_a_class.jpg");
        let index = index_directory(dir.path()).unwrap();
        assert_eq!(index.class_names, vec!["Cat", "Dog", "_x", "cat"]);
        assert_eq!(
            listing(&index),
            vec![
                (0, "Cat/a.jpg".to_string()),
                (1, "Dog/a.jpg".to_string()),
                (2, "_x/a.png".to_string()),
                (3, "cat/a.jpg".to_string()),
            ]
        );
    }

    /// Expected order as printed by Keras 3.15.1 (tests/reference/dataset_index.py).
    #[test]
    fn files_are_found_recursively_in_root_then_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "a/z.png",
            "a/b.JPG",
            "a/sub2/a.png",
            "a/sub/deeper/a.png",
            "a/sub-x/a.png",
            "a/sub/c.jpeg",
            "a/sub/B.bmp",
            "a/.hidden.gif",
            "a/._apple.jpg",
            "a/.ipynb_checkpoints/x.png",
            "a/notes.txt",
            "a/photo.webp",
            "a/photo.tif",
            "a/jpg",
            "b/1.Png",
        ] {
            touch(dir.path(), rel);
        }
        let index = index_directory(dir.path()).unwrap();
        let want = [
            // root "a": names sorted by code point ("." < "B" < "b" < "z")
            (0, "a/._apple.jpg"),
            (0, "a/.hidden.gif"),
            (0, "a/b.JPG"),
            (0, "a/z.png"),
            // then roots by path string: "a/.ipynb_checkpoints" < "a/sub" < "a/sub-x" < "a/sub/deeper" < "a/sub2"
            (0, "a/.ipynb_checkpoints/x.png"),
            (0, "a/sub/B.bmp"),
            (0, "a/sub/c.jpeg"),
            (0, "a/sub-x/a.png"),
            (0, "a/sub/deeper/a.png"),
            (0, "a/sub2/a.png"),
            (1, "b/1.Png"),
        ];
        let want: Vec<(u32, String)> = want.iter().map(|(l, p)| (*l, p.to_string())).collect();
        assert_eq!(listing(&index), want);
    }

    /// Expected listing as printed by Keras 3.15.1 (tests/reference/dataset_index.py).
    #[cfg(unix)]
    #[test]
    fn symlinked_sub_directories_are_not_entered_but_symlinked_classes_and_files_count() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "elsewhere/far.png");
        touch(dir.path(), "a/own.png");
        symlink(
            outside.path().join("elsewhere"),
            dir.path().join("a/linked_dir"),
        )
        .unwrap();
        symlink(
            outside.path().join("elsewhere/far.png"),
            dir.path().join("a/linked_file.png"),
        )
        .unwrap();
        symlink(outside.path().join("elsewhere"), dir.path().join("b")).unwrap();
        let index = index_directory(dir.path()).unwrap();
        assert_eq!(index.class_names, vec!["a", "b"]);
        assert_eq!(
            listing(&index),
            vec![
                (0, "a/linked_file.png".to_string()),
                (0, "a/own.png".to_string()),
                (1, "b/far.png".to_string()),
            ]
        );
    }

    #[test]
    fn a_class_folder_without_images_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "cats/a.png");
        touch(dir.path(), "dogs/notes.txt");
        touch(dir.path(), "dogs/.hidden/readme.md");
        touch(dir.path(), "wolves/a.jpg");
        let err = index_directory(dir.path()).unwrap_err();
        assert!(matches!(err, DatasetError::Index { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: this class folder holds no image files (.bmp, .gif, .jpeg, .jpg, .png), and \
                 a class without images cannot be learned; add its images or remove the folder",
                dir.path().join("dogs").display()
            )
        );
        // An image in a hidden sub-folder counts, as Keras lists it.
        touch(dir.path(), "dogs/.hidden/b.png");
        let index = index_directory(dir.path()).unwrap();
        assert_eq!(index.class_names, vec!["cats", "dogs", "wolves"]);
    }

    #[test]
    fn layout_errors_name_the_directory_and_the_expected_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(root, "file.txt");
        touch(root, "no_classes/.hidden/a.png");
        touch(root, "no_classes/loose.png");
        touch(root, "no_images/cats/readme.txt");
        fs::create_dir_all(root.join("no_images/dogs")).unwrap();
        let cases = [
            ("missing", "no such directory"),
            ("file.txt", "not a directory"),
            (
                "no_classes",
                "no class folders found (sub-directories whose names do not start with \".\")",
            ),
            (
                "no_images",
                "no image files (.bmp, .gif, .jpeg, .jpg, .png) in the class folders [\"cats\", \"dogs\"]",
            ),
        ];
        for (name, what) in cases {
            let path = root.join(name);
            let err = index_directory(&path).unwrap_err();
            assert!(matches!(err, DatasetError::Index { .. }), "{name}: {err:?}");
            let p = path.display();
            assert_eq!(
                err.to_string(),
                format!("{p}: {what}; expected one sub-folder per class, laid out as {p}/<class_name>/<image files>")
            );
        }
    }
}
