//! How long the rest of a sweep will take, from the epoch times measured so far.
//!
//! Every finished epoch's wall-clock seconds (as `metrics.csv` records them) are kept per variant.
//! A cell that has not ended still has `epochs` to train (fractional for the epoch in progress:
//! the batches not yet done). Its seconds per epoch are its variant's mean; while a variant has
//! no finished epoch, the pace of its epochs in progress (seconds so far / part done); failing
//! that, the mean over every variant. Epochs times seconds per epoch is the cell's remaining
//! time. The cells then
//! go onto `jobs` lanes as the scheduler would run them: the running cells keep theirs, the
//! waiting ones take the first lane to come free, in matrix order. The ETA is when the last lane
//! comes free. With one job that is the plain sum; with `--jobs N` the measured epoch times are
//! already those of N cells sharing the machine, so N lanes advance at once.
//!
//! The estimate improves as cells finish: more epochs are measured, and the means are those of
//! the variants still to run.

use std::collections::BTreeMap;

/// Seconds per epoch measured so far, per variant.
#[derive(Debug, Default, Clone)]
pub struct EpochTimes {
    by_variant: BTreeMap<String, (f64, usize)>,
}

impl EpochTimes {
    pub fn record(&mut self, variant: &str, seconds: f64) {
        if !seconds.is_finite() || seconds < 0.0 {
            return;
        }
        let entry = self.by_variant.entry(variant.to_string()).or_default();
        entry.0 += seconds;
        entry.1 += 1;
    }

    /// The variant's mean seconds per epoch; `None` when it has no epoch measured.
    pub fn variant_mean(&self, variant: &str) -> Option<f64> {
        self.by_variant.get(variant).copied().and_then(mean)
    }

    /// The mean seconds per epoch over every measured epoch.
    pub fn overall_mean(&self) -> Option<f64> {
        let all = self
            .by_variant
            .values()
            .fold((0.0, 0), |(s, n), &(s2, n2)| (s + s2, n + n2));
        mean(all)
    }

    /// The variant's mean seconds per epoch; the mean over all measured epochs when it has none;
    /// `None` when nothing is measured yet.
    pub fn mean(&self, variant: &str) -> Option<f64> {
        self.variant_mean(variant).or_else(|| self.overall_mean())
    }
}

fn mean((sum, n): (f64, usize)) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

/// A cell that has not ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Left<'a> {
    pub variant: &'a str,
    /// Epochs still to train (the one in progress counts for the part not yet done).
    pub epochs: f64,
    /// Training now (it holds a lane), or waiting for one.
    pub running: bool,
    /// Seconds per epoch at the pace of its epoch in progress (seconds since it started / part
    /// of it done), once some of it is done.
    pub pace: Option<f64>,
    /// Cells with the same value train side by side in one lane (a lockstep pair): the lane is
    /// busy for the longer of their times, not their sum.
    pub pair: Option<usize>,
}

