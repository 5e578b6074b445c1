"""Units of work (model x condition x task): planning them, their keys, running one.

What a unit does is its condition's (`hear_gram.suite.condition.Condition.run`): the built-in
ones run the project's command-line tools as subprocesses, exactly as a user would.

A unit leaves WORK/units/<model>/<condition>/<task>/: `unit.log` (every command and its output),
and either `result.json` (its key and score rows) or `failed.json` (its key, the error and its
cause). Its key is a digest of everything its score depends on: the task CONTENT
(`Condition.task_key`: `hear_gram.cache.task_digest` of its task folders, or of the source a
build makes them from, with the build's settings; and the keys of the builds it reads,
`Condition.builds`), the module's code (`hear_gram.cache.code_fingerprint`), the full sha256 of
its weights, its options and the probe grid. A unit is done when `result.json` holds its
current key. A failure whose cause cannot change while the key does not
(`hear_gram.suite.condition.PERMANENT`: a module that does not import, a format the module does
not take, a task that cannot be read) is "permanent" and is not run again unless asked
(`--retry-failed`); anything else (missing, stale, a transient failure) runs again. A unit
stopped by Ctrl-C is "interrupted": neither done nor failed, it runs again. A running unit holds
WORK/units/.../unit.lock: another runner (shard, array job) finding it held reports the unit
"busy" and leaves it alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hear_gram.cache import code_fingerprint, weights_sha256
from hear_gram.safeio import LockBusyError, locked, write_json
from hear_gram.suite import condition as conditions
from hear_gram.suite.condition import ROW_KEYS, Unit, UnitError, UnitInterrupted, read_json
from hear_gram.suite.config import ModelSpec, Resolved, Settings

BUSY = "busy (another run holds it)"


def plan(models: list[ModelSpec], settings: Settings) -> list[Unit]:
    """Every unit of the run, sorted (the order shards are cut from)."""
    units = set()
    for name in settings.conditions:
        cond = conditions.get(name)
        triples = cond.plan(settings)
        for model in models:
            units |= {Unit(model.name, name, task, fmt, source) for task, fmt, source in triples
                      if model.applies(name, fmt)}  # fmt: skip
    return sorted(units)


def shard(units: list[Unit], k: int, n: int) -> list[Unit]:
    """Shard k of n (0-based): every n-th unit of the sorted list, starting at k."""
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--shard K/N needs 0 <= K < N, got {k}/{n}")
    return [u for i, u in enumerate(sorted(units)) if i % n == k]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def unit_key(unit: Unit, resolved: Resolved, settings: Settings) -> str:
    """What a unit's result depends on (module docstring): never a path alone."""
    cond = conditions.get(unit.condition)
    tasks = cond.task_key(unit, settings)
    value = {
        "unit": asdict(unit),
        "module": resolved.module,
        "code": code_fingerprint(resolved.module),
        "weights_sha256": weights_sha256(resolved.weights),
        "options": resolved.options,
        "tasks": tasks,
        "grid": cond.grid(settings),
    }
    # A build's key is often the task key itself (one build per task): only the others are
    # added, so that the keys of units whose builds say nothing new stay as they were.
    builds = [b.key for b in cond.builds(unit, resolved, settings) if b.key != tasks]
    if builds:
        value["builds"] = builds
    return _digest(value)


def status(unit: Unit, key: str, work: Path) -> str:
    """'done' (result for this key), 'failed' (failure for this key) or 'todo'."""
    folder = unit.folder(work)
    result = read_json(folder / "result.json")
    if result and result.get("key") == key:
        return "done"
    return "failed" if failure(unit, key, work) is not None else "todo"


def failure(unit: Unit, key: str, work: Path) -> dict | None:
    """The failure record of `unit` for this key (error, cause, permanent), or None."""
    failed = read_json(unit.folder(work) / "failed.json")
    return failed if failed and failed.get("key") == key else None


def permanent(record: dict | None) -> bool:
    """Whether a failure record's cause cannot change while its key does not."""
    return bool(record) and record.get("cause", "") in conditions.PERMANENT


