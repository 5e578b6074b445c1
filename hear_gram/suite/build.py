"""The build step of a condition: tasks made from a source HEAR task (a Nat-HEAR render, the
localization and T60 tasks, a synthetic SELD task), once per source content and build settings.

A build (`Build`) goes to WORK/build/<kind>-<task>[-<tags>]-<12 hex>, the hex a digest
(`build_key`) of the source task's content (`hear_gram.cache.task_digest`: metadata, split
JSONs, audio bytes), the settings its output depends on (seed, scene count, format, target,
sample rate...) and the generator's code (`hear_gram.cache.code_fingerprint`): a source whose
labels or audio change is built again into a new folder, never scored from the old one, and an
unchanged one never is. The build runs under a file lock (`hear_gram.safeio.locked`), so
parallel units, shards and array jobs build it once; a marker file next to the folder records a
finished build. A condition lists the builds each unit needs (`Condition.builds`): only its
format, its kind of task and its model's sample rate (`model_rate`), so a run asking for
binaural localization renders no Ambisonic or T60 task and no other rate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hear_gram.cache import code_fingerprint, task_digest
from hear_gram.safeio import child, locked, subdir, write_json
from hear_gram.suite.condition import UnitError, run_logged

if TYPE_CHECKING:
    from hear_gram.suite.config import Resolved, Settings

logger = logging.getLogger(__name__)


def digest(value: object) -> str:
    """sha256 of a JSON-able value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def build_key(kind: str, task: str, settings: Settings, packages: Sequence[str],
              params: dict | None = None) -> str:  # fmt: skip
    """What a build of `task` depends on: its content, the generator's code and its settings
    `params` (default: the seed and scene count)."""
    source = child(settings.tasks_dir, task, "task")
    if params is None:
        params = {"seed": settings.seed, "n_scenes": settings.n_scenes}
    return digest(
        {
            "kind": kind,
            "source": task_digest(source),
            **params,
            "code": [code_fingerprint(p) for p in packages],
        }
    )


def build_root(kind: str, task: str, settings: Settings, packages: Sequence[str],
               params: dict | None = None, tags: Sequence[str] = ()) -> Path:  # fmt: skip
    """WORK/build/<kind>-<task>[-<tags>]-<12 hex of build_key> (not created)."""
    key = build_key(kind, task, settings, packages, params)
    return child(settings.work, "build", "folder") / "-".join([kind, task, *tags, key[:12]])


@dataclass(frozen=True)
class Build:
    """One one-off build: `cmd` writes `root`. `key` (its `build_key`) enters the keys of the
    units that read it; `label` names it on the console ("localization esc50 binaural 16000
    Hz"); `record` is written to its marker when done."""

    key: str
    root: Path
    cmd: tuple[str, ...]
    label: str
    record: dict = field(default_factory=dict, compare=False, hash=False)


def make(kind: str, task: str, settings: Settings, packages: Sequence[str], params: dict,
         args: Sequence[str], label: str, tags: Sequence[str] = ()) -> Build:  # fmt: skip
    """The build of `python -m <packages[0]> ...args` (the tasks-dir, out, task, seed, scene
    count and scene-bank cache options added) keyed by the source's content and `params`."""
    key = build_key(kind, task, settings, packages, params)
    root = child(settings.work, "build", "folder") / "-".join([kind, task, *tags, key[:12]])
    bank = child(settings.work, "build", "folder") / "scene-bank"
    cmd = (sys.executable, "-m", packages[0], "--tasks-dir", str(settings.tasks_dir),
           "--out", str(root), "--task", task, "--seed", str(settings.seed),
           "--n-scenes", str(settings.n_scenes), "--cache-dir", str(bank), "--quiet", *args)  # fmt: skip
    return Build(key, root, cmd, label, {"kind": kind, "task": task, **params})


def built(b: Build) -> bool:
    """Whether `b`'s marker says it is done."""
    return b.root.with_name(f"{b.root.name}.done").is_file()


def run_build(b: Build, settings: Settings, log_file: Path) -> Path:
    """Make `b` unless it is done (`build_once`); its folder."""
    return build_once(b.root, b.cmd, settings, log_file, f"build {b.label}", b.record)


def build_once(root: Path, cmd: Sequence[str], settings: Settings, log_file: Path, step: str,
               record: dict) -> Path:  # fmt: skip
    """Run `cmd` (which writes `root`, a `build_root`) unless the marker next to `root` says it
    is done; then write the marker (`record`: what was built). Returns `root`."""
    build = subdir(settings.work, "build", what="build folder")
    marker = build / f"{root.name}.done"
    with locked(build / f"{root.name}.lock"):
        if marker.is_file():
            return root
        run_logged(list(cmd), log_file, step)
        write_json(marker, record)
    return root


# ------------------------------------------------------------------ sample rates


def model_rate(resolved: Resolved, settings: Settings) -> int | None:
    """The sample rate (Hz) of a HEAR module's model (`load_model(...).sample_rate`), or None
    when it cannot be loaded (its units fail with the reason; a baseline name such as `chance`
    is no module): the module's probe record (`hear_gram.suite.probe`, one CPU load per module
    code, weights and options, kept under OUT/probe), the one place a run loads a model to ask."""
    from hear_gram.suite import probe  # the probe plans with the conditions, which build here

    if resolved.module in probe.baseline_modules():  # a condition's own row: nothing to load
        return None
    record = probe.probe(resolved, (), settings)
    rate = record.get("sample_rate")
    ok = record.get("loaded") and isinstance(rate, int) and not isinstance(rate, bool) and rate > 0
    return rate if ok else None


def source_rates(task_dir: Path) -> list[int]:
    """The sample-rate folders (Hz) of a HEAR task, sorted."""
    return sorted(int(p.name) for p in task_dir.iterdir() if p.is_dir() and p.name.isdigit())


def rate_to_build(resolved: Resolved, settings: Settings, source: str) -> int | None:
    """The one rate of source task `source` a build for model `resolved` renders (`pick_rate` of
    the model's rate and the source's rate folders), or None when the source has no rate folder
    (nothing to render from: the unit's run says so, `run_first`)."""
    rates = source_rates(child(settings.tasks_dir, source, "task"))
    return pick_rate(model_rate(resolved, settings), rates) if rates else None


def run_first(needed: Sequence[Build], source: str, settings: Settings, log_file: Path) -> Path:
    """Make the unit's one build (`run_build`) and return its folder; UnitError when there is
    none because source task `source` has no sample-rate folder of audio."""
    if not needed:
        raise UnitError(f"source task {source} has no sample-rate folder of audio")
    return run_build(needed[0], settings, log_file)


def pick_rate(rate: int | None, available: Sequence[int]) -> int:
    """The one source rate a model reads: its own when the source has it, else the highest (the
    evaluators resample the highest rate present to the model's)."""
    if not available:
        raise ValueError("the source task has no sample-rate folder")
    return rate if rate in available else max(available)
