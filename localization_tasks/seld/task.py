"""HEAR-style SELD task directories.

Layout (the HEAR 2021 event-task layout plus a direction per event, as labhamlet/AudioSphere
`RealSELD-eval` reads it: events `{label, start, end, direction: [azimuth, elevation]}` in ms and
degrees):

    {task}/task_metadata.json    HEAR keys (task_name, version, embedding_type "event",
                                 prediction_type "multilabel", splits, sample_duration null,
                                 sample_rates) plus a "seld" block: label hop (ms), direction
                                 convention, audio format, official folds, source dataset
    {task}/labelvocabulary.csv   idx,label (HEAR)
    {task}/{split}.json          {"clip.wav": [event, ...]}; one event per 100 ms label frame and
                                 active track: {"label", "start", "end" (ms), "direction"
                                 [az, el] (deg), "track" (int), "distance" (m, when known),
                                 "onscreen" (0/1, when known: DCASE 2025 stereo labels)}
    {task}/{sr}/{split}/clip.wav audio per sample rate
    {task}/seld_clips.csv        split,file,duration_s,n_frames (n_frames = clip length / 100 ms)

One event per label frame keeps moving sources exact and makes the DCASE CSV of a clip recoverable
row for row: `task_rows` gives the rows back in the order they were written, the on-screen flag
included (`Row.onscreen`), so a converted DCASE 2025 task is scored with its own flags.

Writing: every folder below the output folder (task, sample rate, split) is made by `output_folder`,
which refuses a symbolic link at any level, and every file is replaced atomically
(`hear_gram.safeio.write_bytes_atomic`), so nothing is ever written through a planted link.
Reading: the task's files are data from elsewhere; a malformed one (not UTF-8, not CSV or JSON,
nested too deep, wrong types, duplicate entries) raises TaskFormatError naming the file (and the
line of a CSV). A UTF-8 byte-order mark is skipped in every file, as `json.loads` skips one in
bytes, rather than being glued to the first column's name.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from hear_gram.cli import MAX_DEPTH, CLIError, check_depth, read_json
from hear_gram.resample import resample
from hear_gram.safeio import child, refuse_symlink, write_bytes_atomic
from localization_tasks.seld.labels import FRAME_S, Row, format_rows, polar_to_unit

HOP_MS = int(round(FRAME_S * 1000))
MAX_EVENTS = 5_000_000
MAX_LABEL_BYTES = 512 * 1024 * 1024  # a split's labels: one event per 100 ms frame and track
MAX_TABLE_BYTES = 64 * 1024 * 1024  # labelvocabulary.csv, seld_clips.csv: ~1M clips
MAX_N_FRAMES = 10_000_000
BLOCK_FRAMES = 1 << 16  # samples per channel read at once (~2.7 s at 24 kHz)


class TaskFormatError(ValueError):
    """A SELD task directory whose files do not follow the layout."""


def rows_to_events(rows: Iterable[Row], vocabulary: Sequence[str]) -> list[dict]:
    """DCASE rows -> HEAR events (one per row, same order)."""
    events = []
    for r in rows:
        if not 0 <= r.cls < len(vocabulary):
            raise TaskFormatError(f"class {r.cls} not in the {len(vocabulary)}-label vocabulary")
        az, el = r.azimuth_elevation
        ev = {
            "label": vocabulary[r.cls],
            "start": r.frame * HOP_MS,
            "end": (r.frame + 1) * HOP_MS,
            "direction": [az, el],
            "track": r.track,
        }
        if r.distance is not None:
            ev["distance"] = r.distance
        if r.onscreen is not None:
            ev["onscreen"] = r.onscreen
        events.append(ev)
    return events


def _finite(x: object, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise TaskFormatError(f"{what} must be a finite number, got {x!r}")
    return float(x)


def events_to_rows(events: list, label_to_idx: dict[str, int], where: str) -> list[Row]:
    """HEAR events -> DCASE rows; each event must span whole 100 ms label frames (an event
    longer than one frame, as written by other tools, becomes one row per frame)."""
    if not isinstance(events, list):
        raise TaskFormatError(f"{where}: events must be a list")
    rows = []
    for i, ev in enumerate(events):
        w = f"{where} event {i}"
        label = ev.get("label") if isinstance(ev, dict) else None
        if not isinstance(label, str) or label not in label_to_idx:
            raise TaskFormatError(f"{w}: not an event with a label from labelvocabulary.csv")
        start, end = _finite(ev.get("start"), f"{w} start"), _finite(ev.get("end"), f"{w} end")
        direction = ev.get("direction")
        if not isinstance(direction, list) or len(direction) != 2:
            raise TaskFormatError(f"{w}: direction must be [azimuth, elevation] in degrees")
        az, el = (_finite(d, f"{w} direction") for d in direction)
        track = ev.get("track", 0)
        if isinstance(track, bool) or not isinstance(track, int) or not 0 <= track <= 10_000:
            raise TaskFormatError(f"{w}: track must be an integer 0..10000")
        dist = ev.get("distance")
        dist = None if dist is None else _finite(dist, f"{w} distance")
        onscreen = ev.get("onscreen")
        if onscreen is not None and (type(onscreen) is not int or onscreen not in (0, 1)):
            # the flag as the 2025 metadata writes it: true, 1.0 or 0.5 would compare (un)equal
            # to a 0/1 flag in the scorer without being one
            raise TaskFormatError(f"{w}: onscreen must be 0 or 1, got {onscreen!r}")
        first, last = round(start / HOP_MS), round(end / HOP_MS)
        if not 0 <= first < last or last - first > 100_000 or len(rows) > MAX_EVENTS:
            raise TaskFormatError(f"{w}: start {start} / end {end} ms is not a valid span")
        for frame in range(first, last):
            cls = label_to_idx[ev["label"]]
            rows.append(Row(frame, cls, track, polar_to_unit(az, el), dist, (az, el), onscreen))
    return rows


def _write_json(path: Path, obj: object) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def output_folder(root: Path, *names: str) -> Path:
    """`root/names...`, created: each name a plain one (`hear_gram.safeio.child`) and each level
    a real folder, never a symbolic link (even one that points inside the task: audio of one
    rate must not land in another's folder). `root`, the user's output folder, is theirs to
    choose and may be a link."""
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = child(path, name, "output folder")
        refuse_symlink(path)
        path.mkdir(exist_ok=True)
    return path


def read_audio(path: Path, frames: int) -> np.ndarray:
    """(frames, C) float32 samples of the audio file `path`, whose header declared `frames` per
    channel (the caller checks that against its limits first), read BLOCK_FRAMES at a time.
    ValueError naming the file when it holds more or fewer samples than declared (a corrupt or
    forged header: a FLAC STREAMINFO can claim any length) or a NaN or infinite sample."""
    with sf.SoundFile(path) as f:
        out = np.empty((frames, f.channels), dtype=np.float32)
        n = 0
        while n <= frames:
            try:
                block = f.read(min(BLOCK_FRAMES, frames + 1 - n), dtype="float32", always_2d=True)
            except sf.LibsndfileError as e:  # libsndfile seeks past the real end of a short file
                raise ValueError(
                    f"{path}: unreadable after {n} of the {frames} samples its header declares "
                    f"({e})"
                ) from None
            if not len(block):
                break
            if n + len(block) > frames:
                raise ValueError(
                    f"{path}: holds more samples than the {frames} its header declares"
                )
            if not np.all(np.isfinite(block)):
                raise ValueError(f"{path}: NaN or infinite samples after {n / f.samplerate:.2f} s")
            out[n : n + len(block)] = block
            n += len(block)
    if n != frames:
        raise ValueError(f"{path}: its header declares {frames} samples, it holds {n}")
    return out


def write_labels(
    task_dir: Path,
    metadata: dict,
    vocabulary: Sequence[str],
    labels: dict[str, dict[str, list[Row]]],
    durations: dict[str, dict[str, float]],
) -> None:
    """Write metadata, vocabulary, split JSONs and seld_clips.csv ({split: {file: rows}},
    {split: {file: seconds}}). Audio is written separately (`write_audio`)."""
    task_dir.mkdir(parents=True, exist_ok=True)
    refuse_symlink(task_dir)
    meta = dict(metadata)
    meta["splits"] = sorted(labels)
    _write_json(task_dir / "task_metadata.json", meta)
    vocab = io.StringIO()
    w = csv.writer(vocab, lineterminator="\n")
    w.writerow(["idx", "label"])
    w.writerows(enumerate(vocabulary))
    write_bytes_atomic(task_dir / "labelvocabulary.csv", vocab.getvalue().encode())
    clips = io.StringIO()
    cw = csv.writer(clips, lineterminator="\n")
    cw.writerow(["split", "file", "duration_s", "n_frames"])
    for split, files in sorted(labels.items()):
        child(task_dir, f"{split}.json", "split name")
        events = {name: rows_to_events(rows, vocabulary) for name, rows in sorted(files.items())}
        _write_json(task_dir / f"{split}.json", events)
        for name in sorted(files):
            d = durations[split][name]
            cw.writerow([split, name, repr(float(d)), math.ceil(round(d / FRAME_S, 6))])
    write_bytes_atomic(task_dir / "seld_clips.csv", clips.getvalue().encode())


def write_audio(
    task_dir: Path, split: str, name: str, audio: np.ndarray, sr: int, rates: Sequence[int]
) -> None:
    """Audio (N, C) at `sr` Hz into {rate}/{split}/{name} for every rate in `rates` (resampled
    with hear_gram.resample), as float32 WAV so that nothing is lost to quantisation. Each folder
    is made by `output_folder` (no link at any level) and each file replaced atomically."""
    x = torch.from_numpy(np.ascontiguousarray(audio.T, dtype=np.float32))  # (C, N)
    for rate in rates:
        folder = output_folder(task_dir, str(int(rate)), split)
        y = resample(x, sr, int(rate)).numpy().T
        buf = io.BytesIO()
        sf.write(buf, y, int(rate), format="WAV", subtype="FLOAT")
        write_bytes_atomic(child(folder, name, "clip name"), buf.getvalue())


def read_table(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: field}) of each row of a CSV table whose header names at least
    `columns`; blank lines skipped. TaskFormatError naming the file (and line) when it is
    missing, over MAX_TABLE_BYTES, not UTF-8, holds NUL bytes, is not CSV (an unclosed quote, a
    field past the csv module's limit), has no such header, or a row of another length."""
    if not path.is_file():
        raise TaskFormatError(f"{path}: no such file")
    if path.stat().st_size > MAX_TABLE_BYTES:
        raise TaskFormatError(f"{path}: over {MAX_TABLE_BYTES >> 20} MB; refusing")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TaskFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if "\0" in text:
        raise TaskFormatError(f"{path}: holds NUL bytes; not a CSV table")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        lines = [(reader.line_num, fields) for fields in reader]
    except csv.Error as e:
        raise TaskFormatError(f"{path}:{reader.line_num}: not CSV ({e})") from None
    header = [h.strip() for h in lines[0][1]] if lines else []
    missing = [c for c in columns if c not in header]
    if missing or len(set(header)) != len(header):
        raise TaskFormatError(
            f"{path}:1: header {','.join(header)[:120]!r} must name each of "
            f"{','.join(columns)} once"
        )
    rows = []
    for line, fields in lines[1:]:
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise TaskFormatError(
                f"{path}:{line}: {len(fields)} fields, the header has {len(header)}"
            )
        rows.append((line, dict(zip(header, (f.strip() for f in fields), strict=True))))
    return rows


def _count(text: str, what: str, where: str, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise TaskFormatError(f"{where}: {what} {text[:40]!r} is not an integer") from None
    if not 0 <= value <= hi:
        raise TaskFormatError(f"{where}: {what} {value} outside 0..{hi}")
    return value


def read_vocabulary(task_dir: Path) -> list[str]:
    """The labels of labelvocabulary.csv (`idx,label`, HEAR) in idx order: idx 0..N-1 each once,
    labels non-empty and unique (a repeated label would merge two classes)."""
    path = task_dir / "labelvocabulary.csv"
    rows = read_table(path, ("idx", "label"))
    by_idx: dict[int, str] = {}
    seen: dict[str, int] = {}
    for line, r in rows:
        where = f"{path}:{line}"
        i = _count(r["idx"], "idx", where, len(rows) - 1)
        label = r["label"]
        if not label:
            raise TaskFormatError(f"{where}: idx {i} has an empty label")
        if i in by_idx or label in seen:
            raise TaskFormatError(
                f"{where}: idx {i} or label {label[:60]!r} repeats an earlier line"
            )
        by_idx[i], seen[label] = label, line
    if not by_idx:
        raise TaskFormatError(f"{path}: no labels")
    return [by_idx[i] for i in range(len(by_idx))]


def read_metadata(task_dir: Path) -> dict:
    """task_metadata.json of a SELD task, checked: a list of split names and, when present,
    a list of positive integer sample rates and a `seld` object."""
    path = task_dir / "task_metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; not a SELD task directory")
    try:
        meta = read_json(path)
    except CLIError as e:
        raise TaskFormatError(str(e)) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("splits"), list):
        raise TaskFormatError(f"{path}: no list of splits")
    if not all(isinstance(s, str) for s in meta["splits"]):
        raise TaskFormatError(f"{path}: splits must be split names (strings)")
    rates = meta.get("sample_rates", [])
    if not isinstance(rates, list) or not all(
        isinstance(r, int) and not isinstance(r, bool) and 0 < r <= 10_000_000 for r in rates
    ):
        raise TaskFormatError(f"{path}: sample_rates must be a list of positive integers (Hz)")
    if not isinstance(meta.get("seld", {}), dict):
        raise TaskFormatError(f"{path}: seld must be an object")
    return meta


