"""The localization and T60 tasks as the evaluators read them: discovery, `task_metadata.json`,
the heareval folds and the labels of a split.

A task of ours is a HEAR-layout folder (made by `localization_tasks.generate`) whose
task_metadata.json has a `localization` block {target: direction | t60, format, snr_bin, ...}.
Every JSON is read through `hear_gram.cli.read_json` (size and nesting checked) and every field
checked for its type, so a hostile file ends in one `TaskDataError` naming it, never a
TypeError or a RecursionError.

Labels: `{file name: target}` per split; a direction target is a unit 3-vector in the head frame
(x front, y left, z up; `localization_tasks.generate`), a T60 target one positive number in s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hear_gram.cli import CLIError, expect, read_json
from hear_gram.safeio import UnsafePathError, child

# A direction label further than this from unit length is not a direction (the generator writes
# float64 unit vectors; JSON round trips keep them within 1e-15).
UNIT_TOLERANCE = 1e-3
TARGETS = ("direction", "t60")


class TaskDataError(ValueError):
    """A task folder or label file the evaluators cannot use; the message says why."""


def _read(path: Path, what: str) -> object:
    try:
        return read_json(path, what)
    except CLIError as e:
        raise TaskDataError(str(e)) from None


def _check(value: object, kind: type | tuple[type, ...], what: str) -> object:
    try:
        return expect(value, kind, what)
    except CLIError as e:
        raise TaskDataError(str(e)) from None


def read_metadata(task_dir: Path) -> dict:
    """A task's task_metadata.json, checked to be a localization task of ours: a `localization`
    object with a known target, a non-empty list of split names and a `split_mode` string."""
    path = task_dir / "task_metadata.json"
    if not path.is_file():
        raise TaskDataError(f"{task_dir}: no task_metadata.json")
    meta = _check(_read(path, str(path)), dict, f"{path}")
    loc = meta.get("localization")  # type: ignore[union-attr]
    if not isinstance(loc, dict):
        raise TaskDataError(
            f"{task_dir.name} is not a localization task (its task_metadata.json has no "
            "'localization' object; make one with python -m localization_tasks.generate)"
        )
    if loc.get("target") not in TARGETS:
        raise TaskDataError(f"{path}: localization.target must be direction or t60")
    for key in ("format", "snr_bin", "source_task"):
        if key in loc:
            _check(loc[key], str, f"{path}: localization.{key}")
    splits = meta.get("splits")  # type: ignore[union-attr]
    if not isinstance(splits, list) or not splits:
        raise TaskDataError(f"{path}: no 'splits' list")
    for split in splits:
        _check(split, str, f"{path}: a split name")
        child(task_dir, f"{split}.json", "split name")
    _check(meta.get("split_mode"), str, f"{path}: split_mode")  # type: ignore[union-attr]
    return meta  # type: ignore[return-value]


def is_localization_task(p: Path) -> bool:
    try:
        read_metadata(p)
    except (TaskDataError, UnsafePathError):
        return False
    return True


def find_tasks(tasks_dir: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """The task folders named by `names` (each checked), or every localization task."""
    root = Path(tasks_dir)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise TaskDataError(f"tasks directory {root} {what}")
    if names:
        out = []
        for n in names:
            task = child(root, n, "--task")
            if not (task / "task_metadata.json").is_file():
                found = sorted(p.name for p in root.iterdir() if is_localization_task(p))
                raise TaskDataError(f"no task {n!r} under {root}; found {found}")
            read_metadata(task)  # a clear error for a task that is not ours
            out.append(task)
        return out
    found = sorted(p for p in root.iterdir() if p.is_dir() and is_localization_task(p))
    if not found:
        raise TaskDataError(f"no localization tasks under {root}")
    return found


def data_splits(metadata: dict) -> list[dict[str, list[str]]]:
    """heareval's `get_splits_from_metadata`: [{train, valid, test}: [split names]]."""
    mode = metadata["split_mode"]
    if mode == "trainvaltest":
        return [{"train": ["train"], "valid": ["valid"], "test": ["test"]}]
    if mode in ("new_split_kfold", "presplit_kfold"):
        folds = sorted(metadata["splits"])
        if len(folds) < 3:
            raise TaskDataError(f"k-fold needs >= 3 folds, got {folds}")
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
    raise TaskDataError(f"unknown split_mode {mode!r}")


def read_labels(task_dir: Path, split: str, kind: str = "") -> tuple[list[str], np.ndarray]:
    """Sorted file names of a split and their targets (M, D): unit 3-vectors (direction) or
    positive T60s in s (t60); file names are plain names inside the task."""
    path = child(task_dir, f"{split}.json", "split name")
    if not path.is_file():
        raise TaskDataError(f"{task_dir.name}: missing split file {path.name}")
    labels = _read(path, str(path))
    if not isinstance(labels, dict) or not labels:
        raise TaskDataError(f"{path}: expected a non-empty object {{file name: target}}")
    files = sorted(labels)
    for f in files:
        check_name_in(task_dir, f)
    width = {"direction": 3, "t60": 1}.get(kind)
    for f in files:  # each target a number or a flat list of numbers
        items = labels[f] if isinstance(labels[f], list) else [labels[f]]
        for v in items:
            _check(v, (int, float), f"{path}: the target of {f!r}")
    try:
        y = np.array([labels[f] for f in files], dtype=np.float64).reshape(len(files), -1)
    except (TypeError, ValueError) as e:
        raise TaskDataError(
            f"{path}: targets are not lists of numbers of one length: {e}"
        ) from None
    if width is not None and y.shape[1] != width:
        raise TaskDataError(f"{path}: {kind} targets need {width} numbers, got {y.shape[1]}")
    bad = ~np.isfinite(y).all(axis=1)
    if kind == "t60":
        bad |= ~(y[:, 0] > 0)
    if bad.any():
        first = files[int(np.flatnonzero(bad)[0])]
        raise TaskDataError(
            f"{path}: {int(bad.sum())} target(s) are not finite"
            + (" positive T60s" if kind == "t60" else "")
            + f", e.g. {first!r}: {json.dumps(labels[first])}"
        )
    if kind == "direction":
        off = np.abs(np.linalg.norm(y, axis=1) - 1.0) > UNIT_TOLERANCE
        if off.any():
            first = files[int(np.flatnonzero(off)[0])]
            raise TaskDataError(
                f"task {task_dir.name}: {int(off.sum())} direction target(s) in {path.name} are "
                f"not unit vectors (|norm - 1| > {UNIT_TOLERANCE}), e.g. {first!r}: "
                f"{json.dumps(labels[first])}"
            )
    return files, y


def check_name_in(task_dir: Path, filename: str) -> None:
    """Refuse file names that are not plain names (no sub-folder, `..` or absolute path)."""
    child(task_dir, filename, "file name")
