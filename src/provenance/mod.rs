//! Placeholder: code state and environment.
use std::path::Path;

use crate::store::record::{Environment, Provenance};

pub fn code_state(_start: &Path) -> Provenance {
    Provenance {
        in_git_repo: false,
        commit: None,
        branch: None,
        dirty: false,
        diff_sha256: None,
        untracked: vec![],
    }
}

pub fn diff_text(_start: &Path) -> Option<String> {
    None
}

pub fn code_hash(p: &Provenance) -> String {
    crate::store::sha256_hex(format!("{:?}{:?}", p.commit, p.diff_sha256).as_bytes())
}

pub fn environment(device: &str) -> Environment {
    Environment {
        runner_version: env!("CARGO_PKG_VERSION").into(),
        rustc: "unknown".into(),
        engine: "candle 0.11".into(),
        device: device.into(),
        cpu: "unknown".into(),
        threads: 1,
        os: std::env::consts::OS.into(),
    }
}
