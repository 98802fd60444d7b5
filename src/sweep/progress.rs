//! What a sweep prints: progress bars on a terminal, plain lines otherwise (logs, CI, pipes).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::CellResult;
use crate::store::Status;
use crate::train::EpochMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Bars for batches when stdout is a terminal, plus a line per epoch.
    Bars,
    /// A line per epoch and per cell.
    Lines,
    Quiet,
}

impl Progress {
    /// Bars on a terminal, lines otherwise.
    pub fn detect() -> Self {
        if std::io::stdout().is_terminal() {
            Progress::Bars
        } else {
            Progress::Lines
        }
    }

    pub fn line(&self, text: &str) {
        if *self != Progress::Quiet {
            println!("{text}");
        }
    }

    pub fn epoch_bar(&self, epoch: usize, epochs: usize, batches: usize) -> Option<ProgressBar> {
        if *self != Progress::Bars {
            return None;
        }
        let bar = ProgressBar::new(batches as u64);
        let style =
            ProgressStyle::with_template("  epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                .expect("valid template")
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{epoch}/{epochs}"));
        Some(bar)
    }
}

/// The progress bar of the epoch being trained (none unless `Progress::Bars`): what the
/// training observers of cells and stages share.
#[derive(Default)]
pub struct EpochBar(Option<ProgressBar>);

impl EpochBar {
    /// Clear the previous epoch's bar and start this one's.
    pub fn start(&mut self, progress: &Progress, epoch: usize, epochs: usize, batches: usize) {
        self.finish();
        self.0 = progress.epoch_bar(epoch, epochs, batches);
    }

    /// One batch done, with the running training metrics.
    pub fn batch(&self, running: &crate::train::Running) {
        if let Some(bar) = &self.0 {
            bar.set_message(format!(
                "loss {:.4} acc {:.4}",
                running.loss(),
                running.accuracy()
            ));
            bar.inc(1);
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

/// `  epoch 3/10  loss 0.4123  acc 0.8125  val_loss 0.3950  val_acc 0.8300  (2.4 s)`
pub fn epoch_line(m: &EpochMetrics, epochs: usize) -> String {
    format!(
        "  epoch {}/{}  loss {:.4}  acc {:.4}  val_loss {:.4}  val_acc {:.4}  ({:.1} s)",
        m.epoch, epochs, m.train_loss, m.train_acc, m.val_loss, m.val_acc, m.seconds
    )
}

pub fn cell_summary(r: &CellResult) -> String {
    if let Some(reason) = &r.skipped {
        return format!("  skipped: {reason}");
    }
    let status = r.status.map(|s| s.to_string()).unwrap_or_default();
    let acc = r
        .last
        .map(|m| format!(", val_acc {:.4}", m.val_acc))
        .unwrap_or_default();
    let msg = r
        .message
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    format!(
        "  {status}{acc} in {:.1} s -> {}{msg}",
        r.seconds,
        r.dir.display()
    )
}

/// The closing table of a sweep.
pub fn summary_table(results: &[CellResult]) -> String {
    let mut out = String::from(
        "variant                      seed  status       epochs  val_acc  val_loss  seconds\n",
    );
    for r in results {
        let (epochs, acc, loss) = match r.last {
            Some(m) => (
                m.epoch.to_string(),
                format!("{:.4}", m.val_acc),
                format!("{:.4}", m.val_loss),
            ),
            None => ("0".into(), "-".into(), "-".into()),
        };
        let status = match (&r.status, &r.skipped) {
            (Some(s), _) => s.to_string(),
            (None, _) => "skipped".to_string(),
        };
        // A diverged cell says where it stopped (epoch and batch); a done one, a warning.
        let note = match (&r.status, &r.message) {
            (Some(Status::Diverged | Status::Done), Some(m)) => format!("  {m}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<28} {:>4}  {:<11} {:>6}  {:>7}  {:>8}  {:>7.1}{note}\n",
            r.cell.variant, r.cell.seed, status, epochs, acc, loss, r.seconds
        ));
    }
    let bad = results
        .iter()
        .filter(|r| matches!(r.status, Some(Status::Failed | Status::Diverged)))
        .count();
    if bad > 0 {
        out.push_str(&format!(
            "{bad} cell(s) failed or diverged: see the message in their run.json\n"
        ));
    }
    let skipped = results.iter().filter(|r| r.skipped.is_some()).count();
    if skipped > 0 {
        out.push_str(&format!("{skipped} cell(s) skipped (done already, failed earlier, or running elsewhere; --force reruns)\n"));
    }
    out
}
