//! `runner slurm-task` (hidden): what a job of `runner sweep --slurm` runs on a node.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::slurm::task::{self, TaskEnd, TaskKind};

use super::interrupt::install_interrupt_handler;
use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
pub struct SlurmTaskArgs {
    /// The submission directory (results/<code-state>/.slurm/<id>).
    pub submission: PathBuf,
    /// Train the [pretrain] stage.
    #[arg(long, group = "kind")]
    pub stage: bool,
    /// Train the cell of this array task (SLURM_ARRAY_TASK_ID).
    #[arg(long, group = "kind")]
    pub cell: bool,
    /// The array index to run instead of SLURM_ARRAY_TASK_ID.
    #[arg(long, requires = "cell")]
    pub index: Option<usize>,
    /// Write the report.
    #[arg(long, group = "kind")]
    pub report: bool,
}

pub fn run(args: SlurmTaskArgs) -> anyhow::Result<Outcome> {
    let stop = install_interrupt_handler();
    let requeue = Arc::new(AtomicBool::new(false));
    watch_slurm_signals(stop.clone(), requeue.clone());
    let kind = if args.stage {
        TaskKind::Stage
    } else if args.report {
        TaskKind::Report
    } else {
        TaskKind::Cell(args.index)
    };
    Ok(match task::run(&args.submission, kind, &stop, &requeue)? {
        TaskEnd::Done | TaskEnd::Requeued => Outcome::Success,
        TaskEnd::CellFailed => Outcome::CellsFailed,
        TaskEnd::Interrupted => Outcome::Interrupted,
    })
}

/// SIGUSR1 (`--signal=B:USR1@N`, before the time limit): stop after the current batch and
/// requeue. SIGTERM (scancel, preemption, `scontrol requeue`): stop after the current batch; the
/// finished epochs are kept either way.
fn watch_slurm_signals(stop: Arc<AtomicBool>, requeue: Arc<AtomicBool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::SignalKind;
        let (stop2, requeue2) = (stop.clone(), requeue);
        watch(SignalKind::user_defined1(), move || {
            eprintln!(
                "SIGUSR1: the time limit is near; stopping after the current batch to requeue"
            );
            requeue2.store(true, Ordering::SeqCst);
            stop2.store(true, Ordering::SeqCst);
        });
        watch(SignalKind::terminate(), move || {
            eprintln!("SIGTERM: stopping after the current batch");
            stop.store(true, Ordering::SeqCst);
        });
    }
    #[cfg(not(unix))]
    let _ = (stop, requeue);
}

/// Run `on_signal` on its own thread each time `kind` arrives (registered before this returns).
#[cfg(unix)]
fn watch(kind: tokio::signal::unix::SignalKind, on_signal: impl Fn() + Send + 'static) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        eprintln!("warning: Slurm's signals cannot be watched");
        return;
    };
    let registered = {
        let _context = runtime.enter();
        tokio::signal::unix::signal(kind)
    };
    let Ok(mut signals) = registered else {
        eprintln!("warning: Slurm's signals cannot be watched");
        return;
    };
    std::thread::spawn(move || {
        runtime.block_on(async move {
            while signals.recv().await.is_some() {
                on_signal();
            }
        })
    });
}
