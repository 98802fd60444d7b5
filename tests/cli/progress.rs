//! What a sweep shows while it runs: plain lines with the matrix counts and ETA when its output
//! is not a terminal, and, in a real terminal (tmux), a matrix line above one bar per running cell.

use std::process::Command as Process;
use std::time::{Duration, Instant};

use super::*;

/// `m:ss` or `h:mm:ss` as seconds.
fn clock_seconds(text: &str) -> Option<u64> {
    let parts: Vec<u64> = text
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts[..] {
        [m, s] if s < 60 => Some(m * 60 + s),
        [h, m, s] if m < 60 && s < 60 => Some(h * 3600 + m * 60 + s),
        _ => None,
    }
}

/// The text after `key ` up to the next `,` or `]` in `line`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("{key} "))? + key.len() + 1;
    let rest = &line[start..];
    Some(rest[..rest.find([',', ']']).unwrap_or(rest.len())].trim())
}

/// Not on a terminal (a log file, a pipe): no bars and no carriage returns; every epoch's line
/// and every cell's closing line end with the matrix counts and an ETA, and the counts add up.
#[test]
fn a_sweep_into_a_log_prints_lines_with_the_matrix_counts_and_eta() {
    let dir = tempfile::tempdir().unwrap();
    // A variant that diverges (a failed cell), two that train, two seeds: six cells.
    let exp = tiny_experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp).unwrap().replacen(
        "[[variants]]",
        "[[variants]]\nname = \"exploding\"\ntraining.learning_rate = 1e30\n\n[[variants]]",
        1,
    );
    std::fs::write(&exp, text).unwrap();
    let results = dir.path().join("results");
    let sweep = |extra: &[&str]| {
        let out = runner()
            .args(["sweep", "--no-report"])
            .arg(&exp)
            .arg("--results")
            .arg(&results)
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // One cell done beforehand: the full sweep skips it.
    sweep(&["--variant", "feature_extraction", "--seed", "0"]);
    let log = sweep(&["--jobs", "2"]);
    assert!(!log.contains('\r') && !log.contains('\x1b'), "{log:?}");
    let epochs: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(":  epoch ") && l.contains("[matrix "))
        .collect();
    // Three cells train two epochs each; the diverged ones stop in their first.
    assert_eq!(epochs.len(), 6, "{log}");
    for line in &epochs {
        let eta = field(line, "ETA").unwrap_or_else(|| panic!("no ETA: {line}"));
        assert!(
            clock_seconds(eta).is_some(),
            "ETA {eta:?} is not a time: {line}"
        );
        let elapsed = field(line, "elapsed").unwrap();
        assert!(clock_seconds(elapsed).is_some(), "{line}");
    }
    let ends: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("] tiny / ") && l.contains(":  ") && l.contains("[matrix "))
        .filter(|l| !l.contains(":  epoch "))
        .filter(|l| l.contains(" in ") || l.contains("skipped: "))
        .collect();
    assert_eq!(ends.len(), 6, "a closing line per cell: {log}");
    let mut finished: Vec<u64> = ends
        .iter()
        .map(|l| {
            let counts = &l[l.find("[matrix ").unwrap() + 8..];
            counts.split('/').next().unwrap().parse().unwrap()
        })
        .collect();
    finished.sort();
    assert_eq!(finished, [1, 2, 3, 4, 5, 6], "{log}");
    assert!(
        ends.iter().all(|l| l.contains("/6 cells finished")),
        "{log}"
    );
    // The diverged cells count as failed; the last closing line has no time left to estimate.
    let last = ends.iter().find(|l| l.contains("[matrix 6/6")).unwrap();
    assert!(
        last.contains("2 failed, 1 skipped") && !last.contains("ETA"),
        "{last}"
    );
    assert!(
        log.contains("\nmatrix: 6/6 cells finished, 2 failed, 1 skipped, elapsed "),
        "{log}"
    );
}

/// A tmux server of the test's own, killed when the test ends.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Process::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .unwrap()
    }

    fn pane(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "sweep"]).stdout)
            .into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// The bars of cells in a captured pane: `  <variant> / seed <n>  epoch <e>/<E> [...`.
fn cell_bars(pane: &str) -> Vec<&str> {
    pane.lines()
        .filter(|l| l.starts_with("  fine_tuning_aug / seed ") && l.contains("  epoch "))
        .collect()
}

/// In a real terminal (a 120x30 tmux pane), `--jobs 2` shows the matrix line (cells finished,
/// elapsed, ETA) above a bar for each of the two cells being trained; at the end the bars are
/// gone and the matrix line says every cell finished.
#[test]
fn a_sweep_in_a_terminal_shows_the_matrix_line_above_a_bar_per_job() {
    if Process::new("tmux").arg("-V").output().is_err() {
        eprintln!(
            "skipped: tmux is not installed (apt-get install tmux), so no terminal to capture"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Fine-tuning with augmentation trains on images every epoch (no feature cache), so its
    // epochs last long enough to be seen.
    let exp = tiny_experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("train_per_class = 12", "train_per_class = 300")
        .replace("epochs = 2", "epochs = 6");
    std::fs::write(&exp, text).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("runner");
    let command = format!(
        "{} sweep {} --results {} --variant fine_tuning_aug --jobs 2 --no-report; sleep 600",
        bin.display(),
        exp.display(),
        dir.path().join("results").display()
    );
    let tmux = Tmux(format!("runner-progress-{}", std::process::id()));
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "sweep",
        "-x",
        "120",
        "-y",
        "30",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");
    let wait = |what: &str, done: &dyn Fn(&str) -> bool| -> String {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let pane = tmux.pane();
            if done(&pane) {
                return pane;
            }
            let ended = pane.contains("matrix: ") || pane.contains("every cell of");
            assert!(!ended, "the sweep ended without {what}:\n{pane}");
            assert!(Instant::now() < deadline, "no {what} in 300 s:\n{pane}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Two bars, each some batches into an epoch (with running metrics).
    let mid = wait("two cell bars", &|p: &str| {
        let bars = cell_bars(p);
        bars.len() == 2 && bars.iter().all(|b| b.contains(" loss "))
    });
    let lines: Vec<&str> = mid.lines().collect();
    let matrix = lines
        .iter()
        .position(|l| l.starts_with("matrix ["))
        .unwrap_or_else(|| panic!("no matrix line:\n{mid}"));
    let line = lines[matrix];
    assert!(
        line.contains("/2 cells finished, 0 failed, elapsed ") && line.contains(", ETA "),
        "{line}"
    );
    let bars = cell_bars(&mid);
    for bar in &bars {
        assert!(
            bar.contains("epoch ") && bar.contains("/6 [") && bar.contains(" loss "),
            "{bar}"
        );
    }
    assert!(bars.iter().any(|b| b.contains("seed 0")) && bars.iter().any(|b| b.contains("seed 1")));
    // The bars sit right under the matrix line.
    assert!(
        lines[matrix + 1..matrix + 3]
            .iter()
            .all(|l| bars.contains(l)),
        "{mid}"
    );
    let end = wait("end", &|p: &str| p.contains("matrix: 2/2 cells finished"));
    assert!(
        cell_bars(&end).is_empty() && !end.contains("matrix ["),
        "{end}"
    );
}