def sample_rates(task_dir: Path) -> list[int]:
    """The task's sample rates (Hz), as task_metadata.json lists them; at least one."""
    rates = read_metadata(task_dir).get("sample_rates", [])
    if not rates:
        raise TaskFormatError(f"{task_dir}/task_metadata.json: no sample_rates")
    return rates


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def read_labels_json(path: Path) -> object:
    """A split's label JSON (up to MAX_LABEL_BYTES: larger than `hear_gram.cli.read_json`
    takes), refused as TaskFormatError when not JSON, holding NaN, or nested too deep."""
    if path.stat().st_size > MAX_LABEL_BYTES:
        raise TaskFormatError(f"{path}: over {MAX_LABEL_BYTES >> 20} MB of labels; refusing")
    try:
        data = json.loads(path.read_bytes(), parse_constant=_refuse_constant)
    except RecursionError:
        raise TaskFormatError(f"{path} nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise TaskFormatError(f"{path} is not JSON: {e}") from None
    try:
        return check_depth(data, str(path))
    except CLIError as e:
        raise TaskFormatError(str(e)) from None


def task_rows(task_dir: Path, split: str) -> dict[str, list[Row]]:
    """{file: DCASE rows} of one split."""
    vocab = read_vocabulary(task_dir)
    label_to_idx = {label: i for i, label in enumerate(vocab)}
    path = child(task_dir, f"{split}.json", "split name")
    data = read_labels_json(path)
    if not isinstance(data, dict) or not data:
        raise TaskFormatError(f"{path}: must map file names (at least one) to event lists")
    return {
        child(task_dir, name, "clip name").name: events_to_rows(ev, label_to_idx, f"{path} {name}")
        for name, ev in data.items()
    }


def clip_frames(task_dir: Path) -> dict[tuple[str, str], int]:
    """{(split, file): number of 100 ms label frames} from seld_clips.csv; each clip once."""
    path = task_dir / "seld_clips.csv"
    out: dict[tuple[str, str], int] = {}
    for line, r in read_table(path, ("split", "file", "n_frames")):
        where = f"{path}:{line}"
        n = _count(r["n_frames"], "n_frames", where, MAX_N_FRAMES)
        key = (r["split"], r["file"])
        if n == 0 or key in out:
            what = "has no label frames" if n == 0 else "is listed twice"
            raise TaskFormatError(f"{where}: clip {'/'.join(key)[:120]!r} {what}")
        out[key] = n
    return out


def export_dcase(task_dir: Path, out_dir: Path, fmt: str = "polar") -> list[Path]:
    """Every clip's labels as a DCASE CSV: {out_dir}/{split}/{stem}.csv in `fmt`."""
    written = []
    for split in read_metadata(task_dir)["splits"]:
        folder = output_folder(out_dir, split)
        for name, rows in sorted(task_rows(task_dir, split).items()):
            path = child(folder, Path(name).stem + ".csv", "clip name")
            write_bytes_atomic(path, format_rows(rows, fmt).encode())
            written.append(path)
    return written
