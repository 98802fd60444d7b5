//! `runner fetch` for a known data set: download its archive (resumable, `base::download`),
//! check its size and SHA-256, extract it into a temporary directory beside the destination and
//! rename that into place. Nothing half-downloaded or half-extracted ever has the final name:
//! `<root>/<name>/` appears whole, with `fetched.json` inside, or not at all.
//!
//! The full Asirra set (`Layout::PetImages`) is filtered as TensorFlow Datasets' `cats_vs_dogs`
//! builder does (tensorflow/datasets, tensorflow_datasets/image_classification/cats_vs_dogs.py):
//! only `PetImages/{Cat,Dog}/<digits>.jpg` are read, and a file is left out unless `JFIF`
//! occurs in what `fobj.peek(10)` returns, which for a zip member (CPython's
//! `ZipExtFile.peek`) is up to its first 512 bytes. Files that pass that test but that the
//! runner cannot decode are left out too, and both lists are reported by name. The rest is split
//! by the SHA-256 of the member's path: validation when the first 8 bytes, read as a big-endian
//! integer, are divisible by 5 (about 20%), training otherwise, so every user gets the same split.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256 as Sha};

use super::known::{KnownDataset, Layout, Sha256};
use crate::base::download::{download_part, part_path, Progress};

/// What `fetched.json` records about a fetched data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchRecord {
    pub name: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
    pub train_files: usize,
    pub validation_files: usize,
    /// Archive members left out for lack of the JFIF marker (TensorFlow Datasets' rule).
    pub dropped_not_jfif: Vec<String>,
    /// Archive members with the marker that cannot be decoded.
    pub dropped_undecodable: Vec<String>,
}

pub struct Fetched {
    pub dir: PathBuf,
    /// Already there: nothing was downloaded.
    pub already: bool,
    pub record: FetchRecord,
}

/// Fetch `known` into `root` (see the module docs). `log` receives one line per step.
pub fn fetch(
    known: &KnownDataset,
    root: &Path,
    progress: Progress,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<Fetched> {
    let dir = known.dir(root);
    if known.is_present(root) {
        let path = known.record_path(root);
        let record: FetchRecord =
            serde_json::from_slice(&std::fs::read(&path)?).with_context(|| {
                format!(
                    "{}: unreadable; delete {} and fetch again",
                    path.display(),
                    dir.display()
                )
            })?;
        return Ok(Fetched {
            dir,
            already: true,
            record,
        });
    }
    if dir.exists() {
        bail!(
            "{} exists but was not written by `runner fetch` (no fetched.json): move it away and \
             fetch again, or point dataset.train_dir / validation_dir at it",
            dir.display()
        );
    }
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let archive = root.join(&known.archive);
    let sha256 = if archive.is_file() {
        // Kept from an earlier fetch whose extraction failed: check it again.
        let (sha256, size) = crate::base::hash::sha256_file(&archive)?;
        if size != known.size {
            std::fs::remove_file(&archive)?;
            bail!(
                "{}: {size} bytes, expected {}; removed it, fetch again",
                archive.display(),
                known.size
            );
        }
        verify(known, root, &archive, &sha256)?;
        sha256
    } else {
        let part = part_path(&archive);
        log(&format!(
            "{}: downloading {} ({} bytes)",
            known.name, known.url, known.size
        ));
        download_part(&known.url, &part, Some(known.size), progress)?;
        let (sha256, _) = crate::base::hash::sha256_file(&part)?;
        verify(known, root, &part, &sha256)?;
        std::fs::rename(&part, &archive).with_context(|| {
            format!("cannot rename {} to {}", part.display(), archive.display())
        })?;
        sha256
    };
    log(&format!(
        "{}: {} verified (SHA-256 {sha256}); extracting",
        known.name, known.archive
    ));

    remove_abandoned(root, &known.name);
    let tmp = root.join(format!(".{}.extracting-{}", known.name, std::process::id()));
    let extracted =
        extract(known, &archive, &tmp).and_then(|(train, validation, not_jfif, undecodable)| {
            let record = FetchRecord {
                name: known.name.clone(),
                url: known.url.clone(),
                size: known.size,
                sha256: sha256.clone(),
                train_files: train,
                validation_files: validation,
                dropped_not_jfif: not_jfif,
                dropped_undecodable: undecodable,
            };
            let json = serde_json::to_vec_pretty(&record)?;
            let path = tmp.join("fetched.json");
            std::fs::write(&path, json)
                .with_context(|| format!("cannot write {}", path.display()))?;
            std::fs::File::open(&path)?.sync_all()?;
            std::fs::rename(&tmp, &dir)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), dir.display()))?;
            Ok(record)
        });
    match extracted {
        Ok(record) => {
            // The archive is no longer needed; the data set's files and record are what count.
            let _ = std::fs::remove_file(&archive);
            Ok(Fetched {
                dir,
                already: false,
                record,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e.context(format!(
                "extracting {} into {} failed; nothing was kept but the verified archive {} \
                 (fetch again to retry without downloading)",
                known.archive,
                root.display(),
                archive.display()
            )))
        }
    }
}

