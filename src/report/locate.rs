//! Finding an experiment's results for a code state.
//!
//! Results are keyed by code state: `<results>/<code-state>/<experiment>/<variant>/seed-<n>/`,
//! where `<code-state>` is `<commit-short>`, `<commit-short>-dirty-<diffhash8>` or `no-git`.
//! Results written before that live at `<results>/<experiment>/...` and are still found (as the
//! code state [`UNKEYED`]) when no keyed results exist. Everything else (what a cell holds) is
//! `load`'s business.

use std::path::{Path, PathBuf};

use super::load::holds_cells;

/// The label of results in the layout without code states.
pub const UNKEYED: &str = "unkeyed";

/// One code state for which an experiment has results.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeState {
    /// The folder name (`3f2a9c1`, `3f2a9c1-dirty-0badf00d`, `no-git`), or [`UNKEYED`].
    pub label: String,
    /// The experiment directory: the folder holding `<variant>/seed-<n>/`.
    pub dir: PathBuf,
    /// The latest `finished_at` (else `started_at`) of its cells.
    pub latest: Option<String>,
}

/// Every code state of `experiment` under `results`, latest first.
pub fn code_states(results: &Path, experiment: &str) -> anyhow::Result<Vec<CodeState>> {
    if !results.is_dir() {
        anyhow::bail!(
            "results directory {} does not exist (run `runner sweep` first, or pass --results DIR)",
            results.display()
        );
    }
    let entries = std::fs::read_dir(results)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", results.display()))?;
    let mut states = Vec::new();
    for entry in entries.flatten() {
        let label = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path().join(experiment);
        if label.starts_with('.') || !dir.is_dir() || !holds_cells(&dir) {
            continue;
        }
        states.push(state(label, dir)?);
    }
    if states.is_empty() {
        let dir = results.join(experiment);
        if holds_cells(&dir) {
            states.push(state(UNKEYED.to_string(), dir)?);
        }
    }
    // Latest first; ties (and states without times) by label, so the choice is stable.
    states.sort_by(|a, b| b.latest.cmp(&a.latest).then(a.label.cmp(&b.label)));
    Ok(states)
}

fn state(label: String, dir: PathBuf) -> anyhow::Result<CodeState> {
    let latest = super::load::load(&dir, "", None)?
        .latest()
        .map(str::to_string);
    Ok(CodeState { label, dir, latest })
}

/// Pick the code state `commit` names (a prefix of the label, or a longer commit id that starts
/// with the label's commit), or the latest one when `commit` is `None`.
pub fn choose<'a>(
    states: &'a [CodeState],
    commit: Option<&str>,
    results: &Path,
    experiment: &str,
) -> anyhow::Result<&'a CodeState> {
    let known = || {
        states
            .iter()
            .map(|s| match &s.latest {
                Some(t) => format!("{} ({t})", s.label),
                None => s.label.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if states.is_empty() {
        anyhow::bail!(
            "no results for experiment \"{experiment}\" under {} (looked for {}/<commit>/{experiment}/<variant>/seed-<n>/ and {}/{experiment}/); run `runner sweep` first or check --results",
            results.display(),
            results.display(),
            results.display()
        );
    }
    let Some(commit) = commit else {
        return Ok(&states[0]);
    };
    if let Some(exact) = states.iter().find(|s| s.label == commit) {
        return Ok(exact);
    }
    let matches: Vec<&CodeState> = states
        .iter()
        .filter(|s| {
            let commit_part = s.label.split('-').next().unwrap_or(&s.label);
            s.label.starts_with(commit)
                || (commit.len() > commit_part.len() && commit.starts_with(commit_part))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => anyhow::bail!(
            "--commit {commit}: experiment \"{experiment}\" has no results for that code state under {} (it has: {})",
            results.display(),
            known()
        ),
        many => anyhow::bail!(
            "--commit {commit} matches several code states of \"{experiment}\": {}; give the full label",
            many.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(results: &Path, rel: &str, finished: &str) {
        let dir = results.join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("run.json"),
            format!(r#"{{"status":"done","finished_at":"{finished}"}}"#),
        )
        .unwrap();
    }

    #[test]
    fn the_latest_code_state_is_the_default_and_a_prefix_selects_one() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        cell(r, "abc1234/exp/v/seed-0", "2026-01-01T00:00:00Z");
        cell(
            r,
            "abc1234-dirty-0badf00d/exp/v/seed-0",
            "2026-01-03T00:00:00Z",
        );
        cell(r, "def5678/exp/v/seed-0.partial", "2026-01-02T00:00:00Z");
        cell(r, "def5678/other/v/seed-0", "2026-01-09T00:00:00Z");
        std::fs::create_dir_all(r.join("datasets/synthetic-x/train")).unwrap();
        let states = code_states(r, "exp").unwrap();
        let labels: Vec<&str> = states.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["abc1234-dirty-0badf00d", "def5678", "abc1234"]);
        assert_eq!(
            choose(&states, None, r, "exp").unwrap().label,
            "abc1234-dirty-0badf00d"
        );
        assert_eq!(
            choose(&states, Some("abc1234"), r, "exp").unwrap().label,
            "abc1234"
        );
        assert_eq!(
            choose(&states, Some("def"), r, "exp").unwrap().label,
            "def5678"
        );
        assert_eq!(
            choose(&states, Some("def5678aaaabbbbcccc"), r, "exp")
                .unwrap()
                .label,
            "def5678"
        );
        let err = choose(&states, Some("abc"), r, "exp")
            .unwrap_err()
            .to_string();
        assert!(err.contains("matches several code states"), "{err}");
        let err = choose(&states, Some("999"), r, "exp")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has no results for that code state")
                && err.contains("def5678 (2026-01-02T00:00:00Z)"),
            "{err}"
        );
    }

    #[test]
    fn results_without_code_states_are_found_when_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        cell(r, "exp/v/seed-0", "2026-01-01T00:00:00Z");
        let states = code_states(r, "exp").unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].label, UNKEYED);
        assert_eq!(states[0].dir, r.join("exp"));
        let none = code_states(r, "nope").unwrap();
        let err = choose(&none, None, r, "nope").unwrap_err().to_string();
        assert!(err.contains("no results for experiment \"nope\""), "{err}");
        let err = code_states(&r.join("absent"), "exp")
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
