//! `runner fetch` against a local HTTP server on 127.0.0.1 serving small generated archives with
//! the layouts of the known data sets (the catalogue is replaced through
//! `RUNNER_DATASET_CATALOGUE`; the built-in entries and their checks are untouched).

use std::io::{BufRead, Cursor, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::*;

/// A small JPEG (with the JFIF marker, as the `image` crate writes it) of one colour.
fn jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(36, 36, |x, y| {
        image::Rgb([seed.wrapping_mul(37), (x * 7) as u8, (y * 5) as u8 ^ seed])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]));
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    // Stored, not deflated: the archive is as large as its files (the full-disk test needs that).
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in files {
        writer.start_file(name.as_str(), options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// The layout of `kagglecatsanddogs_5340.zip`: `PetImages/{Cat,Dog}/<n>.jpg`, 30 good JPEGs a
/// class, plus an empty file, a PNG named `.jpg`, a truncated JPEG and a `Thumbs.db`.
fn pet_images() -> Vec<u8> {
    let mut files = Vec::new();
    for (class, offset) in [("Cat", 0u8), ("Dog", 100u8)] {
        for n in 0..30u8 {
            files.push((format!("PetImages/{class}/{n}.jpg"), jpeg(offset + n)));
        }
    }
    files.push(("PetImages/Cat/666.jpg".into(), Vec::new()));
    files.push(("PetImages/Dog/11702.jpg".into(), png()));
    let truncated = jpeg(7)[..300].to_vec();
    files.push(("PetImages/Dog/999.jpg".into(), truncated));
    files.push(("PetImages/Cat/Thumbs.db".into(), b"thumbnails".to_vec()));
    zip_of(&files)
}

/// The layout of `cats_and_dogs_filtered.zip`.
fn filtered() -> Vec<u8> {
    let mut files = vec![(
        "cats_and_dogs_filtered/vectorize.py".to_string(),
        b"print()\n".to_vec(),
    )];
    for (split, count) in [("train", 4u8), ("validation", 2u8)] {
        for (class, stem) in [("cats", "cat"), ("dogs", "dog")] {
            for n in 0..count {
                files.push((
                    format!("cats_and_dogs_filtered/{split}/{class}/{stem}.{n}.jpg"),
                    jpeg(n + count),
                ));
            }
        }
    }
    zip_of(&files)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the server did: the `Range` header of each request (None: none).
type Log = Arc<Mutex<Vec<Option<u64>>>>;

/// Serve `body` for as many requests as `plan` has entries, then stop listening. An entry
/// `Some(n)` sends only the first `n` bytes of the answer and closes the connection. Honours
/// `Range: bytes=N-` with a 206.
fn serve(body: Vec<u8>, plan: Vec<Option<usize>>) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/archive.zip", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for cut in plan {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut range = None;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse::<u64>().ok();
                }
                line.clear();
            }
            seen.lock().unwrap().push(range);
            let from = range.unwrap_or(0) as usize;
            let status = if range.is_some() {
                "206 Partial Content"
            } else {
                "200 OK"
            };
            let part = &body[from..];
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                part.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&part[..cut.unwrap_or(part.len()).min(part.len())]);
        }
    });
    (url, log)
}

