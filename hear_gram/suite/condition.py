"""What a condition of the suite is (`Condition`), the units it plans (`Unit`), and the registry.

A condition is one column family of the paper's table (arXiv 2602.03307 and 2506.00934 sec. 5):
HEAR's dry tasks, the Nat-HEAR re-renders, localization, T60... The runner, the models file, the
units and the report know conditions only through this interface, so a new one is a module that
defines a `Condition` subclass and calls `register(...)` at import time (`python -m
hear_gram.suite --condition-module MODULE` imports it), with no project file edited.

A condition says:
- `name` (a plain name: folder, CSV value, `--conditions` entry, models-file override key);
- `plan(settings)`: its units' (task, format, source) triples; `formats` lists the input formats
  it gives a model (mono, binaural, ambisonic), each one a model can opt out of;
- `task_key(unit, settings)`: a digest of the content its unit's result depends on (the task
  folders, or what its build step is made from); `grid(settings)`: the probe settings;
- `builds(unit, resolved, settings)`: the one-off builds (`hear_gram.suite.build.Build`) its unit
  needs first, each keyed by its source's content and settings; the runner makes them as a step
  of their own before the units, and the unit's key holds their keys;
- `run(unit, resolved, settings, folder)`: builds what the unit needs, runs it, returns its score
  rows (`ROW_KEYS`, the common schema of results.csv);
- `group`, `section(...)`, `figures(...)`: its part of REPORT.md (conditions of one `group` share
  one table, drawn by the first of them) and its optional figures; `better`: metric direction;
- `default`: whether a run without `--conditions` includes it (False: run only when named);
- `hear_module`: whether its units call the model's HEAR module on audio of the unit's format
  (then `hear_gram.suite.probe` checks, before the run, that the module takes that format);
  `baselines`: module names it runs as its own baselines instead of importing them.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hear_gram.safeio import check_name, child, subdir
from hear_gram.suite.stats import count, number
from hear_gram.suite.worker import WorkerDied

if TYPE_CHECKING:
    from hear_gram.suite.build import Build
    from hear_gram.suite.config import Resolved, Settings

FORMATS: tuple[str, ...] = ("mono", "binaural", "ambisonic")
SPATIAL_FORMATS: tuple[str, ...] = ("binaural", "ambisonic")
# The keys of one score row: the common schema every condition's rows enter results.csv with.
# `std` and `folds`: the spread of `mean` and its n (folds, or seeds x folds); `ci_low`,
# `ci_high`: an interval of the figure when the condition's scorer gives one (e.g. the DCASE
# jackknife 95 % interval over test files), else empty. `fold` and `seed`: empty on the
# aggregate row; a per-fold row (one test fold of one training seed: `mean` is that fold's
# score, `folds` 1) names its test fold and seed ("" where the tool's seed is fixed), so that two
# models scored on the same folds can be compared fold against fold (`hear_gram.suite.stats`).
ROW_KEYS = ("task", "format", "snr_bin", "metric", "fold", "seed", "mean", "std", "folds",
            "better", "ci_low", "ci_high")  # fmt: skip
RESERVED = ("name", "module", "weights", "options", "conditions", "formats",
            "channels")  # models-file keys  # fmt: skip
BUILTINS = "hear_gram.suite.conditions"  # imported on the first registry lookup

_REGISTRY: dict[str, Condition] = {}


# Failures that no rerun with the same unit key can change: the key holds the module's code,
# the weights' content, the options and the tasks' content, so a rerun would fail the same way
# until one of them changes (and then the key does, and the unit runs). A failure is one of
# these when its message matches (the tools' one-line errors, `hear_gram.cli`); anything else
# (a killed process, a full disk, a GPU out of memory) may pass on a rerun.
PERMANENT: dict[str, re.Pattern[str]] = {
    "module import": re.compile(r"No module named|cannot import name|ModuleNotFoundError"),
    "unsupported format": re.compile(
        r"needs \d+[- ]channel|takes none of the tasks|model takes [\d, or]+ channels"
    ),
    "unreadable task": re.compile(
        r"task metadata is not valid JSON|has no task_metadata\.json|no task \S+ under"
        r"|only scene tasks|no \S+ tasks of \S+|no T60 task can be made|TaskError"
    ),
}


def failure_cause(error: str) -> str:
    """The permanent cause (a key of `PERMANENT`) an error message shows, or "" (transient)."""
    return next((cause for cause, pattern in PERMANENT.items() if pattern.search(error)), "")


class UnitError(RuntimeError):
    """A step of a unit failed; the message is the step and the last line it printed. `cause`:
    a key of `PERMANENT` when it cannot change on a rerun (default: read from the message)."""

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = failure_cause(message) if cause is None else cause


class UnitInterrupted(RuntimeError):
    """A step of a unit was ended by SIGINT (Ctrl-C): neither done nor failed."""


@dataclass(frozen=True, order=True)
class Unit:
    """One model on one task of one condition, in one input format."""

    model: str
    condition: str
    task: str  # a task folder name, or for per-source conditions "<source>-<format>"
    fmt: str
    source: str = ""  # per-source conditions (localization, T60): the source scene task

    @property
    def id(self) -> str:
        return f"{self.model}/{self.condition}/{self.task}"

    def folder(self, work: Path, create: bool = False) -> Path:
        """WORK/units/<model>/<condition>/<task>: created through `safeio.subdir` (a planted link
        on the way that leads outside WORK is refused) when `create`."""
        names = ("units", self.model, self.condition, self.task)
        if create:
            return subdir(work, *names, what="unit folder")
        path = Path(work)
        for name in names:
            path = child(path, name, "unit folder")
        return path


@dataclass(frozen=True)
class Option:
    """A command-line option a condition reads from `Settings.extra[dest]`: `kind` "names" (a
    repeatable task name; repeats dropped), "dir" (a folder of ready-made tasks) or "count" (an
    integer >= 1; `default` when the command line does not give it or a Settings lacks it)."""

    flag: str
    kind: str
    help: str
    default: int | None = None

    def value(self, extra: dict[str, Any]) -> Any:
        """This option's value in `Settings.extra` (`default` when absent or None)."""
        got = extra.get(self.dest)
        return self.default if got is None else got

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


