"""Tiny synthetic tasks in the HEAR 2021 on-disk format, for offline end-to-end checks.

The layout is the one `heareval` reads (hear-eval-kit 2021.1.3, `heareval.embeddings.runner`
and `heareval.predictions.runner`)::

    {root}/{name}/task_metadata.json          task_name, embedding_type, split_mode, splits, ...
    {root}/{name}/labelvocabulary.csv         idx,label
    {root}/{name}/{split}.json                scene: {filename: [label]}
                                              event: {filename: [{"label", "start", "end"}]} (ms)
    {root}/{name}/{sample_rate}/{split}/{filename}   WAV, mono or (samples, channels)

Every clip is a pure function of `(seed, task kind, clip index)`: its parameters are drawn from
a `numpy.random.Generator` seeded with that tuple and rendered at each requested sample rate
from the same parameters, so tasks are reproducible byte for byte and order independent.

The sound classes differ in their spectra (pitch, bandwidth, temporal fine structure) so a
linear probe on even a crude spectral embedding scores well above chance, while per-clip jitter
in frequency, level, timing and background noise keeps the clips distinct.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from hear_gram import cli
from hear_gram.dsp import band_noise, db_to_amplitude, fade, normalize_peak, power

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "hear-gram-synthetic-1"
WavSubtype = Literal["PCM_16", "FLOAT"]

# Item streams of the per-clip seed (seed, stream, index): scene and event clips never share draws.
_SCENE_STREAM = 1
_EVENT_STREAM = 2

# HEAR 2021 default event post-processing (dcase2016_task2), in ms; our events last >= 400 ms.
EVENT_POSTPROCESSING_GRID = {"median_filter_ms": [250], "min_duration": [125, 250]}


# --------------------------------------------------------------------------------------------
# Sound synthesis: pure functions, time in s, frequency in Hz, level in dB (fades and levels
# come from hear_gram.dsp).
# --------------------------------------------------------------------------------------------


def harmonic_tone(
    f0_hz: float,
    n_harmonics: int,
    rolloff: float,
    duration_s: float,
    sample_rate: int,
    phases: np.ndarray,
    vibrato_hz: float = 0.0,
    vibrato_depth: float = 0.0,
) -> np.ndarray:
    """Sum of harmonics k * f0 (k = 1..n) with amplitudes k**-rolloff, partials above 0.45 * fs
    dropped. `vibrato_depth` is a relative frequency deviation (0.01 = 1 %)."""
    t = np.arange(int(round(duration_s * sample_rate))) / sample_rate
    inst_f0 = f0_hz * (1.0 + vibrato_depth * np.sin(2 * np.pi * vibrato_hz * t))
    phase = 2 * np.pi * np.cumsum(inst_f0) / sample_rate
    out = np.zeros_like(t)
    for k in range(1, n_harmonics + 1):
        if k * f0_hz * (1 + vibrato_depth) >= 0.45 * sample_rate:
            break
        out += k**-rolloff * np.sin(k * phase + phases[k - 1])
    return out


def click_train(
    rate_hz: float,
    click_s: float,
    duration_s: float,
    sample_rate: int,
    offset_s: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Periodic clicks (`rate_hz` per second from `offset_s`), each an exponentially decaying
    noise burst with time constant `click_s / 5`."""
    n = int(round(duration_s * sample_rate))
    out = np.zeros(n)
    n_click = max(1, int(round(click_s * sample_rate)))
    envelope = np.exp(-np.arange(n_click) / (n_click / 5))
    for onset_s in np.arange(offset_s, duration_s, 1.0 / rate_hz):
        start = int(round(onset_s * sample_rate))
        burst = rng.standard_normal(n_click) * envelope
        out[start : start + n_click] += burst[: n - start]
    return out


def chirp(
    f_start_hz: float, f_end_hz: float, sweep_s: float, duration_s: float, sample_rate: int
) -> np.ndarray:
    """Repeated exponential sweeps from `f_start_hz` to `f_end_hz`, each `sweep_s` long."""
    t = np.arange(int(round(duration_s * sample_rate))) / sample_rate
    tau = np.mod(t, sweep_s)
    k = np.log(f_end_hz / f_start_hz) / sweep_s
    # Phase of an exponential sweep: 2 pi f0 (exp(k tau) - 1) / k, restarted every sweep.
    return np.sin(2 * np.pi * f_start_hz * np.expm1(k * tau) / k)


