//! Where a run's code came from and what it ran on: the git state of the working tree (commit,
//! branch, the full local diff including untracked files) and the environment (runner and rustc
//! versions, engine, device, CPU, threads, OS). The code component of a run key.
//!
//! A tree counts as dirty when its files differ from the commit in any way git can see: a
//! modified, staged, deleted or untracked (not ignored) file. The diff that describes the
//! difference is kept whole (`CodeSnapshot::diff`, stored beside a run as `code.diff`; it applies
//! with `git apply` on top of the commit), and its SHA-256 is part of the code hash, so two
//! different sets of local edits on the same commit never share a run key.
//!
//! Outside a git repository everything still works: the state says so (`in_git_repo = false`)
//! and the code hash is the fixed marker `no-git`, meaning the code is not tracked and results
//! are keyed by configuration, data, weights and seed only.
//!
//! Only local repository reads are done (git2 is built without network support); nothing here
//! ever writes to the repository.

mod env;
mod git;

use sha2::{Digest, Sha256};

pub use env::environment;
pub use git::{code_state, diff_text, snapshot, CodeSnapshot, ProvenanceError};

use crate::config::hash::hex;
pub use crate::store::record::{Environment, Kernels, Provenance};

/// The code hash outside a git repository.
pub const NO_GIT: &str = "no-git";
/// The code hash when a repository was found but could not be read (see `code_state`).
pub const UNREADABLE: &str = "git-unreadable";

/// The code component of a run key: the hex SHA-256 of
/// `commit:<commit id or "none">\ndiff:<diff sha256 or "clean">\n`, `no-git` outside a
/// repository, `git-unreadable` when the repository could not be read.
pub fn code_hash(p: &Provenance) -> String {
    if !p.in_git_repo {
        return NO_GIT.to_string();
    }
    if p.dirty && p.diff_sha256.is_none() {
        return UNREADABLE.to_string();
    }
    let text = format!(
        "commit:{}\ndiff:{}\n",
        p.commit.as_deref().unwrap_or("none"),
        p.diff_sha256.as_deref().unwrap_or("clean")
    );
    hex(&Sha256::digest(text.as_bytes()))
}

/// A short, readable name for the code state, for directory names and messages: the commit's
/// first 12 hex digits, `-dirty-` and the diff hash's first 8 when the tree is dirty; `unborn`
/// for a repository without commits; `no-git` outside a repository.
pub fn code_label(p: &Provenance) -> String {
    if !p.in_git_repo {
        return NO_GIT.to_string();
    }
    let commit = p
        .commit
        .as_deref()
        .map_or("unborn", |c| c.get(..12).unwrap_or(c));
    match (&p.diff_sha256, p.dirty) {
        (Some(d), _) => format!("{commit}-dirty-{}", d.get(..8).unwrap_or(d)),
        (None, true) => format!("{commit}-{UNREADABLE}"),
        (None, false) => commit.to_string(),
    }
}

#[cfg(test)]
mod tests;
