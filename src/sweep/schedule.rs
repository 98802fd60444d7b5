//! `--jobs N`: several cells at once, on a tokio scheduler.
//!
//! Each cell is CPU-bound, synchronous code, so it runs on tokio's blocking pool; a semaphore
//! keeps at most N of them running, started in matrix order. Compute threads are divided between
//! the jobs: each runs inside its own rayon pool of `cores / N` threads (at least one). candle's
//! CPU kernels and the gemm crate split their work with rayon, which runs it on the pool the
//! caller is in, so N cells together use about the machine's cores instead of N times as many
//! threads competing. Results do not depend on the number of threads (every reduction has a
//! fixed order), so a cell gives the same numbers whatever N is.
//!
//! Output stays readable: the sweep's view (`progress`) shows a bar for each running cell on a
//! terminal, and labels every line of a cell with the cell.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::inputs::Inputs;
use super::{cell, CellResult, SweepOptions};
use crate::model::OpenDevice;
use crate::plan::{CellPlan, Plan};

/// Run `cells` with at most `options.jobs` at once; results in matrix order. Stops starting cells
/// once `stop` is set (running ones stop after their current batch).
pub fn run_parallel(
    plan: &Plan,
    cells: &[CellPlan],
    inputs: Inputs,
    device: &OpenDevice,
    options: &SweepOptions,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<CellResult>> {
    let jobs = options.jobs.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1);
    options.progress.line(&format!(
        "running {jobs} cells at once, {threads} compute thread(s) each"
    ));
    let plan = Arc::new(plan.clone());
    let inputs = Arc::new(inputs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(jobs)
        .build()?;
    let results: Vec<anyhow::Result<Option<CellResult>>> = runtime.block_on(async {
        let permits = Arc::new(tokio::sync::Semaphore::new(jobs));
        let mut handles = Vec::new();
        for (i, cell) in cells.iter().cloned().enumerate() {
            let permit = permits.clone().acquire_owned().await?;
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let (plan, inputs, device, stop) =
                (plan.clone(), inputs.clone(), device.clone(), stop.clone());
            let options = SweepOptions {
                progress: options.progress.for_cell(i),
                ..options.clone()
            };
            options.progress.cell_started();
            handles.push(tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()?;
                let result = pool
                    .install(|| {
                        cell::run_cell(&plan, &cell, &inputs, &device, &options, None, &stop)
                    })
                    .inspect_err(|_| {
                        // An error that stops the sweep (a full disk) stops the other cells
                        // after their current batch; they stay resumable.
                        stop.store(true, Ordering::SeqCst);
                    })?;
                options.progress.cell_ended(&result);
                anyhow::Ok(Some(result))
            }));
        }
        let mut out = Vec::new();
        for handle in handles {
            out.push(
                handle
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
            );
        }
        anyhow::Ok(out)
    })?;
    let mut done = Vec::new();
    for r in results {
        if let Some(result) = r? {
            done.push(result);
        }
    }
    Ok(done)
}
