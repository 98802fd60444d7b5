//! `runner status`: what is on disk.

use super::runs::find_runs;
use crate::store::ResultsLayout;

/// `runner status`: a table of the runs on disk.
pub fn status(
    results: &ResultsLayout,
    experiment: Option<&str>,
    current_code_state: &str,
) -> String {
    let runs = find_runs(results, experiment);
    if runs.is_empty() {
        return format!("no runs under {}\n", results.root.display());
    }
    let locks = crate::base::lock::Settings::from_env();
    let mut out = String::from("  code state               experiment   variant                  seed  status       epochs  val_acc  run key\n");
    for r in &runs {
        let state = r.record.code_state.clone().unwrap_or_else(|| "-".into());
        let mark = if state == current_code_state {
            "*"
        } else {
            " "
        };
        let acc = r
            .record
            .last
            .map(|m| format!("{:.4}", m.val_acc))
            .unwrap_or_else(|| "-".into());
        let key = r
            .record
            .run_key
            .as_deref()
            .map(|k| &k[..12.min(k.len())])
            .unwrap_or("-");
        let settings = locks.as_ref().cloned().unwrap_or_default();
        let (shown, lock) =
            crate::store::lock_status::shown_status(&r.dir, r.record.status, &settings);
        out.push_str(&format!(
            "{mark} {:<24} {:<12} {:<24} {:>4}  {:<11} {:>6}  {:>7}  {key}\n",
            state,
            r.record.experiment,
            r.record.variant,
            r.record.seed,
            shown,
            r.record.epochs_completed,
            acc
        ));
        if let Some(lock) = lock {
            out.push_str(&format!("      {lock}\n"));
        }
    }
    if let Err(e) = &locks {
        out.push_str(&format!(
            "warning: {e:#} (judging locks with the defaults)\n"
        ));
    }
    out.push_str(&format!(
        "(* = the current code state, {current_code_state})\n"
    ));
    out
}
