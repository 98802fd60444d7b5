//! Many threads and processes racing for one lock: exactly one wins, and nobody reads a lock
//! half written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use super::tests::{host, no_env, plant, settings};
use super::*;

/// Many contenders (threads playing processes on other hosts, and threads of this process)
/// race for one lock, round after round: exactly one wins each round, and a reader polling the
/// file never sees it empty or half written.
#[test]
fn contenders_racing_for_a_lock_exactly_one_wins_and_no_reader_sees_it_partial() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(30_000, 300_000);
    for round in 0..ROUNDS {
        let path = dir.path().join(format!("cell-{round}.lock"));
        let start = Arc::new(Barrier::new(THREADS + 1));
        let attempted = Arc::new(Barrier::new(THREADS));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (path, start, done) = (path.clone(), start.clone(), done.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut seen = 0;
                while !done.load(Ordering::SeqCst) {
                    if let Ok(bytes) = fs::read(&path) {
                        assert!(
                            matches!(Content::parse(&bytes), Content::Holder(_)),
                            "a reader saw {:?}",
                            String::from_utf8_lossy(&bytes)
                        );
                        seen += 1;
                    }
                }
                seen
            })
        };
        let contenders: Vec<_> = (0..THREADS)
            .map(|i| {
                let (path, start, attempted) = (path.clone(), start.clone(), attempted.clone());
                std::thread::spawn(move || {
                    start.wait();
                    // Half play other hosts, half are threads of this very process.
                    let got = if i % 2 == 0 {
                        let m = host(&format!("node-{i}"), 100 + i as u32);
                        CellLock::acquire_as(&path, &m.holder(no_env), &m, &s)
                    } else {
                        CellLock::acquire(&path)
                    };
                    // Hold until everyone tried, so that a release cannot let a second one in.
                    attempted.wait();
                    got.map(|g| g.is_ok()).map_err(|e| format!("{e:#}"))
                })
            })
            .collect();
        let winners = contenders
            .into_iter()
            .map(|c| {
                c.join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"))
            })
            .filter(|&won| won)
            .count();
        done.store(true, Ordering::SeqCst);
        reader.join().unwrap();
        assert_eq!(winners, 1, "round {round}");
        assert!(!path.exists(), "released");
    }
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

/// Contenders on several hosts all find the same stale lock: exactly one takes it over.
#[test]
fn contenders_taking_over_one_stale_lock_exactly_one_wins() {
    const THREADS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(30_000, 60_000);
    for round in 0..50 {
        let path = dir.path().join(format!("cell-{round}.lock"));
        plant(
            &path,
            &host("dead-node", 1).holder(no_env),
            Duration::from_secs(120),
        );
        let start = Arc::new(Barrier::new(THREADS));
        let attempted = Arc::new(Barrier::new(THREADS));
        let contenders: Vec<_> = (0..THREADS)
            .map(|i| {
                let (path, start, attempted) = (path.clone(), start.clone(), attempted.clone());
                std::thread::spawn(move || {
                    let m = host(&format!("node-{i}"), 100 + i as u32);
                    let holder = m.holder(no_env);
                    start.wait();
                    let got = CellLock::acquire_as(&path, &holder, &m, &s);
                    attempted.wait();
                    got.map(|g| g.is_ok()).map_err(|e| format!("{e:#}"))
                })
            })
            .collect();
        let winners = contenders
            .into_iter()
            .map(|c| {
                c.join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"))
            })
            .filter(|&won| won)
            .count();
        assert_eq!(winners, 1, "round {round}");
    }
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no lock, claim or temporary file left behind"
    );
}

/// Processes started together race for one lock: exactly one wins. Each runs this binary's
/// `race_child` test.
#[test]
fn processes_racing_for_a_lock_exactly_one_wins() {
    const CHILDREN: usize = 6;
    let exe = std::env::current_exe().unwrap();
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..CHILDREN)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "base::lock::race_tests::race_child",
                        "--exact",
                        "--test-threads=1",
                    ])
                    .env(RACE_DIR, dir.path())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let results = || {
            fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("result-"))
                .map(|e| fs::read_to_string(e.path()).unwrap())
                .collect::<Vec<_>>()
        };
        // Let every child reach its start line, then start them at once.
        std::thread::sleep(Duration::from_millis(300));
        fs::write(dir.path().join("go"), "").unwrap();
        let started = Instant::now();
        let lock = dir.path().join("cell.lock");
        while results().len() < CHILDREN {
            if let Ok(bytes) = fs::read(&lock) {
                assert!(
                    matches!(Content::parse(&bytes), Content::Holder(_)),
                    "round {round}: read {:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            assert!(started.elapsed() < Duration::from_secs(60), "children hang");
        }
        fs::write(dir.path().join("release"), "").unwrap();
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        let won = results().iter().filter(|r| r.as_str() == "won").count();
        assert_eq!(won, 1, "round {round}: {:?}", results());
    }
}

const RACE_DIR: &str = "RUNNER_LOCK_RACE_DIR";

/// One contender of `processes_racing_for_a_lock_exactly_one_wins`; does nothing unless that
/// test started it.
#[test]
fn race_child() {
    let Some(dir) = std::env::var_os(RACE_DIR).map(PathBuf::from) else {
        return;
    };
    let wait_for = |name: &str| {
        let started = Instant::now();
        while !dir.join(name).exists() {
            assert!(started.elapsed() < Duration::from_secs(60));
            std::thread::yield_now();
        }
    };
    wait_for("go");
    let got = CellLock::acquire(&dir.join("cell.lock")).unwrap();
    let result = if got.is_ok() { "won" } else { "lost" };
    fs::write(dir.join(format!("result-{}", std::process::id())), result).unwrap();
    wait_for("release");
}
