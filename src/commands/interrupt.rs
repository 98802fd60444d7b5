//! Ctrl-C during a sweep: the first stops after the current batch, the second exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::outcome::Outcome;

/// First Ctrl-C: finish the current batch, keep what was written, stop. Second: exit at once.
///
/// The signal is watched by a tokio task on its own thread; on Unix the handler is registered
/// before this returns, so a Ctrl-C right after the start is not lost.
pub fn install_interrupt_handler() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let on_signal = move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now");
            Outcome::Interrupted.exit_now();
        }
        eprintln!("\nstopping after the current batch (press Ctrl-C again to exit at once)");
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warning: Ctrl-C handling is unavailable: {e}");
            return stop;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let registered = {
            let _context = runtime.enter();
            signal(SignalKind::interrupt())
        };
        match registered {
            Ok(mut interrupts) => {
                std::thread::spawn(move || {
                    runtime.block_on(async move {
                        while interrupts.recv().await.is_some() {
                            on_signal();
                        }
                    })
                });
            }
            Err(e) => eprintln!("warning: Ctrl-C handling is unavailable: {e}"),
        }
    }
    #[cfg(not(unix))]
    std::thread::spawn(move || {
        runtime.block_on(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                on_signal();
            }
        })
    });
    stop
}