# --------------------------------------------------------------------------------------------
# Sound classes: a parameter draw (from a Generator) and a renderer (at any sample rate).
# All content lies below 7 kHz so every class renders the same at 16 kHz and above.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoundClass:
    """A family of sounds: `draw` picks a clip's parameters, `render` synthesises them."""

    draw: Callable[[np.random.Generator], dict]
    render: Callable[[dict, float, int, np.random.Generator], np.ndarray]


def _draw_hum(rng: np.random.Generator) -> dict:
    return {
        "f0_hz": rng.uniform(140.0, 260.0),
        "n_harmonics": 8,
        "rolloff": rng.uniform(0.8, 1.4),
        "phases": rng.uniform(0, 2 * np.pi, 8),
        "vibrato_hz": rng.uniform(3.0, 6.0),
        "vibrato_depth": rng.uniform(0.0, 0.02),
    }


def _draw_whistle(rng: np.random.Generator) -> dict:
    return {
        "f0_hz": rng.uniform(1800.0, 3000.0),
        "n_harmonics": 2,
        "rolloff": rng.uniform(1.5, 2.5),
        "phases": rng.uniform(0, 2 * np.pi, 2),
        "vibrato_hz": rng.uniform(4.0, 8.0),
        "vibrato_depth": rng.uniform(0.0, 0.01),
    }


def _render_tone(p: dict, duration_s: float, sample_rate: int, rng: np.random.Generator):
    return harmonic_tone(duration_s=duration_s, sample_rate=sample_rate, **p)


def _draw_hiss(rng: np.random.Generator) -> dict:
    low = rng.uniform(3000.0, 3800.0)
    return {"low_hz": low, "high_hz": low + rng.uniform(1500.0, 2800.0)}


def _render_hiss(p: dict, duration_s: float, sample_rate: int, rng: np.random.Generator):
    n = int(round(duration_s * sample_rate))
    # Filtered over exactly n samples, as these tasks have always been generated (byte for byte).
    return band_noise(p["low_hz"], p["high_hz"], n, sample_rate, rng, fft_length=n)


def _draw_clicks(rng: np.random.Generator) -> dict:
    return {
        "rate_hz": rng.uniform(6.0, 14.0),
        "click_s": rng.uniform(0.003, 0.008),
        "offset_s": rng.uniform(0.0, 0.05),
    }


def _render_clicks(p: dict, duration_s: float, sample_rate: int, rng: np.random.Generator):
    return click_train(duration_s=duration_s, sample_rate=sample_rate, rng=rng, **p)


def _draw_chirp(rng: np.random.Generator) -> dict:
    f_start = rng.uniform(300.0, 600.0)
    return {
        "f_start_hz": f_start,
        "f_end_hz": f_start * rng.uniform(6.0, 10.0),
        "sweep_s": rng.uniform(0.25, 0.45),
    }


def _render_chirp(p: dict, duration_s: float, sample_rate: int, rng: np.random.Generator):
    return chirp(duration_s=duration_s, sample_rate=sample_rate, **p)


SOUND_CLASSES: dict[str, SoundClass] = {
    "hum": SoundClass(_draw_hum, _render_tone),
    "whistle": SoundClass(_draw_whistle, _render_tone),
    "hiss": SoundClass(_draw_hiss, _render_hiss),
    "clicks": SoundClass(_draw_clicks, _render_clicks),
    "chirp": SoundClass(_draw_chirp, _render_chirp),
}
SCENE_CLASSES: tuple[str, ...] = ("hum", "whistle", "hiss", "clicks", "chirp")
EVENT_CLASSES: tuple[str, ...] = ("hum", "whistle", "hiss")


