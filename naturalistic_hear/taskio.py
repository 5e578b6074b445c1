"""HEAR task directories in and out: the file protocol shared by the scene generators.

Both generators (`naturalistic_hear.generate`, `localization_tasks.generate`) read a HEAR 2021
task folder and write task folders of the same layout, resumably. This module is that protocol,
once:

- Reading: `read_task` checks a task folder (task_metadata.json with its `splits`,
  labelvocabulary.csv, `{split}.json`, `{rate}/{split}/{file}` audio; the layout
  hearbenchmark/hear-preprocess writes) and lists its clips (`Clip`, `TaskLayout`). Names read
  from the JSON become paths only through `hear_gram.safeio.child`.
- Writing: every file goes through `hear_gram.safeio.write_bytes_atomic` (a hidden
  temporary name ending in `TMP_SUFFIX`, renamed into place; never through a planted link).
  Audio is encoded in memory (`encode_audio`, libsndfile's PEAK timestamp zeroed) so that equal
  audio gives equal bytes. `write_static` writes a file a resumed run must find unchanged and
  refuses one with other content (another seed, bank or input).
- Resuming: one JSON row per finished clip is appended to a rows log (`open_rows`, `read_rows`).
  An interrupted write can leave a torn last line; `open_rows` ends it before appending, so the
  half row is skipped when read instead of swallowing the next row. A file listed as done is
  trusted only when `output_complete` finds it whole (header readable; frames, channels, rate
  and subtype as its input implies; size at least what the header promises; last frame
  readable): a truncated or swapped file is rendered again.
- Manifests: `cell` turns a value into a CSV cell (strings as they are, the rest as JSON; NaN, an
  unknown field of an external bank, is written `null`: NaN is not JSON).
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from hear_gram.dsp import NonFiniteError
from hear_gram.heareval_compat import TaskFormatError, check_metadata, check_split, read_task_json
from hear_gram.safeio import (
    UnsafePathError,
    check_name,
    child,
    open_append,
    write_bytes_atomic,
)

# Sample subtypes an output file keeps from its input; any other (PCM_U8, lossy) becomes FLOAT.
KEEP_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")

RowKey = tuple[int, str, str]  # (sample rate, split, file name)


class TaskError(ValueError):
    """A HEAR task directory that cannot be processed; the message names the problem."""


# --------------------------------------------------------------------------------------------
# Reading task directories
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Clip:
    sample_rate: int
    split: str
    filename: str

    @property
    def key(self) -> RowKey:
        return self.sample_rate, self.split, self.filename

    def path(self, task_dir: Path) -> Path:
        """task_dir/<rate>/<split>/<file name>. The split and file names come from the task's
        JSON: UnsafePathError unless each is a plain name and the result, links resolved, lies
        inside `task_dir` (so neither a read nor a write can leave the task)."""
        check_name(self.split, "split name")
        check_name(self.filename, f"file name in {self.split}.json")
        rel = f"{self.sample_rate}/{self.split}/{self.filename}"
        return child(task_dir, rel, "audio file", subdirs=True)


@dataclass(frozen=True)
class TaskLayout:
    """A validated HEAR task directory."""

    path: Path
    metadata: dict
    splits: tuple[str, ...]
    sample_rates: tuple[int, ...]
    clips: tuple[Clip, ...]  # sorted
    copied_files: tuple[str, ...]  # top-level files copied byte for byte

    @property
    def name(self) -> str:
        return self.path.name


def read_json(path: Path, what: str) -> Any:
    """JSON file `path`; TaskError naming `what` when it is missing, a folder, not JSON, nested
    too deep or holding NaN (`hear_gram.heareval_compat.read_task_json`)."""
    try:
        return read_task_json(path, what)
    except TaskFormatError as e:
        raise TaskError(str(e)) from None


def read_task(task_dir: str | Path, sample_rates: Sequence[int] | None = None) -> TaskLayout:
    """Check a HEAR 2021 task directory and list its clips (those named in the split JSONs, at
    every sample-rate folder, or at `sample_rates` only). Raises `TaskError` naming the problem."""
    root = Path(task_dir)
    if not root.is_dir():
        state = "is not a directory" if root.exists() else "does not exist"
        raise TaskError(f"task directory {root} {state}")
    metadata = read_json(child(root, "task_metadata.json", "task file"), "task metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("splits"), list):
        raise TaskError(f"{root}/task_metadata.json: no 'splits' list")
    if not child(root, "labelvocabulary.csv", "task file").is_file():
        raise TaskError(f"{root}: missing labelvocabulary.csv")
    splits = tuple(metadata["splits"])
    for split in splits:  # split names become folder and file names: plain names only
        try:
            check_name(split, "split name")
        except UnsafePathError as e:
            raise UnsafePathError(f"{root}/task_metadata.json: {e}") from None
    if len(set(splits)) != len(splits):
        raise TaskError(f"{root}/task_metadata.json: repeated split names in {list(splits)}")
    labels = {
        s: read_json(child(root, f"{s}.json", "split file"), f"split file of split {s!r}")
        for s in splits
    }
    try:  # the fields and labels heareval reads, type-checked before anything is rendered
        check_metadata(metadata, f"{root}/task_metadata.json")
        for split, data in labels.items():
            check_split(data, metadata.get("embedding_type"), f"{root}/{split}.json")
    except TaskFormatError as e:
        raise TaskError(str(e)) from None

    found = sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not found:
        raise TaskError(f"{root}: no audio folders (sample-rate directories such as 16000/)")
    rates = tuple(sample_rates) if sample_rates else tuple(found)
    missing_rates = [sr for sr in rates if sr not in found]
    if missing_rates:
        raise TaskError(f"{root}: no audio folder for {missing_rates} Hz (found {found})")

    clips = []
    for sr in rates:
        for split in splits:
            folder = root / str(sr) / split
            if not folder.is_dir():
                raise TaskError(f"{root}: missing audio folder {sr}/{split}/")
            for filename in labels[split]:
                clips.append(Clip(sr, split, filename))
                _check_audio(clips[-1].path(root), sr)
    # Top-level files are copied byte for byte: a link leading outside the task would copy a
    # file of the user's into the output, so `child` refuses it (links inside are followed).
    copied = []
    for p in sorted(root.iterdir()):
        if p.name != "task_metadata.json" and p.is_file():
            copied.append(child(root, p.name, "top-level file of the task").name)
    return TaskLayout(root, metadata, splits, rates, tuple(sorted(clips)), tuple(copied))


def _check_audio(path: Path, sample_rate: int) -> None:
    if path.is_dir():
        raise TaskError(f"audio file {path} is a directory")
    if not path.is_file():
        raise TaskError(f"missing audio file {path} (listed in {path.parent.name}.json)")
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise TaskError(f"unreadable audio file {path}: {e}") from e
    if info.samplerate != sample_rate:
        raise TaskError(f"{path} is at {info.samplerate} Hz, but lies in the {sample_rate} folder")


def read_audio(path: Path) -> tuple[np.ndarray, Any]:
    """(N, C) float64 samples and `soundfile.info` of a task's audio file; TaskError when it
    cannot be read, `hear_gram.dsp.NonFiniteError` when it holds NaN or infinite samples."""
    try:
        info = sf.info(path)
        audio, _ = sf.read(path, dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise TaskError(f"unreadable audio file {path}: {e}") from e
    bad = int(audio.size - np.count_nonzero(np.isfinite(audio)))
    if bad:  # a NaN sample would spread through the convolution into every output sample
        raise NonFiniteError(f"audio file {path} holds {bad} NaN or infinite samples")
    return audio, info


# --------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------


def output_subtype(info: Any) -> tuple[str, str]:
    """(container, subtype) of an output file given the input's `soundfile.info`."""
    if info.subtype in KEEP_SUBTYPES and sf.check_format(info.format, info.subtype):
        return info.format, info.subtype
    return "WAV", "FLOAT"


