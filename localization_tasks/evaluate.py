"""Evaluate any HEAR module (or chance) on the localization and T60 tasks.

    python -m localization_tasks.evaluate --module hear_gram.gram_t_ambisonic --model W \\
        --model-options '{"strategy": "cls", "sample_rate": 48000}' --tasks-dir loc-tasks \\
        --out results [--task NAME ...] [--grid default|fast] [--seed 0]
    python -m localization_tasks.evaluate --module chance [--model-options '{"mode": "random"}'] ...

Tasks: every folder under --tasks-dir whose task_metadata.json has a `localization` block (made by
`localization_tasks.generate`), or those named by --task.

Embeddings: the module's `load_model(model_file_path, **options)` and `get_scene_embeddings` on
batches of clips of equal length, audio passed as (B, N, C) float32 as soundfile reads it (heareval's
layout). The audio folder at the model's `sample_rate` is used; when the task lacks it, the highest
rate present is resampled (`hear_gram.frontend.resample`). Embeddings are cached as
OUT/embeddings/{tag}/{task}/{split}.npz, tag = module name + a hash of (module, weights path and
size, options), written atomically per split: a rerun skips what is there.

Probe (`localization_tasks.probe`): the task's folds as heareval / listen-eval-kit do (k-fold:
sorted folds, fold i is test once, fold i+1 valid, the rest train; trainvaltest: as given), one
probe per split, seeded. Every clip is predicted once as a test item; metrics
(`localization_tasks.metrics`) are computed on the pooled test predictions and per test fold.

Outputs under OUT/{tag}/: results.json (settings, one entry per task with pooled and per-fold
metrics and the chosen hyper-parameters), results.csv (one row per task), predictions/{task}.csv
(per clip: split, target, prediction, errors), error_vs_snr.png, azimuth_scatter.png.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import importlib
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from localization_tasks import metrics, plots
from localization_tasks.baselines import chance
from localization_tasks.probe import GRIDS, ProbeGrid, fit_predict

logger = logging.getLogger(__name__)
CHANCE = "chance"
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
# Tasks
# --------------------------------------------------------------------------------------------


def find_tasks(tasks_dir: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    root = Path(tasks_dir)
    if not root.is_dir():
        raise SystemExit(f"error: tasks directory {root} does not exist")
    found = sorted(
        p
        for p in root.iterdir()
        if (p / "task_metadata.json").is_file()
        and "localization" in json.loads((p / "task_metadata.json").read_text())
    )
    if names:
        missing = [n for n in names if not (root / n / "task_metadata.json").is_file()]
        if missing:
            raise SystemExit(
                f"error: no task {missing} under {root}; found {[p.name for p in found]}"
            )
        return [root / n for n in names]
    if not found:
        raise SystemExit(f"error: no localization tasks under {root}")
    return found


def data_splits(metadata: dict) -> list[dict[str, list[str]]]:
    """heareval's `get_splits_from_metadata`: [{train, valid, test}: [split names]]."""
    mode = metadata["split_mode"]
    if mode == "trainvaltest":
        return [{"train": ["train"], "valid": ["valid"], "test": ["test"]}]
    if mode in ("new_split_kfold", "presplit_kfold"):
        folds = sorted(metadata["splits"])
        if len(folds) < 3:
            raise ValueError(f"k-fold needs >= 3 folds, got {folds}")
        out = []
        for i, test in enumerate(folds):
            valid = folds[(i + 1) % len(folds)]
            out.append(
                {
                    "train": [f for f in folds if f not in (test, valid)],
                    "valid": [valid],
                    "test": [test],
                }
            )
        return out
    raise ValueError(f"unknown split_mode {mode!r}")


