//! The git state of temporary repositories built with git2: clean, modified, staged, untracked,
//! ignored (by every kind of rule), large untracked files, the run's inputs left out, without
//! commits, detached, and no repository at all.

use std::fs;
use std::path::{Path, PathBuf};

use git2::{Repository, RepositoryInitOptions, Signature};
use sha2::{Digest, Sha256};

use super::*;

/// A repository on branch `main` with `files` committed.
fn repo_with(dir: &Path, files: &[(&str, &str)]) -> Repository {
    let mut opts = RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(dir, &opts).unwrap();
    for (path, content) in files {
        write(dir, path, content);
    }
    commit_all(&repo, "initial");
    repo
}

fn write(dir: &Path, path: &str, content: &str) {
    let path = dir.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn commit_all(repo: &Repository, message: &str) -> git2::Oid {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now("test", "test@example.com").unwrap();
    let parent = repo.head().ok().map(|h| h.peel_to_commit().unwrap());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
}

fn state(dir: &Path) -> CodeSnapshot {
    snapshot(dir).unwrap()
}

const GITIGNORE: (&str, &str) = (".gitignore", "*.log\nresults/\n");

#[test]
fn a_clean_tree_records_commit_and_branch() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_with(dir.path(), &[("src/a.rs", "fn a() {}\n"), GITIGNORE]);
    let head = repo
        .head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .id()
        .to_string();
    // Ignored files do not make a tree dirty.
    write(dir.path(), "run.log", "noise");
    write(dir.path(), "results/x/run.json", "{}");

    let s = state(dir.path());
    assert_eq!(
        s.provenance,
        Provenance {
            in_git_repo: true,
            commit: Some(head.clone()),
            branch: Some("main".into()),
            dirty: false,
            diff_sha256: None,
            untracked: vec![],
            diff_file: None,
        }
    );
    assert!(s.diff.is_empty());
    // Found from a sub-directory too.
    assert_eq!(state(&dir.path().join("src")).provenance, s.provenance);
    assert_eq!(code_label(&s.provenance), head[..12]);
    assert_eq!(code_state(dir.path()), s.provenance);
    assert!(diff_text(dir.path()).unwrap().is_empty());
}

#[test]
fn a_modified_tracked_file_makes_the_tree_dirty_and_is_in_the_diff() {
    let dir = tempfile::tempdir().unwrap();
    repo_with(
        dir.path(),
        &[("src/a.rs", "fn a() {}\nconst X: u32 = 1;\n")],
    );
    let clean = state(dir.path()).provenance;

    write(dir.path(), "src/a.rs", "fn a() {}\nconst X: u32 = 2;\n");
    let s = state(dir.path());
    assert!(s.provenance.dirty);
    assert!(s.provenance.untracked.is_empty());
    assert_eq!(s.provenance.commit, clean.commit);
    let text = String::from_utf8(s.diff.clone()).unwrap();
    assert!(
        text.starts_with("diff --git a/src/a.rs b/src/a.rs\n"),
        "{text}"
    );
    assert!(
        text.contains("\n-const X: u32 = 1;\n+const X: u32 = 2;\n"),
        "{text}"
    );
    // `diff_sha256` is the hash of exactly the stored diff (sha2 here, as sha256sum would).
    assert_eq!(
        s.provenance.diff_sha256.as_deref(),
        Some(crate::base::hash::hex(&Sha256::digest(&s.diff)).as_str())
    );
    assert_eq!(diff_text(dir.path()).unwrap(), s.diff);

    // Another edit: another diff hash, another code hash; back to the commit: the clean hash.
    write(dir.path(), "src/a.rs", "fn a() {}\nconst X: u32 = 3;\n");
    let other = state(dir.path()).provenance;
    assert_ne!(other.diff_sha256, s.provenance.diff_sha256);
    let hashes = [
        code_hash(&clean),
        code_hash(&s.provenance),
        code_hash(&other),
    ];
    assert!(hashes[0] != hashes[1] && hashes[1] != hashes[2] && hashes[0] != hashes[2]);
    write(dir.path(), "src/a.rs", "fn a() {}\nconst X: u32 = 1;\n");
    assert_eq!(code_hash(&state(dir.path()).provenance), hashes[0]);
}