def zero_peak_timestamp(path: Path) -> None:
    """Zero the timestamp libsndfile writes into the PEAK chunk of float WAV files (the time of
    writing, in s), the one thing that would make equal audio differ byte for byte."""
    with open(path, "r+b") as f:
        _zero_peak(f)


def _zero_peak(f: Any) -> None:
    f.seek(0)
    head = f.read(4096)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if chunk == b"data":
            return
        if chunk == b"PEAK":  # version (uint32), timestamp (uint32), peaks
            f.seek(pos + 12)
            f.write(b"\0\0\0\0")
            return
        pos += 8 + size + (size & 1)


SAMPLE_BYTES = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}
WAV_HEADER_BYTES = 44  # RIFF, fmt and data chunk headers: the least a WAV holds besides samples


def output_complete(out_path: Path, in_path: Path, channels: int) -> bool:
    """Whether `out_path` looks like the finished render of `in_path` with `channels` channels,
    checked cheaply (headers and the last frame, not the samples): a regular file (not a link)
    whose header libsndfile reads, with the input's frame count and sample rate, `channels`
    channels and the container and subtype `output_subtype` gives, at least as long as its
    samples need (WAV), and whose last frame can be read."""
    if out_path.is_symlink() or not out_path.is_file():
        return False
    try:
        want, got = sf.info(in_path), sf.info(out_path)
        container, subtype = output_subtype(want)
        expected = (want.frames, want.samplerate, channels, container, subtype)
        if (got.frames, got.samplerate, got.channels, got.format, got.subtype) != expected:
            return False
        width = SAMPLE_BYTES.get(got.subtype)
        if got.format == "WAV" and width is not None:
            if out_path.stat().st_size < WAV_HEADER_BYTES + got.frames * channels * width:
                return False
        if got.frames > 0:
            last, _ = sf.read(out_path, start=got.frames - 1, frames=1, always_2d=True)
            return last.shape == (1, channels)
        return True
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError):
        return False


