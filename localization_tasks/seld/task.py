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
                                 [az, el] (deg), "track" (int), "distance" (m, when known)}
    {task}/{sr}/{split}/clip.wav audio per sample rate
    {task}/seld_clips.csv        split,file,duration_s,n_frames (n_frames = clip length / 100 ms)

One event per label frame keeps moving sources exact and makes the DCASE CSV of a clip recoverable
row for row: `task_rows` gives the rows back in the order they were written.
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
from hear_gram.safeio import child, write_bytes_atomic
from localization_tasks.seld.labels import FRAME_S, Row, format_rows, polar_to_unit

HOP_MS = int(round(FRAME_S * 1000))
MAX_EVENTS = 5_000_000
MAX_LABEL_BYTES = 512 * 1024 * 1024  # a split's labels: one event per 100 ms frame and track


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
        first, last = round(start / HOP_MS), round(end / HOP_MS)
        if not 0 <= first < last or last - first > 100_000 or len(rows) > MAX_EVENTS:
            raise TaskFormatError(f"{w}: start {start} / end {end} ms is not a valid span")
        for frame in range(first, last):
            cls = label_to_idx[ev["label"]]
            rows.append(Row(frame, cls, track, polar_to_unit(az, el), dist, (az, el)))
    return rows


def _write_json(path: Path, obj: object) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode())


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
    with hear_gram.resample), as float32 WAV so that nothing is lost to quantisation."""
    x = torch.from_numpy(np.ascontiguousarray(audio.T, dtype=np.float32))  # (C, N)
    for rate in rates:
        folder = task_dir / str(int(rate)) / child(task_dir, split, "split name").name
        folder.mkdir(parents=True, exist_ok=True)
        y = resample(x, sr, int(rate)).numpy().T
        buf = io.BytesIO()
        sf.write(buf, y, int(rate), format="WAV", subtype="FLOAT")
        write_bytes_atomic(child(folder, name, "clip name"), buf.getvalue())


def read_vocabulary(task_dir: Path) -> list[str]:
    path = task_dir / "labelvocabulary.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    try:
        idx = [int(r.get("idx") or "") for r in rows]
    except ValueError:
        raise TaskFormatError(f"{path}: idx must be integers 0..N-1") from None
    labels = [r.get("label") for _, r in sorted(zip(idx, rows, strict=True), key=lambda p: p[0])]
    if not labels or sorted(idx) != list(range(len(labels))) or not all(labels):
        raise TaskFormatError(f"{path}: idx must be 0..N-1, each with a label")
    return labels  # type: ignore[return-value]


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
    if not isinstance(data, dict):
        raise TaskFormatError(f"{path}: must map file names to event lists")
    return {
        child(task_dir, name, "clip name").name: events_to_rows(ev, label_to_idx, f"{path} {name}")
        for name, ev in data.items()
    }


def clip_frames(task_dir: Path) -> dict[tuple[str, str], int]:
    """{(split, file): number of 100 ms label frames} from seld_clips.csv."""
    out = {}
    with open(task_dir / "seld_clips.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            try:
                n = int(r.get("n_frames") or "")
            except ValueError:
                raise TaskFormatError(
                    f"{task_dir}/seld_clips.csv: n_frames must be integers"
                ) from None
            if not 0 < n <= 10_000_000:
                raise TaskFormatError(f"{task_dir}/seld_clips.csv: n_frames {n} out of range")
            out[(r["split"], r["file"])] = n
    return out


def export_dcase(task_dir: Path, out_dir: Path, fmt: str = "polar") -> list[Path]:
    """Every clip's labels as a DCASE CSV: {out_dir}/{split}/{stem}.csv in `fmt`."""
    written = []
    for split in read_metadata(task_dir)["splits"]:
        folder = child(out_dir, split, "split name")
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in sorted(task_rows(task_dir, split).items()):
            path = child(folder, Path(name).stem + ".csv", "clip name")
            write_bytes_atomic(path, format_rows(rows, fmt).encode())
            written.append(path)
    return written