def read_labels(task_dir: Path, split: str) -> tuple[list[str], np.ndarray]:
    labels = json.loads((task_dir / f"{split}.json").read_text())
    files = sorted(labels)
    return files, np.array([labels[f] for f in files], dtype=np.float64).reshape(len(files), -1)


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def module_tag(module: str, model_path: str, options: dict) -> str:
    """Folder name of a (module, weights, options) combination. The weights count by content
    (sha256), so a file retrained in place never reuses the old file's cached embeddings."""
    from hear_gram.checkpoints import sha256

    content = sha256(Path(model_path)) if model_path and Path(model_path).is_file() else ""
    key = json.dumps([module, model_path, content, options], sort_keys=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", module.rsplit(".", 1)[-1])
    return f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def audio_folder(task_dir: Path, sample_rate: int) -> int:
    """The sample-rate folder to read: the model's, or else the highest present."""
    rates = sorted(int(p.name) for p in task_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not rates:
        raise ValueError(f"{task_dir}: no audio folders")
    if sample_rate in rates:
        return sample_rate
    logger.warning(
        "%s has no %d Hz folder: resampling from %d Hz", task_dir.name, sample_rate, rates[-1]
    )
    return rates[-1]


def embed_split(
    hear: Any, model: Any, task_dir: Path, split: str, files: list[str], batch_size: int
) -> np.ndarray:
    """(M, E) scene embeddings of `files` of `split`, in order."""
    from hear_gram.frontend import resample

    rate = int(model.sample_rate)
    folder = audio_folder(task_dir, rate)
    audio = [
        sf.read(task_dir / str(folder) / split / f, dtype="float32", always_2d=True)[0]
        for f in files
    ]
    out: list[np.ndarray | None] = [None] * len(files)
    by_length: dict[tuple, list[int]] = {}
    for i, a in enumerate(audio):
        by_length.setdefault(a.shape, []).append(i)
    for idx in by_length.values():
        for start in range(0, len(idx), batch_size):
            batch = idx[start : start + batch_size]
            x = torch.from_numpy(np.stack([audio[i] for i in batch]))  # (B, N, C)
            if folder != rate:
                x = resample(x.transpose(1, 2), folder, rate).transpose(1, 2).contiguous()
            emb = hear.get_scene_embeddings(x, model).detach().cpu().numpy().astype(np.float32)
            if emb.shape != (len(batch), model.scene_embedding_size):
                raise ValueError(
                    f"module returned {emb.shape}, expected ({len(batch)}, {model.scene_embedding_size})"
                )
            for i, e in zip(batch, emb, strict=True):
                out[i] = e
    return np.stack(out)  # type: ignore[arg-type]


class Embedder:
    """Scene embeddings of a HEAR module, cached per (tag, task, split); the model is loaded only
    when something is missing from the cache."""

    def __init__(
        self, module: str, model_path: str, options: dict, cache: Path, batch_size: int = 16
    ):
        self.module, self.model_path, self.options = module, model_path, options
        self.cache, self.batch_size = cache, batch_size
        self._hear: Any = None
        self._model: Any = None

    def model(self) -> tuple[Any, Any]:
        if self._model is None:
            self._hear = importlib.import_module(self.module)
            self._model = self._hear.load_model(self.model_path, **self.options)
        return self._hear, self._model

    def __call__(self, task_dir: Path, split: str, files: list[str]) -> np.ndarray:
        path = self.cache / task_dir.name / f"{split}.npz"
        if path.is_file():
            with np.load(path) as f:
                if list(f["files"]) == files:
                    return f["embeddings"]
        hear, model = self.model()
        emb = embed_split(hear, model, task_dir, split, files, self.batch_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, files=np.array(files), embeddings=emb)
        os.replace(tmp, path)
        return emb


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
    meta = json.loads((task_dir / "task_metadata.json").read_text())
    loc = meta["localization"]
    kind = loc["target"]
    labels = {s: read_labels(task_dir, s) for s in meta["splits"]}
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
    model_path: str = "",
    options: dict | None = None,
    tasks: Sequence[str] | None = None,
    grid: str = "default",
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> Path:
    """Evaluate `module` (a HEAR module name, or "chance") on the tasks; returns OUT/{tag}."""
    options = dict(options or {})
    out = Path(out)
    tag = module_tag(module, model_path, options)
    result_dir = out / tag
    (result_dir / "predictions").mkdir(parents=True, exist_ok=True)
    chance_mode = "mean"
    embedder = None
    if module == CHANCE:
        chance_mode = str(options.pop("mode", "mean"))
        if options:
            raise ValueError(f"chance takes only the option mode, got {sorted(options)}")
    else:
        embedder = Embedder(module, model_path, options, out / "embeddings" / tag, batch_size)
    entries, scatter = [], {}
    for task_dir in tqdm(find_tasks(tasks_dir, tasks), desc=tag, disable=not progress):
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
    }
    (result_dir / "results.json").write_text(
        json.dumps(summary, indent=2, default=_json_default) + "\n"
    )
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
    p = argparse.ArgumentParser(
        prog="python -m localization_tasks.evaluate",
        description="Probe a HEAR module's scene embeddings on localization and T60 tasks.",
    )
    p.add_argument("--module", required=True, help=f"HEAR module to import, or {CHANCE!r}")
    p.add_argument("--model", default="", help="weights path given to load_model")
    p.add_argument("--model-options", default="{}", help="JSON object of load_model options")
    p.add_argument("--tasks-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--task", action="append", dest="tasks", metavar="NAME")
    p.add_argument("--grid", choices=sorted(GRIDS), default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16, help="clips per embedding call")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        options = json.loads(args.model_options)
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: --model-options is not JSON: {e}") from None
    if not isinstance(options, dict):
        raise SystemExit("error: --model-options must be a JSON object")
    result_dir = evaluate(
        args.module,
        args.tasks_dir,
        args.out,
        args.model,
        options,
        args.tasks,
        args.grid,
        args.seed,
        args.batch_size,
        not args.quiet,
    )
    entries = json.loads((result_dir / "results.json").read_text())["tasks"]
    print(format_table(entries))
    print(f"results in {result_dir}")


if __name__ == "__main__":
    main()
