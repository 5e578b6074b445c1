"""Random access to audio clips stored in WebDataset tar shards.

Layout (that of the AudioSet shards GRAM pretrained on, arXiv 2506.00934): uncompressed `.tar` files
whose members are grouped by key, e.g. `abc123.flac`, `abc123.json`, `abc123.cls`. The audio
member of a key is the one whose extension soundfile can read (`soundfile.available_formats()`,
lower-cased); other members (labels, metadata) are ignored here. A key with several audio members
gives one clip per member.

Why an index instead of WebDataset's streaming reader: `TarShards` scans the tar headers once and
keeps, for every audio member, (shard, data offset, size, name), in shard order then member order.
Clip i is then a pure function of the shard list, so a sampler can shuffle with an explicit seed
and a resumed run sees the same clips in the same order as an uninterrupted one (STYLE 7). Reading
a clip is a `pread` of `size` bytes at the member's data offset, which is why shards must be stored
uncompressed (WebDataset shards normally are).

The index lives in numpy arrays rather than Python lists: DataLoader workers forked from the main
process then share it without copy-on-write growth from reference counts.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(f.lower() for f in sf.available_formats())
COMPRESSED_SUFFIXES = (
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz",
    ".tbz2",
    ".tar.xz",
    ".txz",
    ".tar.zst",
)
# Leading bytes of gzip, bzip2, xz and zstd streams: a compressed shard renamed to `.tar`.
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")


# --- shard lists -------------------------------------------------------------------------------
def expand_braces(pattern: str) -> list[str]:
    """Expand `{a,b}` lists and `{000..099}` integer ranges like bash and WebDataset do.

    A range keeps zero padding: when either end has a leading zero, every number is padded to the
    wider end's width ("shard-{08..10}.tar" -> shard-08, shard-09, shard-10).
    """
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [
        out for alt in _alternatives(match.group(1)) for out in expand_braces(head + alt + tail)
    ]


def _alternatives(body: str) -> list[str]:
    """The words one brace group `{body}` stands for."""
    if rng := _RANGE.fullmatch(body):
        lo, hi = rng.groups()
        padded = any(s.lstrip("-").startswith("0") and len(s.lstrip("-")) > 1 for s in (lo, hi))
        width = max(len(lo), len(hi)) if padded else 0
        step = 1 if int(hi) >= int(lo) else -1
        return [f"{n:0{width}d}" for n in range(int(lo), int(hi) + step, step)]
    if "," in body:
        return body.split(",")
    raise ValueError(f"unsupported brace expression {{{body}}}: use {{a,b}} or {{000..099}}")


def _is_shard_name(path: Path) -> bool:
    return path.name.endswith(".tar") or path.name.endswith(COMPRESSED_SUFFIXES)


def _expand(entry: str | Path) -> list[Path]:
    """One user entry (file, directory or brace pattern) -> shard files, checked to exist."""
    path = Path(entry)
    if path.is_dir():
        # Compressed shards are listed too, so that they fail loudly instead of being skipped.
        files = sorted(p for p in path.iterdir() if p.is_file() and _is_shard_name(p))
        if not files:
            raise FileNotFoundError(f"no .tar shards in directory {path}")
        return files
    files = [Path(p) for p in expand_braces(str(entry))]
    missing = [p for p in files if not p.is_file()]
    if len(missing) == len(files):
        raise FileNotFoundError(f"no shards found for {entry}")
    if missing:
        # A silently shorter shard list would renumber every later clip.
        raise FileNotFoundError(
            f"{len(missing)} of {len(files)} shards of {entry} missing, e.g. {missing[0]}"
        )
    return files


def shard_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Shard files, in order, from files, directories (sorted) and brace patterns."""
    entries = [paths] if isinstance(paths, str | Path) else list(paths)
    if not entries:
        raise FileNotFoundError("no shards found: empty shard list")
    return [p for entry in entries for p in _expand(entry)]


