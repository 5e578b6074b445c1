"""Safe file-system I/O for every tool: names from data become paths here, outputs are written here.

HEAR task directories are made by others: a split JSON's file names, a metadata file's split
names and a cache's keys are data, not trusted paths. Every tool that joins such a name to a
folder goes through `child`, and every file a tool writes under its output folder is opened
through `write_bytes_atomic` / `open_append`, which never follow a symbolic link planted at the
destination.

It also holds the advisory locks (`locked`) that keep two runs or shards off one piece of work,
and `write_json`, the atomic JSON writer.

The rules, and why:
- A name is one or more plain path components (`a.wav`, or `sub/a.wav` where `subdirs=True`):
  no absolute path, no drive, no `..`, no `.`, no empty component, no NUL or backslash. HEAR 2021
  task files are flat (hearbenchmark/hear-preprocess writes `<rate>/<split>/<file>`), so
  sub-folders are refused unless the caller allows them.
- The resolved result must stay inside the resolved root: a symbolic link inside the task that
  points outside is an escape too.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: no locks (concurrent runs are then not refused)
    fcntl = None  # type: ignore[assignment]

# Suffix of the hidden temporary files `write_bytes_atomic` renames into place (`.<name>.<pid>.tmp`):
# a run that finds some left by a killed run removes them by this suffix.
TMP_SUFFIX = ".tmp"


class UnsafePathError(ValueError):
    """A name from data that would lead outside its folder (or is not a plain name)."""


class LockBusyError(RuntimeError):
    """`locked(..., wait=False)` found the lock held; `holder` is the pid written in it."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"another run (pid {holder}) holds {path}")
        self.path, self.holder = path, holder


def check_name(name: object, what: str, subdirs: bool = False) -> str:
    """`name` if it is a safe relative name (see the module docstring), else UnsafePathError."""
    if not isinstance(name, str):
        raise UnsafePathError(f"{what} must be a string, got {type(name).__name__}: {name!r}")
    bad = (
        not name
        or "\0" in name
        or "\\" in name
        or name.startswith("/")
        or (len(name) > 1 and name[1] == ":")
    )
    parts = PurePosixPath(name).parts if not bad else ()
    if bad or any(p in ("", ".", "..") for p in name.split("/")):
        raise UnsafePathError(f"{what} {name!r} is not a plain relative name")
    if len(parts) > 1 and not subdirs:
        raise UnsafePathError(f"{what} {name!r} names a sub-folder; HEAR task files are flat")
    if any(len(p.encode()) > 255 for p in parts):
        raise UnsafePathError(f"{what} {name[:60]!r}... has a component over 255 bytes")
    return name


def child(root: str | os.PathLike, name: object, what: str, subdirs: bool = False) -> Path:
    """`root / name`, refusing names that are not plain (`check_name`) and results that resolve
    (through symbolic links) outside `root`. The path need not exist."""
    rel = check_name(name, what, subdirs)
    base = Path(root)
    path = base / rel
    real_root = base.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise UnsafePathError(f"{what} {rel!r} leads outside {base} (to {real})")
    return path


def refuse_symlink(path: Path) -> None:
    """Raise if `path` is a symbolic link: outputs are never written through one."""
    if path.is_symlink():
        raise UnsafePathError(f"{path} is a symbolic link; refusing to write through it")


def write_bytes_atomic(path: Path, data: bytes, tmp_suffix: str = TMP_SUFFIX) -> None:
    """Write `data` to a hidden temporary file next to `path`, then rename it into place.

    The rename replaces a link planted at `path` (it never writes through it), and the
    temporary file is created with O_EXCL | O_NOFOLLOW, so a link planted at the temporary name
    is removed (never followed) before the file is created."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{tmp_suffix}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileExistsError:  # a stale temporary of a killed run, or a planted link: unlinking
        tmp.unlink()  # removes the entry itself, never what a link points to
        fd = os.open(tmp, flags, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_append(path: Path):
    """Open `path` for appending text, refusing to follow a symbolic link planted there."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if path.is_symlink():
            raise UnsafePathError(f"{path} is a symbolic link; refusing to append to it") from e
        raise
    return os.fdopen(fd, "a", encoding="utf-8", newline="")


def write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    """`obj` as JSON (UTF-8, a final newline), written with `write_bytes_atomic`. NaN and
    infinities are refused (ValueError): JSON has no such numbers, and a reader would get a
    plausible-looking file that other JSON parsers reject."""
    text = json.dumps(obj, indent=indent, allow_nan=False)
    write_bytes_atomic(path, (text + "\n").encode())


def subdir(root: str | os.PathLike, *names: str, what: str = "folder") -> Path:
    """`root/names...` created as folders, each a `child` of the one above: a symbolic link
    planted on the way that leads outside `root` is refused (UnsafePathError) before anything
    is written below it. `root` itself is the user's choice and may be a link."""
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = child(path, name, what)
        path.mkdir(exist_ok=True)
    return path


def _lock_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return os.pread(fd, 32, 0).decode().strip() or "?"
    return "?"


@contextlib.contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive flock on `path`: created, never through a link, and removed on release
    so that a finished folder holds no lock files. `wait`: block until free, else LockBusyError
    at once. A run that opened the file just before its holder removed it sees that the path no
    longer names the inode it locked, and tries again (so two runs never both hold it)."""
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            if path.is_symlink():
                raise UnsafePathError(f"{path} is a symbolic link; refusing to use it") from e
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise LockBusyError(path, holder) from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: the next run creates a fresh one
        os.close(fd)


def remove_stale_lock(path: Path) -> None:
    """Remove a lock file no run holds (left by a killed run)."""
    if fcntl is None or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
    except BlockingIOError:
        pass  # a live run: it removes its own
    finally:
        os.close(fd)
