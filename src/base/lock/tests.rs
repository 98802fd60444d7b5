use super::*;
use crate::base::process::{process_alive, Process};

/// A machine elsewhere, sharing the results directory: its pids cannot be checked from here.
pub(crate) fn host(name: &str, pid: u32) -> Machine {
    Machine {
        host: name.into(),
        boot_id: None,
        pid_namespace: None,
        pid,
        start_time: None,
    }
}

pub(crate) fn settings(heartbeat_ms: u64, stale_ms: u64) -> Settings {
    Settings {
        heartbeat: Duration::from_millis(heartbeat_ms),
        stale_after: Duration::from_millis(stale_ms),
    }
}

/// Write a lock file as another process would have, with its last heartbeat `age` ago.
pub(crate) fn plant(path: &Path, holder: &Holder, age: Duration) {
    fs::write(path, serde_json::to_vec(holder).unwrap()).unwrap();
    age_file(path, age);
}

pub(crate) fn age_file(path: &Path, age: Duration) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

pub(crate) fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn settings_default_to_30_s_and_5_min_and_bad_values_name_the_variable() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(
        Settings::from_lookup(no_env).unwrap(),
        settings(30_000, 300_000)
    );
    assert_eq!(
        Settings::from_lookup(env(&[(HEARTBEAT_ENV, "0.1"), (STALE_ENV, "2")])).unwrap(),
        settings(100, 2000)
    );
    let err = |pairs| format!("{:#}", Settings::from_lookup(env(pairs)).unwrap_err());
    assert_eq!(
        err(&[(STALE_ENV, "5min")]),
        "environment variable RUNNER_LOCK_STALE_SECS: expected a positive number of seconds, \
         got \"5min\"; unset it to use the default (300 s)"
    );
    assert!(err(&[(HEARTBEAT_ENV, "-1")])
        .starts_with("environment variable RUNNER_LOCK_HEARTBEAT_SECS"));
    assert!(err(&[(HEARTBEAT_ENV, "60"), (STALE_ENV, "60")]).contains("must be longer"));
}

#[test]
fn the_content_names_host_pid_start_time_and_slurm_job() {
    let here = Machine::current();
    let slurm = |name: &str| match name {
        "SLURM_JOB_ID" => Some("4711".to_string()),
        "SLURM_ARRAY_JOB_ID" => Some("4700".to_string()),
        "SLURM_ARRAY_TASK_ID" => Some("11".to_string()),
        _ => None,
    };
    let h = here.holder(slurm);
    assert_eq!((h.pid, &h.host), (std::process::id(), &here.host));
    if cfg!(target_os = "linux") {
        assert!(h.start_time.is_some() && h.boot_id.is_some() && h.pid_namespace.is_some());
    }
    assert_eq!(h.slurm_job_id.as_deref(), Some("4711"));
    assert_eq!(
        h.to_string(),
        format!("pid {} on {}, Slurm job 4700_11", h.pid, h.host)
    );
    let job_only = |name: &str| (name == "SLURM_JOB_ID").then(|| "4711".to_string());
    assert!(here
        .holder(job_only)
        .to_string()
        .ends_with(", Slurm job 4711"));
    // Two locks of one process never have the same content.
    assert_ne!(here.holder(no_env).token, here.holder(no_env).token);
    let json = serde_json::to_vec(&h).unwrap();
    assert_eq!(Content::parse(&json), Content::Holder(Box::new(h)));
    assert_eq!(Content::parse(b"1234\n"), Content::LegacyPid(1234));
    assert_eq!(Content::parse(b""), Content::Unreadable);
    assert_eq!(Content::parse(b"{\"host\":"), Content::Unreadable);
}

#[test]
fn judging_a_lock_here_by_its_pid_and_elsewhere_by_its_heartbeat() {
    let here = Machine {
        boot_id: Some("boot".into()),
        pid_namespace: Some("pid:[1]".into()),
        start_time: Some(500),
        ..host("node-a", 10)
    };
    let s = settings(30_000, 300_000);
    let lock = |m: &Machine, age_s: u64| Observed {
        content: Content::Holder(Box::new(m.holder(no_env))),
        heartbeat_age: Duration::from_secs(age_s),
        id: "x".into(),
    };
    let held_by_7 = |pid: u32| {
        if pid == 7 {
            Process::Running {
                start_time: Some(900),
            }
        } else {
            Process::Gone
        }
    };
    let same = |pid, start| Machine {
        pid,
        start_time: Some(start),
        ..here.clone()
    };
    let stale = |v: Verdict| matches!(v, Verdict::Stale(_));
    // Same machine: pid 7 runs since tick 900.
    assert_eq!(
        judge(&lock(&same(7, 900), 10), &here, &s, held_by_7),
        Verdict::Held
    );
    assert_eq!(
        judge(&lock(&same(8, 900), 10), &here, &s, held_by_7),
        Verdict::Stale("process 8 is gone".into())
    );
    assert!(
        stale(judge(&lock(&same(7, 100), 10), &here, &s, held_by_7)),
        "pid reused"
    );
    assert!(
        stale(judge(&lock(&same(7, 900), 301), &here, &s, held_by_7)),
        "silent"
    );
    // Another host (or another boot, or another pid namespace): only the heartbeat counts.
    let other_boot = Machine {
        boot_id: Some("other".into()),
        ..same(8, 900)
    };
    for m in [host("node-b", 8), other_boot] {
        assert_eq!(judge(&lock(&m, 299), &here, &s, held_by_7), Verdict::Held);
        assert_eq!(
            judge(&lock(&m, 301), &here, &s, held_by_7),
            Verdict::Stale("no heartbeat for 5m 1s (stale after 5m)".into())
        );
    }
    // An older runner's lock is judged by its pid, as that runner did.
    let legacy = |pid, age_s| Observed {
        content: Content::LegacyPid(pid),
        heartbeat_age: Duration::from_secs(age_s),
        id: "x".into(),
    };
    assert_eq!(judge(&legacy(7, 9999), &here, &s, held_by_7), Verdict::Held);
    assert!(stale(judge(&legacy(8, 0), &here, &s, held_by_7)));
    // An unreadable lock is never stale before the timeout.
    let unreadable = |age_s| Observed {
        content: Content::Unreadable,
        heartbeat_age: Duration::from_secs(age_s),
        id: "x".into(),
    };
    assert_eq!(judge(&unreadable(299), &here, &s, held_by_7), Verdict::Held);
    assert!(stale(judge(&unreadable(301), &here, &s, held_by_7)));
}

