"""Offline synthetic SELD tasks: 1-N overlapping static or moving events in the built-in rooms.

    python -m localization_tasks.seld.synth --out tasks [--clips-per-fold 20] [--folds 3]
        [--clip-s 3] [--max-overlap 2] [--format ambisonic|binaural] [--seed 0]
        [--sources HEAR_TASK_OR_FOLDER] [--sample-rate 24000 --extra-rate 32000]

No downloads. Event sources: by default built-in synthetic sound classes (`TOY_CLASSES`: a
harmonic tone, a band of noise, a rising chirp, a click train; each with random parameters);
with `--sources`, the sounds of any HEAR scene/event task or folder of class sub-folders
(`localization_tasks.seld.sources`), whose labels become the task's class vocabulary. Rooms are
shoebox rooms rendered with naturalistic_hear's pyroomacoustics renderer (`rooms.render_rirs`,
ACN/SN3D FOA or KEMAR binaural, as in Nat-HEAR).

A clip (`clip_s` seconds at `sample_rate`): its room, then 1..max_overlap events, each with a
class, an onset and a duration on the 100 ms label grid (>= 1 s, or the source sound's length
when shorter), and a direction. A static event has one position; a moving one turns around the
listener at 20-60 deg/s and is rendered with the RIR switched every `waypoint_s` seconds
(raised-cosine cross-fades of 20 ms, which sum to one); its label in a frame is the direction of
the waypoint that plays in that frame. All positions of a clip are rendered in one room
simulation. White noise is added to every channel at 20-30 dB SNR. Labels are the
head-coordinate directions of the placed emitters (DCASE convention, azimuth counter-clockwise
from the front, elevation up), and the distance in metres.

Folds are disjoint by construction. Rooms: the (length, width) plane of room sizes is cut into
naturalistic_hear's 0.5 m checkerboard cells (`rooms.room_pool`); the last (test) fold draws its
rooms from the cells of the "test" pool, and the cells of the "train" pool are dealt out in turn
to the other folds (`fold_cells`), so no two folds can ever hold rooms of the same length and
width (`task_metadata.json` records each fold's cells and rooms). Each fold has `rooms_per_fold`
rooms, room `r` of fold `f` a pure function of (seed, f, r). Sources: with `--sources`, every
sound is dealt to one fold. Trajectories are drawn per clip.

Determinism: clip `i` of fold `f` is a pure function of (seed, f, i) and the sources. Resumable: a
clip is done when its audio and its part file (`.parts/`) exist; labels, clip list and manifest
are written at the end, sorted. A resumed run with other settings or other sources is refused.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from hear_gram import cli, dsp
from hear_gram.safeio import check_name, refuse_symlink, write_bytes_atomic
from localization_tasks.seld.labels import FRAME_S, Row, polar_to_unit
from localization_tasks.seld.sources import SoundBank, describe, load_bank
from localization_tasks.seld.task import output_folder, write_audio, write_labels
from naturalistic_hear import rooms

log = logging.getLogger(__name__)
TOY_CLASSES = ("tone", "noise_band", "chirp", "clicks")


@dataclass(frozen=True)
class SynthConfig:
    """Settings of a synthetic SELD task (units: s, Hz, deg, dB)."""

    clips_per_fold: int = 20
    folds: int = 3
    clip_s: float = 3.0
    sample_rate: int = 24000
    fmt: rooms.Format = "ambisonic"
    max_overlap: int = 2
    moving_prob: float = 0.5
    waypoint_s: float = 0.5
    rir_s: float = 0.6
    rooms_per_fold: int = 4
    snr_db: tuple[float, float] = (20.0, 30.0)
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "clips_per_fold": 1 <= self.clips_per_fold <= 100_000,
            "folds": 3 <= self.folds <= 20,  # train, valid and test folds
            "clip_s": 1.0 <= self.clip_s <= 600 and round(self.clip_s / FRAME_S, 6).is_integer(),
            "sample_rate": 8000 <= self.sample_rate <= 192_000,
            "fmt": self.fmt in ("ambisonic", "binaural"),
            "max_overlap": 1 <= self.max_overlap <= 5,
            "moving_prob": 0.0 <= self.moving_prob <= 1.0,
            "waypoint_s": 0.1 <= self.waypoint_s <= 10 and round(self.waypoint_s / FRAME_S, 6).is_integer(),  # noqa: E501
            "rir_s": 0.1 <= self.rir_s <= 2.0,
            "rooms_per_fold": 1 <= self.rooms_per_fold <= 1000,
            "snr_db": -20 <= self.snr_db[0] <= self.snr_db[1] <= 100,
        }  # fmt: skip
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid SELD synthesis settings: {', '.join(bad)} ({self})")

    @property
    def n_frames(self) -> int:
        return round(self.clip_s / FRAME_S)


def toy_sound(cls: int, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Mono (n,) of toy class `cls` with random parameters, RMS-normalised to -14 dBFS."""
    t = np.arange(n) / sr
    if cls == 0:  # harmonic tone, f0 150-400 Hz, 6 harmonics, slow vibrato
        f0 = rng.uniform(150, 400) * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        x = sum(np.sin(k * phase) / k for k in range(1, 7))
    elif cls == 1:  # band of noise, 1-4 kHz wide 1 octave
        lo = rng.uniform(1000, 4000)
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / sr)
        x = np.fft.irfft(spec * ((f >= lo) & (f <= 2 * lo)), n)
    elif cls == 2:  # rising chirp 500 Hz -> 3 kHz, repeated every 0.25-0.5 s
        period = rng.uniform(0.25, 0.5)
        frac = (t % period) / period
        f = 500 * 6**frac
        x = np.sin(2 * np.pi * np.cumsum(f) / sr)
    elif cls == 3:  # click train 5-15 Hz, each click a 2 ms decaying noise burst
        x = np.zeros(n)
        step = int(sr / rng.uniform(5, 15))
        burst = rng.standard_normal(int(0.002 * sr)) * np.exp(-np.linspace(0, 5, int(0.002 * sr)))
        for s in range(0, n - burst.size, step):  # first click at the onset
            x[s : s + burst.size] += burst
    else:
        raise ValueError(f"toy class {cls} not in 0..{len(TOY_CLASSES) - 1}")
    return dsp.rms_normalize(np.asarray(x, dtype=np.float64))


