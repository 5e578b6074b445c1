"""PNG plots of evaluation results (drawn without pyplot: `hear_gram.plotting`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hear_gram.plotting import save, subplots
from localization_tasks import metrics
from localization_tasks.bins import ORDER as BIN_ORDER


def error_vs_snr(rows: list[dict], path: Path, title: str) -> Path:
    """Mean angular error (deg) per SNR bin, one line per (source task, format)."""
    fig, ax = subplots(figsize=(5, 3.5))
    groups: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        if r["target"] == "direction":
            groups.setdefault((r["source_task"], r["format"]), {})[r["snr_bin"]] = r[
                "mean_angular_error_deg"
            ]
    for (task, fmt), by_bin in sorted(groups.items()):
        bins = [b for b in BIN_ORDER if b in by_bin]
        ax.plot(bins, [by_bin[b] for b in bins], marker="o", label=f"{task} {fmt}")
    ax.axhline(90.0, color="grey", linestyle=":", label="chance (90 deg)")
    ax.set_xlabel("SNR bin (dB)")
    ax.set_ylabel("mean angular error (deg)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, path, dpi=100)


def azimuth_scatter(per_task: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """Predicted vs true azimuth (deg), one panel per direction task: {task: (pred, target)}."""
    n = max(len(per_task), 1)
    fig, axes = subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    for ax, (task, (pred, target)) in zip(axes[0], sorted(per_task.items()), strict=False):
        ax.scatter(
            metrics.azimuth360_elevation_deg(target)[0],
            metrics.azimuth360_elevation_deg(pred)[0],
            s=8,
        )
        ax.plot([0, 360], [0, 360], color="grey", linewidth=0.8)
        ax.set_xlim(0, 360)
        ax.set_ylim(0, 360)
        ax.set_xlabel("true azimuth (deg)")
        ax.set_ylabel("predicted azimuth (deg)")
        ax.set_title(task, fontsize=7)
    return save(fig, path, dpi=100)
