"""Evaluate any HEAR module (or chance) on the localization and T60 tasks.

    python -m localization_tasks.evaluate --module hear_gram.gram_t_ambisonic --model W \\
        --model-options '{"strategy": "cls", "sample_rate": 48000}' --tasks-dir loc-tasks \\
        --out results [--task NAME ...] [--grid default|fast] [--seed 0]
    python -m localization_tasks.evaluate --module chance [--model-options '{"mode": "random"}'] ...

Tasks: every folder under --tasks-dir whose task_metadata.json has a `localization` block (made by
`localization_tasks.generate`), or those named by --task. A folder may hold both formats: each
module runs on the tasks of the formats it accepts (a module's `LOCALIZATION_FORMATS`, e.g. the
GCC-PHAT baseline: binaural only; otherwise the formats whose channel count its
`get_scene_embeddings` takes on a short test clip); the others are listed as skipped in
results.json and on the command line. Ambisonic tasks are first-order ACN/SN3D: W, Y, Z, X.

Embeddings: the module's `load_model(model_file_path, **options)` and `get_scene_embeddings` on
batches of clips of equal length, audio passed as (B, N, C) float32 as soundfile reads it (heareval's
layout). The audio folder at the model's `sample_rate` is used; when the task lacks it, the highest
rate present is resampled (`hear_gram.resample`; a folder below 1 kHz, a file whose header
disagrees with its folder, or one that would resample to over 2**28 samples is refused, naming
it). Embeddings are cached as
OUT/embeddings/{tag}/{task}/{split}.npz, tag = module name + a hash of (module, weights path and
sha256, options), written atomically per split. Each file stores the key it was computed for: a
hash of the tag, the module's code (its package's .py files), the task's content (task_metadata,
the split's JSON, the audio files' names, sizes and modification times) and the file list; a
rerun reuses a file only when the key matches, and a file that cannot be read is recomputed.
Embeddings and labels must be finite (an error otherwise, never a plausible number).

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
import importlib.util
import io
import json
import logging
import math
import re
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from hear_gram.cli import model_options, positive_int
from hear_gram.resample import check_file_rate, check_resample_size, resample
from hear_gram.safeio import UnsafePathError, child, write_bytes_atomic
from localization_tasks import metrics, plots
from localization_tasks.baselines import chance
from localization_tasks.probe import GRIDS, ProbeGrid, fit_predict
from naturalistic_hear.formats import CHANNELS

logger = logging.getLogger(__name__)
CHANCE = "chance"
CACHE_VERSION = "embeddings-2"  # 2: keyed by task content and module code
PROG = "python -m localization_tasks.evaluate"


class EvaluateError(ValueError):
    """A task folder, option or module output the evaluator cannot use; the message says why."""


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


def read_metadata(task_dir: Path) -> dict:
    """A task's task_metadata.json, checked to be a localization task of ours."""
    path = task_dir / "task_metadata.json"
    if not path.is_file():
        raise EvaluateError(f"{task_dir}: no task_metadata.json")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvaluateError(f"{path}: not valid JSON: {e}") from None
    loc = meta.get("localization") if isinstance(meta, dict) else None
    if not isinstance(loc, dict):
        raise EvaluateError(
            f"{task_dir.name} is not a localization task (its task_metadata.json has no "
            "'localization' block; make one with python -m localization_tasks.generate)"
        )
    if loc.get("target") not in ("direction", "t60"):
        raise EvaluateError(f"{path}: localization.target must be direction or t60")
    if not isinstance(meta.get("splits"), list) or not meta["splits"]:
        raise EvaluateError(f"{path}: no 'splits' list")
    for split in meta["splits"]:
        child(task_dir, f"{split}.json" if isinstance(split, str) else split, "split name")
    return meta


def _is_localization_task(p: Path) -> bool:
    try:
        read_metadata(p)
    except (EvaluateError, UnsafePathError):
        return False
    return True


