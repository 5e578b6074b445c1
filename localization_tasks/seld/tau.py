"""Readers for the event-list SELD datasets of DCASE 2018/2019 (TAU Spatial Sound Events).

Both datasets annotate each clip with a list of static events, one CSV per clip:

    sound_event_recording,start_time,end_time,ele,azi,dist
    clearthroat113.wav,0.05,0.31,10,-40,2

(seconds, degrees, metres; `dist` may be empty or absent). TAU 2019 and TAU 2018 ANSYN use the 11
classes of DCASE 2016 Task 2, indexed as the DCASE 2019 Task 3 baseline's class dictionary
(sharathadavanne/seld-dcase2019) indexes them; the class is the event name without its
number (`clearthroat113.wav` -> `clearthroat`; the 2019 files write just `clearthroat`). TAU 2018
REAL uses 8 UrbanSound8K classes, named by the UrbanSound8K file (`{fsID}-{classID}-{occ}-{slice}`,
class ids 1, 3..9), as the 2018 SELDnet code (sharathadavanne/seld-net, `cls_feature_class.py`)
reads them; which vocabulary a dataset uses is decided by its first event name.

Layouts on disk (the converter looks for these, and says what it found when it does not match):

    TAU 2018 (TUT Sound Events 2018, ANSYN / REAL):
        desc_ov{O}_split{K}/{train|test}_split{K}_ir{R}_ov{O}_{N}.csv
        wav_ov{O}_split{K}*/{same stem}.wav        (e.g. wav_ov1_split1_30db)
      Three cross-validation splits per overlap O (1..3), each with its own train and test
      recordings; HEAR splits `split{K}_train` / `split{K}_test`.
    TAU 2019 (TAU Spatial Sound Events 2019, DCASE 2019 Task 3 development set):
        metadata_dev/split{K}_ir{R}_ov{O}_{N}.csv
        {foa|mic}_dev/{same stem}.wav
      Four splits -> HEAR splits `fold01`..`fold04`; the four cross-validation folds of the DCASE
      2019 baseline (`seld.py`: test K, validation K+1, train the other two) are recorded.

Frame rule: label frame f covers [0.1 f, 0.1 (f + 1)) s, and an event [start, end) is active in
every frame its span overlaps: frames floor(start / 0.1) .. ceil(end / 0.1) - 1 (times are
rounded to 1e-6 of a frame first so that 0.3 / 0.1 does not spill into a fourth frame). Events of
the same class active in the same frame get different track ids: each event takes the smallest
track of its class free for its whole frame span, in order of onset. (The 2018/2019 SELDnet
baselines' label code marks frames floor(start) .. ceil(end) inclusive, at their own 20 ms-ish
hop: one frame more than the overlap rule at each offset. This converter keeps to the overlap
rule, so an event never labels a frame it does not sound in.)
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localization_tasks.seld.labels import (
    FRAME_S,
    LabelFileError,
    Row,
    finite_float,
    polar_to_unit,
)

# DCASE 2019 Task 3 class order (the baseline's `unique_classes`); TAU 2018 uses the same 11.
CLASSES: tuple[str, ...] = (
    "knock", "drawer", "clearthroat", "phone", "keysDrop", "speech",
    "keyboard", "pageturn", "cough", "doorslam", "laughter",
)  # fmt: skip
_BY_LOWER = {c.lower(): i for i, c in enumerate(CLASSES)}
# UrbanSound8K class id -> name, for the 8 ids in TAU 2018 REAL (index = position here)
URBANSOUND8K: dict[int, str] = {
    1: "car_horn", 3: "dog_bark", 4: "drilling", 5: "engine_idling",
    6: "gun_shot", 7: "jackhammer", 8: "siren", 9: "street_music",
}  # fmt: skip
US8K_CLASSES: tuple[str, ...] = tuple(URBANSOUND8K.values())
_US8K_INDEX = {cid: i for i, cid in enumerate(URBANSOUND8K)}
_US8K_NAME = re.compile(r"^\d+-(\d+)-\d+-\d+(?:\.wav)?$")
VOCABULARIES = {"dcase2016": CLASSES, "urbansound8k": US8K_CLASSES}
HEADER = ("sound_event_recording", "start_time", "end_time", "ele", "azi")  # `dist` optional
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_EVENTS = 100_000
MAX_ROWS = 5_000_000  # per clip: ~14 h of one event per frame, far beyond any TAU clip
TIME_SLACK_S = 1e-3  # an event may end this much after the audio (rounding in the metadata)
_EVENT_NAME = re.compile(r"^([A-Za-z]+)\d*(?:\.wav)?$")

# DCASE 2019 baseline cross-validation: (test, validation, train) splits per fold.
TAU2019_FOLDS: tuple[tuple[int, int, tuple[int, int]], ...] = (
    (1, 2, (3, 4)),
    (2, 3, (4, 1)),
    (3, 4, (1, 2)),
    (4, 1, (2, 3)),
)


@dataclass(frozen=True)
class Event:
    cls: int
    start: float
    end: float
    azimuth: float
    elevation: float
    distance: float | None


def event_class(name: str, where: str, vocabulary: str = "dcase2016") -> int:
    """Class index of an event recording name (`clearthroat113.wav` -> 2; with
    `urbansound8k`, `100032-3-0-0.wav` -> 1, dog_bark)."""
    if vocabulary == "urbansound8k":
        m = _US8K_NAME.match(name)
        if not m or int(m.group(1)) not in _US8K_INDEX:
            raise LabelFileError(
                f"{where}: event {name[:80]!r} is not an UrbanSound8K file of class id "
                f"{', '.join(map(str, URBANSOUND8K))} (fsID-classID-occurrence-slice.wav)"
            )
        return _US8K_INDEX[int(m.group(1))]
    m = _EVENT_NAME.match(name)
    if not m or m.group(1).lower() not in _BY_LOWER:
        raise LabelFileError(
            f"{where}: event {name[:80]!r} is not one of the classes {', '.join(CLASSES)} "
            "(name followed by a number, e.g. clearthroat113.wav)"
        )
    return _BY_LOWER[m.group(1).lower()]


def detect_vocabulary(path: Path) -> str:
    """`urbansound8k` when the first event of `path` is named like an UrbanSound8K file, else
    `dcase2016` (every row is then checked against that vocabulary by `read_events`)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        f.readline()  # header
        first = f.readline(4096).split(",")[0].strip()
    return "urbansound8k" if _US8K_NAME.match(first) else "dcase2016"


