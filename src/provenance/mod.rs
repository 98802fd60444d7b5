//! Where a run's code came from and what it ran on: the git state of the working tree (commit,
//! branch, the local diff including untracked source files) and the environment (runner and
//! rustc versions, engine, device, CPU, threads, OS). The code component of a run key.
//!
//! A tree counts as dirty when its files differ from the commit in any way git can see: a
//! modified, staged, deleted or untracked (not ignored) file. The diff that describes the
//! difference (`CodeSnapshot::diff`; it applies with `git apply` on top of the commit) is stored
//! once per code state, as `<code-state>/code.diff` in the results directory, and its SHA-256 is
//! part of the code hash, so two different sets of local edits on the same commit never share
//! a run key.
//!
//! The code state is the code, not the data: the run's own inputs (data set directories,
//! weights files, the results directory) are left out even when they sit in the work tree
//! unignored, since they enter a run key through their own hashes; and an untracked file over
//! `LARGE_FILE_BYTES` enters the diff by size and SHA-256 rather than by content. Without this a
//! results directory inside the repository would put each sweep's results into the next one's
//! diff, and every sweep would be a new code state.
//!
//! Outside a git repository everything still works: the state says so (`in_git_repo = false`)
//! and the code hash is the fixed marker `no-git`, meaning the code is not tracked and results
//! are keyed by configuration, data, weights and seed only.
//!
//! `CodeState` is what a sweep keeps of all this: the provenance, the code hash, the name of
//! the results folder and the diff to store there.
//!
//! Only local repository reads are done (git2 is built without network support); nothing here
//! ever writes to the repository.

mod env;
mod git;
mod inputs;
mod state;

use sha2::{Digest, Sha256};

pub use env::environment;
pub use git::{
    code_state, diff_text, snapshot, snapshot_excluding, CodeSnapshot, ProvenanceError,
    LARGE_FILE_BYTES,
};
pub use state::CodeState;

use crate::base::hash::hex;
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

/// The warning for inputs that git sees as untracked files (`CodeSnapshot::unignored_inputs`):
/// which they are and the `.gitignore` lines that make git, and so every later code state,
/// skip them. `None` when there are none.
pub fn gitignore_advice(snapshot: &CodeSnapshot) -> Option<String> {
    let workdir = snapshot.workdir.as_ref()?;
    if snapshot.unignored_inputs.is_empty() {
        return None;
    }
    // Anchored patterns without a trailing slash: they match a directory and all it holds, and
    // a results directory that does not exist yet.
    let lines: String = snapshot
        .unignored_inputs
        .iter()
        .map(|input| format!("\n    /{input}"))
        .collect();
    let (is, it_is, it) = if snapshot.unignored_inputs.len() == 1 {
        ("is an input", "it is", "it")
    } else {
        ("are inputs", "they are", "them")
    };
    Some(format!(
        "warning: {} {is} of this experiment (data set, weights or results) inside the git work \
         tree {} and not ignored by git: {it_is} left out of the code state, but git lists {it} \
         as untracked and every sweep walks {it}. Add to {}:{lines}",
        snapshot.unignored_inputs.join(", "),
        workdir.display(),
        workdir.join(".gitignore").display(),
    ))
}

#[cfg(test)]
mod tests;
