//! `runner why`: which input of a cell's run key changed since its last run, naming the files
//! and configuration keys.

use anyhow::bail;

use super::current::current_key;
use super::diff::{config_differences, key_differences};
use super::inputs::changed_files;
use super::runs::find_runs;
use crate::config::Experiment;
use crate::plan::Plan;
use crate::store::ResultsLayout;
use crate::sweep::stage::{StageNotTrained, Training};

/// `runner why`: which components of the cell's key changed since its last run. A changed data
/// or weights file is named (found by hash before anything is decoded), and so is each changed
/// configuration key.
pub fn why(
    experiment: &Experiment,
    variant: &str,
    seed: u64,
    results: &ResultsLayout,
) -> anyhow::Result<String> {
    experiment.require_variant(variant)?;
    if !experiment.seeds.contains(&seed) {
        let seeds: Vec<String> = experiment.seeds.iter().map(u64::to_string).collect();
        bail!(
            "{}: seed {seed} is not in the experiment's seeds ({})",
            experiment.file.display(),
            seeds.join(", ")
        );
    }
    let plan = Plan::new(experiment, None)?;
    let cell = plan.cell_of(variant, seed).expect("the variant exists");
    let last = find_runs(results, Some(&experiment.name))
        .into_iter()
        .filter(|r| r.record.variant == variant && r.record.seed == seed && r.record.key.is_some())
        .max_by(|a, b| a.record.started_at.cmp(&b.record.started_at));
    let name = format!("{}/{variant}/seed-{seed}", experiment.name);
    let files = match &last {
        Some(last) => changed_files(&last.dir, &cell.variant.config, &last.record, results)?,
        None => Vec::new(),
    };
    let now = match current_key(&plan, &cell, results, Training::Never) {
        Ok(found) => Some(found),
        Err(e) if e.is::<StageNotTrained>() => {
            let missing = e.downcast_ref::<StageNotTrained>().expect("checked");
            if files.is_empty() {
                return Ok(format!("{name} has no run key yet: {missing}\n"));
            }
            None
        }
        // A changed file that no longer decodes: the files say what changed.
        Err(_) if !files.is_empty() => None,
        Err(e) => return Err(e),
    };
    let Some(last) = last else {
        let (_, key) = now.expect("no files were compared");
        return Ok(format!(
            "{name} has never run (run key now {})\n",
            &key[..12]
        ));
    };
    let old = last.record.key.as_ref().expect("filtered");
    let mut out = format!(
        "last run: {} ({}, {})\n",
        last.dir.display(),
        last.record.status,
        last.record.started_at
    );
    let Some((now, key)) = now else {
        for f in files {
            out.push_str(&format!("  {f}\n"));
        }
        out.push_str("(the new run key is known once every file opens as a sweep opens it)\n");
        return Ok(out);
    };
    let diffs = key_differences(old, &now);
    if diffs.is_empty() {
        out.push_str(&format!("nothing changed: same run key {}\n", &key[..12]));
        return Ok(out);
    }
    for d in diffs {
        out.push_str(&format!("  {d}\n"));
        if d.starts_with("config changed") {
            for c in config_differences(&last.record.config, &cell.variant.config) {
                out.push_str(&format!("    {c}\n"));
            }
        }
        // The files behind a changed data set or weights hash.
        let weights_line = |f: &&String| f.starts_with("weights file");
        let named: Vec<&String> = match d.split(' ').next() {
            Some("dataset") => files.iter().filter(|f| !weights_line(f)).collect(),
            Some("weights") => files.iter().filter(weights_line).collect(),
            _ => Vec::new(),
        };
        for f in named {
            out.push_str(&format!("    {f}\n"));
        }
    }
    out.push_str(&format!(
        "run key {} -> {}\n",
        &last.record.run_key.clone().unwrap_or_default()[..12],
        &key[..12]
    ));
    Ok(out)
}
