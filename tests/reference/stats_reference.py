"""Reference values for src/report/stats.rs, computed independently with scipy and statsmodels.

Versions that produced stats_reference.json: Python 3, numpy 2.4.6, scipy 1.17.1,
statsmodels 0.15.0. Rerun (from the repository root):

    /work/venv-ref/bin/pip install scipy statsmodels   # once
    /work/venv-ref/bin/python tests/reference/stats_reference.py > tests/reference/stats_reference.json

What is checked:
- summaries: n, mean, sample std (ddof=1), t_{0.975, n-1} and the 95% Student-t interval
  (scipy.stats.t.interval);
- paired comparisons (a - b): mean difference, scipy.stats.ttest_rel statistic and two-sided
  p-value, the 95% t-interval of the mean difference;
- the percentile bootstrap interval of the mean difference: scipy.stats.bootstrap(method=
  "percentile") with 10,000 resamples, and the exact ("ideal") bootstrap interval: the 2.5% and
  97.5% quantiles of the distribution of the mean over all n^n equally likely resamples, which a
  Monte Carlo bootstrap approximates;
- Holm-Bonferroni adjusted p-values (statsmodels.stats.multitest.multipletests, method="holm").
"""

import itertools
import json

import numpy as np
import scipy
import scipy.stats as st
import statsmodels
from statsmodels.stats.multitest import multipletests

SAMPLES = [
    [0.665, 0.64, 0.71],
    [0.73, 0.70],
    [0.5125, 0.55, 0.6, 0.4875, 0.575],
    [0.91, 0.93, 0.92, 0.95, 0.90, 0.94, 0.92, 0.93],
]

PAIRS = [
    # (a, b): a is the variant, b the baseline, paired by position (seed).
    ([0.725, 0.74, 0.76], [0.665, 0.64, 0.71]),
    ([0.655, 0.655, 0.62, 0.69], [0.665, 0.64, 0.63, 0.70]),
    ([0.30, 0.28, 0.35, 0.31, 0.29], [0.33, 0.36, 0.34, 0.37, 0.35]),
    ([0.81, 0.79], [0.70, 0.74]),
]

HOLM = [
    [0.01, 0.04, 0.03],
    [0.20, 0.001, 0.04, 0.049],
    [0.5],
]


def summary(xs):
    xs = np.asarray(xs, dtype=float)
    n = len(xs)
    mean = float(np.mean(xs))
    std = float(np.std(xs, ddof=1))
    lo, hi = st.t.interval(0.95, n - 1, loc=mean, scale=std / np.sqrt(n))
    return {
        "x": xs.tolist(),
        "n": n,
        "mean": mean,
        "std": std,
        "t975": float(st.t.ppf(0.975, n - 1)),
        "ci": [float(lo), float(hi)],
    }


def exact_bootstrap(d):
    n = len(d)
    means = np.array([np.mean([d[i] for i in idx]) for idx in itertools.product(range(n), repeat=n)])
    # The limit of a Monte Carlo percentile bootstrap: the quantiles of the exact distribution.
    return [float(np.percentile(means, 2.5, method="inverted_cdf")), float(np.percentile(means, 97.5, method="inverted_cdf"))]


def paired(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    d = a - b
    n = len(d)
    res = st.ttest_rel(a, b)
    s = summary(d)
    boot = st.bootstrap(
        (d,), np.mean, method="percentile", n_resamples=10_000, confidence_level=0.95, rng=np.random.default_rng(0)
    )
    return {
        "a": a.tolist(),
        "b": b.tolist(),
        "n": n,
        "mean_diff": s["mean"],
        "std_diff": s["std"],
        "t": float(res.statistic),
        "p": float(res.pvalue),
        "ci": s["ci"],
        "bootstrap_scipy": [float(boot.confidence_interval.low), float(boot.confidence_interval.high)],
        "bootstrap_exact": exact_bootstrap(d.tolist()),
    }


def holm(ps):
    _, adjusted, _, _ = multipletests(ps, alpha=0.05, method="holm")
    return {"p": ps, "adjusted": [float(x) for x in adjusted]}


print(
    json.dumps(
        {
            "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "statsmodels": statsmodels.__version__},
            "summaries": [summary(x) for x in SAMPLES],
            "paired": [paired(a, b) for a, b in PAIRS],
            "holm": [holm(p) for p in HOLM],
        },
        indent=1,
    )
)