#[test]
fn this_process_is_alive_and_a_pid_beyond_pid_max_is_not() {
    assert!(process_alive(std::process::id()));
    if cfg!(target_os = "linux") {
        assert!(!process_alive(4_294_967_294));
        assert!(Machine::current().start_time.is_some());
    }
}

#[test]
fn a_live_lock_is_respected_and_a_stale_one_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cell.lock");
    let me = host("node-a", 1);
    let s = settings(30_000, 300_000);
    let other = host("node-b", 2).holder(no_env);
    plant(&path, &other, Duration::from_secs(60));
    let held = CellLock::acquire_as(&path, &me.holder(no_env), &me, &s)
        .unwrap()
        .unwrap_err();
    assert_eq!(held.lock.content, Content::Holder(Box::new(other.clone())));
    assert!(!held.taking_over);
    assert!(held
        .to_string()
        .starts_with("pid 2 on node-b, last heartbeat 1m"));
    assert!(matches!(inspect(&path, &s).unwrap(), LockState::Held(_)));

    age_file(&path, Duration::from_secs(301));
    assert!(matches!(
        inspect(&path, &s).unwrap(),
        LockState::Stale { .. }
    ));
    let mine = me.holder(no_env);
    let lock = CellLock::acquire_as(&path, &mine, &me, &s)
        .unwrap()
        .unwrap();
    assert_eq!(
        Content::parse(&fs::read(&path).unwrap()),
        Content::Holder(Box::new(mine))
    );
    drop(lock);
    assert!(!path.exists());
}

#[test]
fn the_heartbeat_keeps_a_lock_fresh_until_it_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cell.lock");
    let me = host("node-a", 1);
    let elsewhere = host("node-b", 2);
    let fast = settings(50, 400);
    let lock = CellLock::acquire_as(&path, &me.holder(no_env), &me, &fast)
        .unwrap()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let seen = observe(&path).unwrap().unwrap();
    assert!(seen.heartbeat_age < Duration::from_millis(400), "{seen:?}");
    assert_eq!(judge(&seen, &elsewhere, &fast, probe), Verdict::Held);
    drop(lock);
    assert!(!path.exists());

    // A holder that stopped beating (here: one beating too rarely) goes stale.
    let slow = Settings {
        heartbeat: Duration::from_secs(100),
        ..fast
    };
    let _lock = CellLock::acquire_as(&path, &me.holder(no_env), &me, &slow)
        .unwrap()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let seen = observe(&path).unwrap().unwrap();
    assert!(matches!(
        judge(&seen, &elsewhere, &fast, probe),
        Verdict::Stale(_)
    ));
}

#[test]
fn a_release_leaves_a_lock_that_someone_else_took_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cell.lock");
    let me = host("node-a", 1);
    let s = settings(30_000, 300_000);
    let lock = CellLock::acquire_as(&path, &me.holder(no_env), &me, &s)
        .unwrap()
        .unwrap();
    // Judged stale (a frozen machine), taken over by node-b.
    fs::remove_file(&path).unwrap();
    let theirs = host("node-b", 2).holder(no_env);
    plant(&path, &theirs, Duration::ZERO);
    drop(lock);
    assert_eq!(
        Content::parse(&fs::read(&path).unwrap()),
        Content::Holder(Box::new(theirs))
    );
}

#[test]
fn a_claim_left_by_a_dead_taker_is_passed_over_and_a_live_one_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cell.lock");
    let me = host("node-a", 1);
    let s = settings(30_000, 300_000);
    plant(
        &path,
        &host("dead-node", 2).holder(no_env),
        Duration::from_secs(600),
    );
    let id = observe(&path).unwrap().unwrap().id;
    let marker = dir.path().join(format!(".cell.lock.{id}.takeover-1"));
    fs::write(&marker, "").unwrap();
    let held = CellLock::acquire_as(&path, &me.holder(no_env), &me, &s)
        .unwrap()
        .unwrap_err();
    assert!(held.taking_over, "a taker is at work");
    assert!(held
        .to_string()
        .ends_with("another sweep is taking over its stale lock"));

    age_file(&marker, Duration::from_secs(301));
    let lock = CellLock::acquire_as(&path, &me.holder(no_env), &me, &s)
        .unwrap()
        .unwrap();
    drop(lock);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn without_hard_links_the_lock_is_still_created_exclusively() {
    let dir = tempfile::tempdir().unwrap();
    let (tmp, path) = (dir.path().join(".tmp"), dir.path().join("cell.lock"));
    let no_links = |_: &Path, _: &Path| -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no hard links here",
        ))
    };
    assert!(link_new(&tmp, &path, b"first", no_links).unwrap().is_some());
    assert!(link_new(&tmp, &path, b"second", no_links)
        .unwrap()
        .is_none());
    assert_eq!(fs::read(&path).unwrap(), b"first");
    assert!(!tmp.exists());
}