#[test]
fn staged_and_deleted_files_count() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_with(dir.path(), &[("a.txt", "a\n"), ("b.txt", "b\n")]);
    // Staged: a new file added to the index only.
    write(dir.path(), "staged.txt", "new\n");
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("staged.txt")).unwrap();
    index.write().unwrap();
    fs::remove_file(dir.path().join("b.txt")).unwrap();
    let s = state(dir.path());
    let text = String::from_utf8(s.diff).unwrap();
    assert!(s.provenance.dirty);
    assert!(s.provenance.untracked.is_empty(), "staged is not untracked");
    assert!(
        text.contains("diff --git a/b.txt b/b.txt\ndeleted file mode 100644\n"),
        "{text}"
    );
    assert!(
        text.contains("diff --git a/staged.txt b/staged.txt\nnew file mode 100644\n"),
        "{text}"
    );
    assert!(text.contains("\n+new\n"), "{text}");
}

#[test]
fn untracked_files_are_listed_with_their_content_and_ignored_files_are_not() {
    let dir = tempfile::tempdir().unwrap();
    repo_with(dir.path(), &[("a.txt", "a\n"), GITIGNORE]);
    write(dir.path(), "notes/idea.txt", "try a lower learning rate\n");
    write(dir.path(), "z.txt", "z\n");
    write(dir.path(), "notes/debug.log", "ignored\n");
    let s = state(dir.path());
    assert!(s.provenance.dirty);
    assert_eq!(s.provenance.untracked, ["notes/idea.txt", "z.txt"]);
    let text = String::from_utf8(s.diff.clone()).unwrap();
    assert!(text.contains("+++ b/notes/idea.txt\n"), "{text}");
    assert!(text.contains("\n+try a lower learning rate\n"), "{text}");
    assert!(!text.contains("debug.log"), "{text}");

    // The content of an untracked file is part of the hash, not just its name.
    write(dir.path(), "z.txt", "Z\n");
    assert_ne!(
        state(dir.path()).provenance.diff_sha256,
        s.provenance.diff_sha256
    );
}

#[test]
fn binary_changes_are_in_the_diff_and_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    repo_with(dir.path(), &[("a.txt", "a\n")]);
    let bin = dir.path().join("w.bin");
    fs::write(&bin, [0u8, 1, 2, 3, 0, 255]).unwrap();
    let first = state(dir.path());
    fs::write(&bin, [0u8, 1, 2, 3, 0, 254]).unwrap();
    let second = state(dir.path());
    let text = String::from_utf8_lossy(&first.diff);
    assert!(text.contains("GIT binary patch"), "{text}");
    assert_ne!(first.provenance.diff_sha256, second.provenance.diff_sha256);
}

#[test]
fn a_repository_without_commits_has_a_branch_but_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RepositoryInitOptions::new();
    opts.initial_head("trunk");
    Repository::init_opts(dir.path(), &opts).unwrap();
    write(dir.path(), "a.txt", "a\n");
    let p = state(dir.path()).provenance;
    assert!(p.in_git_repo && p.dirty);
    assert_eq!(
        (p.commit.as_deref(), p.branch.as_deref()),
        (None, Some("trunk"))
    );
    assert_eq!(p.untracked, ["a.txt"]);
    assert!(
        code_label(&p).starts_with("unborn-dirty-"),
        "{}",
        code_label(&p)
    );
}

#[test]
fn a_detached_head_has_no_branch() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_with(dir.path(), &[("a.txt", "a\n")]);
    let first = repo.head().unwrap().target().unwrap();
    write(dir.path(), "a.txt", "b\n");
    commit_all(&repo, "second");
    repo.set_head_detached(first).unwrap();
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .unwrap();
    let p = state(dir.path()).provenance;
    assert_eq!(p.commit, Some(first.to_string()));
    assert_eq!(p.branch, None);
    assert!(!p.dirty, "{:?}", p);
}