@dataclass(frozen=True)
class Room:
    """Room `slot` of a fold: size (m), uniform absorption, listener (m) and head azimuth (deg)."""

    room_id: str
    cell: tuple[int, int]
    room_dim: tuple[float, float, float]
    absorption: float
    listener: tuple[float, float, float]
    head_azimuth_deg: float

    @property
    def t60_s(self) -> float:
        return rooms.eyring_t60(self.room_dim, self.absorption)


def _grid() -> tuple[int, int]:
    return (round((rooms.ROOM_LENGTH[1] - rooms.ROOM_LENGTH[0]) / rooms.POOL_CELL),
            round((rooms.ROOM_WIDTH[1] - rooms.ROOM_WIDTH[0]) / rooms.POOL_CELL))  # fmt: skip


def fold_cells(folds: int) -> list[list[tuple[int, int]]]:
    """Checkerboard cells (length index, width index) of each fold's rooms: the last fold gets the
    "test" pool's cells, the other folds the "train" pool's cells dealt out in turn. Disjoint by
    construction; every fold gets cells spread over the whole size range."""
    n_i, n_j = _grid()
    cells = {pool: [(i, j) for i in range(n_i) for j in range(n_j)
                    if rooms.POOLS[(i + j) % 2] == pool] for pool in rooms.POOLS}  # fmt: skip
    train = cells["train"]
    if folds - 1 > len(train):
        raise ValueError(f"{folds} folds: only {len(train)} room cells for the training folds")
    return [train[f :: folds - 1] for f in range(folds - 1)] + [cells["test"]]


def cell_of(room_dim: Sequence[float]) -> tuple[int, int]:
    """The checkerboard cell that holds a room of this (length, width)."""
    return (math.floor((room_dim[0] - rooms.ROOM_LENGTH[0]) / rooms.POOL_CELL),
            math.floor((room_dim[1] - rooms.ROOM_WIDTH[0]) / rooms.POOL_CELL))  # fmt: skip


