//! What a sweep prints: on a terminal, a line for the whole matrix above a bar for every cell
//! being trained (`view`); otherwise (logs, CI, pipes, Slurm tasks) plain lines, each epoch's and
//! each cell's closed by the matrix counts and ETA (`eta` says how that is estimated).

mod eta;
mod view;

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use super::CellResult;
use crate::plan::CellPlan;
use crate::store::Status;
use crate::train::EpochMetrics;
pub use eta::{clock, eta_seconds, EpochTimes, Left};
pub use view::{CellInfo, Scope, SweepView};

#[derive(Debug, Clone)]
pub enum Progress {
    /// Bars for batches when stdout is a terminal, plus a line per epoch.
    Bars,
    /// A line per epoch and per cell.
    Lines,
    Quiet,
    /// Inside a sweep (`Progress::sweep`): its whole-matrix view, as bars or lines, and what the
    /// output belongs to.
    Sweep(Arc<SweepView>, Scope),
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
        match self {
            Progress::Quiet => {}
            Progress::Bars | Progress::Lines => println!("{text}"),
            Progress::Sweep(view, scope) => view.println(*scope, text),
        }
    }

    /// The view of a sweep over `cells` of `experiment`, `jobs` at a time, for as long as the
    /// returned `Live` is kept: bars for `Bars`, lines for `Lines`; nothing for `Quiet`.
    /// `pairs`: cells (indices into `cells`) that may train side by side, in lockstep, even with
    /// one job.
    pub fn sweep(
        &self,
        experiment: &str,
        cells: &[CellPlan],
        jobs: usize,
        pairs: &[(usize, usize)],
    ) -> Live {
        let bars = match self {
            Progress::Bars => true,
            Progress::Lines => false,
            Progress::Quiet | Progress::Sweep(..) => return Live(self.clone()),
        };
        let infos = cells
            .iter()
            .enumerate()
            .map(|(i, c)| CellInfo {
                pair: pairs
                    .iter()
                    .find(|&&(a, b)| a == i || b == i)
                    .map(|&(a, _)| a),
                variant: c.cell.variant.clone(),
                seed: c.cell.seed,
                epochs: c.variant.config.training.epochs,
            })
            .collect();
        let view = SweepView::new(experiment, infos, jobs, bars);
        Live(Progress::Sweep(Arc::new(view), Scope::Matrix))
    }

    fn scoped(&self, scope: Scope) -> Progress {
        match self {
            Progress::Sweep(view, _) => Progress::Sweep(view.clone(), scope),
            other => other.clone(),
        }
    }

    /// What the cell at `index` of the sweep prints through.
    pub fn for_cell(&self, index: usize) -> Progress {
        self.scoped(Scope::Cell(index))
    }

    /// What a pretraining stage prints through.
    pub fn for_stage(&self) -> Progress {
        self.scoped(Scope::Stage)
    }

    /// The cell at `index` is done already (or failed earlier) and will be skipped.
    pub fn expect_skipped(&self, index: usize) {
        if let Progress::Sweep(view, _) = self {
            view.expect_skipped(index);
        }
    }

    /// This cell (`for_cell`) starts: its header line and bar.
    pub fn cell_started(&self) {
        if let Progress::Sweep(view, Scope::Cell(i)) = self {
            view.cell_started(*i);
        }
    }

    /// This cell (`for_cell`) ended: its closing line.
    pub fn cell_ended(&self, result: &CellResult) {
        match self {
            Progress::Sweep(view, Scope::Cell(i)) => {
                view.cell_ended(*i, result.status, &cell_summary(result))
            }
            other => other.line(&cell_summary(result)),
        }
    }

    /// An epoch ended: its line (with the matrix counts when in a sweep, not on a terminal).
    pub fn epoch(&self, m: &EpochMetrics, epochs: usize) {
        match self {
            Progress::Sweep(view, scope) => view.epoch_end(*scope, m, &epoch_line(m, epochs)),
            other => other.line(&epoch_line(m, epochs)),
        }
    }

    pub fn epoch_bar(&self, epoch: usize, epochs: usize, batches: usize) -> Option<ProgressBar> {
        if !matches!(self, Progress::Bars) {
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

/// A sweep's view, while it is kept (`Progress::sweep`); dropping it clears the bars and prints
/// where the matrix stands.
pub struct Live(Progress);

impl Live {
    pub fn progress(&self) -> &Progress {
        &self.0
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Progress::Sweep(view, _) = &self.0 {
            view.finish();
        }
    }
}

/// The progress bar of the epoch being trained: a bar of its own with `Progress::Bars`, the
/// scope's bar in a sweep's view, none otherwise. What the training observers of cells and
/// stages share.
#[derive(Default)]
pub struct EpochBar {
    bar: Option<ProgressBar>,
    sweep: Option<(Arc<SweepView>, Scope)>,
    /// Batches done of the epoch's `batches`.
    done: usize,
    batches: usize,
}

impl EpochBar {
    /// Clear the previous epoch's bar and start this one's; `name` names a stage's bar.
    pub fn start(
        &mut self,
        progress: &Progress,
        name: &str,
        epoch: usize,
        epochs: usize,
        batches: usize,
    ) {
        self.finish();
        (self.done, self.batches) = (0, batches);
        match progress {
            Progress::Sweep(view, scope) => {
                view.epoch_start(*scope, name, epoch, epochs, batches);
                self.sweep = Some((view.clone(), *scope));
            }
            _ => self.bar = progress.epoch_bar(epoch, epochs, batches),
        }
    }

    /// One batch done, with the running training metrics.
    pub fn batch(&mut self, running: &crate::train::Running) {
        self.done += 1;
        if let Some((view, scope)) = &self.sweep {
            view.batch(*scope, self.done, self.batches, running);
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "loss {:.4} acc {:.4}",
                running.loss(),
                running.accuracy()
            ));
            bar.inc(1);
        }
    }

    /// The epoch ended: clear its own bar (a sweep's bar stays for the next epoch).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Training ended: clear the bar; a stage's bar leaves the sweep's view (a cell's leaves
    /// when the cell's closing line is printed).
    pub fn close(&mut self) {
        self.finish();
        if let Some((view, Scope::Stage)) = self.sweep.take() {
            view.close(Scope::Stage);
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