# --------------------------------------------------------------------------------------------
# Clips: parameters (pure function of the seed) and rendering (pure function of parameters).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One sound in a clip: class `label`, active from `start_s` to `end_s` (s)."""

    label: str
    start_s: float
    end_s: float
    params: dict
    level_db: float


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render a clip at any sample rate."""

    events: tuple[Event, ...]
    duration_s: float
    peak: float
    snr_db: float
    channel_gains_db: tuple[float, ...]
    noise_seed: int


def _clip_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def _draw_common(
    rng: np.random.Generator, events: tuple[Event, ...], duration_s: float, channels: int
) -> ClipSpec:
    return ClipSpec(
        events=events,
        duration_s=duration_s,
        peak=rng.uniform(0.25, 0.7),
        snr_db=rng.uniform(15.0, 30.0),
        channel_gains_db=tuple(rng.uniform(-3.0, 0.0, channels)),
        noise_seed=int(rng.integers(2**32)),
    )


def scene_clip_spec(
    label: str, duration_s: float, channels: int, seed: int, index: int
) -> ClipSpec:
    """A scene clip: one sound of class `label` filling the clip."""
    rng = _clip_rng(seed, _SCENE_STREAM, index)
    event = Event(label, 0.0, duration_s, SOUND_CLASSES[label].draw(rng), 0.0)
    return _draw_common(rng, (event,), duration_s, channels)


def min_event_clip_duration_s(max_events: int) -> float:
    """Shortest clip (s) that always fits `max_events` events of <= 1 s with 0.2 s gaps."""
    return 1.0 * max_events + 0.2 * (max_events + 1)


def event_clip_spec(
    classes: Sequence[str],
    duration_s: float,
    max_events: int,
    channels: int,
    seed: int,
    index: int,
) -> ClipSpec:
    """An event clip: 1..`max_events` non-overlapping sounds of 0.4-1.0 s, with at least 0.2 s
    of background between them and at the clip edges."""
    if duration_s < min_event_clip_duration_s(max_events):
        raise ValueError(
            f"{duration_s} s is too short for {max_events} events: "
            f"need >= {min_event_clip_duration_s(max_events)} s"
        )
    rng = _clip_rng(seed, _EVENT_STREAM, index)
    n_events = int(rng.integers(1, max_events + 1))
    lengths = rng.uniform(0.4, 1.0, n_events)
    slack = duration_s - lengths.sum() - 0.2 * (n_events + 1)
    # Split the slack into n+1 random gaps (a uniform point on the simplex).
    gaps = 0.2 + slack * rng.dirichlet(np.ones(n_events + 1))
    events = []
    t = 0.0
    for i in range(n_events):
        t += gaps[i]
        label = classes[int(rng.integers(len(classes)))]
        params = SOUND_CLASSES[label].draw(rng)
        events.append(Event(label, t, t + lengths[i], params, rng.uniform(-6.0, 0.0)))
        t += lengths[i]
    return _draw_common(rng, tuple(events), duration_s, channels)


def synthesize_clip(spec: ClipSpec, sample_rate: int) -> np.ndarray:
    """Synthesise `spec` at `sample_rate` Hz: (samples,) for one channel, else (samples, C)."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.noise_seed, sample_rate]))
    n = int(round(spec.duration_s * sample_rate))
    source = np.zeros(n)
    for event in spec.events:
        start = int(round(event.start_s * sample_rate))
        length = min(int(round((event.end_s - event.start_s) * sample_rate)), n - start)
        sound = SOUND_CLASSES[event.label].render(
            event.params, length / sample_rate, sample_rate, rng
        )
        sound = fade(normalize_peak(sound, 1.0), sample_rate, 0.01)
        source[start : start + length] += db_to_amplitude(event.level_db) * sound
    # Unit-variance white noise scaled to spec.snr_db below the source (the same product as
    # always, so tasks stay byte-identical; dsp.gain_for_snr rounds differently in the last bit).
    noise_rms = math.sqrt(power(source)) * db_to_amplitude(-spec.snr_db)
    channels = [
        db_to_amplitude(gain) * source + noise_rms * rng.standard_normal(n)
        for gain in spec.channel_gains_db
    ]
    audio = normalize_peak(np.stack(channels, axis=-1), spec.peak)  # (samples, C)
    return audio[:, 0] if audio.shape[1] == 1 else audio


# --------------------------------------------------------------------------------------------
# Task directories
# --------------------------------------------------------------------------------------------


