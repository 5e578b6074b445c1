"""The one embedding cache: what an embedding depends on, as one key, and entries trusted only
when they carry it.

Every tool that keeps embeddings (`hear_gram.embed` around heareval's runner, the localization
evaluator, the SELD evaluator, the suite's units) keys them the same way:

    key = sha256 of [CACHE_VERSION, module, code fingerprint of the module's package,
                     full sha256 of the weights file (or none), load_model options,
                     digest of the task's content, anything else the caller adds]

- `weights_sha256`: the whole file's sha256, so a checkpoint retrained in place is a new key.
- `code_fingerprint`: the module's top-level package's `.py` files (names and bytes): a changed
  runtime, front-end or pooling never serves the old code's embeddings.
- `task_digest`: `task_metadata.json`, the split JSONs and the bytes of the audio files (every
  sample-rate folder), so a task whose labels or audio change is a new key. File contents are
  hashed once per file state (size, modification and change times, inode) in a process.

An entry (`store`) is one `.npz` of named arrays with its key inside, written atomically through
`hear_gram.safeio`; `load` returns it only when the key matches and every array is finite, and
otherwise None (missing, stale, truncated, corrupt, not ours): the caller recomputes. Nothing is
unpickled (`allow_pickle=False`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hear_gram.safeio import child, write_bytes_atomic

log = logging.getLogger(__name__)

# Bump when the layout of entries or the meaning of a key part changes.
CACHE_VERSION = "hear-gram-cache-1"
MAX_CODE_FILES = 5000  # a package larger than this is fingerprinted by its first files
_KEY_ARRAY = "__key__"
_DIGESTS: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, computed once per file state in this process (a write changes
    the change time, so an edited file is hashed again)."""
    st = os.stat(path)
    state = (str(Path(path).absolute()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if state not in _DIGESTS:
        with open(path, "rb") as f:
            _DIGESTS[state] = hashlib.file_digest(f, "sha256").hexdigest()
    return _DIGESTS[state]


def weights_sha256(path: str | os.PathLike | None) -> str | None:
    """Full sha256 of a weights file; None for no file (a module without weights)."""
    if path in (None, ""):
        return None
    path = Path(path)  # type: ignore[arg-type]
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    return file_sha256(path)


def code_fingerprint(module: str) -> str:
    """sha256 over the `.py` files of `module`'s top-level package (relative names and bytes,
    sorted), or over the module's file when it is not a package; a module that cannot be found
    fingerprints as its name only (its import fails later with a clear error)."""
    top = module.split(".", 1)[0]
    h = hashlib.sha256(f"{CACHE_VERSION}\0{top}\0".encode())
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return h.hexdigest()
    if spec.submodule_search_locations:
        files = sorted(
            (f.relative_to(d).as_posix(), f)
            for d in map(Path, spec.submodule_search_locations)
            for f in d.rglob("*.py")
        )[:MAX_CODE_FILES]
    elif spec.origin and Path(spec.origin).is_file():
        files = [(Path(spec.origin).name, Path(spec.origin))]
    else:
        files = []
    for rel, path in files:
        h.update(f"{rel}\0{file_sha256(path)}\0".encode())
    return h.hexdigest()


def task_digest(task_dir: Path, split: str | None = None, files: Sequence[str] | None = None) -> str:  # fmt: skip
    """sha256 of what embeddings of a HEAR-layout task depend on: `task_metadata.json`, the JSON
    files at the task's top level (or only `<split>.json` with `split`), and the content of its
    audio: every file under every `<rate>/` folder (or `<rate>/<split>/<file>` for `files`).
    Symbolic links count by their target's name, never followed."""
    task_dir = Path(task_dir)
    h = hashlib.sha256(b"task\0")
    if split is None:
        jsons = sorted(p.name for p in task_dir.glob("*.json") if p.is_file())
    else:
        jsons = ["task_metadata.json", f"{split}.json"]
    for name in jsons:
        p = child(task_dir, name, "task file")
        h.update(f"json {name}\0{file_sha256(p) if p.is_file() else 'missing'}\0".encode())
    rates = sorted(p.name for p in task_dir.iterdir() if p.is_dir() and p.name.isdigit())
    for rate in rates:
        folder = task_dir / rate
        if files is None:
            paths = sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())
        else:
            base = child(folder, split, "split name")
            paths = [child(base, f, "file name") for f in files]
        for p in paths:
            rel = p.relative_to(task_dir).as_posix()
            if p.is_symlink():
                h.update(f"link {rel} {os.readlink(p)}\0".encode())
            elif p.is_file():
                h.update(f"file {rel} {file_sha256(p)}\0".encode())
            else:
                h.update(f"missing {rel}\0".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """Everything an embedding depends on (module docstring). `extra`: what else the caller's
    embeddings depend on (a split's file list, a frame rate, a feature kind)."""

    module: str
    weights_sha256: str | None
    options: Mapping[str, Any] = field(hash=False)
    task: str  # task_digest(...)
    extra: Any = field(default=None, hash=False)
    code: str = ""  # code_fingerprint(module); filled in when empty

    def __post_init__(self) -> None:
        if not self.code:
            object.__setattr__(self, "code", code_fingerprint(self.module))

    @classmethod
    def for_task(cls, module: str, weights: str | os.PathLike | None, options: Mapping[str, Any],
                 task_dir: Path, split: str | None = None, files: Sequence[str] | None = None,
                 extra: Any = None) -> CacheKey:  # fmt: skip
        """The key of `module` with `weights` and `options` on (a split of) a task folder."""
        return cls(module, weights_sha256(weights), dict(options),
                   task_digest(task_dir, split, files), extra)  # fmt: skip

    def parts(self) -> list[Any]:
        return [CACHE_VERSION, self.module, self.code, self.weights_sha256,
                dict(self.options), self.task, self.extra]  # fmt: skip

    def digest(self) -> str:
        return hashlib.sha256(
            json.dumps(self.parts(), sort_keys=True, default=str).encode()
        ).hexdigest()


def load(path: Path, key: CacheKey | str, names: Iterable[str] | None = None) -> dict[str, np.ndarray] | None:  # fmt: skip
    """The arrays stored at `path` for `key`, or None when there is no such entry: missing, a
    link, another key, unreadable or truncated, lacking one of `names`, or holding a NaN or an
    infinity in a float array. Never unpickles."""
    digest = key.digest() if isinstance(key, CacheKey) else key
    if path.is_symlink() or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if _KEY_ARRAY not in f.files or str(f[_KEY_ARRAY]) != digest:
                return None
            arrays = {k: np.asarray(f[k]) for k in f.files if k != _KEY_ARRAY}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("cache entry %s is unreadable (%s): recomputing", path, e)
        return None
    if names is not None and not set(names) <= set(arrays):
        log.warning("cache entry %s lacks %s: recomputing", path, sorted(set(names) - set(arrays)))
        return None
    for name, a in arrays.items():
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            log.warning("cache entry %s holds non-finite %s: recomputing", path, name)
            return None
    return arrays


def store(path: Path, key: CacheKey | str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` and `key` to `path` atomically (never through a planted link). Refuses
    (ValueError) a float array with a NaN or an infinity: a cache never keeps what `load` would
    refuse, and the caller learns of it when it is made."""
    digest = key.digest() if isinstance(key, CacheKey) else key
    for name, a in arrays.items():
        if name == _KEY_ARRAY:
            raise ValueError(f"{_KEY_ARRAY} is the cache's own entry name")
        a = np.asarray(a)
        if a.dtype == object:
            raise ValueError(f"cache array {name} is of object dtype (would need pickling)")
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise ValueError(f"cache array {name} holds NaN or infinite values")
    buffer = io.BytesIO()
    np.savez(buffer, **{_KEY_ARRAY: np.array(digest)}, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