struct Setup {
    home: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Setup {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn datasets(&self) -> PathBuf {
        self.home.path().join("runner/datasets")
    }

    /// Write a catalogue with one entry; `sha256: None` leaves it to the first download.
    fn catalogue(&self, name: &str, layout: &str, url: &str, body: &[u8], sha: Option<&str>) {
        let sha = sha.map_or(String::new(), |s| format!("sha256 = \"{s}\"\n"));
        std::fs::write(
            self.home.path().join("catalogue.toml"),
            format!(
                "[[dataset]]\nname = \"{name}\"\narchive = \"{name}.zip\"\nurl = \"{url}\"\nsize = {}\n{sha}layout = \"{layout}\"\n",
                body.len()
            ),
        )
        .unwrap();
    }

    fn experiment(&self, name: &str) -> PathBuf {
        let path = self.home.path().join("exp.toml");
        std::fs::write(
            &path,
            format!(
                r#"
name = "fetched"
seeds = [0]

[dataset]
known = "{name}"
image_size = [32, 32]
batch_size = 8

[model]
channels = [4, 8, 8, 8, 8]
weights = "none"
head = {{ units = [8] }}

[training]
epochs = 1

[[variants]]
name = "feature_extraction"
training.freeze = ["block*"]
"#
            ),
        )
        .unwrap();
        path
    }

    fn runner(&self) -> assert_cmd::Command {
        let mut cmd = runner();
        cmd.env("RUNNER_HOME", self.home.path().join("runner"))
            .env(
                "RUNNER_DATASET_CATALOGUE",
                self.home.path().join("catalogue.toml"),
            )
            .env("HOME", self.home.path())
            .current_dir(self.home.path());
        cmd
    }

    /// Every path under the data cache, relative to it.
    fn listing(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                out.push(path.strip_prefix(base).unwrap().display().to_string());
                if path.is_dir() {
                    walk(&path, base, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.datasets(), &self.datasets(), &mut out);
        out.sort();
        out
    }
}

fn stdout(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

fn stderr(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

/// The full set's rules: corrupt and non-JPEG files left out and named, the rest split by the
/// hash rule; the printed root hashes are those `runner hash` gives; a second fetch downloads
/// nothing; then a sweep trains on the fetched layout.
#[test]
fn fetch_filters_splits_and_the_sweep_trains_on_it() {
    let s = Setup::new();
    let body = pet_images();
    let (url, log) = serve(body.clone(), vec![None]);
    s.catalogue("pets", "pet-images", &url, &body, Some(&sha256(&body)));
    let exp = s.experiment("pets");

    // Before fetching, the sweep says what to run.
    let out = s.runner().arg("sweep").arg(&exp).assert().code(1);
    assert!(
        stderr(&out).contains("data set \"pets\" is not fetched"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("runner fetch"), "{}", stderr(&out));

    let out = s
        .runner()
        .args(["fetch", "-q"])
        .arg(&exp)
        .assert()
        .success();
    let text = stdout(&out);
    assert!(
        text.contains(
            "left out, no JFIF marker (2): PetImages/Cat/666.jpg, PetImages/Dog/11702.jpg"
        ),
        "{text}"
    );
    assert!(
        text.contains("left out, cannot be decoded (1): PetImages/Dog/999.jpg"),
        "{text}"
    );
    let dir = s.datasets().join("pets");
    for (split, count) in [("train", 0), ("validation", 0)] {
        let _ = count;
        for class in ["cats", "dogs"] {
            let files: Vec<_> = std::fs::read_dir(dir.join(split).join(class))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(!files.is_empty(), "{split}/{class} is empty");
            for f in &files {
                let member = format!(
                    "PetImages/{}/{f}",
                    if class == "cats" { "Cat" } else { "Dog" }
                );
                assert_eq!(runner::dataset::fetch::split_of(&member), split, "{member}");
            }
        }
    }
    let record = read_json(&dir.join("fetched.json"));
    assert_eq!(
        record["train_files"].as_u64().unwrap() + record["validation_files"].as_u64().unwrap(),
        60
    );
    // The root hashes printed are `runner hash`'s.
    for split in ["train", "validation"] {
        let hash = s
            .runner()
            .arg("hash")
            .arg(dir.join(split))
            .assert()
            .success();
        let root = stdout(&hash).trim().to_string();
        assert!(
            text.contains(&format!("{split} root hash {root}")),
            "{text}"
        );
    }
    // Only the data set is left: no archive, no partial files, no temporary directories.
    assert_eq!(
        s.listing()
            .iter()
            .filter(|p| !p.starts_with("pets/"))
            .collect::<Vec<_>>(),
        ["pets"]
    );

    // Fetching again downloads nothing (the server would not answer a second request).
    let out = s
        .runner()
        .args(["fetch", "-q"])
        .arg(&exp)
        .assert()
        .success();
    assert!(
        stdout(&out).contains("pets: present in"),
        "{}",
        stdout(&out)
    );
    assert_eq!(log.lock().unwrap().len(), 1);

    let out = s
        .runner()
        .arg("sweep")
        .arg(&exp)
        .args(["--no-report", "--results"])
        .arg(s.home.path().join("results"))
        .assert();
    assert!(out.get_output().status.success(), "{}", stderr(&out));
    let runs: Vec<PathBuf> = std::fs::read_dir(s.home.path().join("results"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .join("fetched/feature_extraction/seed-0/metrics.csv")
        })
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(runs.len(), 1, "no trained cell");
}

/// A connection that breaks half-way keeps what arrived; the server then disappears (the next
/// fetch fails, naming the URL, and keeps it too); a new server is asked for the rest only.
#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let s = Setup::new();
    let body = filtered();
    let half = body.len() / 2;
    let (url, log) = serve(body.clone(), vec![Some(half)]);
    s.catalogue("filtered", "filtered", &url, &body, Some(&sha256(&body)));
    let exp = s.experiment("filtered");
    let out = s.runner().args(["fetch", "-q"]).arg(&exp).assert().code(1);
    assert!(
        stderr(&out).contains("run the command again to resume"),
        "{}",
        stderr(&out)
    );
    let part = s.datasets().join("filtered.zip.part");
    assert_eq!(std::fs::read(&part).unwrap(), &body[..half]);

    // The server is gone now.
    let out = s.runner().args(["fetch", "-q"]).arg(&exp).assert().code(1);
    assert!(
        stderr(&out).contains(&format!("downloading {url}: ")),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&part).unwrap().len(), half);
    assert!(!s.datasets().join("filtered").exists());

    let (url2, log2) = serve(body.clone(), vec![None]);
    s.catalogue("filtered", "filtered", &url2, &body, Some(&sha256(&body)));
    s.runner()
        .args(["fetch", "-q"])
        .arg(&exp)
        .assert()
        .success();
    assert_eq!(*log.lock().unwrap(), [None]);
    assert_eq!(*log2.lock().unwrap(), [Some(half as u64)]);
    let record = read_json(&s.datasets().join("filtered/fetched.json"));
    assert_eq!(record["train_files"], 8);
    assert_eq!(record["validation_files"], 4);
    assert!(s.datasets().join("filtered/train/cats/cat.0.jpg").is_file());
    assert!(!s.datasets().join("filtered/vectorize.py").exists());
}

/// A download whose SHA-256 differs from the published one is an error naming both hashes, and
/// nothing is kept.
#[test]
fn a_wrong_checksum_keeps_nothing() {
    let s = Setup::new();
    let body = filtered();
    let (url, _) = serve(body.clone(), vec![None]);
    let wrong = "0".repeat(64);
    s.catalogue("filtered", "filtered", &url, &body, Some(&wrong));
    let exp = s.experiment("filtered");
    let out = s.runner().args(["fetch", "-q"]).arg(&exp).assert().code(1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "SHA-256 is {}, but {wrong} is expected",
            sha256(&body)
        )),
        "{err}"
    );
    assert_eq!(s.listing(), Vec::<String>::new());
}

/// Without a published SHA-256 the first download's is recorded, and a later download that
/// differs is an error naming both.
#[test]
fn an_unpublished_checksum_is_recorded_and_then_enforced() {
    let s = Setup::new();
    let body = filtered();
    let (url, _) = serve(body.clone(), vec![None]);
    s.catalogue("filtered", "filtered", &url, &body, None);
    let exp = s.experiment("filtered");
    s.runner()
        .args(["fetch", "-q"])
        .arg(&exp)
        .assert()
        .success();
    let recorded = s.datasets().join("filtered.zip.sha256");
    assert_eq!(
        std::fs::read_to_string(&recorded).unwrap().trim(),
        sha256(&body)
    );
    // Same size, other bytes: the publisher's file changed.
    std::fs::remove_dir_all(s.datasets().join("filtered")).unwrap();
    let mut other = body.clone();
    let last = other.len() - 1;
    other[last] ^= 1;
    let (url, _) = serve(other.clone(), vec![None]);
    s.catalogue("filtered", "filtered", &url, &other, None);
    let out = s.runner().args(["fetch", "-q"]).arg(&exp).assert().code(1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "SHA-256 is {}, but {} is expected (recorded by the first download",
            sha256(&other),
            sha256(&body)
        )),
        "{err}"
    );
    assert_eq!(s.listing(), ["filtered.zip.sha256"]);
}