def _validate(
    classes: Sequence[str], sample_rates: Sequence[int], channels: int, duration_s: float
) -> None:
    unknown = [c for c in classes if c not in SOUND_CLASSES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; choose from {sorted(SOUND_CLASSES)}")
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"need at least two distinct classes, got {list(classes)}")
    if not sample_rates or any(sr < 16000 for sr in sample_rates):
        raise ValueError(
            f"sample rates must be >= 16000 Hz (content reaches 7 kHz): {sample_rates}"
        )
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=4, sort_keys=False) + "\n")


def _write_task(
    task_dir: Path,
    metadata: dict,
    classes: Sequence[str],
    split_labels: dict[str, dict],
    specs: dict[str, dict[str, ClipSpec]],
    sample_rates: Sequence[int],
    subtype: WavSubtype,
) -> Path:
    task_dir.mkdir(parents=True, exist_ok=True)
    _write_json(task_dir / "task_metadata.json", metadata)
    with (task_dir / "labelvocabulary.csv").open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["idx", "label"])
        writer.writerows(enumerate(classes))
    for split, labels in split_labels.items():
        _write_json(task_dir / f"{split}.json", labels)
    for sr in sample_rates:
        for split, clips in specs.items():
            audio_dir = task_dir / str(sr) / split
            audio_dir.mkdir(parents=True, exist_ok=True)
            for filename, spec in clips.items():
                sf.write(audio_dir / filename, synthesize_clip(spec, sr), sr, subtype=subtype)
    logger.info("wrote %s (%s)", task_dir, ", ".join(f"{s}: {len(c)}" for s, c in specs.items()))
    return task_dir


def _synthetic_metadata(
    seed: int,
    classes: Sequence[str],
    sample_rates: Sequence[int],
    channels: int,
    subtype: WavSubtype,
) -> dict:
    """Our own key in task_metadata.json (heareval ignores it): how the task was generated."""
    return {
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "classes": list(classes),
        "sample_rates": list(sample_rates),
        "channels": channels,
        "subtype": subtype,
    }


def make_scene_task(
    root: str | Path,
    name: str = "hear-gram-demo-scene",
    n_per_class: int = 8,
    classes: Sequence[str] = SCENE_CLASSES,
    duration_s: float = 2.0,
    sample_rates: Sequence[int] = (48000,),
    channels: int = 1,
    kfold: int = 5,
    seed: int = 0,
    subtype: WavSubtype = "PCM_16",
) -> Path:
    """Write a multiclass scene task with `kfold` stratified folds (`new_split_kfold`) under
    `root/name` and return its path. `duration_s` is the clip length in s."""
    _validate(classes, sample_rates, channels, duration_s)
    if kfold < 3:
        raise ValueError(f"heareval needs >= 3 folds (test, valid and train), got {kfold}")
    folds = [f"fold{i:02d}" for i in range(kfold)]
    labels: dict[str, dict] = {fold: {} for fold in folds}
    specs: dict[str, dict[str, ClipSpec]] = {fold: {} for fold in folds}
    for c, label in enumerate(classes):
        for j in range(n_per_class):
            index = c * n_per_class + j
            # Rotating the first fold per class keeps the folds stratified and equally sized.
            fold = folds[(j + c) % kfold]
            filename = f"clip{index:04d}.wav"
            labels[fold][filename] = [label]
            specs[fold][filename] = scene_clip_spec(label, duration_s, channels, seed, index)
    metadata = {
        "task_name": name,
        "version": GENERATOR_VERSION,
        "embedding_type": "scene",
        "prediction_type": "multiclass",
        "split_mode": "new_split_kfold",
        "nfolds": kfold,
        "sample_duration": duration_s,
        "evaluation": ["top1_acc"],
        "mode": "full",
        "splits": folds,
        "synthetic": _synthetic_metadata(seed, classes, sample_rates, channels, subtype),
    }
    return _write_task(Path(root) / name, metadata, classes, labels, specs, sample_rates, subtype)