# --- index ------------------------------------------------------------------------------------
def _check_uncompressed(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(6)
    if path.name.endswith(COMPRESSED_SUFFIXES) or head.startswith(COMPRESSED_MAGIC):
        raise ValueError(
            f"{path} is a compressed tar: store shards uncompressed (.tar), random access to "
            "members needs it (WebDataset shards normally are)"
        )


def _is_audio(member: tarfile.TarInfo) -> bool:
    return member.isreg() and Path(member.name).suffix[1:].lower() in AUDIO_EXTENSIONS


def scan_shard(path: Path) -> list[tuple[int, int, str]]:
    """(data offset, size, member name) of every audio member of one shard, in member order."""
    _check_uncompressed(path)
    try:
        with tarfile.open(path, "r:") as tar:
            return [(m.offset_data, m.size, m.name) for m in tar if _is_audio(m)]
    except tarfile.ReadError as err:
        raise ValueError(f"{path} is not a readable uncompressed tar: {err}") from err


class TarShards:
    """Audio members of WebDataset tar shards, by index.

    `paths`: shard files, directories (their sorted `*.tar`) or brace patterns such as
    "dir/shard-{000000..000099}.tar"; a single one or a sequence. Clip i is in shard order, then in
    member order within the shard.
    """

    max_open = 64  # open shard files kept per process (least recently used closed first)

    def __init__(self, paths: str | Path | Sequence[str | Path]) -> None:
        self.paths = shard_paths(paths)
        rows = [(s, *row) for s, path in enumerate(self.paths) for row in scan_shard(path)]
        if not rows:
            exts = ", ".join(sorted(AUDIO_EXTENSIONS))
            raise FileNotFoundError(
                f"no audio members ({exts}) in {len(self.paths)} shards: {self.paths[0]}, ..."
            )
        shard, offset, size, name = zip(*rows, strict=True)
        self._shard = np.asarray(shard, dtype=np.int32)
        self._offset = np.asarray(offset, dtype=np.int64)
        self._size = np.asarray(size, dtype=np.int64)
        self._name = np.asarray([n.encode() for n in name], dtype=np.bytes_)
        self._files: OrderedDict[int, io.FileIO] = OrderedDict()
        self._pid = os.getpid()
        log.info("indexed %d audio clips in %d shards", len(self), len(self.paths))

    def __len__(self) -> int:
        return len(self._shard)

    def key(self, i: int) -> str:
        """Shard file name and member name of clip i, e.g. "shard-000000.tar/abc123.flac"."""
        return f"{self.paths[self._shard[i]].name}/{self._name[i].decode()}"

    def read(self, i: int) -> tuple[np.ndarray, int]:
        """Clip i as (N, C) float32 and its sample rate in Hz, like `sf.read(always_2d=True)`."""
        data = self._read_bytes(i)
        try:
            audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as err:
            raise RuntimeError(f"cannot decode audio member {self.key(i)}: {err}") from err
        return audio, sr

    def _read_bytes(self, i: int) -> bytes:
        # pread leaves the shared file offset alone, so threads never race on a seek.
        size = int(self._size[i])
        data = os.pread(self._file(int(self._shard[i])).fileno(), size, int(self._offset[i]))
        if len(data) != size:
            raise RuntimeError(f"shard truncated: {self.key(i)} has {len(data)} of {size} bytes")
        return data

    def _file(self, s: int) -> io.FileIO:
        """The open file of shard s in this process."""
        if os.getpid() != self._pid:  # forked (DataLoader worker): the handles are the parent's
            self.close()
            self._pid = os.getpid()
        if s in self._files:
            self._files.move_to_end(s)
            return self._files[s]
        if len(self._files) >= self.max_open:
            self._files.popitem(last=False)[1].close()
        self._files[s] = open(self.paths[s], "rb", buffering=0)  # cached; closed by close()
        return self._files[s]

    def close(self) -> None:
        """Close this process's open shard files (reading reopens them)."""
        while self._files:
            self._files.popitem()[1].close()

    def __getstate__(self) -> dict:
        # Open files do not pickle (spawned DataLoader workers); the copy reopens on demand.
        return {**self.__dict__, "_files": OrderedDict()}