/// A disk that fills up during extraction: an error, no half-extracted directory, and the
/// verified archive is kept so the next fetch needs no download. Needs root (a tmpfs mount).
#[test]
fn a_full_disk_during_extraction_leaves_no_partial_data_set() {
    let s = Setup::new();
    let body = pet_images();
    let mount = s.home.path().join("runner");
    std::fs::create_dir_all(&mount).unwrap();
    // Room for the archive (stored, uncompressed) but not for its files as well.
    let size = body.len() + body.len() / 2;
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&mount)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "skipped: cannot mount a small tmpfs to fill ({}); needs root",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: cannot run mount ({e}); needs root and util-linux");
            return;
        }
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let (url, log) = serve(body.clone(), vec![None]);
    s.catalogue("pets", "pet-images", &url, &body, Some(&sha256(&body)));
    let exp = s.experiment("pets");
    let out = s.runner().args(["fetch", "-q"]).arg(&exp).assert().code(1);
    let err = stderr(&out);
    assert!(err.contains("extracting pets.zip into"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(s.listing(), ["pets.zip"]);
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn list_shows_the_known_data_sets_and_weights() {
    let s = Setup::new();
    let out = runner()
        .env("RUNNER_HOME", s.home.path().join("runner"))
        .env_remove("RUNNER_DATASET_CATALOGUE")
        .env("HOME", s.home.path())
        .args(["fetch", "--list"])
        .assert()
        .success();
    let text = stdout(&out);
    for expected in [
        "cats-and-dogs-filtered: cats_and_dogs_filtered.zip (68606236 bytes, sha256 recorded on first download",
        "cats-vs-dogs: kagglecatsanddogs_5340.zip (824887076 bytes, sha256 b7974bd00a84a99921f36ee4403f089853777b5ae8d151c76a86e64900334af9)",
        &format!("not fetched: {}", s.home.path().join("runner/datasets/cats-vs-dogs").display()),
        "keras:vgg16-imagenet",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}