def check_rows(rows: Any, unit: Unit) -> list[dict]:
    """A condition's score rows in the common schema (`ROW_KEYS`); a row without a finite
    numeric mean is refused, never a table cell."""
    if not isinstance(rows, list) or not rows:
        raise UnitError(f"condition {unit.condition} returned no score rows")
    out = []
    for row in rows:
        if not isinstance(row, dict):
            raise UnitError(f"condition {unit.condition} returned a {type(row).__name__} row")
        mean = row.get("mean")
        ok = isinstance(mean, int | float) and not isinstance(mean, bool)
        if not ok or not math.isfinite(mean):
            raise UnitError(f"{unit.id}: score {row.get('metric', '')} is {mean!r}, not a number")
        ci = (row.get("ci_low", ""), row.get("ci_high", ""))
        if ci != ("", ""):  # an interval is two finite numbers, low <= high, or none at all
            nums = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                       for v in ci)  # fmt: skip
            if not nums or ci[0] > ci[1]:
                raise UnitError(f"{unit.id}: interval of {row.get('metric', '')} is {ci!r}")
        out.append({k: row.get(k, "") for k in ROW_KEYS})
    return out


def _record(unit: Unit, state: str, t0: float, error: str = "", cause: str = "") -> dict:
    return {"unit": unit.id, "status": state, "seconds": time.time() - t0, "error": error,
            "cause": cause}  # fmt: skip


def _cause(e: BaseException, error: str) -> str:
    if isinstance(e, UnitError):
        return e.cause
    if isinstance(e, ImportError):
        return "module import"
    return conditions.failure_cause(error)


def fail_unit(unit: Unit, model: ModelSpec, settings: Settings, error: str, cause: str) -> dict:
    """Record `unit` failed without running it (a build it needs failed); its record."""
    t0 = time.time()
    try:
        key = unit_key(unit, model.resolve(unit.condition, unit.fmt), settings)
        folder = unit.folder(settings.work, create=True)
        with locked(folder / "unit.lock", wait=False):
            _write_failure(folder, unit, key, error, cause)
    except LockBusyError:
        return _record(unit, "busy", t0, BUSY)
    except (OSError, ValueError, LookupError) as e:
        error = f"{error}; {type(e).__name__}: {e}"
    return _record(unit, "failed", t0, error, cause)


def _write_failure(folder: Path, unit: Unit, key: str, error: str, cause: str,
                   seconds: float = 0.0) -> None:  # fmt: skip
    failed = {"key": key, "unit": asdict(unit), "error": error, "cause": cause,
              "permanent": cause in conditions.PERMANENT, "log": str(folder / "unit.log"),
              "seconds": seconds}  # fmt: skip
    write_json(folder / "failed.json", failed)


def run_unit(unit: Unit, model: ModelSpec, settings: Settings) -> dict:
    """Run one unit unless done or busy; never raises for a failing step. Returns its record:
    {unit, status: done|failed|skipped|busy|interrupted, seconds, error, cause} (cause: a key
    of `hear_gram.suite.condition.PERMANENT`, or "" for a failure that may pass on a rerun)."""
    t0 = time.time()
    key = ""
    folder = None
    if conditions.stopping():  # Ctrl-C came while it waited for a worker: start nothing
        return _record(unit, "interrupted", t0, "not started: the run is being stopped")
    try:
        for module in settings.condition_modules:  # in a job process, register them again
            conditions.load_module(module)
        resolved = model.resolve(unit.condition, unit.fmt)
        key = unit_key(unit, resolved, settings)
        if status(unit, key, settings.work) == "done":
            return _record(unit, "skipped", t0)
        folder = unit.folder(settings.work, create=True)
        with locked(folder / "unit.lock", wait=False):
            if status(unit, key, settings.work) == "done":  # another runner finished it
                return _record(unit, "skipped", t0)
            with contextlib.suppress(FileNotFoundError):
                (folder / "failed.json").unlink()
            rows = conditions.get(unit.condition).run(unit, resolved, settings, folder)
            record = {"key": key, "unit": asdict(unit), "module": resolved.module,
                      "weights": str(resolved.weights or ""),
                      "weights_sha256": weights_sha256(resolved.weights),
                      "options": resolved.options, "rows": check_rows(rows, unit),
                      "seconds": time.time() - t0}  # fmt: skip
            write_json(folder / "result.json", record)
        return _record(unit, "done", t0)
    except LockBusyError:
        return _record(unit, "busy", t0, BUSY)
    except UnitInterrupted as e:
        return _record(unit, "interrupted", t0, str(e))
    except Exception as e:  # a failed unit is reported, never fatal to the others
        error = " ".join(f"{type(e).__name__}: {e}".split())
        cause = _cause(e, error) if key else ""  # no key: nothing it could be the same for
        if folder is not None:
            with contextlib.suppress(Exception):
                _write_failure(folder, unit, key, error, cause, time.time() - t0)
        return _record(unit, "failed", t0, error, cause)
