//! `runner weights fetch`: download a known weights file into the cache and keep it only if its
//! hash is the published one. The download goes to `<file>.part` in the destination directory
//! (resumed after an interruption, `base::download`) and is renamed into place once verified, so
//! the cache never holds a partial or unverified file under the final name.

use std::path::{Path, PathBuf};

use super::known::KnownWeights;
use super::{FileHashes, WeightsError};
pub use crate::base::download::Progress as DownloadProgress;
use crate::base::download::{download_part, part_path};

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
    let part = part_path(&dest);
    download_part(url, &part, None, progress).map_err(|e| WeightsError::Download {
        url: url.into(),
        message: match e {
            crate::base::download::DownloadError::Http { message, .. } => message,
            other => other.to_string(),
        },
    })?;
    let verified = super::hash_file(&part).and_then(|hashes| {
        known.verify(&dest, &hashes)?;
        std::fs::rename(&part, &dest).map_err(|source| WeightsError::Io {
            path: dest.clone(),
            error: source,
        })?;
        Ok(hashes)
    });
    match verified {
        Ok(hashes) => Ok((dest, hashes)),
        Err(e) => {
            // A finished download with the wrong hash is no use to resume from.
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preprocessing;
    use crate::model::weights::known::{Expected, OtherCache};
    use crate::model::weights::WeightsFormat;
    use std::io::{BufRead, Write};
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
