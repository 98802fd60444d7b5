//! The whole-sweep view: one line for the matrix (cells finished / total, failed, elapsed, ETA)
//! and, on a terminal, a bar under it for every cell being trained (and for a pretraining
//! stage). Not on a terminal (a log file, a pipe, a Slurm task), the same facts come as plain
//! lines: the matrix counts and ETA close every epoch's and every cell's line.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::eta::{clock, eta_seconds, EpochTimes, Left};
use crate::store::Status;
use crate::train::{EpochMetrics, Running};

/// What a line or a bar belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The sweep as a whole (device, data, warnings).
    Matrix,
    /// A pretraining stage being trained.
    Stage,
    /// The cell at this index of the sweep's cells.
    Cell(usize),
}

/// A cell as the view knows it.
#[derive(Debug, Clone)]
pub struct CellInfo {
    pub variant: String,
    pub seed: u64,
    pub epochs: usize,
    /// The index of the first cell of its lockstep pair, if it may train in one.
    pub pair: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Waiting,
    /// Done already (or failed earlier): it will be skipped, so no epoch is left to train.
    ExpectSkipped,
    Running,
    Ended {
        failed: bool,
        skipped: bool,
    },
}

#[derive(Debug)]
struct CellState {
    info: CellInfo,
    label: String,
    phase: Phase,
    /// Epochs trained (restored ones included), and the part of the epoch in progress.
    trained: f64,
    /// When the epoch in progress started.
    epoch_started: Option<Instant>,
}

struct State {
    cells: Vec<CellState>,
    times: EpochTimes,
    bars: BTreeMap<Scope, ProgressBar>,
    /// Whether any cell has started (else the sweep ends without a matrix line).
    started_any: bool,
}

pub struct SweepView {
    /// `None`: plain lines.
    multi: Option<(MultiProgress, ProgressBar)>,
    jobs: usize,
    /// Label every line of a cell with the cell, also with one job: some cells may train in
    /// lockstep pairs (`CellInfo::pair`).
    labelled: bool,
    started: Instant,
    state: Mutex<State>,
}

impl std::fmt::Debug for SweepView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SweepView")
            .field("bars", &self.multi.is_some())
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

/// The matrix line: `matrix [=====>     ] 2/4 cells finished, 0 failed, elapsed 0:52, ETA 0:34`.
const MATRIX: &str = "matrix [{bar:30}] {msg}, elapsed {clock}{prefix}";

/// A cell waiting for its first epoch (building its feature cache, restoring its checkpoint).
const PREPARING: &str = "  {prefix}  preparing ({elapsed})";

/// A cell's or a stage's bar: `  baseline / seed 1  epoch 2/3 [=====>   ] 12/20 loss 0.4 acc 0.8`.
const BAR: &str = "  {prefix} [{bar:25}] {pos}/{len} {msg}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
}

