"""The uncertainty of the suite's scores: "mean ± sd (n=N)" cells, and the paired t-test that
says whether two scores' difference exceeds the spread of their per-fold (and per-seed) values.

HEAR's own protocol gives the spread: heareval trains one probe per test fold of a k-fold task
and reports each fold's test score (`heareval.predictions.task_predictions` writes them to
`test.predicted-scores.json`, with their mean and sd in `aggregated_scores`).
Two models scored on the same folds are compared fold against fold: a paired t-test
(`scipy.stats.ttest_rel`, two-sided) on the per-fold differences, at `ALPHA`; with fewer than
`MIN_N` pairs the test has too few degrees of freedom to say anything, and says so.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05
MIN_N = 3  # fewer pairs: "n too small" (a t-test on 2 differences has 1 degree of freedom)
TEST = "paired t-test (scipy.stats.ttest_rel, two-sided, alpha = 0.05)"


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """(mean, sample sd) of `values`; sd None for fewer than two (heareval's
    `aggregate_test_results` uses the sample sd, pandas' default, too)."""
    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def cell(mean: float, sd: float | None, n: int | None, digits: int = 1, scale: float = 1.0) -> str:
    """A table cell "mean ± sd (n=N)", both scaled by `scale`; "mean (n=1)" where one value
    leaves the sd undefined; "mean" when n is unknown (a row written without it)."""
    text = f"{mean * scale:.{digits}f}"
    if not n:
        return text
    if n > 1 and sd is not None and math.isfinite(sd):
        text += f" ± {abs(sd * scale):.{digits}f}"
    return f"{text} (n={n})"


def number(value: object) -> float | None:
    """A finite number read back from a row (results.json or CSV text), else None."""
    if isinstance(value, bool):
        return None
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def count(value: object) -> int | None:
    """A row's n (`folds`), else None."""
    got = number(value)
    return int(got) if got is not None and got >= 1 and got == int(got) else None


@dataclass(frozen=True)
class Paired:
    """The paired t-test of a - b over n pairs: the mean difference, its sd, p (None: n too
    small or no spread to test against)."""

    n: int
    diff: float
    sd: float | None
    p: float | None

    @property
    def tested(self) -> bool:
        return self.n >= MIN_N

    @property
    def noise(self) -> bool:
        """Tested, and the difference does not exceed the spread (p >= ALPHA)."""
        return self.tested and (self.p is None or self.p >= ALPHA)

    @property
    def verdict(self) -> str:
        if not self.tested:
            return "n too small"
        return "noise" if self.noise else "beyond noise"

    @property
    def p_text(self) -> str:
        return "-" if self.p is None else f"{self.p:.3g}"


def paired(a: Sequence[float], b: Sequence[float]) -> Paired:
    """The paired t-test of `a` against `b` (pair i = fold i of both)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if not diffs:
        return Paired(0, math.nan, None, None)
    diff, sd = mean_sd(diffs)
    if len(diffs) < MIN_N:
        return Paired(len(diffs), diff, sd, None)
    from scipy.stats import ttest_rel

    with warnings.catch_warnings():  # identical folds: scipy warns, then gives NaN (no spread)
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_rel(a, b).pvalue)
    # NaN: every difference 0, no evidence of any difference (noise); a constant non-zero
    # difference gives p = 0 (t infinite), which is kept.
    return Paired(len(diffs), diff, sd, p if math.isfinite(p) else None)
