"""The report's numbers over seeds and the 2-standard-error rule that turns them into sentences.

Each model's number per seed is the task metric pooled over its test folds; a Score holds them and
gives the mean over seeds ± its standard error (sample standard deviation / sqrt(seeds)). A
difference counts only when it exceeds twice the standard error of the difference
(sqrt(SE_a^2 + SE_b^2)); otherwise it is within noise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MODELS = ("naturalistic", "clean", "random")
LOC_BINS = ("clean", "snr20-40", "snr10-20", "snr05-10")
DIRECTION = "direction (mean over SNR bins)"  # the headline direction score per seed


# --- numbers over seeds ------------------------------------------------------------------------
@dataclass(frozen=True)
class Score:
    """One number of the report: its value per seed (each pooled over the test folds)."""

    values: tuple[float, ...]
    higher_is_better: bool

    def __post_init__(self) -> None:
        if not self.values or not all(math.isfinite(v) for v in self.values):
            raise ValueError(f"a score needs finite per-seed values, got {self.values}")

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    def se(self) -> float:
        """Standard error of the mean over seeds (NaN for a single value: no spread)."""
        return statistics.stdev(self.values) / math.sqrt(self.n) if self.n > 1 else float("nan")

    def cell(self, digits: int) -> str:
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.se():.{digits}f}"


def over_seeds(per_seed: Sequence[dict[str, float]], higher_is_better: bool) -> dict[str, Score]:
    """[{key: value} per seed] -> {key: Score over the seeds} (keys of the first seed)."""
    return {k: Score(tuple(float(s[k]) for s in per_seed), higher_is_better) for k in per_seed[0]}


# --- the comparison, in words ------------------------------------------------------------------
def judge(a: Score, b: Score) -> tuple[float, float, int]:
    """(difference a - b, its standard error, sign): +1 a better, -1 b better, 0 within noise."""
    diff = a.mean - b.mean
    se = math.sqrt(a.se() ** 2 + b.se() ** 2)
    if not abs(diff) > 2 * se:  # NaN (a single seed) is never a difference
        return diff, se, 0
    return diff, se, 1 if (diff > 0) == a.higher_is_better else -1


def compare(a_name: str, a: Score, b_name: str, b: Score, what: str, unit: str = "") -> str:
    """One sentence: which of a, b is better on `what`, or that they are within noise (|diff| <=
    2 standard errors of the difference, from the seed spreads). Fewer than 2 seeds give no
    spread to judge by: the numbers are stated, not compared."""
    if min(a.n, b.n) < 2:
        return (
            f"{what}: {a_name} {a.mean:.3g}{unit}, {b_name} {b.mean:.3g}{unit} from a single "
            "seed: no seed spread to judge the difference by."
        )
    diff, se, sign = judge(a, b)
    size = f"{abs(diff):.3g}{unit} (standard error {se:.2g}{unit})"
    if sign == 0:
        return f"{what}: {a_name} and {b_name} are within noise, difference {size}."
    better, worse = (a_name, b_name) if sign > 0 else (b_name, a_name)
    return f"{what}: {better} is better than {worse} by {size}."


def verdict(a_name: str, a: Score, b_name: str, b: Score, what: str, unit: str, digits: int) -> str:
    """The plain answer to "is `a_name` better than `b_name` on `what`?": **yes**, **no** (within
    noise, or the reverse), or **cannot tell** (fewer than 2 seeds), with both means ± SE."""
    nums = f"{a_name} {a.cell(digits)}{unit}, {b_name} {b.cell(digits)}{unit}"
    question = f"Is {a_name} better than {b_name} on {what}?"
    if min(a.n, b.n) < 2:
        return f"{question} **Cannot tell**: {nums}, from a single seed."
    diff, se, sign = judge(a, b)
    rule = f"|difference| {abs(diff):.{digits}f}{unit}, 2 standard errors {2 * se:.{digits}f}{unit}"
    if sign > 0:
        return f"{question} **Yes**: {nums} ({rule})."
    if sign < 0:
        return f"{question} **No, the reverse**: {b_name} is better; {nums} ({rule})."
    return f"{question} **No**, within noise: {nums} ({rule})."


PAIRS = (("naturalistic", "clean"), ("naturalistic", "random"), ("clean", "random"))


def outcome(
    cls: dict[str, dict[str, Score]], loc: dict[str, dict[str, dict[str, Score]]]
) -> list[str]:
    """The comparison sentences of every pair of models on every classification score, and on
    every localization bin per pooling strategy (`loc`: {strategy: {model: {bin: Score}}})."""
    lines = []
    for task in cls.get(MODELS[0], {}):
        lines += [compare(a, cls[a][task], b, cls[b][task], task) for a, b in PAIRS]
    for strategy, by_model in loc.items():
        for bin_ in (b for b in by_model[MODELS[0]] if b != DIRECTION):  # DIRECTION: verdicts
            what = "T60 median abs error" if bin_ == "t60" else f"direction error, {bin_}"
            what += f" ({strategy} pooling)"
            unit = " s" if bin_ == "t60" else " deg"
            lines += [
                compare(a, by_model[a][bin_], b, by_model[b][bin_], what, unit) for a, b in PAIRS
            ]
    return lines


def verdicts(loc: dict[str, dict[str, dict[str, Score]]]) -> list[str]:
    """Headline answers per pooling: naturalistic vs clean, and each against random init, on the
    direction error averaged over the SNR bins and on the T60 error."""
    lines = []
    for strategy, by_model in loc.items():
        for key, what, unit, digits in (
            (DIRECTION, "direction error, mean over SNR bins", " deg", 1),
            ("t60", "T60 median abs error", " s", 3),
        ):
            if key not in by_model[MODELS[0]]:
                continue
            label = f"{what} ({strategy} pooling)"
            lines += [
                verdict(a, by_model[a][key], b, by_model[b][key], label, unit, digits)
                for a, b in PAIRS
            ]
    return lines


def summary(loc: dict[str, dict[str, dict[str, Score]]], strategy: str = "cls") -> str:
    """One line: the three answers on the direction error with `strategy` pooling (CLS: the
    paper's localization setting)."""
    by_model = loc.get(strategy, {})
    if not by_model or DIRECTION not in by_model.get(MODELS[0], {}):
        return ""
    answers = []
    for a, b in PAIRS:
        sa, sb = by_model[a][DIRECTION], by_model[b][DIRECTION]
        sign = judge(sa, sb)[2] if min(sa.n, sb.n) > 1 else None
        word = {1: "yes", 0: "no (within noise)", -1: f"no ({b} is better)", None: "cannot tell"}
        answers.append(f"{a} better than {b}: **{word[sign]}**")
    return f"In short (direction error, {strategy} pooling): " + "; ".join(answers) + "."