# Downstream training seeds: a condition whose scorer takes a seed lists this option and repeats
# its training over `seeds(settings)` seeds (mean and sd over seeds x folds).
SEEDS = Option("--seeds", "count", "training seeds of the downstream probes, in the conditions whose scorer takes a seed", 1)  # fmt: skip


def aggregate(rows: Sequence[dict]) -> list[dict]:
    """The aggregate rows of `rows` (per-fold rows, those with a `fold`, left out)."""
    return [r for r in rows if not r.get("fold")]


class Condition(abc.ABC):
    """One condition of the suite (module docstring). Subclasses set the class attributes."""

    name: str = ""
    formats: tuple[str, ...] = ()
    better: str = "higher"  # "higher" or "lower": the direction of its metrics
    group: str = ""  # REPORT.md table shared by the conditions of one group ("" = its name)
    title: str = ""  # REPORT.md section title
    options: tuple[Option, ...] = ()  # its command-line options (shared flags appear once)
    default: bool = True  # in a run without --conditions (False: an opt-in, run when named)
    hear_module: bool = False  # its units call the HEAR module: probed before the run
    baselines: tuple[str, ...] = ()  # module names it runs itself (not imported, not probed)
    steps: tuple[str, ...] = ()  # the tools (python -m NAME) its units run, for warm workers

    def check(self) -> None:
        check_name(self.name, "condition name")
        if self.name in (*FORMATS, *RESERVED):  # a models file's keys: it could not be told apart
            raise ValueError(f"condition name {self.name!r} is reserved")
        if not self.formats or not set(self.formats) <= set(FORMATS):
            raise ValueError(f"condition {self.name}: formats must be among {FORMATS}")
        if self.better not in ("higher", "lower"):
            raise ValueError(f"condition {self.name}: better must be 'higher' or 'lower'")

    @property
    def table(self) -> str:
        return self.group or self.name

    @abc.abstractmethod
    def plan(self, settings: Settings) -> list[tuple[str, str, str]]:
        """(task, format, source) of every unit of this condition (for every model)."""

    @abc.abstractmethod
    def task_key(self, unit: Unit, settings: Settings) -> str:
        """A digest of the content the unit's score depends on (never a path alone)."""

    def grid(self, settings: Settings) -> Any:
        """The probe settings the unit's score depends on (part of its key)."""
        return [settings.grid, settings.grid_points]

    def builds(self, unit: Unit, resolved: Resolved, settings: Settings) -> list[Build]:
        """The one-off builds `unit` needs before it runs (default: none). Only what this unit
        reads: its format, its target, its model's sample rate."""
        return []

    @abc.abstractmethod
    def run(self, unit: Unit, resolved: Resolved, settings: Settings, folder: Path) -> list[dict]:
        """Build what `unit` needs, run it; its score rows (`ROW_KEYS`). Raise on failure."""

    def section(self, group: Sequence[Condition], rows: list[dict], models: Sequence[str]) -> list[str]:  # fmt: skip
        """REPORT.md lines of the conditions in `group` (this one first), from every row of the
        run (`rows`; status ok, failed or missing; per-fold rows too). Default: one row per
        aggregate score, "mean ± sd (n=N)"."""
        mine = [r for r in aggregate(rows) if r["condition"] in {c.name for c in group}]
        if not mine:
            return []
        out = [f"## {' and '.join(c.title or c.name for c in group)}", "",
               "| model | condition | task | format | metric | mean ± sd (n) | status |",
               "|---|---|---|---|---|---:|---|"]  # fmt: skip
        for r in mine:
            mean, sd, n = number(r["mean"]), number(r["std"]), count(r["folds"])
            mean = "-" if r["status"] != "ok" or mean is None else f"{mean:.4g}"
            if mean != "-" and n:
                mean += (f" ± {sd:.2g}" if n > 1 and sd is not None else "") + f" (n={n})"
            out.append(f"| {r['model']} | {r['condition']} | {r['task']} | {r['format']} | "
                       f"{r['metric']} | {mean} | {r['status']} |")  # fmt: skip
        return [*out, ""]

    def figures(self, group: Sequence[Condition], rows: list[dict], models: Sequence[str], out: Path) -> list[str]:  # fmt: skip
        """Write this group's figures into `out`; their file names (default: none)."""
        return []


