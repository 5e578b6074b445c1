"""Leave-one-file-out jackknife intervals of SELD figures, as the DCASE baselines compute them.

The DCASE 2022, 2024 and 2025 baselines (sharathadavanne/seld-dcase2022 and
partha2409/DCASE2024_seld_baseline `cls_compute_seld_results.py`, partha2409/DCASE2025_seld_baseline
`utils.py`, all `jackknife_estimation`) score the N files together (the global value g) and N
times with one file left out (partial estimates p_i), then per figure:

    bias      = (N - 1) (mean(p) - g)
    estimate  = g - bias                                   (bias-corrected)
    std_err   = sqrt((N - 1) mean((p_i - mean(p))^2))
    interval  = estimate -+ t(0.975, N - 1) std_err        (Student t, two-sided 95 %)

A NaN partial estimate (say, an angular error with no pairs left) makes that figure's statistics
NaN, as in the baselines. Counts add over files, so a partial estimate is the scores of the
total counts minus one file's (`Additive`), not a rescoring of N - 1 files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from scipy import stats

C = TypeVar("C")
SIGNIFICANCE = 0.05


def jackknife_estimation(
    global_value: float, partial: Sequence[float], significance_level: float = SIGNIFICANCE
) -> dict:
    """{"estimate", "bias", "std_err", "interval": [low, high]} of one figure (module docstring)."""
    if not 0 < significance_level < 1:
        raise ValueError(f"significance level must be in (0, 1), got {significance_level}")
    p = np.asarray(partial, dtype=np.float64)
    n = len(p)
    if n < 2:
        raise ValueError(f"the jackknife needs at least 2 files, got {n}")
    mean = p.mean()
    bias = (n - 1) * (mean - global_value)
    std_err = math.sqrt((n - 1) * np.mean((p - mean) * (p - mean)))
    estimate = global_value - bias
    t = float(stats.t.ppf(1 - significance_level / 2, n - 1))
    return {
        "estimate": float(estimate),
        "bias": float(bias),
        "std_err": float(std_err),
        "interval": [float(estimate - t * std_err), float(estimate + t * std_err)],
    }


def leave_one_out(
    total: C, per_file: Sequence[C], figures: Callable[[C], dict[str, float]]
) -> dict[str, dict]:
    """{figure: jackknife_estimation(...)} for every figure of `figures(total)`, the partial
    estimates being `figures(total - one)` for each file's counts `one` in `per_file`."""
    if len(per_file) < 2:
        raise ValueError(f"the jackknife needs at least 2 files, got {len(per_file)}")
    glob = figures(total)
    partials = [figures(total - one) for one in per_file]  # type: ignore[operator]
    return {k: jackknife_estimation(v, [p[k] for p in partials]) for k, v in glob.items()}
