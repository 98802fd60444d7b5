//! `runner reproduce`: check every input of a past run, train it again, compare the metrics and
//! give a verdict.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context};

use super::current::{current_key, options};
use super::diff::{key_differences, metric_differences};
use super::inputs::changed_files;
use super::runs::FoundRun;
use super::stage;
use crate::config::{DeviceChoice, Experiment, Variant};
use crate::plan::Plan;
use crate::provenance::CodeState;
use crate::store::{read_metrics, ResultsLayout};
use crate::sweep::stage::Training;
use crate::sweep::{self, Progress};

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
        slurm: None,
        mlflow: None,
        evaluation: None,
    };
    let plan = Plan::new(&experiment, None)?;
    let cell = &plan.cells[0];
    let code = CodeState::read(&experiment.base_dir)?;
    // The stage first: the cell's weights are its checkpoint.
    let stored = match (&rec.stage, &plan.stage) {
        (Some(used), Some(planned)) => {
            match stage::check(&experiment, planned, used, &old_key.code, results, &code)? {
                stage::StageCheck::Stored(found) => Some(found),
                stage::StageCheck::Changed(what) => return Ok(Verdict::InputsChanged(what)),
            }
        }
        _ => None,
    };
    let stored_stage = stored.as_ref().map_or(Training::Never, Training::Stored);
    // The files first, by hash alone (a changed file that no longer decodes is a change, not a
    // decoding error), and the commit.
    let mut changed = changed_files(&run.dir, &rec.config, rec, results)?;
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
    // Then every component of the run key: data (decoded as a sweep does), weights, code.
    let (now, _) = current_key(&plan, cell, results, stored_stage)?;
    let changed = key_differences(old_key, &now);
    if !changed.is_empty() {
        return Ok(Verdict::InputsChanged(changed));
    }
    if let Some(env) = &rec.environment {
        for line in hardware_notes(env, &code.environment) {
            progress.line(&line);
        }
    }
    // Train again, into a scratch results tree.
    let options = options(ResultsLayout::new(scratch), progress.clone(), true);
    let stop = AtomicBool::new(false);
    let cells = std::slice::from_ref(cell);
    let device = sweep::open_device(&experiment, &options)?;
    let mut diffs = Vec::new();
    let inputs = match (&stored, &rec.stage) {
        (Some(stored), Some(used)) if deep => {
            let training = Training::On {
                device: &device,
                stop: &stop,
            };
            let inputs = sweep::prepare(&plan, cells, &options, training)?;
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
            sweep::prepare(&plan, cells, &options, stored_stage)?
        }
    };
    if device.info.kind != rec.device {
        progress.line(&format!(
            "note: the run was recorded on {}, this check runs on {}: expect float32 rounding differences (use --tolerance)",
            rec.device, device.info.kind
        ));
    }
    let result = sweep::run_cell(&plan, cell, &inputs, &device, &options, None, &stop)?;
    let old = read_metrics(&run.dir.join("metrics.csv"))?;
    let new = read_metrics(&result.dir.join("metrics.csv"))?;
    diffs.extend(metric_differences(&old, &new, tolerance));
    Ok(if diffs.is_empty() {
        Verdict::Reproduced { epochs: new.len() }
    } else {
        Verdict::MetricsDiffer(diffs)
    })
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