# ------------------------------------------------------------------ registry


def register(condition: Condition) -> Condition:
    """Add `condition` (a name not registered yet, or the same object again); returns it."""
    condition.check()
    if not type(condition).__module__.startswith(BUILTINS):
        _builtins()  # the built-ins first, whoever registers first
    have = _REGISTRY.get(condition.name)
    if have is not None and have is not condition:
        raise ValueError(f"condition {condition.name!r} is already registered")
    _REGISTRY[condition.name] = condition
    return condition


def unregister(name: str) -> None:
    """Remove a condition (tests registering a toy one clean up with this)."""
    _REGISTRY.pop(name, None)


def _builtins() -> None:
    importlib.import_module(BUILTINS)


def get(name: str) -> Condition:
    _builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LookupError(f"unknown condition {name!r}; choose from {names()}") from None


def names() -> list[str]:
    """Registered condition names, in registration order (the built-ins first)."""
    _builtins()
    return list(_REGISTRY)


def defaults() -> tuple[str, ...]:
    """The conditions of a run without `--conditions`: those whose `default` is True."""
    return tuple(name for name in names() if _REGISTRY[name].default)


def load_module(module: str) -> None:
    """Import `module` for the conditions it registers (`--condition-module`)."""
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts):
        raise ValueError(f"--condition-module must be a dotted Python name, got {module!r:.60}")
    importlib.import_module(module)


# ------------------------------------------------------------------ shared by conditions