def encode_audio(mix: np.ndarray, sample_rate: int, container: str, subtype: str) -> bytes:
    """The bytes of an audio file holding `mix` (C, N) (PEAK timestamp zeroed): encoded in
    memory, so that the file is then written once, atomically, never through a planted link."""
    buffer = io.BytesIO()
    sf.write(buffer, mix.T, sample_rate, subtype=subtype, format=container)
    _zero_peak(buffer)
    return buffer.getvalue()


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=4, allow_nan=False) + "\n").encode()


def write_static(
    path: Path, data: bytes, explain: Callable[[bytes, bytes], str] | None = None
) -> None:
    """Write a file a resumed run (or every shard) must find unchanged; TaskError when it
    exists with other content: its clips would mix two settings. `explain(old, new)` names the
    difference in the message."""
    if path.is_file() and not path.is_symlink():
        old = path.read_bytes()
        if old != data:
            what = f"settings ({explain(old, data)})" if explain else "content"
            raise TaskError(
                f"{path} exists with different {what}: it was generated from another input or "
                "with other settings (e.g. --seed); use a new --out or delete the folder"
            )
        return
    write_bytes_atomic(path, data)


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value


def cell(value: Any) -> str:
    """Manifest cell: strings as they are, everything else as JSON (lists, floats in full). A
    scene field an external bank does not know (NaN in its `Scene`) is written `null`: NaN is
    not JSON, and a manifest never holds it. +-inf (the SNR of a noise-free clip) stays
    `Infinity`, which Python's and pandas' readers take back."""
    return value if isinstance(value, str) else json.dumps(_no_nan(value))


# --------------------------------------------------------------------------------------------
# The resume log: one JSON row per finished clip
# --------------------------------------------------------------------------------------------


def row_key(row: dict[str, Any]) -> RowKey:
    return int(row["sample_rate"]), row["split"], row["filename"]


def open_rows(path: Path) -> io.TextIOWrapper:
    """Open a rows log for appending, first ending a line torn by an interrupted write (its
    half row is then skipped when read, instead of swallowing the next one). A link planted at
    `path` is refused (`open_append`), never appended through."""
    rows_file = open_append(path)
    size = os.fstat(rows_file.fileno()).st_size
    if size > 0:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            if os.pread(fd, 1, size - 1) != b"\n":
                rows_file.write("\n")
        finally:
            os.close(fd)
    return rows_file


def append_row(rows_file: io.TextIOWrapper, row: dict[str, Any]) -> None:
    """Append one row and flush it: once this returns, the clip counts as done."""
    rows_file.write(json.dumps(row) + "\n")
    rows_file.flush()


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a rows log that parse as JSON objects with a key (`row_key`); a torn line
    (an interrupted write) or a file that vanished (removed by a run that just finished the
    task) is skipped. A link at `path` is not ours (logs are only created by `open_rows`)."""
    if path.is_symlink() or not path.is_file():
        return
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            row = json.loads(line)
            row_key(row)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if isinstance(row, dict):
            yield row