def fold_room(cfg: SynthConfig, fold: int, slot: int) -> Room:
    """Room `slot` of fold `fold`: a pure function of (seed, fold, slot). Its length and width lie
    on a 1 cm grid strictly inside one of the fold's cells (never on a border), the height in
    rooms.ROOM_HEIGHT, the T60 uniform in rooms.T60_RANGE (Eyring absorption), the listener at
    1.5 m at least rooms.WALL_MARGIN from the walls, the head azimuth uniform."""
    rng = np.random.default_rng([cfg.seed, 0x5E1D, fold, slot])
    cells = fold_cells(cfg.folds)[fold]
    i, j = cells[int(rng.integers(len(cells)))]
    steps = round(rooms.POOL_CELL * 100)
    length = rooms.ROOM_LENGTH[0] + i * rooms.POOL_CELL + int(rng.integers(1, steps)) / 100
    width = rooms.ROOM_WIDTH[0] + j * rooms.POOL_CELL + int(rng.integers(1, steps)) / 100
    lo, hi = (round(h * 100) for h in rooms.ROOM_HEIGHT)
    dim = (round(length, 2), round(width, 2), int(rng.integers(lo, hi + 1)) / 100)
    absorption = rooms.eyring_absorption(dim, float(rng.uniform(*rooms.T60_RANGE)))
    absorption = float(np.clip(absorption, *rooms.ABSORPTION_RANGE))
    m = rooms.WALL_MARGIN
    listener = (round(float(rng.uniform(m, dim[0] - m)), 3),
                round(float(rng.uniform(m, dim[1] - m)), 3), rooms.LISTENER_HEIGHT)  # fmt: skip
    head = round(float(rng.uniform(0.0, 360.0)), 2)
    return Room(f"fold{fold + 1:02d}-room{slot:03d}", (i, j), dim, absorption, listener, head)


def _position(room: Room, az: float, el: float, dist: float) -> np.ndarray | None:
    """Room point at head direction (az, el), `dist` m; None when outside the emitter margins."""
    p = np.asarray(room.listener) + dist * rooms.head_to_unit_vector(az + room.head_azimuth_deg, el)
    lo = np.array([rooms.WALL_MARGIN, rooms.WALL_MARGIN, rooms.FLOOR_MARGIN])
    inside = np.all(p >= lo) and np.all(p <= np.asarray(room.room_dim) - lo)
    return np.round(p, 3) if inside else None