def read_json(path: Path) -> dict | None:
    """A JSON object the suite wrote (or None when missing, unreadable or not an object)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


# The steps (subprocesses) running now, so that a Ctrl-C that reached only the runner (a
# `kill -INT` of its process, a scheduler's signal) reaches them too, and the run being stopped.
_RUNNING: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()
_STOPPING = threading.Event()


def stop_steps(kill: bool = False, grace_s: float = 1.0) -> None:
    """The run is being stopped: no step starts any more, and each running one gets SIGINT (as
    from the terminal: our tools end in 130 and leave resumable files), or SIGKILL with `kill`.
    A Ctrl-C at the terminal reached the steps already: they are given `grace_s` to end before
    a second SIGINT, which could break their own clean exit, is sent."""
    _STOPPING.set()
    end = time.monotonic() + (0.0 if kill else grace_s)
    while running_steps() and time.monotonic() < end:
        time.sleep(0.05)
    with _RUNNING_LOCK:
        procs = list(_RUNNING)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, OSError):
            proc.send_signal(signal.SIGKILL if kill else signal.SIGINT)


def running_steps() -> int:
    with _RUNNING_LOCK:
        return len(_RUNNING)


def stopping() -> bool:
    return _STOPPING.is_set()


def allow_steps() -> None:
    """A new run in this process: steps may start again (after a `stop_steps`)."""
    _STOPPING.clear()


def _end(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGINT to a step, then SIGKILL if it is still running `grace_s` later."""
    with contextlib.suppress(ProcessLookupError, OSError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def step_env() -> dict[str, str]:
    """The environment of a unit's steps (fresh processes and warm workers alike)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", "1")  # heareval's probes are tiny; threads only contend
    return env


# The run's warm workers (`hear_gram.suite.worker.Pool`), when it has them: the steps they serve
# run there instead of in a fresh interpreter each.
_POOL: Any = None


def use_workers(pool: Any) -> None:
    """Run the steps `pool` serves in its workers from now on (None: fresh processes)."""
    global _POOL
    _POOL = pool


def run_logged(cmd: list[str], log_file: Path, step: str) -> None:
    """Run `cmd` with its output appended to `log_file` (in a warm worker when the run has one
    that serves it, `use_workers`); UnitError with the last line it printed if it fails,
    UnitInterrupted if Ctrl-C ended it (or the run is being stopped: then whatever the exit, a
    step is not failed for having been stopped)."""
    from hear_gram.safeio import open_append

    if _STOPPING.is_set():
        raise UnitInterrupted(f"{step} not started: the run is being stopped")
    pool = _POOL
    died: WorkerDied | None = None
    with open_append(log_file) as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        if pool is not None and pool.serves(cmd):
            try:
                code = _in_worker(pool, cmd, log_file, f, step)
            except WorkerDied as e:
                code, died = e.code, e
        else:
            code = _in_process(cmd, f, step)
    if code in (-signal.SIGINT, 130) or (code != 0 and _STOPPING.is_set()):
        raise UnitInterrupted(f"{step} interrupted")
    if code != 0:
        lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else ""
        what = f"failed: {died}" if died is not None else f"exited {code}"
        raise UnitError(f"{step} {what}: {last[:300]}")


STARTED = "# started"  # the line after a step's "$ COMMAND" in its log: when, and where it ran


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def _started(f: Any, where: str) -> None:
    """The `STARTED` line in the open log `f`, before the step writes to it."""
    f.write(f"{STARTED} {_now()} ({where})\n")
    f.flush()


def _in_process(cmd: list[str], f: Any, step: str) -> int:
    """`cmd` as a fresh process, its output to the open log `f`; its exit status."""
    with _RUNNING_LOCK:  # under the lock: a stop_steps now either sees it or came before
        if _STOPPING.is_set():
            raise UnitInterrupted(f"{step} not started: the run is being stopped")
        _started(f, "fresh process")
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=step_env())
        _RUNNING.add(proc)
    try:
        return proc.wait()
    except BaseException:  # Ctrl-C in this (the main) thread: end the step, leave none behind
        _end(proc)
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)


def _in_worker(pool: Any, cmd: list[str], log_file: Path, f: Any, step: str) -> int:
    """`cmd` (`python -m TOOL ARGV`) in one of `pool`'s workers, its output appended to
    `log_file` (open here as `f`); the exit status, or WorkerDied. A worker whose
    step did not end in 0 is retired, not reused: an interrupted or failed step may leave
    state behind that a fresh process would not have."""
    worker = pool.take()
    ok = False
    try:
        with _RUNNING_LOCK:
            if _STOPPING.is_set():
                raise UnitInterrupted(f"{step} not started: the run is being stopped")
            _started(f, f"in warm worker pid {worker.proc.pid}")
            worker.send(cmd[2], cmd[3:], log_file)
            _RUNNING.add(worker.proc)  # stop_steps' SIGINT reaches the step as a Ctrl-C would
        try:
            code = worker.reply()
        except KeyboardInterrupt:  # Ctrl-C in this (the main) thread: end the step
            with contextlib.suppress(ProcessLookupError, OSError):
                worker.proc.send_signal(signal.SIGINT)
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(worker.proc)
        ok = code == 0
        return code
    finally:
        if ok:
            pool.give_back(worker)
        else:
            worker.close()


def unique(names: Sequence[str]) -> tuple[str, ...]:
    """`names` without repeats, first occurrence kept (a `--task` given twice runs once)."""
    return tuple(dict.fromkeys(names))
