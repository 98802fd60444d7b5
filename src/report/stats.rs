//! Statistics across seeds: summaries with Student-t intervals, paired differences with a t-test
//! and a bootstrap interval, and Holm's correction for several comparisons.
//!
//! Pure functions of numbers: no I/O, no formatting. Every quantity is `None` where it is not
//! defined (fewer than two values, zero variance) rather than a made-up number, so that callers
//! cannot average or test what is missing. Checked against scipy/statsmodels values in
//! `tests/reference/stats_reference.json` (script: `tests/reference/stats_reference.py`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Level of every interval in the report.
pub const CONFIDENCE: f64 = 0.95;
/// Resamples of the percentile bootstrap. With 10,000 the Monte Carlo error of a 2.5% quantile is
/// about sqrt(0.025 * 0.975 / 10,000) = 0.16% in probability, well under the seed noise.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;
/// Seed of the bootstrap resampling, so that a report is reproducible byte for byte.
pub const BOOTSTRAP_SEED: u64 = 0x5EED;

/// A closed interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    pub fn covers(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// Mean, spread and interval of one quantity over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation s = sqrt(sum (x_i - mean)^2 / (n - 1)); `None` for n < 2.
    pub std: Option<f64>,
    /// mean -/+ t_{0.975, n-1} * s / sqrt(n) (Student-t interval for the mean); `None` for n < 2.
    pub ci: Option<Interval>,
}

/// Summarise `xs`; `None` when there is nothing to summarise.
pub fn summarize(xs: &[f64]) -> Option<Summary> {
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mean = mean(xs);
    let std = sample_std(xs);
    let ci = std.map(|s| {
        let half = t_quantile(0.5 + CONFIDENCE / 2.0, (n - 1) as f64) * s / (n as f64).sqrt();
        Interval {
            lo: mean - half,
            hi: mean + half,
        }
    });
    Some(Summary { n, mean, std, ci })
}

pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation with Bessel's correction (divisor n - 1); `None` for n < 2.
pub fn sample_std(xs: &[f64]) -> Option<f64> {
    let n = xs.len();
    if n < 2 {
        return None;
    }
    let m = mean(xs);
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (n - 1) as f64).sqrt())
}

/// The p-quantile of Student's t distribution with `df` degrees of freedom.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    // df >= 1 always holds here (n >= 2), for which StudentsT::new cannot fail.
    StudentsT::new(0.0, 1.0, df)
        .map(|t| t.inverse_cdf(p))
        .unwrap_or(f64::NAN)
}

/// A paired comparison of `a` against `b`, seed by seed: d_i = a_i - b_i.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    pub n: usize,
    /// mean(d).
    pub mean_diff: f64,
    /// Summary of the differences: s_d and the t-interval mean(d) -/+ t_{0.975, n-1} s_d / sqrt(n).
    pub diff: Summary,
    /// Paired t statistic t = mean(d) / (s_d / sqrt(n)); `None` for n < 2 or s_d = 0.
    pub t: Option<f64>,
    /// Two-sided p-value 2 * (1 - F_{t, n-1}(|t|)) (Student, 1908; scipy.stats.ttest_rel).
    pub p: Option<f64>,
    /// Percentile bootstrap interval of mean(d): resample the n differences with replacement
    /// [`BOOTSTRAP_RESAMPLES`] times, take the 2.5% and 97.5% quantiles of the resampled means
    /// (Efron & Tibshirani 1993, ch. 13). `None` for n < 2.
    pub bootstrap: Option<Interval>,
}

/// Compare paired samples (`a[i]` and `b[i]` come from the same seed). `None` when empty or of
/// unequal length.
pub fn paired(a: &[f64], b: &[f64], bootstrap_seed: u64) -> Option<Paired> {
    if a.len() != b.len() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let diff = summarize(&d)?;
    let n = d.len();
    let (t, p) = match diff.std {
        Some(s) if s > 0.0 => {
            let t = diff.mean / (s / (n as f64).sqrt());
            let df = (n - 1) as f64;
            let p = StudentsT::new(0.0, 1.0, df)
                .ok()
                .map(|dist| 2.0 * dist.sf(t.abs()));
            (Some(t), p)
        }
        _ => (None, None),
    };
    Some(Paired {
        n,
        mean_diff: diff.mean,
        diff,
        t,
        p,
        bootstrap: bootstrap_mean_interval(&d, BOOTSTRAP_RESAMPLES, bootstrap_seed),
    })
}

