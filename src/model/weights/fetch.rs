//! `runner weights fetch`: download a known weights file into the cache, hashing while it
//! streams, and keep it only if the hash is the published one. The file is written under a
//! temporary name in the destination directory and renamed into place, so the cache never holds
//! a partial or unverified file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::known::KnownWeights;
use super::{FileHashes, Hashes, WeightsError};

/// Whether to draw a progress bar (on stderr) while downloading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadProgress {
    Bar,
    Quiet,
}

/// Download `known` from `url` (default: its official URL) into `dir` (default: the cache),
/// verify its published hash and return the final path and the file's hashes. An existing,
/// verified file is kept and not downloaded again.
pub fn fetch(
    known: &KnownWeights,
    dir: &Path,
    url: Option<&str>,
    progress: DownloadProgress,
) -> Result<(PathBuf, FileHashes), WeightsError> {
    let dest = dir.join(known.file);
    if dest.is_file() {
        let hashes = super::hash_file(&dest)?;
        if known.verify(&dest, &hashes).is_ok() {
            return Ok((dest, hashes));
        }
    }
    let url = url.unwrap_or(known.url);
    std::fs::create_dir_all(dir).map_err(|source| WeightsError::Io {
        path: dir.into(),
        error: source,
    })?;
    let tmp = dir.join(format!(".{}.{}.download", known.file, std::process::id()));
    let result = download(url, &tmp, progress).and_then(|hashes| {
        known.verify(&dest, &hashes)?;
        std::fs::rename(&tmp, &dest).map_err(|source| WeightsError::Io {
            path: dest.clone(),
            error: source,
        })?;
        Ok(hashes)
    });
    match result {
        Ok(hashes) => Ok((dest, hashes)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Stream `url` into `path`, returning the hashes of what was written.
fn download(
    url: &str,
    path: &Path,
    progress: DownloadProgress,
) -> Result<FileHashes, WeightsError> {
    let fail = |message: String| WeightsError::Download {
        url: url.into(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        // A stalled transfer fails instead of hanging forever; a slow one is fine.
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let length = response.body().content_length();
    let bar = match progress {
        DownloadProgress::Bar => {
            ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr())
        }
        DownloadProgress::Quiet => ProgressBar::hidden(),
    };
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    let mut reader = response.body_mut().as_reader();
    let io = |source| WeightsError::Io {
        path: path.into(),
        error: source,
    };
    let mut file = std::fs::File::create(path).map_err(io)?;
    let mut hashes = Hashes::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(io)?;
        hashes.update(&buf[..n]);
        total += n as u64;
        bar.set_position(total);
    }
    file.sync_all().map_err(io)?;
    bar.finish_and_clear();
    if let Some(expected) = length {
        if total != expected {
            return Err(fail(format!("received {total} of {expected} bytes")));
        }
    }
    Ok(hashes.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preprocessing;
    use crate::model::weights::known::{Expected, OtherCache};
    use crate::model::weights::WeightsFormat;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// Serve `body` over HTTP on 127.0.0.1 for `requests` requests; return the base URL.
    fn serve(body: &'static [u8], requests: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(body).unwrap();
            }
        });
        url
    }

    const BODY: &[u8] = b"not really VGG16 weights, but hashed like them\n";

    fn known(expected: Expected) -> KnownWeights {
        KnownWeights {
            name: "test:weights",
            file: "w.bin",
            url: "http://127.0.0.1:9/unused",
            expected,
            format: WeightsFormat::Safetensors,
            preprocessing: Preprocessing::Rescale,
            other_cache: OtherCache::Keras,
        }
    }

    /// MD5 of BODY: `printf 'not really VGG16 weights, but hashed like them\n' | md5sum`.
    const BODY_MD5: &str = "2322e1323d0bc3d42dd004fd500862fe";

    #[test]
    fn a_verified_download_lands_in_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let url = serve(BODY, 1);
        let k = known(Expected::Md5(BODY_MD5));
        let (path, hashes) = fetch(
            &k,
            dir.path(),
            Some(&format!("{url}/w.bin")),
            DownloadProgress::Quiet,
        )
        .unwrap();
        assert_eq!(path, dir.path().join("w.bin"));
        assert_eq!(std::fs::read(&path).unwrap(), BODY);
        assert_eq!(hashes.md5, BODY_MD5);
        // Present and verified: no second request (the server would refuse it).
        let (again, _) = fetch(&k, dir.path(), Some(&url), DownloadProgress::Quiet).unwrap();
        assert_eq!(again, path);
    }

    #[test]
    fn a_wrong_hash_leaves_nothing_in_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let url = serve(BODY, 1);
        let k = known(Expected::Sha256Prefix("397923af"));
        let err = fetch(&k, dir.path(), Some(&url), DownloadProgress::Quiet).unwrap_err();
        assert!(
            matches!(
                err,
                WeightsError::KnownHashMismatch {
                    what: "SHA-256",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_unreachable_server_is_a_download_error() {
        let dir = tempfile::tempdir().unwrap();
        // Bind then drop: nothing listens on this port any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/w.bin");
        let err = fetch(
            &known(Expected::Md5(BODY_MD5)),
            dir.path(),
            Some(&url),
            DownloadProgress::Quiet,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("downloading {url}: ")),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
