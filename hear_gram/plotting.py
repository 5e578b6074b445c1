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
             squeeze: bool = True) -> tuple[Any, Any]:  # fmt: skip
    """(figure, axes) as ``pyplot.subplots`` returns them."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Lay out `fig` and write it to `path` (format from the suffix)."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
