//! Reading the git state of the working tree that contains a path.

use std::path::{Path, PathBuf};

use git2::{Delta, DiffOptions, ErrorCode, Patch, Repository};
use sha2::{Digest, Sha256};

use super::inputs::InputsInTree;
use super::Provenance;
use crate::base::hash::{hex, sha256_file};

/// Untracked files larger than this are recorded in the diff by path, size and SHA-256 instead
/// of by content. Hand-written sources, configuration files and notes are far smaller (this
/// repository's largest source file is about 30 KB, its Cargo.lock about 80 KB), while images,
/// weights, archives and result files are usually larger; so the diff still restores every
/// source with `git apply`, yet cannot grow with a data set or a stray download. A changed large
/// file still changes the code state, through its hash, at the cost of one streamed read.
pub const LARGE_FILE_BYTES: u64 = 256 * 1024;

/// The code state and the diff it was computed from, read together so that they agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSnapshot {
    pub provenance: Provenance,
    /// The working tree against the commit (`git diff HEAD` plus every untracked, not ignored
    /// file as an added file, binary files as git binary patches): `git apply` restores the tree
    /// on top of the commit. Untracked files over `LARGE_FILE_BYTES` are listed first, in
    /// comment lines (`# <size> <sha256> <path>`) that `git apply` skips. The run's inputs are
    /// left out (see `snapshot_excluding`). Empty when the tree is clean or outside a
    /// repository. Raw bytes, because files need not be UTF-8.
    pub diff: Vec<u8>,
    /// The work tree, when there is one.
    pub workdir: Option<PathBuf>,
    /// The inputs (relative to the work tree) under which git sees untracked, not ignored
    /// files, or would once they are written: left out of the state, but worth adding to
    /// `.gitignore`.
    pub unignored_inputs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("{}: cannot read the git repository: {source} (fix the repository, or run from outside it to record no code state)", path.display())]
    Repository { path: PathBuf, source: git2::Error },
    #[error("{}: cannot read this untracked file to hash it into the code state: {source} (make it readable, or add it to .gitignore)", path.display())]
    UntrackedFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The git state of the repository containing `start` (searched upwards). Outside a repository:
/// `in_git_repo = false`. Errors only when a repository is found but cannot be read.
pub fn snapshot(start: &Path) -> Result<CodeSnapshot, ProvenanceError> {
    snapshot_excluding(start, &[])
}

/// `snapshot`, leaving out every change (tracked or untracked) at or under one of `inputs`:
/// the data set directories, weights files and results directory of a run, which are data, not
/// code, and enter a run key through their own hashes. Inputs outside the work tree change
/// nothing.
pub fn snapshot_excluding(
    start: &Path,
    inputs: &[PathBuf],
) -> Result<CodeSnapshot, ProvenanceError> {
    // The parent of a bare file name is the empty path, which git2 finds no repository from:
    // it means the current directory, as it does for the experiment's own paths.
    let start = if start.as_os_str().is_empty() {
        Path::new(".")
    } else {
        start
    };
    let repo = match Repository::discover(start) {
        Ok(repo) => repo,
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(outside()),
        Err(source) => {
            return Err(ProvenanceError::Repository {
                path: start.to_path_buf(),
                source,
            })
        }
    };
    let Some(workdir) = repo.workdir().map(Path::to_path_buf) else {
        // A bare repository: no working tree, so no code a run could have used.
        return Ok(outside());
    };
    let err = |source| ProvenanceError::Repository {
        path: workdir.clone(),
        source,
    };
    let (commit, branch) = head(&repo).map_err(err)?;
    let inputs = InputsInTree::new(&workdir, inputs);
    let parts = diff(&repo, &workdir, &inputs)?;
    let dirty = !parts.diff.is_empty();
    Ok(CodeSnapshot {
        provenance: Provenance {
            in_git_repo: true,
            commit,
            branch,
            dirty,
            diff_sha256: dirty.then(|| hex(&Sha256::digest(&parts.diff))),
            untracked: parts.untracked,
            diff_file: None,
        },
        diff: parts.diff,
        workdir: Some(workdir),
        unignored_inputs: parts.unignored_inputs,
    })
}

/// `snapshot(start).provenance`, and never an error: a repository that cannot be read gives
/// `in_git_repo = true, dirty = true, diff_sha256 = None`, whose code hash is `git-unreadable`.
/// Use `snapshot` to learn why.
pub fn code_state(start: &Path) -> Provenance {
    match snapshot(start) {
        Ok(s) => s.provenance,
        Err(_) => Provenance {
            in_git_repo: true,
            commit: None,
            branch: None,
            dirty: true,
            diff_sha256: None,
            untracked: Vec::new(),
            diff_file: None,
        },
    }
}

/// The full diff of the working tree containing `start` against its commit (see
/// `CodeSnapshot::diff`); `diff_sha256` is the SHA-256 of exactly these bytes.
pub fn diff_text(start: &Path) -> Result<Vec<u8>, ProvenanceError> {
    snapshot(start).map(|s| s.diff)
}

