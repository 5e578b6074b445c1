"""The build step of a condition: tasks made from a source HEAR task (a Nat-HEAR render, the
localization and T60 tasks), once per source content and build settings.

A build goes to WORK/build/<kind>-<task>-<12 hex>, the hex a digest of the source task's content
(`hear_gram.cache.task_digest`: metadata, split JSONs, audio bytes), the seed, the scene count
and the generator's code (`hear_gram.cache.code_fingerprint`): a source whose labels or audio
change is built again into a new folder, never scored from the old one. The build runs under a
file lock (`hear_gram.safeio.locked`), so parallel units, shards and array jobs build it once; a
marker file next to the folder records a finished build.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hear_gram.cache import code_fingerprint, task_digest
from hear_gram.safeio import child, locked, subdir, write_json
from hear_gram.suite.condition import run_logged

if TYPE_CHECKING:
    from hear_gram.suite.config import Settings


def digest(value: object) -> str:
    """sha256 of a JSON-able value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def build_key(kind: str, task: str, settings: Settings, packages: Sequence[str],
              params: dict | None = None) -> str:  # fmt: skip
    """What a build of `task` depends on: its content, the generator's code and its settings
    `params` (default: the seed and scene count, what `ensure_built` passes on)."""
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
               params: dict | None = None) -> Path:  # fmt: skip
    """WORK/build/<kind>-<task>-<12 hex of build_key> (not created)."""
    key = build_key(kind, task, settings, packages, params)
    return child(settings.work, "build", "folder") / f"{kind}-{task}-{key[:12]}"


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


def ensure_built(kind: str, task: str, settings: Settings, packages: Sequence[str],
                 args: Sequence[str], log_file: Path) -> Path:  # fmt: skip
    """Run `python -m <packages[0]> ...args` (the tasks-dir, out, task, seed, scene count and
    scene-bank cache options added) unless the build's marker says it is done; its folder."""
    root = build_root(kind, task, settings, packages)
    bank = child(settings.work, "build", "folder") / "scene-bank"
    cmd = [sys.executable, "-m", packages[0], "--tasks-dir", str(settings.tasks_dir),
           "--out", str(root), "--task", task, "--seed", str(settings.seed),
           "--n-scenes", str(settings.n_scenes), "--cache-dir", str(bank), "--quiet", *args]  # fmt: skip
    record = {"kind": kind, "task": task, "seed": settings.seed, "n_scenes": settings.n_scenes}
    return build_once(root, cmd, settings, log_file, f"build {kind} {task}", record)