def read_events(path: Path, vocabulary: str = "dcase2016") -> list[Event]:
    """The events of one metadata CSV, checked; errors name the file and line."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LabelFileError(f"{path}: {size} bytes, over the {MAX_FILE_BYTES}-byte limit")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise LabelFileError(f"{path}: not UTF-8 text ({e.reason})") from None
    lines = list(csv.reader(io.StringIO(text)))
    header = [h.strip() for h in lines[0]] if lines else []
    if not all(h in header for h in HEADER):
        raise LabelFileError(
            f"{path}:1: header {','.join(header)[:120]!r} lacks one of {','.join(HEADER)} "
            "(not a TAU 2018/2019 event list)"
        )
    col = {h: header.index(h) for h in (*HEADER, "dist") if h in header}
    events = []
    for i, fields in enumerate(lines[1:], 2):
        where = f"{path}:{i}"
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise LabelFileError(f"{where}: {len(fields)} fields, the header has {len(header)}")
        if len(events) >= MAX_EVENTS:
            raise LabelFileError(f"{path}: over {MAX_EVENTS} events; refusing")
        get = {h: fields[j].strip() for h, j in col.items()}
        cls = event_class(get["sound_event_recording"], where, vocabulary)
        start = finite_float(get["start_time"], "start_time", where)
        end = finite_float(get["end_time"], "end_time", where)
        ele = finite_float(get["ele"], "ele", where)
        azi = finite_float(get["azi"], "azi", where)
        if not 0.0 <= start < end:
            raise LabelFileError(f"{where}: start_time {start} / end_time {end} is not a span")
        if not (-360.0 <= azi <= 360.0 and -90.0 <= ele <= 90.0):
            raise LabelFileError(f"{where}: azimuth {azi} / elevation {ele} out of range")
        dist = None
        if get.get("dist"):
            dist = finite_float(get["dist"], "dist", where)
            if not 0.0 <= dist <= 1e4:
                raise LabelFileError(f"{where}: dist {dist} m out of range 0..10000")
        events.append(Event(cls, start, end, azi, ele, dist))
    return events


def frame_span(start: float, end: float) -> range:
    """Label frames whose 100 ms span overlaps [start, end) seconds."""
    first = math.floor(round(start / FRAME_S, 6))
    last = math.ceil(round(end / FRAME_S, 6))
    return range(first, last)


def events_to_rows(events: Sequence[Event], duration_s: float, where: str) -> list[Row]:
    """Per-frame DCASE rows of a clip's events (sorted by frame, class, track); events beyond
    the audio are refused."""
    n_frames = math.ceil(round(duration_s / FRAME_S, 6))
    busy: dict[tuple[int, int], set[int]] = {}  # (class, track) -> frames taken
    rows = []
    order = sorted(range(len(events)), key=lambda i: (events[i].start, events[i].end, i))
    for i in order:
        ev = events[i]
        if ev.end > duration_s + TIME_SLACK_S:
            raise LabelFileError(
                f"{where}: event {i + 1} ends at {ev.end} s, after the audio ({duration_s} s)"
            )
        frames = [f for f in frame_span(ev.start, ev.end) if f < n_frames]
        track = 0
        while not busy.setdefault((ev.cls, track), set()).isdisjoint(frames):
            track += 1
        busy[(ev.cls, track)].update(frames)
        xyz = polar_to_unit(ev.azimuth, ev.elevation)
        azel = (ev.azimuth, ev.elevation)
        if len(rows) + len(frames) > MAX_ROWS:
            raise LabelFileError(f"{where}: over {MAX_ROWS} label rows; refusing")
        rows += [Row(f, ev.cls, track, xyz, ev.distance, azel) for f in frames]
    return sorted(rows, key=lambda r: (r.frame, r.cls, r.track))


# --- layouts ------------------------------------------------------------------------------------

_SPLIT2019 = re.compile(r"^split(\d+)_")
_DESC2018 = re.compile(r"^desc_ov(\d+)_split(\d+)$")
_ROLE2018 = re.compile(r"^(train|test)_split(\d+)_")


@dataclass(frozen=True)
class Clip:
    split: str  # HEAR split
    csv: Path
    wav: Path


def tau2019_clips(dataset_dir: Path, audio: str) -> tuple[list[Clip], dict]:
    """Clips of the DCASE 2019 development set and its folds: (clips, seld metadata)."""
    meta_root, audio_root = dataset_dir / "metadata_dev", dataset_dir / f"{audio}_dev"
    for d in (meta_root, audio_root):
        if not d.is_dir():
            raise FileNotFoundError(
                f"{d} is not a directory (TAU 2019 layout: metadata_dev/*.csv, {audio}_dev/*.wav)"
            )
    clips = []
    for csv_path in sorted(meta_root.glob("*.csv")):
        m = _SPLIT2019.match(csv_path.name)
        if not m:
            raise ValueError(f"{csv_path}: TAU 2019 clip names start with splitK_")
        clips.append(
            Clip(f"fold{int(m.group(1)):02d}", csv_path, audio_root / f"{csv_path.stem}.wav")
        )
    if not clips:
        raise ValueError(f"no *.csv label files directly under {meta_root} (TAU 2019 layout)")
    folds = [
        {
            "test": [f"fold{t:02d}"],
            "valid": [f"fold{v:02d}"],
            "train": [f"fold{x:02d}" for x in tr],
        }
        for t, v, tr in TAU2019_FOLDS
    ]
    seld = {"official_folds": folds[0], "cross_validation_folds": folds}
    return clips, seld


def tau2018_clips(dataset_dir: Path, overlap: int) -> tuple[list[Clip], dict]:
    """Clips of one overlap subset (ov1..ov3) of TAU 2018, every cross-validation split."""
    descs = {}
    for d in sorted(dataset_dir.iterdir()) if dataset_dir.is_dir() else []:
        m = _DESC2018.match(d.name)
        if m and d.is_dir() and int(m.group(1)) == overlap:
            descs[int(m.group(2))] = d
    if not descs:
        raise FileNotFoundError(
            f"no desc_ov{overlap}_split*/ folders in {dataset_dir} (TAU 2018 layout: "
            f"desc_ov{overlap}_splitK/*.csv and wav_ov{overlap}_splitK*/*.wav)"
        )
    clips, folds = [], []
    for k, desc in sorted(descs.items()):
        wav_dirs = [
            p for p in sorted(dataset_dir.glob(f"wav_ov{overlap}_split{k}*"))
            if p.is_dir() and re.fullmatch(rf"wav_ov{overlap}_split{k}(_.*)?", p.name)
        ]  # fmt: skip
        if len(wav_dirs) != 1:
            found = ", ".join(p.name for p in wav_dirs) or "none"
            raise FileNotFoundError(
                f"{dataset_dir}: need exactly one wav_ov{overlap}_split{k}* audio folder for "
                f"{desc.name}; found {found}"
            )
        for csv_path in sorted(desc.glob("*.csv")):
            m = _ROLE2018.match(csv_path.name)
            if not m or int(m.group(2)) != k:
                raise ValueError(
                    f"{csv_path}: TAU 2018 clip names start with train_split{k}_ or test_split{k}_"
                )
            split = f"split{k}_{m.group(1)}"
            clips.append(Clip(split, csv_path, wav_dirs[0] / f"{csv_path.stem}.wav"))
        folds.append({"train": [f"split{k}_train"], "test": [f"split{k}_test"]})
    if not clips:
        raise ValueError(f"no *.csv label files in {', '.join(d.name for d in descs.values())}")
    # TAU 2018 defines train and test per split and no validation set.
    seld = {"official_folds": folds[0], "cross_validation_folds": folds}
    return clips, seld