/// Percentile bootstrap interval of the mean of `xs` at level [`CONFIDENCE`], from `resamples`
/// resamples drawn with a ChaCha8 stream seeded by `seed`. `None` for fewer than two values.
pub fn bootstrap_mean_interval(xs: &[f64], resamples: usize, seed: u64) -> Option<Interval> {
    let n = xs.len();
    if n < 2 || resamples == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| xs[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let alpha = 1.0 - CONFIDENCE;
    Some(Interval {
        lo: quantile_sorted(&means, alpha / 2.0),
        hi: quantile_sorted(&means, 1.0 - alpha / 2.0),
    })
}

/// The q-quantile of sorted data with linear interpolation between order statistics
/// (Hyndman & Fan 1996 type 7, numpy's default): position h = (n - 1) q.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Holm-Bonferroni adjusted p-values (Holm 1979): with the m defined p-values sorted ascending,
/// p_adj(i) = max_{j <= i} min(1, (m - j + 1) p_(j)). Undefined p-values stay undefined and are
/// not counted in m. Reject where p_adj < alpha: this controls the family-wise error rate.
pub fn holm(ps: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut order: Vec<usize> = (0..ps.len()).filter(|&i| ps[i].is_some()).collect();
    order.sort_by(|&i, &j| ps[i].unwrap_or(1.0).total_cmp(&ps[j].unwrap_or(1.0)));
    let m = order.len();
    let mut out = vec![None; ps.len()];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        let p = ps[i].unwrap_or(1.0);
        running = running.max(((m - rank) as f64 * p).min(1.0));
        out[i] = Some(running);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed by tests/reference/stats_reference.py (scipy 1.17.1, statsmodels 0.15.0).
    const REFERENCE: &str = include_str!("../../tests/reference/stats_reference.json");

    fn reference() -> serde_json::Value {
        serde_json::from_str(REFERENCE).unwrap()
    }

    fn floats(v: &serde_json::Value) -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }

    fn close(a: f64, b: f64, tol: f64, what: &str) {
        assert!((a - b).abs() <= tol, "{what}: {a} vs reference {b}");
    }

    #[test]
    fn summaries_match_scipy() {
        for case in reference()["summaries"].as_array().unwrap() {
            let x = floats(&case["x"]);
            let s = summarize(&x).unwrap();
            let n = case["n"].as_u64().unwrap() as usize;
            assert_eq!(s.n, n);
            close(s.mean, case["mean"].as_f64().unwrap(), 1e-12, "mean");
            close(s.std.unwrap(), case["std"].as_f64().unwrap(), 1e-12, "std");
            close(
                t_quantile(0.975, (n - 1) as f64),
                case["t975"].as_f64().unwrap(),
                1e-8,
                "t quantile",
            );
            let ci = floats(&case["ci"]);
            close(s.ci.unwrap().lo, ci[0], 1e-9, "ci low");
            close(s.ci.unwrap().hi, ci[1], 1e-9, "ci high");
        }
    }

    #[test]
    fn paired_t_tests_match_scipy() {
        for case in reference()["paired"].as_array().unwrap() {
            let (a, b) = (floats(&case["a"]), floats(&case["b"]));
            let p = paired(&a, &b, BOOTSTRAP_SEED).unwrap();
            close(
                p.mean_diff,
                case["mean_diff"].as_f64().unwrap(),
                1e-12,
                "mean diff",
            );
            close(
                p.diff.std.unwrap(),
                case["std_diff"].as_f64().unwrap(),
                1e-12,
                "sd",
            );
            close(p.t.unwrap(), case["t"].as_f64().unwrap(), 1e-9, "t");
            close(p.p.unwrap(), case["p"].as_f64().unwrap(), 1e-9, "p");
            let ci = floats(&case["ci"]);
            close(p.diff.ci.unwrap().lo, ci[0], 1e-9, "ci low");
            close(p.diff.ci.unwrap().hi, ci[1], 1e-9, "ci high");
        }
    }

    #[test]
    fn bootstrap_approximates_the_exact_bootstrap_distribution() {
        for case in reference()["paired"].as_array().unwrap() {
            let (a, b) = (floats(&case["a"]), floats(&case["b"]));
            let boot = paired(&a, &b, BOOTSTRAP_SEED).unwrap().bootstrap.unwrap();
            let exact = floats(&case["bootstrap_exact"]);
            let scipy = floats(&case["bootstrap_scipy"]);
            // The exact interval is the limit of the Monte Carlo one; with 10,000 resamples a
            // quantile lands on the same or a neighbouring resample mean, a few thousandths away.
            let tol = 0.004;
            close(boot.lo, exact[0], tol, "bootstrap low vs exact");
            close(boot.hi, exact[1], tol, "bootstrap high vs exact");
            close(boot.lo, scipy[0], tol, "bootstrap low vs scipy");
            close(boot.hi, scipy[1], tol, "bootstrap high vs scipy");
        }
    }

    #[test]
    fn bootstrap_is_reproducible_and_depends_on_its_seed() {
        let d = [0.01, -0.02, 0.03, 0.05, 0.0];
        let a = bootstrap_mean_interval(&d, 2000, 1).unwrap();
        assert_eq!(a, bootstrap_mean_interval(&d, 2000, 1).unwrap());
        assert_ne!(a, bootstrap_mean_interval(&d, 2000, 2).unwrap());
        assert!(a.lo < mean(&d) && mean(&d) < a.hi);
    }

    #[test]
    fn holm_matches_statsmodels() {
        for case in reference()["holm"].as_array().unwrap() {
            let ps: Vec<Option<f64>> = floats(&case["p"]).into_iter().map(Some).collect();
            let adjusted = holm(&ps);
            for (got, want) in adjusted.iter().zip(floats(&case["adjusted"])) {
                close(got.unwrap(), want, 1e-12, "holm");
            }
        }
    }

    #[test]
    fn holm_leaves_undefined_p_values_out_of_the_family() {
        let adjusted = holm(&[Some(0.02), None, Some(0.04)]);
        assert_eq!(adjusted[1], None);
        // m = 2, not 3: 0.02 * 2 = 0.04, then max(0.04, 0.04 * 1) = 0.04.
        close(adjusted[0].unwrap(), 0.04, 1e-15, "first");
        close(adjusted[2].unwrap(), 0.04, 1e-15, "second");
    }

    #[test]
    fn undefined_quantities_are_none_not_numbers() {
        let one = summarize(&[0.7]).unwrap();
        assert_eq!((one.n, one.std, one.ci), (1, None, None));
        assert_eq!(summarize(&[]), None);
        let single = paired(&[0.8], &[0.7], 0).unwrap();
        assert_eq!((single.t, single.p, single.bootstrap), (None, None, None));
        // Identical differences on every seed: no variance, so no t statistic or p-value.
        let flat = paired(&[0.75, 1.0], &[0.5, 0.75], 0).unwrap();
        assert_eq!((flat.t, flat.p), (None, None));
        assert_eq!(paired(&[0.1, 0.2], &[0.1], 0), None);
    }
}
