"""Evaluate any HEAR module (or chance) on the localization and T60 tasks.

    python -m localization_tasks.evaluate --module hear_gram.gram_t_ambisonic --weights W \\
        --model-options '{"strategy": "cls", "sample_rate": 48000}' --tasks-dir loc-tasks \\
        --out results [--task NAME ...] [--grid default|fast] [--seed 0] [--quiet|--verbose]
    python -m localization_tasks.evaluate --module chance [--model-options '{"mode": "random"}'] ...

Tasks: every folder under --tasks-dir whose task_metadata.json has a `localization` block (made by
`localization_tasks.generate`), or those named by --task. A folder may hold both formats: each
module runs on the tasks of the formats it accepts (a module's `LOCALIZATION_FORMATS`, e.g. the
GCC-PHAT baseline: binaural only; otherwise the formats whose channel count its
`get_scene_embeddings` takes on a short test clip); the others are listed as skipped in
results.json and on the command line. Ambisonic tasks are first-order ACN/SN3D: W, Y, Z, X.

Embeddings (`localization_tasks.embeddings`): the module's `get_scene_embeddings` at its
`sample_rate`, cached as OUT/embeddings/{tag}/{task}/{split}.npz through `hear_gram.cache`
(keyed by the module's code, weights, options and the task's content), tag = module name + a
hash of (module, weights path and sha256, options). Task folders and labels
(`localization_tasks.taskdata`) are checked before any work; direction labels must be unit
vectors.

Probe (`localization_tasks.probe`): the task's folds as heareval / listen-eval-kit do (k-fold:
sorted folds, fold i is test once, fold i+1 valid, the rest train; trainvaltest: as given), one
probe per split, seeded. Every clip is predicted once as a test item; metrics
(`localization_tasks.metrics`) are computed on the pooled test predictions and per test fold.

Outputs under OUT/{tag}/: results.json (settings, one entry per task with pooled and per-fold
metrics and the chosen hyper-parameters), results.csv (one row per task), predictions/{task}.csv
(per clip: split, target, prediction, errors), error_vs_snr.png, azimuth_scatter.png; the run's
log in OUT/logs/localization_tasks-evaluate.log. Command line: `hear_gram.cli` (one-line errors,
exit 2; Ctrl-C: 130).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hear_gram import cli
from hear_gram.safeio import write_bytes_atomic
from localization_tasks import metrics, plots
from localization_tasks.baselines import chance
from localization_tasks.embeddings import Embedder, module_tag, weights_path
from localization_tasks.probe import GRIDS, ProbeGrid, fit_predict
from localization_tasks.taskdata import data_splits, find_tasks, read_labels, read_metadata

logger = logging.getLogger(__name__)
CHANCE = "chance"
PROG = "python -m localization_tasks.evaluate"
__all__ = ["evaluate", "module_tag", "main"]  # module_tag: the suite finds OUT/<tag> with it


class EvaluateError(ValueError):
    """An option or a set of tasks the evaluator cannot use; the message says why."""


RESULT_COLUMNS = (
    "task",
    "source_task",
    "format",
    "target",
    "snr_bin",
    "n",
    "mean_angular_error_deg",
    "median_angular_error_deg",
    "mean_azimuth_error_deg",
    "mean_elevation_error_deg",
    "front_back_confusion_rate",
    "median_abs_error_s",
    "mean_abs_error_s",
)


# --------------------------------------------------------------------------------------------
# One task
# --------------------------------------------------------------------------------------------


def evaluate_task(
    task_dir: Path,
    embedder: Embedder | None,
    grid: ProbeGrid,
    seed: int = 0,
    chance_mode: str = "mean",
) -> tuple[dict, list[dict]]:
    """Probe (or chance) on every split of one task: (result entry, per-clip prediction rows)."""
    meta = read_metadata(task_dir)
    loc = meta["localization"]
    kind = loc["target"]
    labels = {s: read_labels(task_dir, s, kind) for s in meta["splits"]}
    emb = {s: embedder(task_dir, s, labels[s][0]) for s in meta["splits"]} if embedder else None

    def stack(names: list[str], what: dict) -> np.ndarray:
        return np.concatenate([what[s] for s in names])

    folds, rows, preds, targets = [], [], [], []
    for i, split in enumerate(data_splits(meta)):
        y = {k: np.concatenate([labels[s][1] for s in v]) for k, v in split.items()}
        if emb is None:
            pred = chance.predict(kind, y["train"], len(y["test"]), chance_mode, seed + i)  # type: ignore[arg-type]
            hparams = {"chance": chance_mode}
        else:
            x = {k: stack(v, emb) for k, v in split.items()}
            pred, hparams = fit_predict(
                kind, (x["train"], y["train"]), (x["valid"], y["valid"]), x["test"], grid, seed + i
            )
        if kind == "direction":
            pred = metrics.unit(pred)
            fold_metrics = metrics.direction_metrics(pred, y["test"])
        else:
            fold_metrics = metrics.t60_metrics(pred, y["test"])
        folds.append(
            {"test": split["test"], "valid": split["valid"], **fold_metrics, "hparams": hparams}
        )
        preds.append(pred)
        targets.append(y["test"])
        files = [(s, f) for s in split["test"] for f in labels[s][0]]
        rows += _prediction_rows(kind, files, pred, y["test"])
    pred, target = np.concatenate(preds), np.concatenate(targets)
    pooled = (
        metrics.direction_metrics(pred, target)
        if kind == "direction"
        else metrics.t60_metrics(pred, target)
    )
    entry = {
        "task": task_dir.name,
        "source_task": loc.get("source_task", ""),
        "format": loc.get("format", ""),
        "target": kind,
        "snr_bin": loc.get("snr_bin", ""),
        **pooled,
        "folds": folds,
    }
    return entry, rows


def _prediction_rows(
    kind: str, files: list[tuple[str, str]], pred: np.ndarray, target: np.ndarray
) -> list[dict]:
    if kind == "direction":
        err = metrics.angular_error_deg(pred, target)
        az_err = metrics.azimuth_error_deg(pred, target)
        el_err = metrics.elevation_error_deg(pred, target)
        confused, _ = metrics.front_back_confusions(pred, target)
        return [
            {
                "split": s,
                "filename": f,
                "x": t[0],
                "y": t[1],
                "z": t[2],
                "pred_x": p[0],
                "pred_y": p[1],
                "pred_z": p[2],
                "angular_error_deg": e,
                "azimuth_error_deg": a,
                "elevation_error_deg": el,
                "front_back_confusion": bool(c),
            }
            for (s, f), t, p, e, a, el, c in zip(
                files, target, pred, err, az_err, el_err, confused, strict=True
            )
        ]
    return [
        {
            "split": s,
            "filename": f,
            "t60_s": t[0],
            "pred_t60_s": p[0],
            "abs_error_s": abs(p[0] - t[0]),
        }
        for (s, f), t, p in zip(files, target, pred, strict=True)
    ]


# --------------------------------------------------------------------------------------------
# Whole run
# --------------------------------------------------------------------------------------------


def _write_csv(path: Path, rows: list[dict], columns: Sequence[str] | None = None) -> None:
    columns = list(columns or (rows[0].keys() if rows else []))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def evaluate(
    module: str,
    tasks_dir: str | Path,
    out: str | Path,
    model_path: str | Path | None = "",
    options: dict | None = None,
    tasks: Sequence[str] | None = None,
    grid: str = "default",
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> Path:
    """Evaluate `module` (a HEAR module name, or "chance") on the tasks; returns OUT/{tag}."""
    options, model_path = dict(options or {}), weights_path(model_path)
    if grid not in GRIDS:
        raise EvaluateError(f"unknown probe grid {grid!r}; one of {sorted(GRIDS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EvaluateError(f"batch size must be a positive integer, got {batch_size!r}")
    out = Path(out)
    task_dirs = find_tasks(tasks_dir, tasks)
    tag = module_tag(module, model_path, options)
    result_dir = out / tag
    (result_dir / "predictions").mkdir(parents=True, exist_ok=True)
    chance_mode = "mean"
    embedder = None
    if module == CHANCE:
        chance_mode = str(options.pop("mode", "mean"))
        if options:
            raise EvaluateError(f"chance takes only the option mode, got {sorted(options)}")
    else:
        embedder = Embedder(module, model_path, options, out / "embeddings" / tag, batch_size)
    entries, scatter, skipped = [], {}, []
    for task_dir in tqdm(task_dirs, desc=tag, disable=not progress):
        fmt = str(read_metadata(task_dir)["localization"].get("format", ""))
        why = embedder.refusal(fmt) if embedder is not None else None
        if why is not None:
            skipped.append({"task": task_dir.name, "format": fmt, "reason": why})
            logger.info("skipping %s (%s): %s %s", task_dir.name, fmt, module, why)
            continue
        entry, rows = evaluate_task(task_dir, embedder, GRIDS[grid], seed, chance_mode)
        entries.append(entry)
        _write_csv(result_dir / "predictions" / f"{task_dir.name}.csv", rows)
        if entry["target"] == "direction":
            scatter[task_dir.name] = (
                np.array([[r["pred_x"], r["pred_y"], r["pred_z"]] for r in rows]),
                np.array([[r["x"], r["y"], r["z"]] for r in rows]),
            )
        logger.info("%s: %s", task_dir.name, {k: v for k, v in entry.items() if k != "folds"})
    summary = {
        "module": module,
        "model": model_path,
        "model_options": dict(options, **({"mode": chance_mode} if module == CHANCE else {})),
        "grid": grid,
        "seed": seed,
        "metric_definitions": metrics.__doc__,
        "tasks": entries,
        "skipped": skipped,
    }
    if not entries:
        raise EvaluateError(
            f"{module} takes none of the tasks: "
            + "; ".join(f"{s['task']} ({s['format']}: {s['reason']})" for s in skipped[:3])
        )
    text = json.dumps(summary, indent=2, default=_json_default) + "\n"
    write_bytes_atomic(result_dir / "results.json", text.encode())
    _write_csv(result_dir / "results.csv", entries, RESULT_COLUMNS)
    plots.error_vs_snr(entries, result_dir / "error_vs_snr.png", tag)
    plots.azimuth_scatter(scatter, result_dir / "azimuth_scatter.png")
    return result_dir


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def _num(entry: dict, key: str, fmt: str = "7.1f") -> str:
    return format(entry.get(key, math.nan), fmt)


def format_table(entries: list[dict]) -> str:
    """A plain-text table of the pooled metrics, one line per task."""
    lines = [
        f"{'task':48s} {'bin':9s} {'n':>4s} {'mean':>7s} {'median':>7s} {'az':>7s} {'el':>7s} {'fb':>5s} {'t60':>6s}"
    ]
    for e in entries:
        num = functools.partial(_num, e)

        lines.append(
            f"{e['task']:48s} {e['snr_bin']:9s} {e['n']:4d} {num('mean_angular_error_deg')} "
            f"{num('median_angular_error_deg')} {num('mean_azimuth_error_deg')} "
            f"{num('mean_elevation_error_deg')} {num('front_back_confusion_rate', '5.2f')} "
            f"{num('median_abs_error_s', '6.3f')}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    cli.add_module(p, help=f"HEAR module to import, or {CHANCE!r}")
    cli.add_weights(p)
    cli.add_model_options(p)
    cli.add_tasks_dir(p)
    cli.add_out(p)
    p.add_argument("--task", action="append", dest="tasks", metavar="NAME")
    p.add_argument("--grid", choices=sorted(GRIDS), default="default")
    cli.add_seed(p)
    p.add_argument("--batch-size", type=cli.positive_int, default=16,
                   help="clips per embedding call")  # fmt: skip
    return p


def run(args: argparse.Namespace) -> None:
    result_dir = evaluate(args.module, args.tasks_dir, args.out, args.weights, args.model_options,
                          args.tasks, args.grid, args.seed, args.batch_size,
                          not args.quiet)  # fmt: skip
    # our own output, which may hold NaN (a metric without clips): not read as hostile input
    summary = json.loads((result_dir / "results.json").read_bytes())
    print(format_table(summary["tasks"]))
    for s in summary["skipped"]:
        print(f"skipped {s['task']} ({s['format']}): {s['reason']}")
    print(f"results in {result_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (`hear_gram.cli` convention): expected failures end in one line
    `PROG: error: ...` and exit status 2, Ctrl-C in 130."""
    return cli.main(PROG, build_parser, run, argv, log_dir=lambda a: a.out)


if __name__ == "__main__":
    sys.exit(main())