#[test]
fn outside_a_repository_it_says_so_and_never_fails() {
    let dir = tempfile::tempdir().unwrap();
    // The temporary directory must not itself lie inside a repository for this test to mean
    // anything.
    if Repository::discover(dir.path()).is_ok() {
        eprintln!("skipped: the temporary directory is inside a git repository");
        return;
    }
    let p = code_state(dir.path());
    assert_eq!(
        p,
        Provenance {
            in_git_repo: false,
            commit: None,
            branch: None,
            dirty: false,
            diff_sha256: None,
            untracked: vec![],
            diff_file: None,
        }
    );
    assert_eq!(code_hash(&p), "no-git");
    assert_eq!(code_label(&p), "no-git");
    assert!(diff_text(dir.path()).unwrap().is_empty());
    // A path that does not exist is outside any repository too.
    assert!(!code_state(&dir.path().join("missing/deeper")).in_git_repo);
}

#[test]
fn code_hash_and_label_follow_the_documented_form() {
    let p = Provenance {
        in_git_repo: true,
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        branch: Some("main".into()),
        dirty: true,
        diff_sha256: Some("fedcba98".repeat(8)),
        untracked: vec![],
        diff_file: None,
    };
    // printf 'commit:0123...4567\ndiff:fedcba98...\n' | sha256sum
    assert_eq!(
        code_hash(&p),
        "7ce6899434fd1595a41ac885cf64aa6f6ff6bb6bb5d219aa12cb9893d2fdfbcd"
    );
    assert_eq!(code_label(&p), "0123456789ab-dirty-fedcba98");
    let unreadable = Provenance {
        diff_sha256: None,
        ..p
    };
    assert_eq!(code_hash(&unreadable), UNREADABLE);
}

/// `len` bytes that zlib cannot shrink, so that a binary patch of them would be as large.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[test]
fn an_untracked_file_over_the_size_cap_is_recorded_by_size_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    repo_with(dir.path(), &[("a.txt", "a\n")]);
    let cap = LARGE_FILE_BYTES as usize;
    let big = noise(cap + 1, 7);
    fs::create_dir_all(dir.path().join("scratch")).unwrap();
    fs::write(dir.path().join("scratch/big.bin"), &big).unwrap();
    // At the cap exactly, a file is still kept whole.
    write(dir.path(), "edge.txt", &"x".repeat(cap));
    write(dir.path(), "small.txt", "kept\n");
    let s = state(dir.path());
    assert_eq!(
        s.provenance.untracked,
        ["edge.txt", "scratch/big.bin", "small.txt"]
    );
    let text = String::from_utf8(s.diff.clone()).unwrap();
    let sha = crate::base::hash::hex(&Sha256::digest(&big));
    assert!(
        text.starts_with("# Untracked files over 262144 bytes, by size and SHA-256"),
        "{}",
        &text[..200]
    );
    assert!(
        text.contains(&format!("\n# {} {sha} scratch/big.bin\n", cap + 1)),
        "{}",
        &text[..400]
    );
    assert!(!text.contains("b/scratch/big.bin"), "no patch of its bytes");
    assert!(text.contains("+++ b/edge.txt\n") && text.contains("\n+kept\n"));
    assert!(s.diff.len() < cap + 4096, "{} bytes", s.diff.len());

    // Its content still counts: one byte changed, another code state.
    let mut changed = big.clone();
    changed[cap / 2] ^= 1;
    fs::write(dir.path().join("scratch/big.bin"), &changed).unwrap();
    assert_ne!(
        state(dir.path()).provenance.diff_sha256,
        s.provenance.diff_sha256
    );
}

