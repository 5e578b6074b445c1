"""Units of work (model x condition x task): what they are, how one runs, what it leaves.

Every unit runs the project's command-line tools as subprocesses, exactly as a user would:

- dry and Nat-HEAR units: `python -m hear_gram.embed` (heareval's embeddings runner, in a folder
  per weights sha256) on one task, then `python -m hear_gram.predict` on its embeddings, and the
  scores read back with `hear_gram.scores`;
- localization and T60 units (one per source task and spatial format): `python -m
  localization_tasks.evaluate` on the SNR-bin tasks (or the T60 task) built from that source.

What a unit needs built (a Nat-HEAR render of its task, the localization tasks of its source) is
built first by `python -m naturalistic_hear` or `python -m localization_tasks.generate` under
WORK/build/, once per settings (the folder name carries a hash of them), under a file lock so
parallel units and array jobs build it once; a marker file records a finished build.

A unit leaves WORK/units/<model>/<condition>/<task>/: `unit.log` (every command and its output),
and either `result.json` (its key and score rows) or `failed.json` (its key and the error). A
unit is done when `result.json` holds the key of its current inputs (module, weights sha256,
options, settings); anything else (missing, failed, stale) runs again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hear_gram.safeio import child, write_bytes_atomic
from hear_gram.suite.config import (
    CONDITION_FORMAT,
    SPATIAL_FORMATS,
    ModelSpec,
    Resolved,
    Settings,
    SuiteConfigError,
)

log = logging.getLogger(__name__)
PAPER_LOCALIZATION_SOURCES = ("esc50-v2.0.0-full", "speech_commands-v0.0.2-5h")
LOCALIZATION_METRIC = {"localization": "mean_angular_error_deg", "t60": "median_abs_error_s"}


class UnitError(RuntimeError):
    """A step of a unit failed; the message is the step and the last line it printed."""


@dataclass(frozen=True, order=True)
class Unit:
    model: str
    condition: str
    task: str  # HEAR task name; for localization and T60, "<source task>-<format>"
    fmt: str
    source: str = ""  # localization and T60: the source scene task

    @property
    def id(self) -> str:
        return f"{self.model}/{self.condition}/{self.task}"

    def folder(self, work: Path) -> Path:
        root = work / "units"
        return child(child(child(root, self.model, "model"), self.condition, "condition"),
                     self.task, "task")  # fmt: skip


# ------------------------------------------------------------------ planning


def hear_tasks(settings: Settings, names: tuple[str, ...] = ()) -> list[str]:
    """The HEAR task folders the dry and Nat-HEAR conditions run on: `names`, or `tasks`, or
    every task under tasks_dir."""
    root = settings.tasks_dir
    names = names or settings.tasks
    if names:
        for name in names:
            if not (child(root, name, "task") / "task_metadata.json").is_file():
                raise FileNotFoundError(f"task {name!r} has no task_metadata.json under {root}")
        return list(names)
    if not root.is_dir():
        raise FileNotFoundError(f"tasks directory {root} does not exist")
    return sorted(p.name for p in root.iterdir() if (p / "task_metadata.json").is_file())


def localization_sources(settings: Settings) -> list[str]:
    if settings.localization_sources:
        return list(settings.localization_sources)
    if settings.localization_dir is not None:
        found = {meta["localization"].get("source_task", "") for _, meta in
                 _localization_tasks(settings.localization_dir)}  # fmt: skip
        return sorted(found)
    return [t for t in PAPER_LOCALIZATION_SOURCES if (settings.tasks_dir / t).is_dir()]


def plan(models: list[ModelSpec], settings: Settings) -> list[Unit]:
    """Every unit of the run, sorted (the order shards are cut from)."""
    units = []
    needs_hear = any(c in CONDITION_FORMAT for c in settings.conditions)
    tasks = hear_tasks(settings) if needs_hear else []
    nat_tasks = hear_tasks(settings, settings.nat_tasks) if needs_hear else []
    spatial = [c for c in settings.conditions if c in LOCALIZATION_METRIC]
    sources = localization_sources(settings) if spatial else []
    if spatial and not sources:
        raise SuiteConfigError(
            f"conditions {spatial} need source scene tasks: none of "
            f"{list(PAPER_LOCALIZATION_SOURCES)} is under {settings.tasks_dir}; name them with "
            "--localization-source"
        )
    for model in models:
        for condition in settings.conditions:
            if condition in CONDITION_FORMAT:
                fmt = CONDITION_FORMAT[condition]
                names = tasks if condition == "dry" else nat_tasks
                if model.applies(condition, fmt):
                    units += [Unit(model.name, condition, task, fmt) for task in names]
                continue
            for source in sources:
                for fmt in SPATIAL_FORMATS:
                    if model.applies(condition, fmt):
                        units.append(Unit(model.name, condition, f"{source}-{fmt}", fmt, source))
    return sorted(units)


def shard(units: list[Unit], k: int, n: int) -> list[Unit]:
    """Shard k of n (0-based): every n-th unit of the sorted list, starting at k."""
    if not (n >= 1 and 0 <= k < n):
        raise SuiteConfigError(f"--shard K/N needs 0 <= K < N, got {k}/{n}")
    return [u for i, u in enumerate(sorted(units)) if i % n == k]


# ------------------------------------------------------------------ keys and records


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def weights_sha(path: Path | None, _cache: dict = {}) -> str | None:  # noqa: B006
    """sha256 of a weights file, computed once per process and file state."""
    if path is None:
        return None
    from hear_gram.checkpoints import sha256

    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _cache:
        _cache[key] = sha256(path)
    return _cache[key]


def unit_key(unit: Unit, resolved: Resolved, settings: Settings) -> str:
    """What a unit's result depends on: module, weights content, options, sources, settings."""
    grid = (
        [settings.grid, settings.grid_points]
        if unit.condition in CONDITION_FORMAT
        else [settings.localization_grid, settings.seed]
    )
    return _digest(
        {
            "unit": asdict(unit),
            "module": resolved.module,
            "weights_sha256": weights_sha(resolved.weights),
            "options": resolved.options,
            "tasks_root": str(tasks_root(unit, settings, build=False)),
            "grid": grid,
        }
    )


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status(unit: Unit, key: str, work: Path) -> str:
    """'done' (result for this key), 'failed' (failure for this key) or 'todo'."""
    folder = unit.folder(work)
    result = read_json(folder / "result.json")
    if result and result.get("key") == key:
        return "done"
    failed = read_json(folder / "failed.json")
    return "failed" if failed and failed.get("key") == key else "todo"


