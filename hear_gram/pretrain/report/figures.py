"""The report's figures: training loss, classification bars, localization error per SNR bin,
and the left/right kernel diagnostic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hear_gram.plotting import save, subplots
from hear_gram.pretrain.report.stats import LOC_BINS, MODELS, Score
from hear_gram.pretrain.train import read_losses, running_mean

COLORS = {"naturalistic": "tab:green", "clean": "tab:blue", "random": "tab:gray"}


def _save(fig, png: Path) -> Path:
    return save(fig, png, dpi=100)


def plot_losses(runs: dict[str, list[Path]], png: Path) -> Path:
    """Masked-patch loss (mean of 50 steps) of each training run: {model: [run dir per seed]}."""
    fig, ax = subplots(figsize=(6, 3.6))
    for model, dirs in runs.items():
        for seed, run_dir in enumerate(dirs):
            steps, losses = read_losses(run_dir / "logs")
            if len(losses):
                ax.plot(*running_mean(steps, losses, min(50, len(losses))), lw=1,
                        color=COLORS.get(model), label=model if seed == 0 else None)  # fmt: skip
    ax.set(xlabel="step", ylabel="masked-patch MSE x channels (mean of 50)", yscale="log")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, png)


def plot_classification(cls: dict[str, dict[str, Score]], png: Path) -> Path:
    """Grouped bars: one group per task score, one bar per model, SE over seeds as error bars."""
    tasks = list(cls[MODELS[0]])
    fig, ax = subplots(figsize=(1.2 + 2.2 * len(tasks), 3.6))
    width = 0.8 / len(cls)
    for i, (model, scores) in enumerate(cls.items()):
        x = np.arange(len(tasks)) + (i - (len(cls) - 1) / 2) * width
        ax.bar(x, [scores[t].mean for t in tasks], width, yerr=[scores[t].se() for t in tasks],
               capsize=3, label=model, color=COLORS.get(model))  # fmt: skip
    ax.set_xticks(np.arange(len(tasks)), [t.replace(" [", "\n[") for t in tasks], fontsize=7)
    ax.set_ylabel("test score (mean ± SE over seeds)")
    ax.legend(fontsize=8)
    return _save(fig, png)


def plot_localization(loc: dict[str, dict[str, Score]], png: Path) -> Path:
    """Mean angular error (deg) per SNR bin, one line per model or baseline, SE over seeds."""
    fig, ax = subplots(figsize=(7.5, 3.6))
    for label, scores in loc.items():
        bins = [b for b in LOC_BINS if b in scores]
        se = [scores[b].se() if scores[b].n > 1 else 0.0 for b in bins]
        ax.errorbar(bins, [scores[b].mean for b in bins], yerr=se, marker="o", capsize=3,
                    label=label)  # fmt: skip
    ax.set(xlabel="SNR bin (dB)", ylabel="mean angular error (deg)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return _save(fig, png)


def plot_diagnostic(diag: dict[str, dict[str, Score]], per_filter: dict[str, np.ndarray],
                    png: Path) -> Path:  # fmt: skip
    """Left: mean L/R kernel cosine before and after training per model (SE over seeds). Right:
    the per-filter cosines after training, pooled over seeds, per model."""
    fig, (bars, hist) = subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(diag))
    for i, when in enumerate(("before", "after")):
        means = [diag[m][when].mean for m in diag]
        errs = [diag[m][when].se() if diag[m][when].n > 1 else 0.0 for m in diag]
        bars.bar(x + (i - 0.5) * 0.4, means, 0.4, yerr=errs, capsize=3, label=f"{when} training",
                 color="tab:gray" if when == "before" else "tab:orange")  # fmt: skip
    bars.set_xticks(x, list(diag))
    low = min([-0.2] + [diag[m][w].mean - 0.1 for m in diag for w in ("before", "after")])
    bars.set(ylabel="cos(left kernel, right kernel)", ylim=(max(low, -1.05), 1.05))
    bars.axhline(0, color="k", lw=0.5)
    bars.legend(fontsize=8)
    edges = np.linspace(-1, 1, 41)
    for model, values in per_filter.items():
        hist.hist(values[np.isfinite(values)], edges, histtype="step", lw=1.5, label=model,
                  color=COLORS.get(model))  # fmt: skip
    hist.set(xlabel="cos(left kernel, right kernel) per first-layer filter", ylabel="filters")
    hist.legend(fontsize=8)
    return _save(fig, png)