/// Seconds until every cell in `left` (in matrix order) has ended, with `jobs` cells (or
/// lockstep pairs, `Left::pair`) at a time; `None` while no epoch is measured (and some epoch is
/// left to train).
pub fn eta_seconds(left: &[Left<'_>], times: &EpochTimes, jobs: usize) -> Option<f64> {
    // The pace of each unmeasured variant's epochs in progress (the mean over its running cells).
    let mut paces: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for cell in left {
        if let Some(pace) = cell.pace.filter(|p| p.is_finite() && *p >= 0.0) {
            let entry = paces.entry(cell.variant).or_default();
            entry.0 += pace;
            entry.1 += 1;
        }
    }
    let mut durations: Vec<(bool, f64)> = Vec::with_capacity(left.len());
    // Where each pair's entry is in `durations`.
    let mut pairs: BTreeMap<usize, usize> = BTreeMap::new();
    for cell in left {
        let seconds = if cell.epochs <= 0.0 {
            0.0
        } else {
            let per_epoch = times
                .variant_mean(cell.variant)
                .or_else(|| paces.get(cell.variant).copied().and_then(mean))
                .or_else(|| times.overall_mean())?;
            cell.epochs * per_epoch
        };
        match cell.pair.and_then(|p| pairs.get(&p).copied()) {
            Some(at) => {
                let (running, longest) = &mut durations[at];
                *running |= cell.running;
                *longest = longest.max(seconds);
            }
            None => {
                if let Some(p) = cell.pair {
                    pairs.insert(p, durations.len());
                }
                durations.push((cell.running, seconds));
            }
        }
    }
    let mut lanes = vec![0.0f64; jobs.max(1)];
    // Running cells first (they hold lanes now), then the waiting ones in matrix order.
    let order = durations
        .iter()
        .filter(|(running, _)| *running)
        .chain(durations.iter().filter(|(running, _)| !*running));
    for &(_, seconds) in order {
        let free = lanes
            .iter_mut()
            .min_by(|a, b| a.total_cmp(b))
            .expect("at least one lane");
        *free += seconds;
    }
    Some(lanes.into_iter().fold(0.0, f64::max))
}

/// `42` -> `0:42`, `3725` -> `1:02:05`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(variant: &str, epochs: f64, running: bool) -> Left<'_> {
        Left {
            variant,
            epochs,
            running,
            pace: None,
            pair: None,
        }
    }

    fn times(rows: &[(&str, f64)]) -> EpochTimes {
        let mut t = EpochTimes::default();
        for (v, s) in rows {
            t.record(v, *s);
        }
        t
    }

    #[test]
    fn nothing_measured_means_no_eta_and_nothing_left_means_zero() {
        let t = EpochTimes::default();
        assert_eq!(eta_seconds(&[left("a", 2.0, false)], &t, 1), None);
        assert_eq!(eta_seconds(&[], &t, 1), Some(0.0));
        assert_eq!(eta_seconds(&[left("a", 0.0, true)], &t, 1), Some(0.0));
    }

    #[test]
    fn one_job_sums_remaining_epochs_at_each_variants_mean() {
        // a: 2 s per epoch (mean of 1 and 3); b: 10 s.
        let t = times(&[("a", 1.0), ("a", 3.0), ("b", 10.0)]);
        let cells = [
            left("a", 1.5, true),
            left("b", 2.0, false),
            left("a", 3.0, false),
        ];
        assert_eq!(eta_seconds(&cells, &t, 1), Some(1.5 * 2.0 + 20.0 + 6.0));
    }

    #[test]
    fn an_unmeasured_variant_takes_the_overall_mean() {
        // Overall: (2 + 4 + 12) / 3 = 6 s per epoch.
        let t = times(&[("a", 2.0), ("a", 4.0), ("b", 12.0)]);
        assert_eq!(t.mean("c"), Some(6.0));
        assert_eq!(eta_seconds(&[left("c", 2.0, false)], &t, 1), Some(12.0));
    }

    #[test]
    fn an_unmeasured_variant_goes_at_the_pace_of_its_epochs_in_progress() {
        let t = times(&[("a", 1.0)]);
        // b's running cell is a quarter into an epoch after 5 s: 20 s per epoch, for it and
        // for b's waiting cell, ahead of the overall mean (1 s).
        let cells = [
            Left {
                pace: Some(20.0),
                ..left("b", 0.75, true)
            },
            left("b", 2.0, false),
            left("c", 2.0, false),
        ];
        assert_eq!(eta_seconds(&cells, &t, 1), Some(15.0 + 40.0 + 2.0));
        // A measured variant keeps its measured mean.
        let cells = [Left {
            pace: Some(20.0),
            ..left("a", 1.0, true)
        }];
        assert_eq!(eta_seconds(&cells, &t, 1), Some(1.0));
        // Nothing finished yet: the pace alone gives an ETA.
        let cells = [Left {
            pace: Some(8.0),
            ..left("a", 0.5, true)
        }];
        assert_eq!(eta_seconds(&cells, &EpochTimes::default(), 1), Some(4.0));
    }

    #[test]
    fn a_lockstep_pair_takes_one_lane_for_the_longer_of_its_two_cells() {
        let t = times(&[("a", 1.0), ("b", 2.0)]);
        let paired = |variant, epochs, running| Left {
            pair: Some(7),
            ..left(variant, epochs, running)
        };
        // a alone (3 s), then the pair (a: 4 s, b: 10 s), then a alone (1 s), one lane.
        let cells = [
            left("a", 3.0, true),
            paired("a", 4.0, false),
            left("a", 1.0, false),
            paired("b", 5.0, false),
        ];
        assert_eq!(eta_seconds(&cells, &t, 1), Some(3.0 + 10.0 + 1.0));
        // Without the pair, the two would add up.
        let apart: Vec<Left<'_>> = cells
            .iter()
            .map(|c| Left {
                pair: None,
                ..c.clone()
            })
            .collect();
        assert_eq!(eta_seconds(&apart, &t, 1), Some(3.0 + 4.0 + 1.0 + 10.0));
    }

    #[test]
    fn jobs_run_cells_side_by_side_and_the_longest_lane_decides() {
        let t = times(&[("a", 1.0)]);
        // Two running cells (5 s and 1 s left), then three of 4 s waiting, two lanes:
        // lane 1: 5, then 4 -> 9; lane 2: 1, then 4, then 4 -> 9.
        let cells = [
            left("a", 5.0, true),
            left("a", 1.0, true),
            left("a", 4.0, false),
            left("a", 4.0, false),
            left("a", 4.0, false),
        ];
        assert_eq!(eta_seconds(&cells, &t, 2), Some(9.0));
        assert_eq!(eta_seconds(&cells, &t, 1), Some(18.0));
        // More lanes than cells: the longest cell.
        assert_eq!(eta_seconds(&cells, &t, 8), Some(5.0));
    }

    #[test]
    fn the_estimate_follows_the_measurements() {
        let mut t = times(&[("a", 10.0)]);
        let cells = [left("a", 2.0, false)];
        assert_eq!(eta_seconds(&cells, &t, 1), Some(20.0));
        t.record("a", 2.0); // later epochs run faster (e.g. cached features)
        assert_eq!(eta_seconds(&cells, &t, 1), Some(12.0));
        t.record("a", f64::NAN); // not a time: ignored
        assert_eq!(eta_seconds(&cells, &t, 1), Some(12.0));
    }

    #[test]
    fn clock_reads_minutes_and_hours() {
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(42.4), "0:42");
        assert_eq!(clock(125.0), "2:05");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(-3.0), "0:00");
    }
}