def find_tasks(tasks_dir: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    root = Path(tasks_dir)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise EvaluateError(f"tasks directory {root} {what}")
    if names:
        out = []
        for n in names:
            task = child(root, n, "--task")
            if not (task / "task_metadata.json").is_file():
                found = sorted(p.name for p in root.iterdir() if _is_localization_task(p))
                raise EvaluateError(f"no task {n!r} under {root}; found {found}")
            read_metadata(task)  # a clear error for a task that is not ours
            out.append(task)
        return out
    found = sorted(p for p in root.iterdir() if p.is_dir() and _is_localization_task(p))
    if not found:
        raise EvaluateError(f"no localization tasks under {root}")
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


def read_labels(task_dir: Path, split: str, kind: str = "") -> tuple[list[str], np.ndarray]:
    """Sorted file names of a split and their targets (M, D): finite 3-vectors (direction) or
    positive T60s in s (t60); file names are plain names inside the task."""
    path = child(task_dir, f"{split}.json", "split name")
    try:
        labels = json.loads(path.read_text())
    except FileNotFoundError:
        raise EvaluateError(f"{task_dir.name}: missing split file {path.name}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvaluateError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(labels, dict) or not labels:
        raise EvaluateError(f"{path}: expected a non-empty object {{file name: target}}")
    files = sorted(labels)
    for f in files:
        check_name_in(task_dir, f)
    width = {"direction": 3, "t60": 1}.get(kind)
    try:
        y = np.array([labels[f] for f in files], dtype=np.float64).reshape(len(files), -1)
    except (TypeError, ValueError) as e:
        raise EvaluateError(
            f"{path}: targets are not lists of numbers of one length: {e}"
        ) from None
    if width is not None and y.shape[1] != width:
        raise EvaluateError(f"{path}: {kind} targets need {width} numbers, got {y.shape[1]}")
    bad = ~np.isfinite(y).all(axis=1)
    if kind == "t60":
        bad |= ~(y[:, 0] > 0)
    if bad.any():
        first = files[int(np.flatnonzero(bad)[0])]
        raise EvaluateError(
            f"{path}: {int(bad.sum())} target(s) are not finite"
            + (" positive T60s" if kind == "t60" else "")
            + f", e.g. {first!r}: {labels[first]}"
        )
    return files, y


def check_name_in(task_dir: Path, filename: str) -> None:
    """Refuse file names that are not plain names (no sub-folder, `..` or absolute path)."""
    child(task_dir, filename, "file name")


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


def code_fingerprint(module: str) -> str:
    """sha256 of the source of the module's top-level package (its .py files, at most 2000),
    or of the module file: code changes change the embeddings' cache key."""
    top = module.split(".", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    h = hashlib.sha256(CACHE_VERSION.encode())
    if spec is None:
        return h.hexdigest()
    if spec.submodule_search_locations:
        files = sorted(f for d in spec.submodule_search_locations for f in Path(d).rglob("*.py"))[
            :2000
        ]
    else:
        files = [Path(spec.origin)] if spec.origin and Path(spec.origin).is_file() else []
    for f in files:
        h.update(f"{f.name}\0".encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def task_fingerprint(task_dir: Path, split: str, files: Sequence[str]) -> str:
    """sha256 of what a split's embeddings depend on in the task: task_metadata.json, the
    split's JSON, and the name, size and modification time of its audio files in every
    sample-rate folder (cheap: no audio is read)."""
    h = hashlib.sha256()
    for name in ("task_metadata.json", f"{split}.json"):
        h.update(name.encode() + b"\0" + child(task_dir, name, "split name").read_bytes())
    rates = sorted(p.name for p in task_dir.iterdir() if p.is_dir() and p.name.isdigit())
    for rate in rates:
        audio_dir = child(child(task_dir, rate, "rate"), split, "split name")
        for f in files:
            p = child(audio_dir, f, "file name")
            st = p.stat() if p.is_file() else None
            stamp = f"{st.st_size}\0{st.st_mtime_ns}" if st else "missing"
            h.update(f"{rate}/{f}\0{stamp}\0".encode())
    return h.hexdigest()


def audio_folder(task_dir: Path, sample_rate: int) -> int:
    """The sample-rate folder to read: the model's, or else the highest present."""
    rates = sorted(int(p.name) for p in task_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not rates:
        raise ValueError(f"{task_dir}: no audio folders")
    if sample_rate in rates:
        return sample_rate
    # A folder named "1" would be upsampled 32000-fold: refused by name.
    check_file_rate(rates[-1], f"audio folder {task_dir / str(rates[-1])}")
    logger.warning(
        "%s has no %d Hz folder: resampling from %d Hz", task_dir.name, sample_rate, rates[-1]
    )
    return rates[-1]


def _read_clip(path: Path, folder_rate: int, model_rate: int) -> np.ndarray:
    """(N, C) float32 samples of a task's audio file, refused (naming it) when its header's rate
    is not its folder's or its resampling to the model's rate would be absurdly large."""
    info = sf.info(path)
    if info.samplerate != folder_rate:
        raise EvaluateError(
            f"{path} is at {info.samplerate} Hz, but lies in the {folder_rate} folder"
        )
    if folder_rate != model_rate:
        check_resample_size((info.channels, info.frames), folder_rate, model_rate, str(path))
    return sf.read(path, dtype="float32", always_2d=True)[0]


def embed_split(
    hear: Any, model: Any, task_dir: Path, split: str, files: list[str], batch_size: int
) -> np.ndarray:
    """(M, E) scene embeddings of `files` of `split`, in order."""
    rate = int(model.sample_rate)
    folder = audio_folder(task_dir, rate)
    audio_dir = child(child(task_dir, str(folder), "rate"), split, "split name")
    audio = [_read_clip(child(audio_dir, f, "file name"), folder, rate) for f in files]
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
                raise EvaluateError(
                    f"module returned {emb.shape}, expected ({len(batch)}, {model.scene_embedding_size})"
                )
            if not np.isfinite(emb).all():
                raise EvaluateError(
                    f"{task_dir.name}/{split}: the module returned NaN or Inf embeddings "
                    f"(e.g. for {files[batch[0]]}); check the weights and the audio"
                )
            for i, e in zip(batch, emb, strict=True):
                out[i] = e
    return np.stack(out)  # type: ignore[arg-type]


class Embedder:
    """Scene embeddings of a HEAR module, cached per (tag, task, split) under a key of their
    inputs (see the module docstring); the model is loaded only when something is missing."""

    def __init__(
        self, module: str, model_path: str, options: dict, cache: Path, batch_size: int = 16
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise EvaluateError(f"batch size must be a positive integer, got {batch_size!r}")
        self.module, self.model_path, self.options = module, model_path, options
        self.cache, self.batch_size = cache, batch_size
        self.tag = cache.name
        self._code = code_fingerprint(module)
        self._hear: Any = None
        self._model: Any = None
        self._accepts: dict[str, str | None] = {}

    def hear(self) -> Any:
        if self._hear is None:
            self._hear = importlib.import_module(self.module)
        return self._hear

    def model(self) -> tuple[Any, Any]:
        if self._model is None:
            self._model = self.hear().load_model(self.model_path, **self.options)
        return self.hear(), self._model

    def refusal(self, fmt: str) -> str | None:
        """Why the module does not take `fmt` audio, or None when it does."""
        if fmt not in self._accepts:
            self._accepts[fmt] = self._refusal(fmt)
        return self._accepts[fmt]

    def _refusal(self, fmt: str) -> str | None:
        if fmt not in CHANNELS:
            return f"unknown format {fmt!r}"
        declared = getattr(self.hear(), "LOCALIZATION_FORMATS", None)
        if declared is not None:
            return None if fmt in declared else f"takes {', '.join(declared)} audio only"
        hear, model = self.model()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, int(model.sample_rate), CHANNELS[fmt], generator=gen) * 0.1
        try:
            hear.get_scene_embeddings(x, model)
        except (ValueError, TypeError, RuntimeError) as e:
            return f"refused {CHANNELS[fmt]}-channel audio: {e}"
        return None

    def key(self, task_dir: Path, split: str, files: list[str]) -> str:
        parts = [self.tag, self._code, task_fingerprint(task_dir, split, files), files]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def __call__(self, task_dir: Path, split: str, files: list[str]) -> np.ndarray:
        task_cache = child(self.cache, task_dir.name, "task name")
        path = child(task_cache, f"{split}.npz", "split name")
        key = self.key(task_dir, split, files)
        cached = _read_cache(path, key, files)
        if cached is not None:
            return cached
        hear, model = self.model()
        emb = embed_split(hear, model, task_dir, split, files, self.batch_size)
        task_cache.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, files=np.array(files), embeddings=emb, key=np.array(key))
        write_bytes_atomic(path, buffer.getvalue())
        return emb


def _read_cache(path: Path, key: str, files: list[str]) -> np.ndarray | None:
    """The cached embeddings if `path` holds them for `key` and `files`, else None (missing,
    stale or unreadable: recomputed)."""
    if not path.is_file() or path.is_symlink():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key or list(f["files"]) != files:
                return None
            emb = np.asarray(f["embeddings"], dtype=np.float32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        logger.warning("%s is unreadable (%s): recomputing", path, e)
        return None
    if emb.ndim != 2 or len(emb) != len(files) or not np.isfinite(emb).all():
        logger.warning("%s holds unusable embeddings: recomputing", path)
        return None
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
            raise ValueError(f"chance takes only the option mode, got {sorted(options)}")
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
    p.add_argument("--batch-size", type=positive_int, default=16, help="clips per embedding call")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Command line; expected failures end with one line `PROG: error: ...` and exit code 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        try:
            options = model_options(args.model_options)
        except ValueError as e:
            raise EvaluateError(str(e)) from None
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
    except (ValueError, FileNotFoundError, NotADirectoryError, ModuleNotFoundError) as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        raise SystemExit(2) from None
    summary = json.loads((result_dir / "results.json").read_text())
    print(format_table(summary["tasks"]))
    for s in summary["skipped"]:
        print(f"skipped {s['task']} ({s['format']}): {s['reason']}")
    print(f"results in {result_dir}")


if __name__ == "__main__":
    main()
