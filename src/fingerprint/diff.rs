//! Comparing manifests: what changed in a split since a run (for `runner reproduce`), which
//! file contents appear in both splits (validation leaking into training), and which appear
//! under two labels of one split (the same image taught as two answers).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::{FileEntry, Manifest};

/// How one split differs from a stored manifest. Paths are relative to the split root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestDiff {
    /// (stored, now), when the class folders differ.
    pub classes: Option<(Vec<String>, Vec<String>)>,
    pub added: Vec<FileEntry>,
    pub removed: Vec<FileEntry>,
    pub changed: Vec<Change>,
}

/// A path present in both manifests whose size, content or label differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub old: FileEntry,
    pub new: FileEntry,
}

impl ManifestDiff {
    /// What changed from `old` (e.g. the manifest stored with a run) to `new`.
    pub fn between(old: &Manifest, new: &Manifest) -> ManifestDiff {
        let before: BTreeMap<&str, &FileEntry> =
            old.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let after: BTreeMap<&str, &FileEntry> =
            new.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let mut diff = ManifestDiff {
            classes: (old.classes != new.classes)
                .then(|| (old.classes.clone(), new.classes.clone())),
            ..ManifestDiff::default()
        };
        for (path, &f) in &after {
            match before.get(path) {
                None => diff.added.push(f.clone()),
                Some(&o) if o != f => diff.changed.push(Change {
                    old: o.clone(),
                    new: f.clone(),
                }),
                Some(_) => {}
            }
        }
        diff.removed = before
            .iter()
            .filter(|(path, _)| !after.contains_key(*path))
            .map(|(_, &f)| f.clone())
            .collect();
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_none()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
    }
}

/// One line per difference: `classes: [..] -> [..]`, `+ path (size bytes, label)`,
/// `- path (...)`, `~ path: content 1a2b3c4d -> 5e6f7a8b, size 10 -> 12, label a -> b`.
impl fmt::Display for ManifestDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((old, new)) = &self.classes {
            writeln!(f, "classes: {old:?} -> {new:?}")?;
        }
        for a in &self.added {
            writeln!(f, "+ {} ({} bytes, {})", a.path, a.size, a.label)?;
        }
        for r in &self.removed {
            writeln!(f, "- {} ({} bytes, {})", r.path, r.size, r.label)?;
        }
        for c in &self.changed {
            let mut what = Vec::new();
            if c.old.sha256 != c.new.sha256 {
                what.push(format!(
                    "content {} -> {}",
                    short(&c.old.sha256),
                    short(&c.new.sha256)
                ));
            }
            if c.old.size != c.new.size {
                what.push(format!("size {} -> {}", c.old.size, c.new.size));
            }
            if c.old.label != c.new.label {
                what.push(format!("label {} -> {}", c.old.label, c.new.label));
            }
            writeln!(f, "~ {}: {}", c.new.path, what.join(", "))?;
        }
        Ok(())
    }
}

/// The same content in the training and the validation split: the model would be validated on
/// images it trained on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub sha256: String,
    /// Paths relative to each split's root.
    pub train: Vec<String>,
    pub validation: Vec<String>,
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the same file content (sha256 {}) is in train ({}) and validation ({})",
            short(&self.sha256),
            self.train.join(", "),
            self.validation.join(", ")
        )
    }
}

/// Every content hash found in both splits, ordered by the first training path.
pub fn duplicates_across(train: &Manifest, validation: &Manifest) -> Vec<Duplicate> {
    let mut in_validation: HashMap<&str, Vec<String>> = HashMap::new();
    for f in &validation.files {
        in_validation
            .entry(f.sha256.as_str())
            .or_default()
            .push(f.path.clone());
    }
    let mut found: Vec<Duplicate> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for f in &train.files {
        let Some(paths) = in_validation.get(f.sha256.as_str()) else {
            continue;
        };
        match index.get(f.sha256.as_str()) {
            Some(&i) => found[i].train.push(f.path.clone()),
            None => {
                index.insert(f.sha256.as_str(), found.len());
                found.push(Duplicate {
                    sha256: f.sha256.clone(),
                    train: vec![f.path.clone()],
                    validation: paths.clone(),
                });
            }
        }
    }
    found
}

/// The same content under two or more class labels of one split: the model is taught
/// different answers for one image, which usually means a file was copied into the wrong folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelConflict {
    pub sha256: String,
    /// (path relative to the split root, class name) of every file with this content.
    pub files: Vec<(String, String)>,
}

impl fmt::Display for LabelConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<String> = self
            .files
            .iter()
            .map(|(path, label)| format!("{path} ({label})"))
            .collect();
        write!(
            f,
            "the same file content (sha256 {}) is under different labels: {}",
            short(&self.sha256),
            files.join(", ")
        )
    }
}

/// Every content hash of `manifest` found under more than one label, ordered by its first path.
pub fn label_conflicts(manifest: &Manifest) -> Vec<LabelConflict> {
    let mut by_content: BTreeMap<&str, Vec<&FileEntry>> = BTreeMap::new();
    for f in &manifest.files {
        by_content.entry(f.sha256.as_str()).or_default().push(f);
    }
    let mut found: Vec<LabelConflict> = by_content
        .into_iter()
        .filter(|(_, files)| files.iter().any(|f| f.label != files[0].label))
        .map(|(sha, files)| LabelConflict {
            sha256: sha.to_string(),
            files: files
                .iter()
                .map(|f| (f.path.clone(), f.label.clone()))
                .collect(),
        })
        .collect();
    // Manifest files are sorted by path, so each conflict's files are too.
    found.sort_by(|a, b| a.files[0].0.cmp(&b.files[0].0));
    found
}

/// The first 8 hex digits, enough to tell hashes apart in a message.
fn short(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}
