//! One cell: decide whether it runs (new), resumes (an unfinished run of the same key), or is
//! skipped (done already, failed earlier, or being trained by another process); then train it
//! and record how it ended.
//!
//! `decide` reads what is on disk, `train` builds and trains the network, `record` writes
//! run.json's contents.

mod decide;
mod record;
mod train;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::feature_cache;
use super::files::manifest;
use super::inputs::Inputs;
use super::{CellResult, SweepOptions};
use crate::base::fs::{environmental, write_atomic};
use crate::base::lock::CellLock;
use crate::model::weights::trained;
use crate::model::OpenDevice;
use crate::plan::{CellPlan, Plan};
use crate::store::{lock_path, read_record, Status};
use crate::train::lockstep::Lockstep;
use decide::{decide, Action, Skip};

/// Decide and, unless skipped, train one planned cell. Training errors are recorded as a
/// `failed` cell; errors writing the results themselves are returned, and stop the sweep.
///
/// A write that fails because of the machine (disk or quota full, read-only file system, device
/// error: `base::fs::environmental`) is not the cell's fault, and every later write would fail
/// too: the cell is not marked `failed` (its `.partial` keeps its finished epochs and checkpoint,
/// and its record still says `running`, so the next sweep resumes it), and the error, naming the
/// file once, stops the sweep.
///
/// `lockstep`: the partner cell's rendezvous and this cell's place in it (`train::lockstep`).
pub fn run_cell(
    plan: &Plan,
    cell: &CellPlan,
    inputs: &Inputs,
    device: &OpenDevice,
    options: &SweepOptions,
    lockstep: Option<(&Lockstep, usize)>,
    stop: &AtomicBool,
) -> anyhow::Result<CellResult> {
    run(plan, cell, inputs, device, options, lockstep, stop).map_err(|e| match environmental(&e) {
        Some(write) => anyhow::anyhow!(
            "{write}\nthe sweep stopped: every unfinished cell keeps its finished epochs and \
             resumes from its last checkpoint when `runner sweep` runs again, once there is room"
        ),
        None => e,
    })
}

