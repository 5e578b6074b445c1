"""REPORT.md: the tables, the verdicts and the figures of the pretraining report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hear_gram.pretrain.report.figures import (
    plot_classification,
    plot_diagnostic,
    plot_localization,
    plot_losses,
)
from hear_gram.pretrain.report.stats import (
    DIRECTION,
    LOC_BINS,
    MODELS,
    Score,
    judge,
    outcome,
    summary,
    verdicts,
)
from hear_gram.pretrain.train import TrainConfig
from hear_gram.safeio import write_bytes_atomic


def table(rows: dict[str, dict[str, Score]], columns: Sequence[str], digits: int) -> list[str]:
    lines = ["| model | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for label, scores in rows.items():
        cells = [scores[c].cell(digits) if c in scores else "-" for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


DIAGNOSTIC_TEXT = (
    "Each first-layer filter applies one kernel to the left ear's log-mel patch and one to the "
    "right's. Its cosine is 1 when the two kernels are identical: the filter then sees only the "
    "sum of the two ears and is blind to the interaural level difference, the binaural cue "
    "a log-mel keeps (it drops phase, hence the interaural time difference; only the spectral "
    "cues of each ear remain besides). Random initialisation "
    "draws the kernels independently (cosine near 0: sum and difference weighted alike). A dry "
    "batch puts the same mono clip on both channels, so both kernels get the same gradient and "
    "the same Adam update: training on dry audio never changes their difference beyond weight "
    "decay; only their common part learns, and the cosine nears 1 as it outgrows the initial "
    "difference. Binaural scene mixes give the two kernels different gradients."
)


def kernel_change(model: str, before: Score, after: Score) -> str:
    """How training moved `model`'s mean L/R kernel cosine, by the 2-standard-error rule."""
    nums = f"{before.cell(3)} before, {after.cell(3)} after training"
    if before.values == after.values:
        return f"{model}: {nums} (not trained)."
    if min(before.n, after.n) < 2:
        return f"{model}: {nums}, from a single seed."
    diff, se, sign = judge(after, before)
    moved = "did not move beyond noise" if sign == 0 else "rose" if diff > 0 else "fell"
    return f"{model}: L/R cosine {moved}: {nums} (difference {diff:+.3f}, standard error {se:.2g})."


def write_report(work: Path, results: dict, runs: dict[str, list[TrainConfig]], meta: dict) -> Path:
    """REPORT.md under `work` (figures next to it) from `results`: "classification" {model:
    {task: Score}}, "localization" {strategy: {model: {bin: Score}}}, "baselines" {label: {bin:
    Score}} (shown, not compared), "diagnostic" {model: {"before"/"after": Score}} and
    "per_filter" {model: cosines after training}."""
    cls, loc, diag = results["classification"], results["localization"], results["diagnostic"]
    rows = {f"{m} ({s})": v for s, by_model in loc.items() for m, v in by_model.items()}
    loc_rows = {**rows, **results["baselines"]}
    figures = {
        "loss": plot_losses(
            {m: [Path(c.out_dir) for c in cfgs] for m, cfgs in runs.items()}, work / "loss.png"
        ),
        "localization": plot_localization(loc_rows, work / "localization.png"),
        "diagnostic": plot_diagnostic(diag, results["per_filter"], work / "lr_kernels.png"),
    }
    cfg, n_seeds = runs["naturalistic"][0], len(runs["naturalistic"])
    lines = [
        "# Pretraining at demo scale: naturalistic vs clean vs random initialisation",
        "",
        f"Written by `make pretrain-report` on {meta['date']} ({meta['seconds']:.0f} s; "
        f"training runs: {meta['runs']}).",
        "",
        f"Encoder: GRAM-T, {cfg.depth} layers, width {cfg.width}, binaural; "
        f"{cfg.max_steps} steps of {cfg.batch_clips} clips x {cfg.crops} crops, lr {cfg.lr:g}, "
        f"mask ratio {cfg.mask_ratio}, on {cfg.demo_clips} synthetic 10 s clips (the classes of "
        "the demo tasks, so classification is in-domain). naturalistic: lambda = "
        f"{cfg.clean_ratio}, scenes drawn from a bank of {cfg.bank_scenes} train-pool rooms and "
        "positions (disjoint from the test pool); clean: lambda = 1; random: the same "
        f"architecture untrained. {n_seeds} seeds per model (seed: initialisation, data order, "
        "scenes, crops, masks); every number is the mean over seeds ± its standard error, each "
        "seed's number pooled over the test folds. At this scale (minutes of CPU training on "
        "synthetic audio) the numbers test the recipe and the tooling, not the paper's claims, "
        "which rest on 500 k steps on AudioSet.",
        "",
        "## Verdict",
        "",
        "A difference counts when it exceeds twice its standard error, sqrt(SE_a² + SE_b²) over "
        "seeds; otherwise it is within noise.",
        "",
        summary(loc),
        "",
        *[f"- {line}" for line in verdicts(loc)],
        "",
        "## Localization (binaural; mean angular error in degrees, T60 median abs error in s; "
        "lower is better)",
        "",
        "Tasks from `localization_tasks.generate` (held-out test-pool scenes). Embeddings: the "
        "CLS token per chunk, averaged (the paper's localization setting), and the mean of the "
        "patch tokens (`mean`). The MAE loss never reads the CLS output (the decoder drops it, "
        "as upstream), so what it carries after short training is not trained for. GCC-PHAT and "
        "chance are deterministic: one number each, no seeds.",
        "",
        *table(loc_rows, [*LOC_BINS, DIRECTION, "t60"], 2),
        "",
        f"![localization]({figures['localization'].name})",
        "",
        "## Diagnostic: left/right similarity of the first layer",
        "",
        DIAGNOSTIC_TEXT,
        "",
        "Mean over the first layer's filters of cos(left kernel, right kernel), mean ± SE over "
        "seeds ('before' is the initialisation of the same seed, which is the random model):",
        "",
        *table(diag, ["before", "after"], 3),
        "",
        *[f"- {kernel_change(m, d['before'], d['after'])}" for m, d in diag.items()],
        "",
        f"![L/R kernel similarity]({figures['diagnostic'].name})",
        "",
    ]
    if cls:
        figures["classification"] = plot_classification(cls, work / "classification.png")
        lines += [
            "## Classification (heareval; higher is better)",
            "",
            *table(cls, list(cls[MODELS[0]]), 3),
            "",
            f"![classification]({figures['classification'].name})",
            "",
        ]
    lines += [
        "## Training loss",
        "",
        f"![loss]({figures['loss'].name})",
        "",
        "## Every comparison",
        "",
        *[f"- {line}" for line in outcome(cls, loc)],
        "",
    ]
    path = work / "REPORT.md"
    write_bytes_atomic(path, "\n".join(lines).encode())
    return path