#[test]
fn nested_info_and_global_ignore_rules_are_respected() {
    let dir = tempfile::tempdir().unwrap();
    let global = tempfile::tempdir().unwrap();
    let repo = repo_with(
        dir.path(),
        &[("src/a.rs", "fn a() {}\n"), ("sub/.gitignore", "*.out\n")],
    );
    fs::write(global.path().join("ignore"), "*.swp\n").unwrap();
    repo.config()
        .unwrap()
        .set_str(
            "core.excludesFile",
            global.path().join("ignore").to_str().unwrap(),
        )
        .unwrap();
    write(dir.path(), ".git/info/exclude", "/local/\n");
    write(
        dir.path(),
        "sub/deeper/run.out",
        "ignored by sub/.gitignore\n",
    );
    write(
        dir.path(),
        "src/.a.rs.swp",
        "ignored by core.excludesFile\n",
    );
    write(
        dir.path(),
        "local/notes.txt",
        "ignored by .git/info/exclude\n",
    );
    let s = state(dir.path());
    assert!(!s.provenance.dirty, "{}", String::from_utf8_lossy(&s.diff));
    // The nested rule applies only below its directory.
    write(dir.path(), "top.out", "not ignored\n");
    assert_eq!(state(dir.path()).provenance.untracked, ["top.out"]);
}

#[test]
fn the_runs_inputs_are_left_out_tracked_or_not() {
    let dir = tempfile::tempdir().unwrap();
    repo_with(
        dir.path(),
        &[
            ("src/a.rs", "fn a() {}\n"),
            ("data/train/cats/0.png", "old"),
        ],
    );
    let clean = state(dir.path()).provenance;
    let inputs = [
        dir.path().join("data/train"),
        dir.path().join("results"),
        // Outside the tree: nothing to leave out.
        PathBuf::from("/elsewhere/weights.h5"),
    ];
    // Before the first sweep the results directory does not exist: git's rules say whether it
    // will be ignored. A tracked data set needs no advice.
    let before = snapshot_excluding(dir.path(), &inputs).unwrap();
    assert_eq!(before.unignored_inputs, ["results"]);
    write(dir.path(), "data/train/cats/0.png", "changed");
    write(dir.path(), "data/train/dogs/1.png", "new");
    write(dir.path(), "results/abc/tiny/v/seed-0/run.json", "{}");
    let s = snapshot_excluding(dir.path(), &inputs).unwrap();
    assert_eq!(s.provenance, clean, "{}", String::from_utf8_lossy(&s.diff));
    assert_eq!(s.unignored_inputs, ["data/train", "results"]);
    let advice = gitignore_advice(&s).unwrap();
    assert!(
        advice.contains("data/train, results are inputs of this experiment")
            && advice.ends_with(".gitignore:\n    /data/train\n    /results"),
        "{advice}"
    );
    // Without leaving the inputs out, the same tree is dirty with all three changes.
    let all = state(dir.path()).provenance;
    assert!(all.dirty);
    assert_eq!(
        all.untracked,
        [
            "data/train/dogs/1.png",
            "results/abc/tiny/v/seed-0/run.json"
        ]
    );

    // A sibling that only shares a prefix is code, and the inputs are still left out of it.
    write(dir.path(), "data/training.txt", "notes\n");
    let s = snapshot_excluding(dir.path(), &inputs).unwrap();
    assert_eq!(s.provenance.untracked, ["data/training.txt"]);
    let text = String::from_utf8(s.diff).unwrap();
    assert!(text.contains("+++ b/data/training.txt"), "{text}");
    assert!(
        !text.contains("0.png") && !text.contains("run.json"),
        "{text}"
    );

    // The advised lines work: ignored inputs need no advice (the tracked file changed under
    // data/train is still left out).
    let (_, lines) = advice.split_once(".gitignore:\n").unwrap();
    let lines: Vec<&str> = lines.lines().map(str::trim).collect();
    write(dir.path(), ".gitignore", &(lines.join("\n") + "\n"));
    fs::remove_file(dir.path().join("data/training.txt")).unwrap();
    let s = snapshot_excluding(dir.path(), &inputs).unwrap();
    assert_eq!(s.provenance.untracked, [".gitignore"]);
    assert!(s.unignored_inputs.is_empty());
    assert_eq!(gitignore_advice(&s), None);
    fs::remove_dir_all(dir.path().join("results")).unwrap();
    let s = snapshot_excluding(dir.path(), &inputs).unwrap();
    assert!(s.unignored_inputs.is_empty(), "{:?}", s.unignored_inputs);
}
