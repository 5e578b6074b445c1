"""The whole localization benchmark in one command (``make localization``, and ``make demo``).

Generates the localization and T60 tasks from HEAR scene tasks in both formats, then scores,
through the same evaluator: the binaural tasks with the GCC-PHAT baseline, chance and
``hear_gram.gram_t``; the Ambisonic tasks with the intensity-vector baseline, chance and
``hear_gram.gram_t_ambisonic`` (CLS token per chunk, averaged: the paper's localization setting).
Prints one table: mean angular error (degrees) per model, format and noise bin, and the T60
median absolute error (s).

    python -m localization_tasks.suite --tasks-dir T --work W [--task NAME ...]
        [--gram-t WEIGHTS] [--gram-t-ambisonic WEIGHTS] [--n-scenes N] [--grid default|fast]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from localization_tasks import bins
from localization_tasks.evaluate import CHANCE, evaluate
from localization_tasks.generate import DEFAULT_TASKS
from localization_tasks.generate import main as generate_main

# Table columns: clean first, then the bins from the least to the most noisy.
BINS = (bins.CLEAN, *(b.label for b in reversed(bins.SNR_BINS)))


def models(fmt: str, gram_t: str, gram_t_ambisonic: str) -> list[tuple[str, str, str, dict]]:
    """(label, module, weights, options) scored on the tasks of ``fmt``."""
    cls = {"strategy": "cls", "precision": "bf16"}
    if fmt == "binaural":
        rows = [("gcc_phat", "localization_tasks.baselines.gcc_phat", "", {})]
        gram = ("hear_gram.gram_t", "hear_gram.gram_t", gram_t, cls) if gram_t else None
    else:
        rows = [("intensity_vector", "localization_tasks.baselines.intensity_vector", "", {})]
        gram = (
            ("hear_gram.gram_t_ambisonic", "hear_gram.gram_t_ambisonic", gram_t_ambisonic, cls)
            if gram_t_ambisonic
            else None
        )
    return rows + ([gram] if gram else []) + [("chance", CHANCE, "", {})]


def bin_of(entry: dict) -> str:
    """'clean', '5-10', '10-20' or '20-40' from an evaluator entry's snr_bin ('snr05-10', ...)."""
    return bins.label(str(entry.get("snr_bin", bins.CLEAN)))


def table(results: dict[tuple[str, str], list[dict]]) -> str:
    head = f"{'model':28s} {'format':10s} " + " ".join(
        f"{b + ' dB' if b != 'clean' else b:>9s}" for b in BINS
    )
    lines = [
        "mean angular error (deg) per noise bin; T60 median abs error (s)",
        head + f" {'T60':>7s}",
        "-" * (len(head) + 8),
    ]
    for (label, fmt), entries in results.items():
        by_bin = {bin_of(e): e for e in entries if e.get("target") == "direction"}
        t60 = [e for e in entries if e.get("target") != "direction"]
        cells = [
            f"{by_bin[b]['mean_angular_error_deg']:9.1f}" if b in by_bin else f"{'-':>9s}"
            for b in BINS
        ]
        t = f"{t60[0]['median_abs_error_s']:7.3f}" if t60 else f"{'-':>7s}"
        lines.append(f"{label:28s} {fmt:10s} " + " ".join(cells) + f" {t}")
    return "\n".join(lines)


def run(tasks_dir: Path, work: Path, tasks: Sequence[str] | None, gram_t: str, gram_t_ambisonic: str,
        n_scenes: int, grid: str, cache_dir: Path | None = None) -> str:  # fmt: skip
    loc_tasks = work / "tasks"
    argv = [
        "--tasks-dir",
        str(tasks_dir),
        "--out",
        str(loc_tasks),
        "--n-scenes",
        str(n_scenes),
        "--quiet",
    ]
    for name in tasks or ():
        argv += ["--task", name]
    if cache_dir is not None:
        argv += ["--cache-dir", str(cache_dir)]
    generate_main(argv)
    results = {}
    for fmt in ("binaural", "ambisonic"):
        names = sorted(d.name for d in loc_tasks.iterdir() if d.is_dir() and f"-{fmt}" in d.name)
        for label, module, weights, options in models(fmt, gram_t, gram_t_ambisonic):
            out = evaluate(module, loc_tasks, work / "results" / fmt, weights, options, names, grid)
            results[(label, fmt)] = json.loads((out / "results.json").read_text())["tasks"]
    text = table(results)
    (work / "summary.txt").write_text(text + "\n")
    return text


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m localization_tasks.suite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--tasks-dir", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("work/localization"))
    p.add_argument(
        "--task", action="append", dest="tasks", help=f"default: {' '.join(DEFAULT_TASKS)}"
    )
    p.add_argument("--gram-t", default="", help="GRAM-T binaural weights (omit to skip)")
    p.add_argument("--gram-t-ambisonic", default="", help="GRAM-T Ambisonic weights (omit to skip)")
    p.add_argument("--n-scenes", type=int, default=200)
    p.add_argument("--cache-dir", type=Path, default=None, help="scene bank cache")
    p.add_argument(
        "--grid", default="default", help="probe grid: default (heareval-like), fast, tiny"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(run(args.tasks_dir, args.work, args.tasks, args.gram_t, args.gram_t_ambisonic,
              args.n_scenes, args.grid, args.cache_dir))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
