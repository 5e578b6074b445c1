"""Offline synthetic SELD tasks: 1-N overlapping static or moving events in the built-in rooms.

    python -m localization_tasks.seld.synth --out tasks [--clips-per-fold 20] [--folds 3]
        [--clip-s 3] [--max-overlap 2] [--format ambisonic|binaural] [--seed 0]
        [--sample-rate 24000 --sample-rate 32000]

No downloads: the events are built-in synthetic sound classes (`TOY_CLASSES`: a harmonic tone, a
band of noise, a rising chirp, a click train; each with random parameters), and the rooms are
naturalistic_hear's pyroomacoustics shoebox rooms (`rooms.sample_scene` for the room, size,
absorption, listener and head direction; `rooms.render_rirs` for the RIRs, ACN/SN3D FOA or KEMAR
binaural, as in Nat-HEAR).

A clip (`clip_s` seconds at `sample_rate`): its room, then 1..max_overlap events, each with a
class, an onset and a duration (>= 1 s) on the 100 ms label grid, and a direction. A static event
has one position; a moving one turns around the listener at 20-60 deg/s and is rendered with the
RIR switched every `waypoint_s` seconds (raised-cosine cross-fades of 20 ms, which sum to one);
its label in a frame is the direction of the waypoint that plays in that frame. All positions of
a clip are rendered in one room simulation. White noise is added to every channel at 20-30 dB
SNR. Labels are the head-coordinate directions of the placed emitters (DCASE convention,
azimuth counter-clockwise from the front, elevation up), and the distance in metres.

Determinism and folds: clip `i` of fold `f` is a pure function of (seed, f, i); its room is
`sample_scene(pool, f * 1000 + i % rooms_per_fold, seed)` with the "test" pool for the last fold
and "train" for the others, so each fold has its own rooms (`manifest` records them; different
folds never share a room index, and the last fold's rooms cannot occur in any other, by
construction). Trajectories are drawn per clip. Resumable: a clip is done when its audio and its
part file (`.parts/`) exist; labels, clip list and manifest are written at the end, sorted.
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

from hear_gram import dsp
from localization_tasks.seld.labels import FRAME_S, Row, polar_to_unit
from localization_tasks.seld.task import write_audio, write_labels
from naturalistic_hear import rooms
from naturalistic_hear.paths import check_name, child, write_bytes_atomic

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
            "folds": 2 <= self.folds <= 20,
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


def _position(rng, scene: rooms.Scene, az: float, el: float, dist: float) -> np.ndarray | None:
    """Room point at head direction (az, el), `dist` m; None when outside the emitter margins."""
    p = np.asarray(scene.listener) + dist * rooms.head_to_unit_vector(
        az + scene.head_azimuth_deg, el
    )
    lo = np.array([rooms.WALL_MARGIN, rooms.WALL_MARGIN, rooms.FLOOR_MARGIN])
    inside = np.all(p >= lo) and np.all(p <= np.asarray(scene.room_dim) - lo)
    return np.round(p, 3) if inside else None


def _draw_event(rng, cfg: SynthConfig, scene: rooms.Scene) -> dict:
    """Class, frames and waypoint positions of one event."""
    n = cfg.n_frames
    length = int(rng.integers(10, n + 1))
    onset = int(rng.integers(0, n - length + 1))
    hop = round(cfg.waypoint_s / FRAME_S)
    moving = bool(rng.random() < cfg.moving_prob)
    n_way = math.ceil(length / hop) if moving else 1
    for _ in range(200):
        az, el = rng.uniform(-180, 180), rng.uniform(-40, 40)
        dist = rng.uniform(1.0, 3.0)
        speed = rng.choice([-1, 1]) * rng.uniform(20, 60) if moving else 0.0
        azs = [az + speed * (k + 0.5) * cfg.waypoint_s for k in range(n_way)]
        points = [_position(rng, scene, a, el, dist) for a in azs]
        if all(p is not None for p in points):
            return {"cls": int(rng.integers(len(TOY_CLASSES))), "onset": onset,
                    "length": length, "moving": moving, "points": points, "hop": hop}  # fmt: skip
    raise RuntimeError(f"no event position fits in room {scene.scene_id}")


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


def render_clip(cfg: SynthConfig, fold: int, index: int) -> tuple[np.ndarray, list[Row], dict]:
    """Audio (N, C), label rows and a manifest record of clip `index` of fold `fold`."""
    rng = np.random.default_rng([cfg.seed, fold, index])
    pool = "test" if fold == cfg.folds - 1 else "train"
    room = rooms.sample_scene(pool, fold * 1000 + index % cfg.rooms_per_fold, cfg.seed)
    n_events = int(rng.integers(1, cfg.max_overlap + 1))
    events = [_draw_event(rng, cfg, room) for _ in range(n_events)]
    points = [tuple(p) for ev in events for p in ev["points"]]
    # render_rirs returns the source RIR and a stack of "noise" RIRs: with a single point, render
    # it twice (the copy is unused) so the stack is never empty
    emitters = points if len(points) > 1 else points * 2
    scene = rooms.build_scene(pool, fold * 1000 + index % cfg.rooms_per_fold,
                              room.room_dim, room.absorption, room.listener,
                              room.head_azimuth_deg, emitters[0], tuple(emitters[1:]))  # fmt: skip
    src, others = rooms.render_rirs(scene, cfg.fmt, cfg.sample_rate, length_s=cfg.rir_s)
    rirs = [src, *others]  # one (C, L) per point, in order
    dirs = [(scene.source_azimuth_deg, scene.source_elevation_deg, scene.source_distance_m)]
    dirs += list(scene.noise_directions)
    spf = round(FRAME_S * cfg.sample_rate)  # samples per label frame
    n = cfg.n_frames * spf
    mix = np.zeros((rirs[0].shape[0], n))
    rows: list[Row] = []
    record = {"room": scene.scene_id, "room_dim": list(scene.room_dim), "t60_s": scene.t60_s,
              "events": []}  # fmt: skip
    k = 0
    for track, ev in enumerate(events):
        a, m = ev["onset"] * spf, ev["length"] * spf
        sig = np.zeros(n)
        sig[a : a + m] = toy_sound(ev["cls"], m, cfg.sample_rate, rng) * dsp.db_to_amplitude(
            rng.uniform(-6, 0)
        )
        bounds = [a + j * ev["hop"] * spf for j in range(1, len(ev["points"]))]
        for j, w in enumerate(_windows(n, bounds, int(0.02 * cfg.sample_rate))):
            mix += dsp.convolve_rir(sig * w, rirs[k + j])
        for f in range(ev["onset"], ev["onset"] + ev["length"]):
            az, el, dist = dirs[k + min((f - ev["onset"]) // ev["hop"], len(ev["points"]) - 1)]
            # DCASE azimuths are in [-180, 180); rooms.head_direction gives [0, 360)
            az, el, dist = round((az + 180) % 360 - 180, 2), round(el, 2), round(dist, 3)
            rows.append(Row(f, ev["cls"], track, polar_to_unit(az, el), dist, (az, el)))
        first, last = dirs[k], dirs[k + len(ev["points"]) - 1]
        record["events"].append({"track": track, "class": ev["cls"], "onset_s": ev["onset"] * FRAME_S,
                                 "offset_s": (ev["onset"] + ev["length"]) * FRAME_S,
                                 "moving": ev["moving"], "start": list(first), "end": list(last)})  # fmt: skip
        k += len(ev["points"])
    noise = rng.standard_normal(mix.shape)
    mix, _ = dsp.mix_at_snr(mix, noise, float(rng.uniform(*cfg.snr_db)))
    mix, _ = dsp.limit_peak(mix)
    rows.sort(key=lambda r: (r.frame, r.track))
    return np.asarray(mix.T, dtype=np.float32), rows, record


def generate(
    out: Path, cfg: SynthConfig, name: str | None = None, rates: Sequence[int] = ()
) -> Path:
    """Write (or resume) the task; returns its directory."""
    name = check_name(name or f"synth-seld-{cfg.fmt}-ov{cfg.max_overlap}-v1.0.0", "task name")
    task_dir = child(out, name, "task name")
    parts = task_dir / ".parts"
    parts.mkdir(parents=True, exist_ok=True)
    settings = json.dumps(asdict(cfg), sort_keys=True)
    stamp = task_dir / ".synth-config.json"
    if stamp.exists() and stamp.read_text() != settings:
        raise ValueError(f"{task_dir} was generated with other settings ({stamp}); use a new --out")
    write_bytes_atomic(stamp, settings.encode())
    rates = sorted({cfg.sample_rate, *rates})
    labels, durations, manifest = {}, {}, []
    for fold in range(cfg.folds):
        split = f"fold{fold + 1:02d}"
        for i in range(cfg.clips_per_fold):
            clip = f"{split}_clip{i:05d}.wav"
            part = parts / f"{split}_{i:05d}.json"
            if part.exists() and all((task_dir / str(r) / split / clip).exists() for r in rates):
                done = json.loads(part.read_text())
            else:
                audio, rows, record = render_clip(cfg, fold, i)
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
    folds = [f"fold{f + 1:02d}" for f in range(cfg.folds)]
    metadata = {
        "task_name": name, "version": "v1.0.0", "embedding_type": "event",
        "prediction_type": "multilabel", "split_mode": "presplit_kfold", "sample_duration": cfg.clip_s,
        "sample_rates": rates, "evaluation": ["seld"],
        "seld": {"label_hop_ms": 100, "audio": "foa" if cfg.fmt == "ambisonic" else "binaural",
                 "direction": "azimuth counter-clockwise from front, elevation up, degrees (DCASE)",
                 "official_folds": {"train": folds[:-2], "valid": [folds[-2]], "test": [folds[-1]]},
                 "source_dataset": "synthetic", "synth_config": asdict(cfg)},
    }  # fmt: skip
    write_labels(task_dir, metadata, list(TOY_CLASSES), labels, durations)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(manifest[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(manifest)
    write_bytes_atomic(task_dir / "seld_manifest.csv", buf.getvalue().encode())
    return task_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m localization_tasks.seld.synth")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default=None)
    p.add_argument("--clips-per-fold", type=int, default=20)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--clip-s", type=float, default=3.0)
    p.add_argument("--max-overlap", type=int, default=2)
    p.add_argument("--format", dest="fmt", choices=("ambisonic", "binaural"), default="ambisonic")
    p.add_argument("--sample-rate", type=int, default=24000)
    p.add_argument("--extra-rate", type=int, action="append", default=[])
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = SynthConfig(clips_per_fold=args.clips_per_fold, folds=args.folds, clip_s=args.clip_s,
                          sample_rate=args.sample_rate, fmt=args.fmt, max_overlap=args.max_overlap,
                          seed=args.seed)  # fmt: skip
        print(generate(args.out, cfg, args.name, args.extra_rate))
    except (ValueError, OSError, sf.LibsndfileError) as e:
        print(f"localization_tasks.seld.synth: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