def make_event_task(
    root: str | Path,
    name: str = "hear-gram-demo-event",
    n_clips: int = 12,
    classes: Sequence[str] = EVENT_CLASSES,
    duration_s: float = 4.0,
    max_events: int = 3,
    sample_rates: Sequence[int] = (48000,),
    channels: int = 1,
    seed: int = 0,
    subtype: WavSubtype = "PCM_16",
) -> Path:
    """Write a multilabel sound-event task (`trainvaltest`: 60/20/20 % of `n_clips`) under
    `root/name` and return its path. Event times in the split JSON files are in ms."""
    _validate(classes, sample_rates, channels, duration_s)
    if max_events < 1 or duration_s < min_event_clip_duration_s(max_events):
        raise ValueError(
            f"max_events={max_events} needs 1 <= max_events and duration_s >= "
            f"{min_event_clip_duration_s(max(max_events, 1))} s, got {duration_s} s"
        )
    n_held_out = max(1, round(0.2 * n_clips))
    if n_clips - 2 * n_held_out < 1:
        raise ValueError(f"need at least 3 clips for train, valid and test, got {n_clips}")
    split_of = ["test"] * n_held_out + ["valid"] * n_held_out
    split_of = ["train"] * (n_clips - len(split_of)) + split_of
    labels: dict[str, dict] = {s: {} for s in ("train", "valid", "test")}
    specs: dict[str, dict[str, ClipSpec]] = {s: {} for s in ("train", "valid", "test")}
    for index, split in enumerate(split_of):
        spec = event_clip_spec(classes, duration_s, max_events, channels, seed, index)
        filename = f"clip{index:04d}.wav"
        specs[split][filename] = spec
        labels[split][filename] = [
            {"label": e.label, "start": round(1000 * e.start_s, 3), "end": round(1000 * e.end_s, 3)}
            for e in spec.events
        ]
    metadata = {
        "task_name": name,
        "version": GENERATOR_VERSION,
        "embedding_type": "event",
        "prediction_type": "multilabel",
        "split_mode": "trainvaltest",
        "sample_duration": duration_s,
        "evaluation": ["event_onset_200ms_fms", "segment_1s_er"],
        # Read by heareval.predictions.task_predictions_train (else its module default is used).
        "evaluation_params": {"event_postprocessing_grid": EVENT_POSTPROCESSING_GRID},
        "mode": "full",
        "splits": ["train", "valid", "test"],
        "synthetic": _synthetic_metadata(seed, classes, sample_rates, channels, subtype),
    }
    return _write_task(Path(root) / name, metadata, classes, labels, specs, sample_rates, subtype)


PROG = "python -m hear_gram.synthetic_tasks"
MAX_CHANNELS = 64  # HEAR tasks are mono; multichannel copies exist for the spatial tools' tests
MAX_SAMPLE_RATE_HZ = 384000


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(PROG, "Write tiny synthetic HEAR 2021 tasks (offline, deterministic).")
    cli.add_out(parser, help="tasks directory to write into")
    parser.add_argument("--kind", choices=["scene", "event", "both"], default="both")
    parser.add_argument("--sample-rate", type=cli.positive_int, action="append",
                        dest="sample_rates", help="Hz; repeat for several (default 48000)")  # fmt: skip
    parser.add_argument("--channels", type=cli.positive_int, default=1)
    cli.add_seed(parser)
    parser.add_argument("--subtype", choices=["PCM_16", "FLOAT"], default="PCM_16")
    return parser


def run(args: argparse.Namespace) -> None:
    rates = tuple(args.sample_rates or (48000,))
    if args.channels > MAX_CHANNELS:
        raise ValueError(f"--channels must be <= {MAX_CHANNELS}, got {args.channels}")
    if max(rates) > MAX_SAMPLE_RATE_HZ:
        raise ValueError(f"--sample-rate must be <= {MAX_SAMPLE_RATE_HZ} Hz, got {max(rates)}")
    common = {"sample_rates": rates, "channels": args.channels, "seed": args.seed,
              "subtype": args.subtype}  # fmt: skip
    if args.kind in ("scene", "both"):
        print(make_scene_task(args.out, **common))
    if args.kind in ("event", "both"):
        print(make_event_task(args.out, **common))


def main(argv: Sequence[str] | None = None) -> int:
    # No log file: --out is a HEAR tasks folder, and heareval's runner takes every folder in it
    # for a task (a `logs/` there would stop `heareval.embeddings.runner --task all`).
    return cli.main(PROG, build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
