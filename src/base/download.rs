//! Downloads that survive an interruption: an HTTP GET streamed into `<dest>.part`, resumed
//! with a range request when the `.part` file is already there, with a progress bar. The caller
//! verifies the finished `.part` file (size, hash) and only then renames it into place, so a
//! partial or unverified file never has the final name. Also the runner's cache root, shared by
//! downloaded weights and data sets.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether to draw a progress bar (on stderr) while downloading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Bar,
    Quiet,
}

impl Progress {
    /// A bar when stderr is a terminal and `quiet` is off.
    pub fn for_terminal(quiet: bool) -> Self {
        if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Progress::Quiet
        } else {
            Progress::Bar
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server could not be reached, refused, or the transfer broke off. What was received
    /// is kept in the `.part` file, and the next attempt resumes from there.
    #[error("downloading {url}: {message}")]
    Http { url: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The finished download has another size than the published one (the `.part` is removed).
    #[error("downloading {url}: received {actual} bytes, expected {expected}; the partial file was removed, run the command again")]
    Size {
        url: String,
        expected: u64,
        actual: u64,
    },
}

/// The name a download of `dest` is written under until it is verified.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Download `url` into `part`, continuing an existing `part` file with a range request (a
/// server that ignores the range sends the whole file, which then replaces it). When `size` is
/// known, a `part` file of that size is taken as finished without a request, and a finished
/// download of another size is an error (the file is removed). Returns the file's size.
/// Nothing is created until the server answers.
pub fn download_part(
    url: &str,
    part: &Path,
    size: Option<u64>,
    progress: Progress,
) -> Result<u64, DownloadError> {
    let fail = |message: String| DownloadError::Http {
        url: url.into(),
        message,
    };
    let io = |source| DownloadError::Io {
        path: part.into(),
        source,
    };
    let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if let Some(size) = size {
        if have == size {
            return Ok(have);
        }
        if have > size {
            std::fs::remove_file(part).map_err(io)?;
            have = 0;
        }
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        // A stalled transfer fails instead of hanging forever; a slow one is fine.
        .timeout_per_read(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let mut response = request.call().map_err(|e| fail(e.to_string()))?;
    let status = response.status().as_u16();
    let (mut file, start) = match status {
        206 if have > 0 => (
            OpenOptions::new().append(true).open(part).map_err(io)?,
            have,
        ),
        200 => (File::create(part).map_err(io)?, 0),
        416 if have > 0 => {
            // The range starts at or past the end: the part file is likely complete already.
            return finish(url, part, have, size);
        }
        _ => return Err(fail(format!("the server answered HTTP {status}"))),
    };
    let length = response.body().content_length().map(|n| n + start);
    let bar = match progress {
        Progress::Bar => {
            ProgressBar::with_draw_target(length.or(size), ProgressDrawTarget::stderr())
        }
        Progress::Quiet => ProgressBar::hidden(),
    };
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar.set_position(start);
    let mut reader = response.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = start;
    let result = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                file.write_all(&buf[..n]).map_err(io)?;
                total += n as u64;
                bar.set_position(total);
            }
            Err(e) => break Err(e),
        }
    };
    file.sync_all().map_err(io)?;
    bar.finish_and_clear();
    let short = length.is_some_and(|expected| total < expected);
    if result.is_err() || short {
        let of = length.map_or(String::new(), |n| format!(" of {n}"));
        let cause = match result {
            Err(e) => e.to_string(),
            Ok(()) => "the connection closed".to_string(),
        };
        return Err(fail(format!(
            "the transfer stopped after {total}{of} bytes ({cause}); kept in {}, run the \
             command again to resume",
            part.display()
        )));
    }
    finish(url, part, total, size)
}

fn finish(url: &str, part: &Path, total: u64, size: Option<u64>) -> Result<u64, DownloadError> {
    match size {
        Some(expected) if expected != total => {
            let _ = std::fs::remove_file(part);
            Err(DownloadError::Size {
                url: url.into(),
                expected,
                actual: total,
            })
        }
        _ => Ok(total),
    }
}

/// The runner's cache root: `$RUNNER_HOME`, else `$XDG_CACHE_HOME/runner`, else
/// `~/.cache/runner` (weights go to `weights/` below it, data sets to `datasets/`).
pub fn cache_root(
    runner_home: Option<&Path>,
    xdg_cache_home: Option<&Path>,
    home: Option<&Path>,
) -> PathBuf {
    if let Some(home) = runner_home {
        return home.to_path_buf();
    }
    xdg_cache_home
        .map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("runner")
}

/// `cache_root` from this process's environment (empty variables count as unset).
pub fn cache_root_from_env() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    cache_root(
        var("RUNNER_HOME").as_deref(),
        var("XDG_CACHE_HOME").as_deref(),
        var("HOME").as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    const BODY: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

    /// Serve BODY once per request, honouring `Range: bytes=N-` with a 206; the first request
    /// sends only the first `cut` bytes and closes. Returns the URL and the Range headers seen.
    fn serve(requests: usize, cut: Option<usize>) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/f", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().take(requests).enumerate() {
                let mut stream = stream.unwrap();
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut range = None;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range = Some(v.trim().trim_end_matches('-').to_string());
                    }
                    line.clear();
                }
                log.lock().unwrap().push(range.clone());
                let from: usize = range.as_deref().map_or(0, |r| r.parse().unwrap());
                let status = if from > 0 {
                    "206 Partial Content"
                } else {
                    "200 OK"
                };
                let body = &BODY[from..];
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                let n = match cut {
                    Some(c) if i == 0 => c,
                    _ => body.len(),
                };
                stream.write_all(&body[..n]).unwrap();
            }
        });
        (url, seen)
    }

    #[test]
    fn an_interrupted_download_resumes_with_a_range_request() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        let (url, seen) = serve(2, Some(10));
        let err = download_part(&url, &part, Some(BODY.len() as u64), Progress::Quiet).unwrap_err();
        assert!(err.to_string().contains("after 10 of 36 bytes"), "{err}");
        assert_eq!(std::fs::read(&part).unwrap(), &BODY[..10]);
        let n = download_part(&url, &part, Some(BODY.len() as u64), Progress::Quiet).unwrap();
        assert_eq!(n, BODY.len() as u64);
        assert_eq!(std::fs::read(&part).unwrap(), BODY);
        assert_eq!(*seen.lock().unwrap(), [None, Some("10".to_string())]);
    }

    #[test]
    fn a_finished_part_file_needs_no_request() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        std::fs::write(&part, BODY).unwrap();
        // Nothing listens on port 9: a request would fail.
        let n = download_part(
            "http://127.0.0.1:9/f",
            &part,
            Some(BODY.len() as u64),
            Progress::Quiet,
        )
        .unwrap();
        assert_eq!(n, BODY.len() as u64);
    }

    #[test]
    fn a_download_of_the_wrong_size_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        let (url, _) = serve(1, None);
        let err = download_part(&url, &part, Some(99), Progress::Quiet).unwrap_err();
        assert!(
            matches!(
                err,
                DownloadError::Size {
                    expected: 99,
                    actual: 36,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!part.exists());
    }

    #[test]
    fn the_cache_root_follows_runner_home_then_xdg_then_home() {
        let home = Path::new("/home/u");
        assert_eq!(
            cache_root(None, None, Some(home)),
            Path::new("/home/u/.cache/runner")
        );
        assert_eq!(
            cache_root(None, Some(Path::new("/x")), Some(home)),
            Path::new("/x/runner")
        );
        assert_eq!(
            cache_root(Some(Path::new("/r")), Some(Path::new("/x")), Some(home)),
            Path::new("/r")
        );
    }

    #[test]
    fn the_part_file_sits_beside_the_destination() {
        assert_eq!(part_path(Path::new("/d/a.zip")), Path::new("/d/a.zip.part"));
    }
}
