//! The run key a cell would have now, computed from the current files through the sweep's own
//! preparation of inputs.

use crate::plan::{CellPlan, KeyComponents, Plan};
use crate::store::ResultsLayout;
use crate::sweep::stage::Training;
use crate::sweep::{self, Progress, SweepOptions};

/// The key components a cell would have now, computed from the current files.
///
/// A cell that loads a pretraining stage's weights has a key only once the stage is trained:
/// `stages` says whether to train it now (`reproduce`) or not (`why`: `StageNotTrained`).
pub fn current_key(
    plan: &Plan,
    cell: &CellPlan,
    results: &ResultsLayout,
    stages: Training<'_>,
) -> anyhow::Result<(KeyComponents, String)> {
    let options = options(results.clone(), Progress::Quiet, false);
    let inputs = sweep::prepare(plan, std::slice::from_ref(cell), &options, stages)?;
    Ok(inputs.run_key(cell))
}

/// The options of a sweep that `why` and `reproduce` prepare inputs or train with.
pub(super) fn options(results: ResultsLayout, progress: Progress, force: bool) -> SweepOptions {
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
        pinned_code: None,
    }
}