fn run(
    plan: &Plan,
    cell: &CellPlan,
    inputs: &Inputs,
    device: &OpenDevice,
    options: &SweepOptions,
    lockstep: Option<(&Lockstep, usize)>,
    stop: &AtomicBool,
) -> anyhow::Result<CellResult> {
    let started = Instant::now();
    let variant = &cell.variant;
    let prepared = &inputs.data[&variant.data_key];
    let loaded = &inputs.weights[&variant.weights_key];
    let (components, key) = inputs.run_key(cell);
    let final_dir =
        options
            .results
            .cell_dir(&inputs.code.dir_name, &plan.experiment.name, &cell.cell);
    let skipped = |skip: Skip, dir: PathBuf| CellResult {
        cell: cell.cell.clone(),
        status: None,
        skipped: Some(skip.reason),
        skipped_status: skip.on_disk,
        dir,
        last: None,
        seconds: 0.0,
        message: None,
    };
    let decide_now = || {
        decide(
            &decide::on_disk(&final_dir),
            &key,
            options.force,
            options.retry_failed,
        )
    };
    // A cell to skip is skipped before the lock is taken, so that a sweep over a finished matrix
    // needs no write access (a read-only results directory). A cell to run is decided again
    // under the lock: another sweep may have finished it meanwhile.
    let mut action = decide_now();
    let mut _lock = None;
    if !matches!(action, Action::Skip(_)) {
        match CellLock::acquire(&lock_path(&final_dir))? {
            Ok(lock) => _lock = Some(lock),
            Err(held) => {
                let skip = Skip {
                    reason: format!(
                        "being trained by another sweep ({held}); rerun when that sweep has ended"
                    ),
                    on_disk: None,
                };
                return Ok(skipped(skip, final_dir));
            }
        }
        action = decide_now();
    }
    let resume_after = match action {
        Action::Skip(skip) => {
            if let (Some(tracker), Some(_)) = (&inputs.tracker, skip.on_disk) {
                tracker.catch_up(&final_dir);
            }
            let last = read_record(&final_dir).and_then(|r| r.last);
            return Ok(CellResult {
                last,
                ..skipped(skip, final_dir)
            });
        }
        Action::Resume { after_epoch } => Some(after_epoch),
        Action::Run => None,
    };

    let mut trainee = train::Trainee::new(cell, loaded, device)?;
    let parameters = trainee.network.parameter_counts();
    let frozen_sha256 = trained::frozen_hash(&trainee.network)?;
    let cache = feature_cache::for_cell(
        &trainee.network,
        &variant.config,
        &inputs.prefixes_to_keep(cell),
        options.feature_cache,
        prepared,
        inputs,
        &options.progress,
        stop,
    );
    let started_record = record::Started {
        components,
        key: key.clone(),
        prepared,
        loaded,
        parameters,
        frozen_sha256,
        cache: &cache,
    };
    let record = record::running(plan, cell, inputs, device, started_record);
    let (mut writer, first_epoch) =
        trainee.open(final_dir, record, resume_after, &options.progress)?;
    let work = writer.work_dir().to_path_buf();
    write_atomic(
        &work.join(manifest("train")),
        &prepared.train_manifest.to_json(),
    )?;
    write_atomic(
        &work.join(manifest("validation")),
        &prepared.validation_manifest.to_json(),
    )?;
    inputs.code.store_diff(&options.results)?;
    let (trainable, frozen) = parameters;
    options.progress.line(&format!(
        "  {trainable} trainable / {frozen} frozen parameters, {} epochs, run key {}, writing {}",
        variant.config.training.epochs,
        &key[..12],
        work.display()
    ));
    let tracker = inputs.tracker.as_deref();
    let mut live = tracker.and_then(|t| t.start(&writer.record, &work, writer.metrics()));
    let tracking = tracker.zip(live.as_mut());
    let outcome = trainee.fit(
        cell,
        prepared,
        &cache,
        &mut writer,
        first_epoch,
        (&options.progress, tracking),
        lockstep,
        stop,
    );
    let outcome = match outcome {
        Err(e) if environmental(&e).is_some() => return Err(e),
        other => other,
    };
    let (status, message) = record::ending(outcome, writer.metrics().len());
    // A finished cell whose loss exploded (though finite) says so, here and in run.json.
    let chance = std::f64::consts::LN_2;
    let message = match crate::train::fit::loss_explosion(writer.metrics(), chance) {
        Some(warning) if status == Status::Done => Some(format!("warning: {warning}")),
        _ => message,
    };
    if matches!(status, Status::Done | Status::Diverged) {
        trainee.keep_trained(&work)?;
    }
    let last = writer.metrics().last().copied();
    let dir = writer.finish(status, message.clone())?;
    if let Some((tracker, live)) = tracker.zip(live) {
        tracker.finish(live, &dir);
    }
    Ok(CellResult {
        cell: cell.cell.clone(),
        status: Some(status),
        skipped: None,
        skipped_status: None,
        dir,
        last,
        seconds: started.elapsed().as_secs_f64(),
        message,
    })
}

/// Why a sweep would not train `cell` now (done already, failed earlier), with the status on
/// disk, or `None` when it would train or resume it: the decision of `run_cell`, from what is on
/// disk, without its lock.
pub fn skip_reason(
    plan: &Plan,
    cell: &CellPlan,
    inputs: &Inputs,
    options: &SweepOptions,
) -> Option<(String, Option<Status>)> {
    let (_, key) = inputs.run_key(cell);
    let dir = options
        .results
        .cell_dir(&inputs.code.dir_name, &plan.experiment.name, &cell.cell);
    match decide(
        &decide::on_disk(&dir),
        &key,
        options.force,
        options.retry_failed,
    ) {
        Action::Skip(skip) => Some((skip.reason, skip.on_disk)),
        _ => None,
    }
}
