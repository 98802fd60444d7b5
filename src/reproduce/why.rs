//! `runner why`: which input of a cell's run key changed since its last run.

use super::current::current_key;
use super::diff::key_differences;
use super::runs::find_runs;
use crate::config::Experiment;
use crate::plan::Plan;
use crate::store::ResultsLayout;
use crate::sweep::stage::{StageNotTrained, Training};

/// `runner why`: which components of the cell's key changed since its last run.
pub fn why(
    experiment: &Experiment,
    variant: &str,
    seed: u64,
    results: &ResultsLayout,
) -> anyhow::Result<String> {
    experiment.require_variant(variant)?;
    let plan = Plan::new(experiment, None)?;
    let cell = plan.cell_of(variant, seed).expect("the variant exists");
    let (now, key) = match current_key(&plan, &cell, results, Training::Never) {
        Ok(found) => found,
        Err(e) => match e.downcast_ref::<StageNotTrained>() {
            Some(missing) => {
                return Ok(format!(
                    "{}/{variant}/seed-{seed} has no run key yet: {missing}\n",
                    experiment.name
                ))
            }
            None => return Err(e),
        },
    };
    let last = find_runs(results, Some(&experiment.name))
        .into_iter()
        .filter(|r| r.record.variant == variant && r.record.seed == seed && r.record.key.is_some())
        .max_by(|a, b| a.record.started_at.cmp(&b.record.started_at));
    let Some(last) = last else {
        return Ok(format!(
            "{}/{variant}/seed-{seed} has never run (run key now {})\n",
            experiment.name,
            &key[..12]
        ));
    };
    let old = last.record.key.as_ref().expect("filtered");
    let diffs = key_differences(old, &now);
    let mut out = format!(
        "last run: {} ({}, {})\n",
        last.dir.display(),
        last.record.status,
        last.record.started_at
    );
    if diffs.is_empty() {
        out.push_str(&format!("nothing changed: same run key {}\n", &key[..12]));
    } else {
        for d in diffs {
            out.push_str(&format!("  {d}\n"));
        }
        out.push_str(&format!(
            "run key {} -> {}\n",
            &last.record.run_key.clone().unwrap_or_default()[..12],
            &key[..12]
        ));
    }
    Ok(out)
}
