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
use crate::base::fs::write_atomic;
use crate::base::lock::CellLock;
use crate::model::weights::trained;
use crate::model::OpenDevice;
use crate::plan::{CellPlan, Plan};
use crate::store::{lock_path, read_record, Status};
use decide::{decide, Action};

/// Decide and, unless skipped, train one planned cell. Training errors are recorded as a
/// `failed` cell; only errors writing the results themselves are returned.
pub fn run_cell(
    plan: &Plan,
    cell: &CellPlan,
    inputs: &Inputs,
    device: &OpenDevice,
    options: &SweepOptions,
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
    let skipped = |reason: String, dir: PathBuf| CellResult {
        cell: cell.cell.clone(),
        status: None,
        skipped: Some(reason),
        dir,
        last: None,
        seconds: 0.0,
        message: None,
    };
    let _lock = match CellLock::acquire(&lock_path(&final_dir))? {
        Ok(lock) => lock,
        Err(held) => {
            return Ok(skipped(
                format!("being trained by another sweep ({held})"),
                final_dir,
            ))
        }
    };
    let action = decide(
        &decide::on_disk(&final_dir),
        &key,
        options.force,
        options.retry_failed,
    );
    let resume_after = match action {
        Action::Skip(reason) => {
            let last = read_record(&final_dir).and_then(|r| r.last);
            return Ok(CellResult {
                last,
                ..skipped(reason, final_dir)
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
    let outcome = trainee.fit(
        cell,
        prepared,
        &cache,
        &mut writer,
        first_epoch,
        &options.progress,
        stop,
    );
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
    Ok(CellResult {
        cell: cell.cell.clone(),
        status: Some(status),
        skipped: None,
        dir,
        last,
        seconds: started.elapsed().as_secs_f64(),
        message,
    })
}
