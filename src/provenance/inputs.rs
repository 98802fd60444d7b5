//! The run's own inputs (data set directories, weights files, the results directory) as paths
//! inside the work tree, so that the code state can leave them out.
//!
//! A data set or a results tree that sits in the repository without being ignored is not code:
//! counting it would make every new result, or every added image, a new code state (and copy
//! the files into the stored diff). Inputs are already part of a run key through their own
//! hashes (data set manifests, weights SHA-256), so leaving them out loses nothing.

use std::path::{Component, Path, PathBuf};

/// Input paths that lie inside one work tree, relative to it with `/` separators (as git2
/// spells delta paths), without a trailing slash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputsInTree {
    paths: Vec<String>,
}

impl InputsInTree {
    /// The inputs among `inputs` (absolute, or relative to the current directory; they need not
    /// exist yet) that lie inside `workdir`. Each is compared both as written and with symlinks
    /// resolved, because git2 reports the work tree as found while an experiment may name its
    /// paths through a link (e.g. `/tmp` on macOS). An input that is the work tree itself, or
    /// contains it, is dropped: leaving it out would leave out all the code.
    pub fn new(workdir: &Path, inputs: &[PathBuf]) -> Self {
        let roots = forms(workdir);
        let mut paths: Vec<String> = inputs
            .iter()
            .flat_map(|input| forms(input))
            .flat_map(|input| {
                roots
                    .iter()
                    .filter_map(move |root| relative(&input, root))
                    .collect::<Vec<_>>()
            })
            .filter(|rel| !rel.is_empty())
            .collect();
        paths.sort();
        paths.dedup();
        InputsInTree { paths }
    }

    /// The inputs, relative to the work tree.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The input that `path` (relative to the work tree, as git2 gives it; a trailing `/` marks
    /// a directory) is, or lies under.
    pub fn covering(&self, path: &str) -> Option<&str> {
        let path = path.strip_suffix('/').unwrap_or(path);
        self.paths
            .iter()
            .find(|input| {
                path.strip_prefix(input.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .map(String::as_str)
    }
}

/// `path` made absolute and normalised lexically, and the same with its parent's symlinks
/// resolved (the last component is kept as is, so a link that is itself the input is found as
/// the link). Paths that cannot be made absolute give nothing.
fn forms(path: &Path) -> Vec<PathBuf> {
    let Ok(absolute) = std::path::absolute(path) else {
        return Vec::new();
    };
    let lexical = normalise(&absolute);
    let mut out = vec![lexical.clone()];
    if let Some(resolved) = resolve_existing_prefix(&lexical) {
        if resolved != lexical {
            out.push(resolved);
        }
    }
    out
}

/// `.` and `..` removed without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The deepest existing ancestor of `path` (its parent at most) canonicalised, with the rest of
/// the path appended.
fn resolve_existing_prefix(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let mut rest = vec![name.to_os_string()];
    let mut existing = path.parent()?;
    loop {
        if let Ok(mut resolved) = existing.canonicalize() {
            for part in rest.iter().rev() {
                resolved.push(part);
            }
            return Some(resolved);
        }
        rest.push(existing.file_name()?.to_os_string());
        existing = existing.parent()?;
    }
}

/// `path` relative to `root` in git's spelling, when it lies inside it.
fn relative(path: &Path, root: &Path) -> Option<String> {
    let rest = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = rest
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_matched_by_whole_path_components() {
        let root = Path::new("/repo");
        let inputs = InputsInTree::new(
            root,
            &[
                PathBuf::from("/repo/data/train"),
                PathBuf::from("/repo/experiments/../results"),
                PathBuf::from("/elsewhere/weights.h5"),
                PathBuf::from("/repo"),
                PathBuf::from("/"),
            ],
        );
        assert_eq!(inputs.paths, ["data/train", "results"]);
        assert_eq!(inputs.covering("data/train"), Some("data/train"));
        assert_eq!(inputs.covering("data/train/"), Some("data/train"));
        assert_eq!(inputs.covering("data/train/cats/1.png"), Some("data/train"));
        assert_eq!(inputs.covering("results/x/run.json"), Some("results"));
        assert_eq!(inputs.covering("data/training/1.png"), None);
        assert_eq!(inputs.covering("data"), None);
        assert_eq!(inputs.covering("results2/a"), None);
        assert_eq!(inputs.covering("src/main.rs"), None);
    }

    #[test]
    fn a_symlinked_work_tree_still_contains_its_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir_all(real.join("data")).unwrap();
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&real, &link).unwrap();
            // The tree found through its real path, the input named through the link, and one
            // that does not exist yet.
            let inputs =
                InputsInTree::new(&real, &[link.join("data"), link.join("results/not-yet")]);
            assert_eq!(inputs.paths, ["data", "results/not-yet"]);
        }
    }
}