# ------------------------------------------------------------------ builds


def build_settings(kind: str, settings: Settings) -> dict:
    return {
        "kind": kind,
        "tasks_dir": str(settings.tasks_dir.resolve()),
        "seed": settings.seed,
        "n_scenes": settings.n_scenes,
    }


def build_root(kind: str, settings: Settings) -> Path:
    """WORK/build/<kind>-<hash of the build settings>: a new folder when a setting changes."""
    return settings.work / "build" / f"{kind}-{_digest(build_settings(kind, settings))[:10]}"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (parallel units, array jobs on a shared disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def ensure_built(kind: str, task: str, settings: Settings, log_file: Path) -> Path:
    """Build `task` for `kind` ("nat-binaural", "nat-ambisonic" or "localization") unless its
    marker says it is done; return the build's tasks folder."""
    root = build_root(kind, settings)
    marker = child(root.with_name(root.name + ".done"), task, "task")
    with locked(root.with_name(root.name + ".lock")):
        if marker.is_file():
            return root
        py = sys.executable
        common = ["--tasks-dir", str(settings.tasks_dir), "--out", str(root), "--task", task,
                  "--seed", str(settings.seed), "--n-scenes", str(settings.n_scenes),
                  "--cache-dir", str(settings.work / "build" / "scene-bank"), "--quiet"]  # fmt: skip
        if kind == "localization":
            cmd = [py, "-m", "localization_tasks.generate", *common,
                   "--format", *SPATIAL_FORMATS]  # fmt: skip
        else:
            cmd = [py, "-m", "naturalistic_hear", *common, "--format", kind.split("-", 1)[1],
                   "--workers", str(settings.workers)]  # fmt: skip
        run_logged(cmd, log_file, f"build {kind} {task}")
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(marker, json.dumps(build_settings(kind, settings)).encode())
    return root


def tasks_root(unit: Unit, settings: Settings, build: bool = True, log_file: Path | None = None) -> Path:  # fmt: skip
    """The folder holding the unit's tasks: given, or built (when `build`)."""
    if unit.condition == "dry":
        return settings.tasks_dir
    if unit.condition in CONDITION_FORMAT:
        given = settings.nat_dirs.get(unit.condition)
        if given is not None:
            return given
        kind, task = unit.condition, unit.task
    else:
        if settings.localization_dir is not None:
            return settings.localization_dir
        kind, task = "localization", unit.source
    if not build:
        return build_root(kind, settings)
    assert log_file is not None
    return ensure_built(kind, task, settings, log_file)


# ------------------------------------------------------------------ running


def run_logged(cmd: list[str], log_file: Path, step: str) -> None:
    """Run `cmd` with its output appended to `log_file`; UnitError with the last line if it
    fails."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", "1")  # heareval's probes are tiny; threads only contend
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else ""
        raise UnitError(f"{step} exited {proc.returncode}: {last[:300]}")


def _hear_unit(unit: Unit, resolved: Resolved, settings: Settings, folder: Path) -> list[dict]:
    from hear_gram.embed import heareval_folder, weights_key
    from hear_gram.scores import collect_scores

    log_file = folder / "unit.log"
    root = tasks_root(unit, settings, log_file=log_file)
    if not (child(root, unit.task, "task") / "task_metadata.json").is_file():
        raise UnitError(f"no task {unit.task} under {root}")
    base = settings.work / "embeddings" / unit.condition / unit.task
    py = sys.executable
    cmd = [py, "-m", "hear_gram.embed", resolved.module, "--tasks-dir", str(root),
           "--task", unit.task, "--embeddings-dir", str(base),
           "--model-options", resolved.options_json()]  # fmt: skip
    if resolved.weights is not None:
        cmd += ["--model", str(resolved.weights)]
    run_logged(cmd, log_file, "hear_gram.embed")
    key, _ = weights_key(resolved.weights)
    emb = base / key / heareval_folder(resolved.module, resolved.options) / unit.task
    run_logged([py, "-m", "hear_gram.predict", str(emb), "--grid", settings.grid,
                "--grid-points", str(settings.grid_points)], log_file, "hear_gram.predict")  # fmt: skip
    rows = collect_scores(emb)
    if not rows:
        raise UnitError(f"hear_gram.predict left no scores in {emb}")
    return [
        {"task": r["task"], "format": unit.fmt, "snr_bin": "", "metric": r["metric"],
         "mean": r["mean"], "std": r["std"], "folds": r["n_folds"], "better": r["better"]}
        for r in rows
    ]  # fmt: skip


def _localization_tasks(root: Path) -> list[tuple[str, dict]]:
    out = []
    for meta_path in sorted(root.glob("*/task_metadata.json")):
        meta = read_json(meta_path)
        if meta and isinstance(meta.get("localization"), dict):
            out.append((meta_path.parent.name, meta))
    return out


def _spatial_unit(unit: Unit, resolved: Resolved, settings: Settings, folder: Path) -> list[dict]:
    log_file = folder / "unit.log"
    root = tasks_root(unit, settings, log_file=log_file)
    target = "direction" if unit.condition == "localization" else "t60"
    names = [
        name
        for name, meta in _localization_tasks(root)
        if meta["localization"].get("source_task") == unit.source
        and meta["localization"].get("format") == unit.fmt
        and meta["localization"].get("target") == target
    ]
    if not names:
        raise UnitError(f"no {target} tasks of {unit.source} ({unit.fmt}) under {root}")
    out = folder / "evaluate"
    cmd = [sys.executable, "-m", "localization_tasks.evaluate", "--module", resolved.module,
           "--model-options", resolved.options_json(), "--tasks-dir", str(root),
           "--out", str(out), "--grid", settings.localization_grid,
           "--seed", str(settings.seed), "--quiet"]  # fmt: skip
    if resolved.weights is not None:
        cmd += ["--model", str(resolved.weights)]
    for name in names:
        cmd += ["--task", name]
    run_logged(cmd, log_file, "localization_tasks.evaluate")
    from localization_tasks.evaluate import module_tag

    tag = module_tag(resolved.module, str(resolved.weights or ""), resolved.options)
    results = read_json(out / tag / "results.json")
    if results is None:
        raise UnitError(f"localization_tasks.evaluate left no results.json in {out / tag}")
    entries = results.get("tasks", [])
    metric = LOCALIZATION_METRIC[unit.condition]
    rows = []
    for e in entries:
        per_fold = [float(f[metric]) for f in e.get("folds", []) if metric in f]
        rows.append(
            {
                "task": e["task"],
                "format": unit.fmt,
                "snr_bin": e.get("snr_bin", ""),
                "metric": metric,
                "mean": float(e[metric]),
                "std": statistics.stdev(per_fold) if len(per_fold) > 1 else 0.0,
                "folds": len(per_fold),
                "better": "lower",
            }  # fmt: skip
        )
    return rows


def run_unit(unit: Unit, model: ModelSpec, settings: Settings) -> dict:
    """Run one unit unless done; never raises for a failing step. Returns its record:
    {unit, status: done|failed|skipped, seconds, error}."""
    folder = unit.folder(settings.work)
    t0 = time.time()
    try:
        resolved = model.resolve(unit.condition, unit.fmt)
        key = unit_key(unit, resolved, settings)
        if status(unit, key, settings.work) == "done":
            return {"unit": unit.id, "status": "skipped", "seconds": 0.0, "error": ""}
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (folder / "failed.json").unlink()
        run = _hear_unit if unit.condition in CONDITION_FORMAT else _spatial_unit
        rows = run(unit, resolved, settings, folder)
        record = {"key": key, "unit": asdict(unit), "module": resolved.module,
                  "weights": str(resolved.weights or ""),
                  "weights_sha256": weights_sha(resolved.weights),
                  "options": resolved.options, "rows": rows}  # fmt: skip
        write_bytes_atomic(folder / "result.json", json.dumps(record, indent=2).encode())
        return {"unit": unit.id, "status": "done", "seconds": time.time() - t0, "error": ""}
    except Exception as e:  # a failed unit is reported, never fatal to the others
        error = " ".join(f"{type(e).__name__}: {e}".split())
        with contextlib.suppress(Exception):
            folder.mkdir(parents=True, exist_ok=True)
            failed = {"key": locals().get("key", ""), "unit": asdict(unit), "error": error,
                      "log": str(folder / "unit.log")}  # fmt: skip
            write_bytes_atomic(folder / "failed.json", json.dumps(failed, indent=2).encode())
        return {"unit": unit.id, "status": "failed", "seconds": time.time() - t0, "error": error}