def _draw_event(rng, cfg: SynthConfig, room: Room, fold: int, bank: SoundBank | None) -> dict:
    """Class, source sound, frames and waypoint positions of one event."""
    n = cfg.n_frames
    n_classes = len(bank.classes) if bank is not None else len(TOY_CLASSES)
    cls = int(rng.integers(n_classes))
    sound = bank.pick(cls, fold, rng) if bank is not None else None
    longest = n if sound is None else min(n, len(sound.audio) // round(FRAME_S * cfg.sample_rate))
    length = int(rng.integers(min(10, longest), longest + 1))
    onset = int(rng.integers(0, n - length + 1))
    hop = round(cfg.waypoint_s / FRAME_S)
    moving = bool(rng.random() < cfg.moving_prob)
    n_way = math.ceil(length / hop) if moving else 1
    for _ in range(200):
        az, el = rng.uniform(-180, 180), rng.uniform(-40, 40)
        dist = rng.uniform(1.0, 3.0)
        speed = rng.choice([-1, 1]) * rng.uniform(20, 60) if moving else 0.0
        azs = [az + speed * (k + 0.5) * cfg.waypoint_s for k in range(n_way)]
        points = [_position(room, a, el, dist) for a in azs]
        if all(p is not None for p in points):
            return {"cls": cls, "sound": sound, "onset": onset, "length": length,
                    "moving": moving, "points": points, "hop": hop}  # fmt: skip
    raise RuntimeError(f"no event position fits in room {room.room_id}")


def _event_signal(ev: dict, m: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Mono (m,) of an event, RMS-normalised to -14 dBFS: a toy sound, or a random excerpt of its
    source sound with 10 ms fades (no click at a cut)."""
    if ev["sound"] is None:
        return toy_sound(ev["cls"], m, sr, rng)
    x = ev["sound"].audio
    start = int(rng.integers(0, len(x) - m + 1))
    return dsp.rms_normalize(dsp.fade(x[start : start + m].copy(), sr, 0.01))


def _windows(n: int, bounds: list[int], fade: int) -> list[np.ndarray]:
    """Raised-cosine cross-faded windows over [0, n) split at `bounds`; they sum to one."""
    edges = [0, *bounds, n]
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        w = np.zeros(n)
        w[a:b] = 1.0
        for edge, rising in ((a, True), (b, False)):
            if 0 < edge < n:
                lo, hi = max(edge - fade, 0), min(edge + fade, n)
                ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(lo, hi) - lo + 0.5) / (hi - lo))
                w[lo:hi] = ramp if rising else 1 - ramp
        out.append(w)
    return out


def _dcase(direction: Sequence[float]) -> tuple[float, float, float]:
    """(azimuth, elevation, distance) of rooms.head_direction (azimuth in [0, 360)) in the DCASE
    label convention: azimuth in [-180, 180), rounded to 0.01 deg and 1 mm."""
    az, el, dist = direction
    return round((az + 180) % 360 - 180, 2), round(el, 2), round(dist, 3)


def render_seld_clip(
    cfg: SynthConfig, fold: int, index: int, bank: SoundBank | None = None
) -> tuple[np.ndarray, list[Row], dict]:
    """Audio (N, C), label rows and a manifest record of clip `index` of fold `fold`."""
    rng = np.random.default_rng([cfg.seed, fold, index])
    room = fold_room(cfg, fold, index % cfg.rooms_per_fold)
    n_events = int(rng.integers(1, cfg.max_overlap + 1))
    events = [_draw_event(rng, cfg, room, fold, bank) for _ in range(n_events)]
    points = [tuple(p) for ev in events for p in ev["points"]]
    # render_rirs returns the source RIR and a stack of "noise" RIRs: with a single point, render
    # it twice (the copy is unused) so the stack is never empty
    emitters = points if len(points) > 1 else points * 2
    pool = "test" if fold == cfg.folds - 1 else "train"
    scene = rooms.build_scene(pool, fold * 1000 + index % cfg.rooms_per_fold, room.room_dim,
                              room.absorption, room.listener, room.head_azimuth_deg, emitters[0],
                              tuple(emitters[1:]))  # fmt: skip
    src, others = rooms.render_rirs(scene, cfg.fmt, cfg.sample_rate, length_s=cfg.rir_s)
    rirs = [src, *others]  # one (C, L) per point, in order
    dirs = [(scene.source_azimuth_deg, scene.source_elevation_deg, scene.source_distance_m)]
    dirs += list(scene.noise_directions)
    spf = round(FRAME_S * cfg.sample_rate)  # samples per label frame
    n = cfg.n_frames * spf
    mix = np.zeros((rirs[0].shape[0], n))
    rows: list[Row] = []
    record = {"room": room.room_id, "room_dim": list(room.room_dim), "t60_s": room.t60_s,
              "events": []}  # fmt: skip
    k = 0
    for track, ev in enumerate(events):
        a, m = ev["onset"] * spf, ev["length"] * spf
        sig = np.zeros(n)
        sig[a : a + m] = _event_signal(ev, m, cfg.sample_rate, rng) * dsp.db_to_amplitude(
            rng.uniform(-6, 0)
        )
        bounds = [a + j * ev["hop"] * spf for j in range(1, len(ev["points"]))]
        for j, w in enumerate(_windows(n, bounds, int(0.02 * cfg.sample_rate))):
            mix += dsp.convolve_rir(sig * w, rirs[k + j])
        for f in range(ev["onset"], ev["onset"] + ev["length"]):
            az, el, dist = dirs[k + min((f - ev["onset"]) // ev["hop"], len(ev["points"]) - 1)]
            # DCASE azimuths are in [-180, 180); rooms.head_direction gives [0, 360)
            az, el, dist = _dcase((az, el, dist))
            rows.append(Row(f, ev["cls"], track, polar_to_unit(az, el), dist, (az, el)))
        # manifest directions in the labels' convention: (azimuth in [-180, 180), elevation, m)
        first, last = (_dcase(dirs[k]), _dcase(dirs[k + len(ev["points"]) - 1]))
        record["events"].append({"track": track, "class": ev["cls"], "onset_s": ev["onset"] * FRAME_S,
                                 "offset_s": (ev["onset"] + ev["length"]) * FRAME_S,
                                 "moving": ev["moving"], "start": list(first), "end": list(last),
                                 "source": ev["sound"].origin if ev["sound"] else "toy"})  # fmt: skip
        k += len(ev["points"])
    noise = rng.standard_normal(mix.shape)
    mix, _ = dsp.mix_at_snr(mix, noise, float(rng.uniform(*cfg.snr_db)))
    mix, _ = dsp.limit_peak(mix)
    rows.sort(key=lambda r: (r.frame, r.track))
    return np.asarray(mix.T, dtype=np.float32), rows, record


def generate(
    out: Path,
    cfg: SynthConfig,
    name: str | None = None,
    rates: Sequence[int] = (),
    bank: SoundBank | None = None,
) -> Path:
    """Write (or resume) the task; returns its directory. `bank`: event sources (default: the
    toy classes), dealt out to `cfg.folds` folds."""
    name = check_name(name or f"synth-seld-{cfg.fmt}-ov{cfg.max_overlap}-v1.0.0", "task name")
    if bank is not None and (bank.folds != cfg.folds or bank.sample_rate != cfg.sample_rate):
        raise ValueError(f"sources dealt to {bank.folds} folds at {bank.sample_rate} Hz; the task "
                         f"has {cfg.folds} folds at {cfg.sample_rate} Hz")  # fmt: skip
    classes = list(bank.classes) if bank is not None else list(TOY_CLASSES)
    sources = describe(bank, classes)
    # the task folder and every folder below it are real folders, never links (task.output_folder)
    task_dir = output_folder(out, name)
    parts = output_folder(task_dir, ".parts")
    settings = json.dumps({**asdict(cfg), "sources": sources}, sort_keys=True)
    stamp = task_dir / ".synth-config.json"
    refuse_symlink(stamp)
    if stamp.exists() and stamp.read_text() != settings:
        raise ValueError(f"{task_dir} was generated with other settings or sources ({stamp}); "
                         "use a new --out")  # fmt: skip
    write_bytes_atomic(stamp, settings.encode())
    rates = sorted({cfg.sample_rate, *rates})
    labels, durations, manifest = {}, {}, []
    folds = [f"fold{f + 1:02d}" for f in range(cfg.folds)]
    for r in rates:  # a link planted at any audio folder is refused before any work
        for split in folds:
            output_folder(task_dir, str(r), split)
    for fold, split in enumerate(folds):
        for i in range(cfg.clips_per_fold):
            clip = f"{split}_clip{i:05d}.wav"
            part = parts / f"{split}_{i:05d}.json"
            done = None
            if _finished(part) and all(_finished(task_dir / str(r) / split / clip) for r in rates):
                done = _read_part(part)
            if done is None:
                audio, rows, record = render_seld_clip(cfg, fold, i, bank)
                write_audio(task_dir, split, clip, audio, cfg.sample_rate, rates)
                done = {"rows": [[r.frame, r.cls, r.track, *r.azel, r.distance] for r in rows],
                        "record": record}  # fmt: skip
                write_bytes_atomic(part, json.dumps(done).encode())
            labels.setdefault(split, {})[clip] = [
                Row(f, c, t, polar_to_unit(az, el), d, (az, el))
                for f, c, t, az, el, d in done["rows"]
            ]
            durations.setdefault(split, {})[clip] = cfg.clip_s
            manifest += [{"split": split, "file": clip, "room": done["record"]["room"],
                          "room_dim": done["record"]["room_dim"], "t60_s": done["record"]["t60_s"], **e}
                         for e in done["record"]["events"]]  # fmt: skip
    cells = fold_cells(cfg.folds)
    used = {split: [fold_room(cfg, f, r) for r in range(min(cfg.rooms_per_fold, cfg.clips_per_fold))]
            for f, split in enumerate(folds)}  # fmt: skip
    metadata = {
        "task_name": name, "version": "v1.0.0", "embedding_type": "event",
        "prediction_type": "multilabel", "split_mode": "presplit_kfold", "sample_duration": cfg.clip_s,
        "sample_rates": rates, "evaluation": ["seld"],
        "seld": {"label_hop_ms": 100, "audio": "foa" if cfg.fmt == "ambisonic" else "binaural",
                 "direction": "azimuth counter-clockwise from front, elevation up, degrees (DCASE)",
                 "official_folds": {"train": folds[:-2], "valid": [folds[-2]], "test": [folds[-1]]},
                 "source_dataset": "synthetic", "synth_config": asdict(cfg), "sources": sources,
                 "room_cells_m": {"length_0": rooms.ROOM_LENGTH[0], "width_0": rooms.ROOM_WIDTH[0],
                                  "cell": rooms.POOL_CELL},
                 "fold_rooms": {split: {"cells": [list(c) for c in cells[f]],
                                        "rooms": [{"room": r.room_id, "room_dim": list(r.room_dim),
                                                   "cell": list(r.cell), "t60_s": r.t60_s}
                                                  for r in used[split]]}
                                for f, split in enumerate(folds)}},
    }  # fmt: skip
    write_labels(task_dir, metadata, classes, labels, durations)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(manifest[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(manifest)
    write_bytes_atomic(task_dir / "seld_manifest.csv", buf.getvalue().encode())
    return task_dir


PROG = "python -m localization_tasks.seld.synth"


def _finished(path: Path) -> bool:
    """A file of an earlier run: a regular file, not a link (a link planted at a clip's audio or
    part file makes the clip render again, and the atomic write replaces the link)."""
    return path.is_file() and not path.is_symlink()


def _read_part(path: Path) -> dict | None:
    """A finished clip's rows and record as written by `generate`, or None when the file is
    not one (truncated, edited, not ours): the clip is then rendered again, which gives the
    same bytes (`render_seld_clip` is a pure function of the clip's identity)."""
    try:
        done = cli.read_json(path)
        rows, record = done["rows"], done["record"]
        ok = (
            all(isinstance(r, list) and len(r) == 6 for r in rows)
            and all(
                isinstance(record[k], (int, float, str, list))
                for k in ("room", "room_dim", "t60_s")
            )
            and all(isinstance(e, dict) for e in record["events"])
        )
    except (ValueError, OSError, LookupError, TypeError):
        ok = False
    if not ok:
        log.warning("%s is not a finished clip record: rendering the clip again", path)
        return None
    return done


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    cli.add_out(p, help="folder the task folder is written into")
    p.add_argument("--name", default=None)
    p.add_argument("--clips-per-fold", type=cli.positive_int, default=20)
    p.add_argument("--folds", type=cli.positive_int, default=3)
    p.add_argument("--clip-s", type=float, default=3.0)
    p.add_argument("--max-overlap", type=cli.positive_int, default=2)
    p.add_argument("--format", dest="fmt", choices=("ambisonic", "binaural"), default="ambisonic")
    p.add_argument("--sample-rate", type=cli.positive_int, default=24000)
    p.add_argument("--extra-rate", type=cli.positive_int, action="append", default=[])
    p.add_argument("--rir-s", type=float, default=0.6, help="RIR length (s)")
    cli.add_seed(p)
    p.add_argument("--sources", type=Path, default=None,
                   help="HEAR scene/event task or folder of class sub-folders of sounds")  # fmt: skip
    return p


def run(args: argparse.Namespace) -> None:
    cfg = SynthConfig(clips_per_fold=args.clips_per_fold, folds=args.folds, clip_s=args.clip_s,
                      sample_rate=args.sample_rate, fmt=args.fmt, max_overlap=args.max_overlap,
                      rir_s=args.rir_s, seed=args.seed)  # fmt: skip
    try:
        bank = load_bank(args.sources, cfg.sample_rate, cfg.folds) if args.sources else None
        print(generate(args.out, cfg, args.name, args.extra_rate, bank))
    except sf.LibsndfileError as e:  # an unreadable sound: a RuntimeError, expected here
        raise cli.CLIError(str(e)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (`hear_gram.cli` convention): expected failures end in one line
    `PROG: error: ...` and exit status 2, Ctrl-C in 130."""
    return cli.main(PROG, build_parser, run, argv, log_dir=lambda a: a.out)


if __name__ == "__main__":
    sys.exit(main())