/// Check a finished download's SHA-256 against the published one, or the one recorded by the
/// first download (recording it when there is none yet). On mismatch the file is removed.
fn verify(known: &KnownDataset, root: &Path, file: &Path, sha256: &str) -> anyhow::Result<()> {
    let mismatch = |expected: &str, whence: String| {
        let _ = std::fs::remove_file(file);
        anyhow::anyhow!(
            "{}: the download's SHA-256 is {sha256}, but {expected} is expected ({whence}); the \
             download was removed",
            known.url
        )
    };
    match &known.sha256 {
        Sha256::Published(expected) if expected.eq_ignore_ascii_case(sha256) => Ok(()),
        Sha256::Published(expected) => {
            Err(mismatch(expected, format!("published: {}", known.source)))
        }
        Sha256::RecordedOnFirstDownload => {
            let record = known.recorded_sha256_path(root);
            match std::fs::read_to_string(&record) {
                Ok(text) if text.trim().eq_ignore_ascii_case(sha256) => Ok(()),
                Ok(text) => Err(mismatch(
                    text.trim(),
                    format!(
                        "recorded by the first download in {}; if the publisher changed the \
                         file, delete that record and fetch again",
                        record.display()
                    ),
                )),
                Err(_) => {
                    crate::base::fs::write_atomic(&record, format!("{sha256}\n").as_bytes())?;
                    Ok(())
                }
            }
        }
    }
}

/// Remove extraction directories of this data set left by processes that no longer run.
fn remove_abandoned(root: &Path, name: &str) {
    let prefix = format!(".{name}.extracting-");
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !crate::base::process::process_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

type Extracted = (usize, usize, Vec<String>, Vec<String>);

/// Extract `archive` into `tmp` as `{train,validation}/<class>/<file>`.
fn extract(known: &KnownDataset, archive: &Path, tmp: &Path) -> anyhow::Result<Extracted> {
    let file = std::fs::File::open(archive)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .with_context(|| format!("{}: not a readable zip archive", archive.display()))?;
    let mut not_jfif = Vec::new();
    let mut written: Vec<(String, PathBuf)> = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        if entry.is_dir() {
            continue;
        }
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let parts: Vec<String> = name
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let member = parts.join("/");
        let target = match known.layout {
            Layout::Filtered => match parts.as_slice() {
                [_, split, class, file]
                    if (split == "train" || split == "validation") && !file.starts_with('.') =>
                {
                    tmp.join(split).join(class).join(file)
                }
                _ => continue,
            },
            Layout::PetImages => match parts.as_slice() {
                [top, class, file] if top == "PetImages" && is_digits_jpg(file) => {
                    let class = match class.as_str() {
                        "Cat" => "cats",
                        "Dog" => "dogs",
                        _ => continue,
                    };
                    tmp.join(split_of(&member)).join(class).join(file)
                }
                _ => continue,
            },
        };
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("{}: cannot read {member}", archive.display()))?;
        if known.layout == Layout::PetImages && !has_jfif_marker(&bytes) {
            not_jfif.push(member);
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, &bytes)
            .with_context(|| format!("cannot write {}", target.display()))?;
        written.push((member, target));
    }
    let mut undecodable = Vec::new();
    if known.layout == Layout::PetImages {
        let bad: Vec<(String, PathBuf)> = written
            .par_iter()
            .filter(|(_, path)| {
                std::fs::read(path)
                    .map(|bytes| super::decode::decode_rgb(&bytes).is_err())
                    .unwrap_or(true)
            })
            .cloned()
            .collect();
        for (member, path) in bad {
            std::fs::remove_file(&path)?;
            written.retain(|(m, _)| *m != member);
            undecodable.push(member);
        }
    }
    not_jfif.sort();
    undecodable.sort();
    let validation = written
        .iter()
        .filter(|(_, p)| {
            p.strip_prefix(tmp)
                .is_ok_and(|r| r.starts_with("validation"))
        })
        .count();
    Ok((
        written.len() - validation,
        validation,
        not_jfif,
        undecodable,
    ))
}

fn is_digits_jpg(file: &str) -> bool {
    file.strip_suffix(".jpg")
        .is_some_and(|stem| !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))
}

/// TensorFlow Datasets' test: `JFIF` within the bytes `ZipExtFile.peek(10)` returns (up to 512).
pub fn has_jfif_marker(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(512)]
        .windows(4)
        .any(|w| w == b"JFIF")
}

/// The split of an archive member (`PetImages/Cat/12.jpg`): see the module docs.
pub fn split_of(member: &str) -> &'static str {
    let digest = Sha::digest(member.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    if u64::from_be_bytes(first) % 5 == 0 {
        "validation"
    } else {
        "train"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jfif_test_looks_at_the_first_512_bytes_only() {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16];
        bytes.extend_from_slice(b"JFIF\0");
        assert!(has_jfif_marker(&bytes));
        assert!(!has_jfif_marker(b""));
        let mut late = vec![0u8; 509];
        late.extend_from_slice(b"JFIF");
        assert!(!has_jfif_marker(&late));
        late.remove(0);
        assert!(has_jfif_marker(&late));
    }

    #[test]
    fn only_numbered_jpg_files_are_members() {
        assert!(is_digits_jpg("123.jpg"));
        assert!(!is_digits_jpg("Thumbs.db"));
        assert!(!is_digits_jpg(".jpg"));
        assert!(!is_digits_jpg("12.JPG"));
    }

    /// The split is a fixed function of the member's path (these values never change), and
    /// about a fifth of the files go to validation.
    #[test]
    fn the_split_is_a_fixed_hash_of_the_path() {
        let validation = (0..5000)
            .filter(|n| split_of(&format!("PetImages/Cat/{n}.jpg")) == "validation")
            .count();
        assert!((900..1100).contains(&validation), "{validation}");
        let firsts: Vec<&str> = (0..6)
            .map(|n| split_of(&format!("PetImages/Dog/{n}.jpg")))
            .collect();
        assert_eq!(
            firsts,
            ["train", "train", "train", "train", "train", "validation"]
        );
    }
}
