//! What a cell records in run.json: everything about it as it starts, and how it ended.

use crate::model::weights::LoadedWeights;
use crate::model::OpenDevice;
use crate::plan::{CellPlan, KeyComponents, Plan};
use crate::store::record::{Environment, ParameterCounts, StageUse, WeightsRecord};
use crate::store::{RunRecord, Status};
use crate::sweep::feature_cache::CellCache;
use crate::sweep::inputs::{split_record, Inputs, PreparedData};
use crate::train::FitOutcome;

/// The run key and the facts about the network that only exist once it is built.
pub(super) struct Started<'a> {
    pub components: KeyComponents,
    pub key: String,
    pub prepared: &'a PreparedData,
    pub loaded: &'a LoadedWeights,
    /// (trainable, frozen) parameter counts.
    pub parameters: (usize, usize),
    pub frozen_sha256: String,
    pub cache: &'a CellCache,
}

/// The record of `cell` as it starts training (status `running`).
pub(super) fn running(
    plan: &Plan,
    cell: &CellPlan,
    inputs: &Inputs,
    device: &OpenDevice,
    started: Started<'_>,
) -> RunRecord {
    let experiment = &plan.experiment;
    let variant = &cell.variant;
    let cfg = &variant.config;
    let Started {
        components,
        key,
        prepared,
        loaded,
        parameters: (trainable, frozen),
        frozen_sha256,
        cache,
    } = started;
    let data = &prepared.data;
    RunRecord {
        run_key: Some(key),
        key: Some(components),
        code_state: Some(inputs.code.dir_name.clone()),
        provenance: Some(inputs.code.provenance.clone()),
        environment: Some(Environment {
            device: device.info.kind.clone(),
            ..inputs.code.environment.clone()
        }),
        nondeterminism: device.info.nondeterminism(),
        experiment: experiment.name.clone(),
        experiment_file: experiment.file.clone(),
        variant: cell.cell.variant.clone(),
        seed: cell.cell.seed,
        status: Status::Running,
        message: None,
        runner_version: env!("CARGO_PKG_VERSION").into(),
        engine: inputs.code.environment.engine.clone(),
        device: device.info.kind.clone(),
        device_info: Some(device.info.clone()),
        started_at: crate::base::clock::now(),
        finished_at: None,
        epochs_completed: 0,
        last: None,
        trainable_layers: variant.trainable_layers(),
        parameters: ParameterCounts { trainable, frozen },
        frozen_sha256: Some(frozen_sha256),
        weights: WeightsRecord {
            source: loaded.source.clone(),
            sha256: loaded.sha256.clone(),
            format: loaded.format.map(|f| f.describe().to_string()),
            verified: loaded.verified.clone(),
        },
        train: Some(split_record(&data.train)),
        validation: Some(split_record(&data.validation)),
        config: cfg.clone(),
        stage: plan.stage_of(variant).and_then(|planned| {
            let outcome = inputs.stages.get(&planned.stage.name)?;
            Some(StageUse {
                key: outcome.key.clone(),
                checkpoint: outcome.checkpoint.clone(),
                checkpoint_sha256: outcome.checkpoint_sha256.clone(),
                stage: planned.stage.clone(),
            })
        }),
        feature_cache: Some(cache.record.clone()),
        slurm: crate::store::record::SlurmJob::from_env(),
    }
}

/// The status a cell ends with, and the message that says why; `kept` finished epochs are on
/// disk.
pub(super) fn ending(outcome: anyhow::Result<FitOutcome>, kept: usize) -> (Status, Option<String>) {
    match outcome {
        Ok(FitOutcome::Completed) => (Status::Done, None),
        Ok(FitOutcome::Diverged { epoch, batch, loss }) => {
            (Status::Diverged, Some(format!("loss became {loss} in epoch {epoch}, batch {batch}")))
        }
        Ok(FitOutcome::Interrupted { epoch }) => (
            Status::Interrupted,
            Some(format!(
                "stopped by the user during epoch {epoch}; {kept} finished epochs kept, `runner sweep` resumes"
            )),
        ),
        Err(e) => (Status::Failed, Some(format!("{e:#}"))),
    }
}
