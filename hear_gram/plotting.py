"""Figures drawn straight to files, without pyplot.

A `matplotlib.figure.Figure` made directly is not registered with pyplot and needs no backend to
be chosen: it renders to PNG headless (on a cluster node, in CI) and never switches the
interactive backend of a notebook or script that imports hear-gram, which a module-level
``matplotlib.use("Agg")`` would. Nothing has to be closed afterwards either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float],
             squeeze: bool = True, sharey: bool = False) -> tuple[Any, Any]:  # fmt: skip
    """(figure, axes) as ``pyplot.subplots`` returns them; `sharey`: one y axis for all panels
    (panels of different models read against the same scale)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze, sharey=sharey)


def legend_outside(ax: Any, **kwargs: Any) -> Any:
    """The axes' legend to the right of its panel, where it hides no data; None (no empty box)
    when nothing in the axes has a label."""
    if not ax.get_legend_handles_labels()[0]:
        return None
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                     fontsize=7, **kwargs)  # fmt: skip


FAILED_COLOR = "tab:red"


def mark_failed(ax: Any, x: float, y: float = 0.0, label: str = "failed") -> None:
    """Mark a unit that failed at (x, y) (data coordinates): a red 'x' and the word, so that a
    missing bar or point is never read as a score of 0."""
    # Not clipped: at y = 0, the bottom of a bar chart, half the mark would be cut off.
    ax.plot([x], [y], marker="x", color=FAILED_COLOR, markersize=8, linestyle="none",
            clip_on=False)  # fmt: skip
    ax.annotate(label, (x, y), xytext=(0, 6), textcoords="offset points", rotation=90,
                ha="center", va="bottom", fontsize=7, color=FAILED_COLOR)  # fmt: skip


def save(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Lay out `fig` and write it to `path` (format from the suffix). `tight_layout` makes room
    for whatever the axes draw, a legend outside them included."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
