"""The noise bins of the localization tasks, in one ordered tuple.

The direction tasks are rendered clean and at three SNR ranges, 5-10, 10-20 and 20-40 dB (GRAM,
arXiv 2506.00934, spatial experiments). The generator names its output tasks by `SnrBin.name`
(`esc50-v2.0.0-full-loc-binaural-snr05-10`), the evaluator and the plots order results by
`ORDER`, and the summary table prints `SnrBin.label`.
"""

from __future__ import annotations

from dataclasses import dataclass

CLEAN = "clean"


@dataclass(frozen=True)
class SnrBin:
    """An SNR range (dB) the noise of a direction task is drawn from, uniformly."""

    name: str  # in task names and manifests, e.g. "snr05-10"
    low_db: float
    high_db: float

    @property
    def label(self) -> str:
        """For tables: "5-10"."""
        return f"{self.low_db:g}-{self.high_db:g}"

    @property
    def range_db(self) -> tuple[float, float]:
        return self.low_db, self.high_db


# Noisiest first.
SNR_BINS: tuple[SnrBin, ...] = (
    SnrBin("snr05-10", 5.0, 10.0),
    SnrBin("snr10-20", 10.0, 20.0),
    SnrBin("snr20-40", 20.0, 40.0),
)
# Every bin name a direction task can carry, noisiest first, clean last (the plots' x axis).
ORDER: tuple[str, ...] = (*(b.name for b in SNR_BINS), CLEAN)


def label(name: str) -> str:
    """Table label of a bin name: "5-10" for "snr05-10", "clean" for "clean"; ValueError for a
    name that is neither."""
    if name == CLEAN:
        return CLEAN
    for b in SNR_BINS:
        if b.name == name:
            return b.label
    raise ValueError(f"unknown SNR bin {name!r}; known: {list(ORDER)}")
