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


def build_key(kind: str, task: str, settings: Settings, packages: Sequence[str]) -> str:
    """What a build of `task` depends on: its content, seed, scene count, generator code."""
    source = child(settings.tasks_dir, task, "task")
    return digest(
        {
            "kind": kind,
            "source": task_digest(source),
            "seed": settings.seed,
            "n_scenes": settings.n_scenes,
            "code": [code_fingerprint(p) for p in packages],
        }
    )


def build_root(kind: str, task: str, settings: Settings, packages: Sequence[str]) -> Path:
    """WORK/build/<kind>-<task>-<12 hex of build_key> (not created)."""
    key = build_key(kind, task, settings, packages)
    return child(settings.work, "build", "folder") / f"{kind}-{task}-{key[:12]}"


def ensure_built(kind: str, task: str, settings: Settings, packages: Sequence[str],
                 args: Sequence[str], log_file: Path) -> Path:  # fmt: skip
    """Run `python -m <packages[0]> ...args` (the tasks-dir, out, task, seed, scene count and
    scene-bank cache options added) unless the build's marker says it is done; its folder."""
    root = build_root(kind, task, settings, packages)
    build = subdir(settings.work, "build", what="build folder")
    marker = build / f"{root.name}.done"
    with locked(build / f"{root.name}.lock"):
        if marker.is_file():
            return root
        cmd = [sys.executable, "-m", packages[0], "--tasks-dir", str(settings.tasks_dir),
               "--out", str(root), "--task", task, "--seed", str(settings.seed),
               "--n-scenes", str(settings.n_scenes),
               "--cache-dir", str(build / "scene-bank"), "--quiet", *args]  # fmt: skip
        run_logged(cmd, log_file, f"build {kind} {task}")
        write_json(marker, {"kind": kind, "task": task, "seed": settings.seed,
                            "n_scenes": settings.n_scenes})  # fmt: skip
    return root
