"""`t60`: reverberation time (T60) on the T60 task of each source, binaural and Ambisonic;
median absolute error (s) (arXiv 2506.00934 sec. 5)."""

from __future__ import annotations

from pathlib import Path

from hear_gram.suite.condition import register
from hear_gram.suite.conditions.spatial import SpatialCondition, error_bars


class T60(SpatialCondition):
    name = "t60"
    title = "T60"
    target = "t60"
    metric = "median_abs_error_s"
    caption = "T60 median absolute error (s)"
    columns = (("T60 (s)", None),)
    digits = 3

    def figure(self, rows: list[dict], out: Path) -> list[str]:
        from hear_gram.plotting import save

        fig = error_bars(rows, self.name, "T60 median absolute error (s)")
        if fig is None:
            return []
        save(fig, out / "t60_error.png", dpi=110)
        return ["t60_error.png"]


T60_CONDITION = register(T60())