impl SweepView {
    /// A view of `cells` of `experiment`, `jobs` at a time: bars (on stdout, which must be a
    /// terminal) or lines.
    pub fn new(experiment: &str, cells: Vec<CellInfo>, jobs: usize, bars: bool) -> Self {
        let total = cells.len();
        let labelled = cells.iter().any(|c| c.pair.is_some());
        let cells = cells
            .into_iter()
            .enumerate()
            .map(|(i, info)| CellState {
                label: format!(
                    "[{}/{total}] {experiment} / {} / seed {}",
                    i + 1,
                    info.variant,
                    info.seed
                ),
                info,
                phase: Phase::Waiting,
                trained: 0.0,
                epoch_started: None,
            })
            .collect();
        let multi = bars.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let matrix = multi.add(ProgressBar::new(total as u64));
            matrix.set_style(style(MATRIX).with_key(
                "clock",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&clock(state.elapsed().as_secs_f64()));
                },
            ));
            matrix.enable_steady_tick(std::time::Duration::from_secs(1));
            (multi, matrix)
        });
        let view = SweepView {
            multi,
            jobs: jobs.max(1),
            labelled,
            started: Instant::now(),
            state: Mutex::new(State {
                cells,
                times: EpochTimes::default(),
                bars: BTreeMap::new(),
                started_any: false,
            }),
        };
        view.refresh(&view.state.lock().unwrap());
        view
    }

    fn parallel(&self) -> bool {
        self.jobs > 1 || self.labelled
    }

    /// Print `text` (above the bars, if any), labelled with its cell when cells run side by side.
    pub fn println(&self, scope: Scope, text: &str) {
        let text = match scope {
            Scope::Cell(i) if self.parallel() => {
                format!("{}:{text}", self.state.lock().unwrap().cells[i].label)
            }
            _ => text.to_string(),
        };
        self.print(&text);
    }

    fn print(&self, text: &str) {
        match &self.multi {
            Some((multi, _)) => {
                let _ = multi.println(text);
            }
            None => println!("{text}"),
        }
    }

    /// The matrix line's facts: `2/4 cells finished, 1 failed, elapsed 0:12, ETA 0:36` (no ETA
    /// once every cell has ended; `ETA -` until an epoch is measured).
    fn status(&self, state: &State) -> String {
        let (_, counts, eta) = self.facts(state);
        format!(
            "{counts}, elapsed {}{eta}",
            clock(self.started.elapsed().as_secs_f64())
        )
    }

    /// Cells ended; `2/4 cells finished, 1 failed`; `, ETA 0:36`.
    fn facts(&self, state: &State) -> (usize, String, String) {
        let total = state.cells.len();
        let (mut finished, mut failed, mut skipped) = (0, 0, 0);
        for c in &state.cells {
            if let Phase::Ended {
                failed: f,
                skipped: s,
            } = c.phase
            {
                finished += 1;
                failed += usize::from(f);
                skipped += usize::from(s);
            }
        }
        let left: Vec<Left<'_>> = state
            .cells
            .iter()
            .filter_map(|c| {
                let epochs = match c.phase {
                    Phase::Ended { .. } => return None,
                    Phase::ExpectSkipped => 0.0,
                    Phase::Waiting | Phase::Running => (c.info.epochs as f64 - c.trained).max(0.0),
                };
                let part = c.trained.fract();
                let pace = c
                    .epoch_started
                    .filter(|_| part > 0.0)
                    .map(|t| t.elapsed().as_secs_f64() / part);
                Some(Left {
                    variant: &c.info.variant,
                    epochs,
                    running: c.phase == Phase::Running,
                    pace,
                    pair: c.info.pair,
                })
            })
            .collect();
        let eta = match eta_seconds(&left, &state.times, self.jobs) {
            _ if left.is_empty() => String::new(),
            Some(seconds) => format!(", ETA {}", clock(seconds)),
            None => ", ETA -".to_string(),
        };
        let skipped = if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        };
        let counts = format!("{finished}/{total} cells finished, {failed} failed{skipped}");
        (finished, counts, eta)
    }

    /// Redraw the matrix line (bars only; its elapsed time ticks by itself).
    fn refresh(&self, state: &State) {
        if let Some((_, matrix)) = &self.multi {
            let (finished, counts, eta) = self.facts(state);
            matrix.set_position(finished as u64);
            matrix.set_message(counts);
            matrix.set_prefix(eta);
        }
    }

    /// This cell will be skipped (done already, or failed earlier): it counts for no time.
    pub fn expect_skipped(&self, index: usize) {
        let mut state = self.state.lock().unwrap();
        state.cells[index].phase = Phase::ExpectSkipped;
        self.refresh(&state);
    }

    /// The cell starts: its header line, and a bar waiting for its first epoch.
    pub fn cell_started(&self, index: usize) {
        let mut state = self.state.lock().unwrap();
        state.started_any = true;
        state.cells[index].phase = Phase::Running;
        let label = state.cells[index].label.clone();
        self.print(&label);
        if let Some((multi, _)) = &self.multi {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(style(PREPARING));
            let info = &state.cells[index].info;
            bar.set_prefix(format!("{} / seed {}", info.variant, info.seed));
            bar.enable_steady_tick(std::time::Duration::from_secs(1));
            state.bars.insert(Scope::Cell(index), bar);
        }
        self.refresh(&state);
    }

    /// The cell ended as `status` (`None`: skipped): its closing line, with the matrix counts.
    pub fn cell_ended(&self, index: usize, status: Option<Status>, summary: &str) {
        let mut state = self.state.lock().unwrap();
        state.cells[index].phase = Phase::Ended {
            failed: matches!(status, Some(Status::Failed | Status::Diverged)),
            skipped: status.is_none(),
        };
        if let Some(bar) = state.bars.remove(&Scope::Cell(index)) {
            bar.finish_and_clear();
            if let Some((multi, _)) = &self.multi {
                multi.remove(&bar);
            }
        }
        self.refresh(&state);
        let label = &state.cells[index].label;
        let text = if self.parallel() {
            format!("{label}:{summary}")
        } else {
            summary.to_string()
        };
        let text = match &self.multi {
            Some(_) => text,
            None => format!("{text}  [matrix {}]", self.status(&state)),
        };
        drop(state);
        self.print(&text);
    }

    /// An epoch of `scope` starts (`epoch` counts from 1; restored epochs come before it).
    pub fn epoch_start(
        &self,
        scope: Scope,
        name: &str,
        epoch: usize,
        epochs: usize,
        batches: usize,
    ) {
        let mut state = self.state.lock().unwrap();
        if let Scope::Cell(i) = scope {
            let cell = &mut state.cells[i];
            cell.trained = epoch.saturating_sub(1) as f64;
            cell.info.epochs = epochs;
            cell.epoch_started = Some(Instant::now());
        }
        if let Some((multi, _)) = &self.multi {
            let bar = state
                .bars
                .entry(scope)
                .or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(0));
                    bar.set_style(style(BAR));
                    bar
                })
                .clone();
            let name = match scope {
                Scope::Cell(i) => {
                    let info = &state.cells[i].info;
                    format!("{} / seed {}", info.variant, info.seed)
                }
                _ => name.to_string(),
            };
            bar.disable_steady_tick();
            bar.set_style(style(BAR));
            bar.set_prefix(format!("{name}  epoch {epoch}/{epochs}"));
            bar.set_length(batches as u64);
            bar.set_position(0);
            bar.set_message("");
        }
        self.refresh(&state);
    }

    /// A batch of `scope`'s epoch is done: `batch` of `batches`, with the running metrics.
    pub fn batch(&self, scope: Scope, batch: usize, batches: usize, running: &Running) {
        let mut state = self.state.lock().unwrap();
        if let Scope::Cell(i) = scope {
            let cell = &mut state.cells[i];
            let fraction = batch as f64 / batches.max(1) as f64;
            cell.trained = cell.trained.floor() + fraction.min(1.0);
        }
        if let Some(bar) = state.bars.get(&scope) {
            bar.set_message(format!(
                "loss {:.4} acc {:.4}",
                running.loss(),
                running.accuracy()
            ));
            bar.set_position(batch as u64);
        }
        self.refresh(&state);
    }

    /// An epoch of `scope` ended: its time counts for the ETA; `line` is printed, closed by the
    /// matrix counts when the view is plain lines and the epoch is a cell's.
    pub fn epoch_end(&self, scope: Scope, m: &EpochMetrics, line: &str) {
        let mut state = self.state.lock().unwrap();
        let text = match scope {
            Scope::Cell(i) => {
                let cell = &mut state.cells[i];
                cell.trained = m.epoch as f64;
                cell.epoch_started = None;
                let variant = cell.info.variant.clone();
                state.times.record(&variant, m.seconds);
                self.refresh(&state);
                match &self.multi {
                    Some(_) => line.to_string(),
                    None => format!("{line}  [matrix {}]", self.status(&state)),
                }
            }
            _ => line.to_string(),
        };
        drop(state);
        self.println(scope, &text);
    }

    /// `scope`'s bar is no longer needed (a stage that ended).
    pub fn close(&self, scope: Scope) {
        let mut state = self.state.lock().unwrap();
        if let Some(bar) = state.bars.remove(&scope) {
            bar.finish_and_clear();
            if let Some((multi, _)) = &self.multi {
                multi.remove(&bar);
            }
        }
    }

    /// The sweep ended (or stopped): clear the bars, and say where the matrix stands.
    pub fn finish(&self) {
        let mut state = self.state.lock().unwrap();
        for (_, bar) in std::mem::take(&mut state.bars) {
            bar.finish_and_clear();
        }
        let status = self.status(&state);
        if let Some((multi, matrix)) = &self.multi {
            matrix.finish_and_clear();
            multi.remove(matrix);
        }
        if state.started_any {
            println!("matrix: {status}");
        }
    }
}