fn outside() -> CodeSnapshot {
    CodeSnapshot {
        provenance: Provenance {
            in_git_repo: false,
            commit: None,
            branch: None,
            dirty: false,
            diff_sha256: None,
            untracked: Vec::new(),
            diff_file: None,
        },
        diff: Vec::new(),
        workdir: None,
        unignored_inputs: Vec::new(),
    }
}

/// (commit id, branch name). A repository without commits has no commit but may have a branch
/// name; a detached HEAD has no branch.
fn head(repo: &Repository) -> Result<(Option<String>, Option<String>), git2::Error> {
    match repo.head() {
        Ok(head) => {
            let commit = head.peel_to_commit()?.id().to_string();
            let branch = head
                .is_branch()
                .then(|| head.shorthand().map(str::to_string))
                .flatten();
            Ok((Some(commit), branch))
        }
        Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => {
            let branch = repo
                .find_reference("HEAD")
                .ok()
                .and_then(|r| r.symbolic_target().map(str::to_string))
                .and_then(|t| t.strip_prefix("refs/heads/").map(str::to_string));
            Ok((None, branch))
        }
        Err(e) => Err(e),
    }
}

struct DiffParts {
    diff: Vec<u8>,
    untracked: Vec<String>,
    unignored_inputs: Vec<String>,
}

/// HEAD (or the empty tree) against the working tree, through the index so staged changes and
/// newly added files count; untracked files with their content, or their hash when large. Also
/// the untracked, not ignored files (each file, not just its directory) relative to the work
/// tree, from the same diff so that the list and the text agree.
///
/// Each file's patch is generated on its own, and only for files that are kept, so that a
/// large untracked file or a results tree is never loaded (git2 reads a file whole to print its
/// patch). Ignored files are skipped by git2 itself, with git's rules: every `.gitignore` in the
/// tree, `.git/info/exclude` and the `core.excludesFile` (or `~/.config/git/ignore`) of the
/// configuration.
fn diff(
    repo: &Repository,
    workdir: &Path,
    inputs: &InputsInTree,
) -> Result<DiffParts, ProvenanceError> {
    let err = |source| ProvenanceError::Repository {
        path: workdir.to_path_buf(),
        source,
    };
    let tree = match repo.head() {
        Ok(head) => Some(head.peel_to_tree().map_err(err)?),
        Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => None,
        Err(e) => return Err(err(e)),
    };
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .show_untracked_content(true)
        .include_ignored(false)
        .ignore_submodules(true)
        // Binary files as git binary patches, so their content is in the hash.
        .show_binary(true);
    let diff = repo
        .diff_tree_to_workdir_with_index(tree.as_ref(), Some(&mut opts))
        .map_err(err)?;
    let mut patches = Vec::new();
    let mut large = Vec::new();
    let mut untracked = Vec::new();
    let mut unignored_inputs: Vec<String> = Vec::new();
    for (index, delta) in diff.deltas().enumerate() {
        let Some(path) = delta
            .new_file()
            .path_bytes()
            .or(delta.old_file().path_bytes())
        else {
            continue;
        };
        let path = String::from_utf8_lossy(path).into_owned();
        let is_untracked = delta.status() == Delta::Untracked;
        if let Some(input) = inputs.covering(&path) {
            if is_untracked && !unignored_inputs.iter().any(|i| i == input) {
                unignored_inputs.push(input.to_string());
            }
            continue;
        }
        if is_untracked {
            // The file's own bytes as a path (not the lossy text), so that any name is found.
            let file = workdir.join(delta.new_file().path().unwrap_or(Path::new(&path)));
            let large_file = std::fs::symlink_metadata(&file)
                .is_ok_and(|m| m.is_file() && m.len() > LARGE_FILE_BYTES);
            untracked.push(path.clone());
            if large_file {
                let (sha256, len) =
                    sha256_file(&file).map_err(|source| ProvenanceError::UntrackedFile {
                        path: file.clone(),
                        source,
                    })?;
                large.push(format!("# {len} {sha256} {}\n", path.escape_debug()));
                continue;
            }
        }
        if let Some(mut patch) = Patch::from_diff(&diff, index).map_err(err)? {
            patches.extend_from_slice(&patch.to_buf().map_err(err)?);
        }
    }
    let mut text = Vec::new();
    if !large.is_empty() {
        text.extend_from_slice(
            format!(
                "# Untracked files over {LARGE_FILE_BYTES} bytes, by size and SHA-256 (not restored by `git apply`):\n"
            )
            .as_bytes(),
        );
        for line in large {
            text.extend_from_slice(line.as_bytes());
        }
    }
    text.extend_from_slice(&patches);
    // An input that does not exist yet (the results directory before the first sweep) has no
    // untracked files to show, but will have: ask git's rules whether it will be ignored.
    for input in inputs.paths() {
        let missing = std::fs::symlink_metadata(workdir.join(input)).is_err();
        if missing && !repo.is_path_ignored(format!("{input}/")).unwrap_or(true) {
            unignored_inputs.push(input.clone());
        }
    }
    unignored_inputs.sort();
    unignored_inputs.dedup();
    Ok(DiffParts {
        diff: text,
        untracked,
        unignored_inputs,
    })
}
