//! Reading the git state of the working tree that contains a path.

use std::path::{Path, PathBuf};

use git2::{Delta, DiffFormat, DiffOptions, ErrorCode, Repository};
use sha2::{Digest, Sha256};

use super::Provenance;
use crate::config::hash::hex;

/// The code state and the diff it was computed from, read together so that they agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSnapshot {
    pub provenance: Provenance,
    /// The working tree against the commit (`git diff HEAD` plus every untracked, not ignored
    /// file as an added file, binary files as git binary patches): `git apply` restores the tree
    /// on top of the commit. Empty when the tree is clean or outside a repository. Raw bytes,
    /// because files need not be UTF-8.
    pub diff: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: cannot read the git repository: {source} (fix the repository, or run from outside it to record no code state)", path.display())]
pub struct ProvenanceError {
    pub path: PathBuf,
    pub source: git2::Error,
}

/// The git state of the repository containing `start` (searched upwards). Outside a repository:
/// `in_git_repo = false`. Errors only when a repository is found but cannot be read.
pub fn snapshot(start: &Path) -> Result<CodeSnapshot, ProvenanceError> {
    let repo = match Repository::discover(start) {
        Ok(repo) => repo,
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(outside()),
        Err(source) => {
            return Err(ProvenanceError {
                path: start.to_path_buf(),
                source,
            })
        }
    };
    let err = |source| ProvenanceError {
        path: repo.workdir().unwrap_or(repo.path()).to_path_buf(),
        source,
    };
    if repo.is_bare() {
        // No working tree, so no code a run could have used.
        return Ok(outside());
    }
    let (commit, branch) = head(&repo).map_err(err)?;
    let (diff, untracked) = diff(&repo).map_err(err)?;
    let dirty = !diff.is_empty();
    Ok(CodeSnapshot {
        provenance: Provenance {
            in_git_repo: true,
            commit,
            branch,
            dirty,
            diff_sha256: dirty.then(|| hex(&Sha256::digest(&diff))),
            untracked,
        },
        diff,
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
        },
        diff: Vec::new(),
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

/// HEAD (or the empty tree) against the working tree, through the index so staged changes and
/// newly added files count; untracked files with their content. Also the untracked, not ignored
/// files (each file, not just its directory) relative to the work tree, from the same diff so
/// that the list and the text agree.
fn diff(repo: &Repository) -> Result<(Vec<u8>, Vec<String>), git2::Error> {
    let tree = match repo.head() {
        Ok(head) => Some(head.peel_to_tree()?),
        Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => None,
        Err(e) => return Err(e),
    };
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .show_untracked_content(true)
        .include_ignored(false)
        .ignore_submodules(true)
        // Binary files as git binary patches, so their content is in the hash.
        .show_binary(true);
    let diff = repo.diff_tree_to_workdir_with_index(tree.as_ref(), Some(&mut opts))?;
    let mut out = Vec::new();
    diff.print(DiffFormat::Patch, |_, _, line| {
        // Content lines carry their origin ('+', '-', ' ') separately; headers and binary
        // patches are complete in `content`.
        if matches!(line.origin(), '+' | '-' | ' ') {
            out.push(line.origin() as u8);
        }
        out.extend_from_slice(line.content());
        true
    })?;
    let untracked = diff
        .deltas()
        .filter(|d| d.status() == Delta::Untracked)
        .filter_map(|d| d.new_file().path_bytes())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    Ok((out, untracked))
}
