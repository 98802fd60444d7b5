//! Looking back at results: `status` (what is on disk), `why` (which input of a cell's run key
//! changed since its last run) and `reproduce` (check every input of a past run, train it again,
//! compare the metrics and give a verdict).

mod stage;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context};

use crate::config::{Cell, DeviceChoice, Experiment, Variant};
use crate::fingerprint::{Manifest, ManifestDiff};
use crate::store::record::KeyComponents;
use crate::store::{read_metrics, read_record, ResultsLayout, RunRecord};
use crate::sweep::prepare::{self, code_state, data_key, run_key, weights_key};
use crate::sweep::stage::{StageNotTrained, Training};
use crate::sweep::{cell, Progress, SweepOptions};
use crate::train::EpochMetrics;

/// A run on disk.
#[derive(Debug, Clone)]
pub struct FoundRun {
    pub dir: PathBuf,
    pub record: RunRecord,
}

/// Every run record under the results tree (finished and `.partial`), optionally of one experiment.
pub fn find_runs(results: &ResultsLayout, experiment: Option<&str>) -> Vec<FoundRun> {
    let mut out = Vec::new();
    for state in results.code_states() {
        let state_dir = results.root.join(&state);
        for exp in read_dirs(&state_dir) {
            if experiment.is_some_and(|e| exp.file_name().is_some_and(|n| n != e)) {
                continue;
            }
            for variant in read_dirs(&exp) {
                for cell in read_dirs(&variant) {
                    if let Some(record) = read_record(&cell) {
                        out.push(FoundRun { dir: cell, record });
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (
            &a.record.experiment,
            &a.record.variant,
            a.record.seed,
            &a.record.started_at,
        )
            .cmp(&(
                &b.record.experiment,
                &b.record.variant,
                b.record.seed,
                &b.record.started_at,
            ))
    });
    out
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

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

/// The key components a cell would have now, computed from the current files.
///
/// A cell that loads a pretraining stage's weights has a key only once the stage is trained:
/// `stages` says whether to train it now (`reproduce`) or not (`why`: `StageNotTrained`).
pub fn current_key(
    experiment: &Experiment,
    variant: &Variant,
    seed: u64,
    results: &ResultsLayout,
    stages: Training<'_>,
) -> anyhow::Result<(KeyComponents, String)> {
    let cells = [Cell {
        variant: variant.name.clone(),
        seed,
    }];
    let options = options(results.clone(), Progress::Quiet, false);
    let inputs = prepare::prepare(experiment, &cells, &options, stages)?;
    let cfg = &variant.config;
    Ok(run_key(
        cfg,
        experiment,
        &inputs.data[&data_key(&cfg.dataset)],
        &inputs.weights[&weights_key(cfg)],
        &inputs.code,
        seed,
        inputs.stage_key(cfg),
    ))
}

fn options(results: ResultsLayout, progress: Progress, force: bool) -> SweepOptions {
    SweepOptions {
        results,
        variants: vec![],
        seeds: vec![],
        epochs: None,
        progress,
        force,
        retry_failed: false,
        device: None,
        image_cache: true,
        feature_cache: true,
        cache_memory: crate::base::memory::default_memory_budget(),
        jobs: 1,
    }
}

/// The differences between two sets of key components, one line each; empty when equal.
pub fn key_differences(old: &KeyComponents, new: &KeyComponents) -> Vec<String> {
    let mut out = Vec::new();
    let short = |s: &str| s[..12.min(s.len())].to_string();
    let opt = |s: &Option<String>| s.as_deref().map(short).unwrap_or_else(|| "none".into());
    if old.config != new.config {
        out.push(format!(
            "config changed ({} -> {})",
            short(&old.config),
            short(&new.config)
        ));
    }
    if old.dataset != new.dataset {
        out.push(format!(
            "dataset changed ({} -> {})",
            short(&old.dataset),
            short(&new.dataset)
        ));
    }
    if old.weights != new.weights {
        out.push(format!(
            "weights changed ({} -> {})",
            opt(&old.weights),
            opt(&new.weights)
        ));
    }
    if old.stage != new.stage {
        out.push(format!(
            "pretraining stage changed ({} -> {})",
            opt(&old.stage),
            opt(&new.stage)
        ));
    }
    if old.code != new.code {
        out.push(format!(
            "code changed ({} -> {})",
            short(&old.code),
            short(&new.code)
        ));
    }
    if old.seed != new.seed {
        out.push(format!("seed changed ({} -> {})", old.seed, new.seed));
    }
    out
}

/// `runner why`: which components of the cell's key changed since its last run.
pub fn why(
    experiment: &Experiment,
    variant: &str,
    seed: u64,
    results: &ResultsLayout,
) -> anyhow::Result<String> {
    let v = experiment.require_variant(variant)?;
    let (now, key) = match current_key(experiment, v, seed, results, Training::Never) {
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

/// Find a run by directory, or by (a prefix of) its run key.
pub fn locate(results: &ResultsLayout, what: &str) -> anyhow::Result<FoundRun> {
    let path = Path::new(what);
    if path.is_dir() {
        let record = read_record(path)
            .with_context(|| format!("{}: no readable run.json", path.display()))?;
        return Ok(FoundRun {
            dir: path.to_path_buf(),
            record,
        });
    }
    let matches: Vec<FoundRun> = find_runs(results, None)
        .into_iter()
        .filter(|r| {
            r.record
                .run_key
                .as_deref()
                .is_some_and(|k| k.starts_with(what))
        })
        .collect();
    match matches.len() {
        0 => bail!(
            "no run directory or run key \"{what}\" under {}",
            results.root.display()
        ),
        1 => Ok(matches.into_iter().next().expect("one")),
        n => bail!("run key prefix \"{what}\" matches {n} runs; give more digits"),
    }
}

/// The verdict of `reproduce`.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Reproduced {
        epochs: usize,
    },
    /// An input differs from the one recorded: nothing was trained.
    InputsChanged(Vec<String>),
    MetricsDiffer(Vec<String>),
}

/// `runner reproduce`: check the inputs of a finished run, train it again into `scratch`, and
/// compare metrics (all columns but wall-clock seconds) within `tolerance` (absolute).
///
/// A pretraining stage the run loaded its conv base from is an input: its stored checkpoint must
/// have the hash the run recorded, and only the cell trains again from it. With `deep`, the
/// stage is trained again too (into `scratch`) and compared before the cell trains from it.
pub fn reproduce(
    run: &FoundRun,
    results: &ResultsLayout,
    scratch: &Path,
    tolerance: f64,
    device: Option<DeviceChoice>,
    deep: bool,
    progress: Progress,
) -> anyhow::Result<Verdict> {
    let rec = &run.record;
    let Some(old_key) = &rec.key else {
        bail!(
            "{}: this run has no run key (it predates run keys); it cannot be checked",
            run.dir.display()
        );
    };
    let base_dir = rec
        .experiment_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let experiment = Experiment {
        name: rec.experiment.clone(),
        description: None,
        file: rec.experiment_file.clone(),
        base_dir,
        seeds: vec![rec.seed],
        variants: vec![Variant {
            name: rec.variant.clone(),
            description: None,
            config: rec.config.clone(),
        }],
        // The device the run was recorded on, unless the caller says otherwise: a CPU run is
        // checked on the CPU (bitwise), a GPU run on the GPU.
        device: device.unwrap_or_else(|| rec.device.parse().unwrap_or(DeviceChoice::Cpu)),
        pretrain: rec.stage.as_ref().map(|s| s.stage.clone()),
    };
    let code = code_state(&experiment.base_dir)?;
    // The stage first: the cell's weights are its checkpoint.
    let stored = match &rec.stage {
        Some(used) => match stage::check(&experiment, used, &old_key.code, results, &code)? {
            stage::StageCheck::Stored(found) => Some(found),
            stage::StageCheck::Changed(what) => return Ok(Verdict::InputsChanged(what)),
        },
        None => None,
    };
    let stored_stage = stored.as_ref().map_or(Training::Never, Training::Stored);
    // Inputs first: data (hashing the files as they are now), weights, code.
    let (now, _) = current_key(
        &experiment,
        &experiment.variants[0],
        rec.seed,
        results,
        stored_stage,
    )?;
    let mut changed = key_differences(old_key, &now);
    if old_key.dataset != now.dataset {
        changed.extend(manifest_differences(&run.dir, &experiment, results)?);
    }
    if let Some(p) = &rec.provenance {
        if p.commit != code.provenance.commit {
            changed.push(format!(
                "commit {} -> {}",
                p.commit.as_deref().unwrap_or("none"),
                code.provenance.commit.as_deref().unwrap_or("none")
            ));
        }
    }
    if !changed.is_empty() {
        return Ok(Verdict::InputsChanged(changed));
    }
    if let Some(env) = &rec.environment {
        for line in hardware_notes(env, &code.environment) {
            progress.line(&line);
        }
    }
    // Train again, into a scratch results tree.
    let options = options(ResultsLayout::new(scratch), progress, true);
    let stop = AtomicBool::new(false);
    let cells = [Cell {
        variant: rec.variant.clone(),
        seed: rec.seed,
    }];
    let device = crate::sweep::open_device(&experiment, &options)?;
    let mut diffs = Vec::new();
    let inputs = match (&stored, &rec.stage) {
        (Some(stored), Some(used)) if deep => {
            let training = Training::On {
                device: &device,
                stop: &stop,
            };
            let inputs = prepare::prepare(&experiment, &cells, &options, training)?;
            let new = inputs
                .stages
                .get(&used.stage.name)
                .with_context(|| format!("the {} stage was not trained again", used.stage.name))?;
            diffs = stage::compare(&used.stage.name, stored, new, tolerance, &progress)?;
            inputs
        }
        _ => {
            if let (Some(stored), Some(used)) = (&stored, &rec.stage) {
                progress.line(&stage::checked_line(&used.stage.name, stored));
            } else if deep {
                progress.line("note: --deep: this run loads no pretraining stage");
            }
            prepare::prepare(&experiment, &cells, &options, stored_stage)?
        }
    };
    if device.info.kind != rec.device {
        progress.line(&format!(
            "note: the run was recorded on {}, this check runs on {}: expect float32 rounding differences (use --tolerance)",
            rec.device, device.info.kind
        ));
    }
    let result = cell::run_cell(
        &experiment,
        &experiment.variants[0],
        &cells[0],
        &inputs,
        &device,
        &options,
        &stop,
    )?;
    let old = read_metrics(&run.dir.join("metrics.csv"))?;
    let new = read_metrics(&result.dir.join("metrics.csv"))?;
    diffs.extend(metric_differences(&old, &new, tolerance));
    Ok(if diffs.is_empty() {
        Verdict::Reproduced { epochs: new.len() }
    } else {
        Verdict::MetricsDiffer(diffs)
    })
}

/// Every metric of `new` that differs from `old` by more than `tolerance` (NaN matches NaN), and
/// a different number of epochs; wall-clock seconds are not compared.
fn metric_differences(old: &[EpochMetrics], new: &[EpochMetrics], tolerance: f64) -> Vec<String> {
    let mut diffs = Vec::new();
    if old.len() != new.len() {
        diffs.push(format!("{} epochs recorded, {} now", old.len(), new.len()));
    }
    for (a, b) in old.iter().zip(new) {
        for (name, x, y) in [
            ("train_loss", a.train_loss, b.train_loss),
            ("train_acc", a.train_acc, b.train_acc),
            ("val_loss", a.val_loss, b.val_loss),
            ("val_acc", a.val_acc, b.val_acc),
        ] {
            if !((x - y).abs() <= tolerance || (x.is_nan() && y.is_nan())) {
                diffs.push(format!("epoch {}: {name} {x} recorded, {y} now", a.epoch));
            }
        }
    }
    diffs
}

/// Which files changed, from the manifests stored with the run and the current files.
fn manifest_differences(
    run_dir: &Path,
    experiment: &Experiment,
    results: &ResultsLayout,
) -> anyhow::Result<Vec<String>> {
    let cfg = &experiment.variants[0].config;
    let (train, validation) = prepare::data_dirs(&cfg.dataset.source, results)?;
    let data = crate::dataset::Data::open(&cfg.dataset, &train, &validation)?;
    let now = prepare::fingerprint(data, results, &Progress::Quiet)?;
    let mut out = Vec::new();
    for (split, current) in [
        ("train", &now.train_manifest),
        ("validation", &now.validation_manifest),
    ] {
        let path = run_dir.join(format!("{split}.manifest.json"));
        let Ok(bytes) = std::fs::read(&path) else {
            out.push(format!(
                "{} is missing: cannot list the changed files",
                path.display()
            ));
            continue;
        };
        let stored = Manifest::from_json(&bytes, &path)?;
        let diff = ManifestDiff::between(&stored, current);
        if !diff.is_empty() {
            out.extend(diff.to_string().lines().map(|l| format!("{split}: {l}")));
        }
    }
    Ok(out)
}

/// What differs between the machine a CPU run was recorded on and this one, and what that means
/// for the comparison (printed before retraining).
fn hardware_notes(
    then: &crate::provenance::Environment,
    now: &crate::provenance::Environment,
) -> Vec<String> {
    let isa = |e: &crate::provenance::Environment| {
        e.kernels
            .as_ref()
            .map_or("not recorded".to_string(), |k| k.isa.clone())
    };
    let differences: Vec<String> = [
        ("cpu", then.cpu.clone(), now.cpu.clone()),
        ("kernel instruction set", isa(then), isa(now)),
        ("threads", then.threads.to_string(), now.threads.to_string()),
        ("os", then.os.clone(), now.os.clone()),
        ("rustc", then.rustc.clone(), now.rustc.clone()),
    ]
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(what, a, b)| format!("{what} {a} -> {b}"))
    .collect();
    if differences.is_empty() {
        return Vec::new();
    }
    let expectation = match (&then.kernels, &now.kernels) {
        (Some(a), Some(b)) if a.bitwise_portable && b.bitwise_portable => {
            "both are x86-64 CPUs with FMA, where the kernels sum in an order fixed by the shapes: \
             the metrics are expected to match bit for bit"
        }
        (None, _) => {
            "the run was recorded by a runner whose kernels rounded differently on other CPUs: \
             expect float32 rounding differences (use --tolerance)"
        }
        _ => {
            "one of the two CPUs is not an x86-64 CPU with FMA, outside the bitwise guarantee: \
             expect float32 rounding differences (use --tolerance)"
        }
    };
    vec![format!(
        "note: other hardware ({}); {expectation}",
        differences.join(", ")
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::{Environment, Kernels};

    fn env(cpu: &str, isa: Option<(&str, bool)>) -> Environment {
        Environment {
            runner_version: "0.1.0".into(),
            rustc: "rustc 1.95.0".into(),
            engine: "candle 0.11.1".into(),
            device: "cpu".into(),
            cpu: cpu.into(),
            threads: 2,
            os: "linux x86_64".into(),
            kernels: isa.map(|(isa, portable)| Kernels {
                isa: isa.into(),
                bitwise_portable: portable,
                source_hash: "k".into(),
            }),
        }
    }

    #[test]
    fn other_hardware_is_named_with_what_to_expect() {
        let amd = env("AMD EPYC", Some(("avx2+fma", true)));
        let intel = env("Intel Xeon", Some(("avx512f", true)));
        assert!(hardware_notes(&amd, &amd).is_empty());
        let notes = hardware_notes(&amd, &intel);
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("cpu AMD EPYC -> Intel Xeon"),
            "{}",
            notes[0]
        );
        assert!(
            notes[0].contains("kernel instruction set avx2+fma -> avx512f"),
            "{}",
            notes[0]
        );
        assert!(notes[0].contains("bit for bit"), "{}", notes[0]);
        let old = env("AMD EPYC", None);
        assert!(hardware_notes(&old, &intel)[0].contains("--tolerance"));
        let arm = env("Neoverse", Some(("aarch64", false)));
        assert!(hardware_notes(&amd, &arm)[0].contains("outside the bitwise guarantee"));
    }
}
