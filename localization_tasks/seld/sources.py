"""Event sources for synthetic SELD tasks: mono sounds with class labels, dealt out to folds.

A `SoundBank` holds labelled mono sounds at one sample rate, read from

- a HEAR task directory (`from_hear_task`): `labelvocabulary.csv` gives the classes; a scene task
  (`{split}.json`: file -> [labels]) contributes every clip with exactly one label, an event task
  (file -> [{label, start, end}] in ms) every event that overlaps no other event of its clip, cut
  to its span; the audio is the highest sample-rate folder, downmixed to mono and resampled;
- a folder of sounds (`from_folder`): `{folder}/{class}/*.wav|flac|ogg`, one sub-folder per class
  (class names sorted).

Each sound is trimmed to where it is audible (10 ms frames within 40 dB of its loudest frame), so
that the synthetic labels do not claim activity over leading or trailing silence. Sounds are dealt
out to folds per class in turn (sorted by origin), so no sound plays in two folds and every fold
has every class; a class with fewer sounds than folds is refused. All names come from data and go
through hear_gram.safeio; sizes are bounded before audio is read.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from hear_gram import cli
from hear_gram.resample import resample
from hear_gram.safeio import child
from localization_tasks.seld.task import read_vocabulary

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
MAX_SOUNDS = 20_000
MAX_SOUND_S = 30.0  # longer sounds are cut: a synthetic event never needs more
MAX_TOTAL_S = 4 * 3600.0  # of audio held in memory (~2 GB at 32 kHz float32)
MIN_SOUND_S = 0.2  # two label frames
TRIM_DB = 40.0


class SourceError(ValueError):
    """Event sources that cannot be read or do not cover every fold."""


@dataclass(frozen=True)
class Sound:
    """One mono source (N,) at the bank's rate; `origin` names where it came from."""

    cls: int
    origin: str
    audio: np.ndarray = field(repr=False)


def trim_silence(x: np.ndarray, sample_rate: int, floor_db: float = TRIM_DB) -> np.ndarray:
    """`x` (N,) cut to the first..last 10 ms frame whose RMS is within `floor_db` dB of the
    loudest frame's; empty when silent."""
    hop = max(1, sample_rate // 100)
    n = len(x) // hop
    if n == 0:
        return x[:0]
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    if rms.max() <= 0:
        return x[:0]
    loud = np.nonzero(rms >= rms.max() * 10 ** (-floor_db / 20))[0]
    return x[loud[0] * hop : (loud[-1] + 1) * hop]


@dataclass
class SoundBank:
    """Labelled mono sounds at `sample_rate` Hz, dealt out to `folds` folds."""

    classes: tuple[str, ...]
    sample_rate: int
    description: dict
    sounds: list[Sound]
    folds: int
    _per_fold: dict[tuple[int, int], list[Sound]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._per_fold = {}
        short = []
        for c in range(len(self.classes)):
            items = sorted((s for s in self.sounds if s.cls == c), key=lambda s: s.origin)
            if len(items) < self.folds:
                short.append(f"{self.classes[c]} ({len(items)})")
            for f in range(self.folds):
                self._per_fold[(c, f)] = items[f :: self.folds]
        if short:
            raise SourceError(
                f"every class needs at least one sound per fold ({self.folds}); too few sounds "
                f"for: {', '.join(short[:10])}"
            )

    def pick(self, cls: int, fold: int, rng: np.random.Generator) -> Sound:
        items = self._per_fold[(cls, fold)]
        return items[int(rng.integers(len(items)))]

    def origins(self, fold: int) -> set[str]:
        return {s.origin for c in range(len(self.classes)) for s in self._per_fold[(c, fold)]}

    def digest(self) -> str:
        """sha256 over every sound's origin, class and samples: a resumed task must use the same."""
        h = hashlib.sha256()
        for s in sorted(self.sounds, key=lambda s: s.origin):
            h.update(f"{s.origin}\0{s.cls}\0{len(s.audio)}\0".encode())
            h.update(np.ascontiguousarray(s.audio, dtype=np.float32).tobytes())
        return h.hexdigest()


class _Reader:
    """Reads sound files at one target rate, within the bank's size limits."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.total_s = 0.0
        self.count = 0

    def read(self, path: Path, start_s: float = 0.0, end_s: float | None = None) -> np.ndarray:
        self.count += 1
        if self.count > MAX_SOUNDS:
            raise SourceError(f"over {MAX_SOUNDS} source sounds; refusing")
        try:
            info = sf.info(path)
        except sf.LibsndfileError as e:
            raise SourceError(f"{path}: not a readable sound file ({e})") from None
        sr = int(info.samplerate)
        if not 1000 <= sr <= 384_000 or not 1 <= info.channels <= 64:
            raise SourceError(f"{path}: {sr} Hz / {info.channels} channels is not audio")
        end_s = info.frames / sr if end_s is None else min(end_s, info.frames / sr)
        end_s = min(end_s, start_s + MAX_SOUND_S)
        a, b = int(round(start_s * sr)), int(round(end_s * sr))
        if b - a < MIN_SOUND_S * sr:
            return np.zeros(0)
        self.total_s += (b - a) / sr
        if self.total_s > MAX_TOTAL_S:
            raise SourceError(f"over {MAX_TOTAL_S / 3600:g} h of source audio; refusing")
        x, _ = sf.read(path, start=a, stop=b, dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        if not np.all(np.isfinite(x)):
            raise SourceError(f"{path}: NaN or infinite samples")
        if sr != self.sample_rate:
            x = resample(torch.from_numpy(x.copy())[None], sr, self.sample_rate)[0].numpy()
        return trim_silence(np.asarray(x, dtype=np.float64), self.sample_rate)


def _vocabulary(task_dir: Path) -> list[str]:
    path = task_dir / "labelvocabulary.csv"
    if not path.is_file():
        raise SourceError(f"{task_dir}: no labelvocabulary.csv; not a HEAR task directory")
    return read_vocabulary(task_dir)  # idx 0..N-1, unique labels; errors name the file and line


def _finite_ms(x: object, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
        raise SourceError(f"{where}: event times must be finite, non-negative ms, got {x!r}")
    return float(x)


def _clip_sounds(
    events: object, label_idx: dict[str, int], where: str
) -> list[tuple[int, float, float | None]]:  # noqa: E501
    """(class, start s, end s or None = whole clip) of the usable sounds of one clip."""
    if not isinstance(events, list):
        raise SourceError(f"{where}: labels must be a list")
    if all(isinstance(e, str) for e in events):  # scene task
        unknown = [e for e in events if e not in label_idx]
        if unknown:
            raise SourceError(f"{where}: label {unknown[0]!r} not in labelvocabulary.csv")
        return [(label_idx[events[0]], 0.0, None)] if len(set(events)) == 1 else []
    spans = []
    for i, e in enumerate(events):
        if (
            not isinstance(e, dict)
            or not isinstance(e.get("label"), str)
            or (e["label"] not in label_idx)
        ):
            raise SourceError(f"{where} event {i}: not an event with a known label")
        a, b = _finite_ms(e.get("start"), where), _finite_ms(e.get("end"), where)
        if b <= a:
            raise SourceError(f"{where} event {i}: end {b} ms is not after start {a} ms")
        spans.append((label_idx[e["label"]], a / 1000, b / 1000))
    return [s for s in spans if not any(o is not s and o[1] < s[2] and s[1] < o[2] for o in spans)]


def _json(path: Path, max_bytes: int = cli.MAX_CONFIG_BYTES) -> object:
    """A task JSON, refused as SourceError when over `max_bytes`, not JSON, holding NaN, or
    nested too deep."""
    if path.stat().st_size > max_bytes:
        raise SourceError(f"{path}: over {max_bytes} bytes; refusing")
    try:
        return cli.check_depth(
            json.loads(path.read_bytes(), parse_constant=_no_constant), str(path)
        )
    except RecursionError:
        raise SourceError(f"{path} nests deeper than {cli.MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as e:  # CLIError is a ValueError
        raise SourceError(f"{path} is not usable JSON: {e}") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def from_hear_task(task_dir: Path, sample_rate: int, folds: int) -> SoundBank:
    """A bank of the usable sounds of every split of a HEAR scene or event task."""
    task_dir = Path(task_dir)
    meta_path = task_dir / "task_metadata.json"
    if not meta_path.is_file():
        raise SourceError(f"{task_dir}: no task_metadata.json; not a HEAR task directory")
    meta = _json(meta_path)
    splits = meta.get("splits") if isinstance(meta, dict) else None
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise SourceError(f"{meta_path}: no list of splits")
    vocab = _vocabulary(task_dir)
    label_idx = {x: i for i, x in enumerate(vocab)}
    rates = {int(p.name): p.name for p in task_dir.iterdir()
             if p.is_dir() and p.name.isascii() and p.name.isdigit()}  # fmt: skip
    if not rates:
        raise SourceError(f"{task_dir}: no audio folder named by its sample rate")
    audio_dir = child(task_dir, rates[max(rates)], "sample-rate folder")
    reader, sounds = _Reader(sample_rate), []
    for split in splits:
        path = child(task_dir, f"{split}.json", "split name")
        if path.stat().st_size > 256 * 1024 * 1024:
            raise SourceError(f"{path}: over 256 MB of labels; refusing")
        data = _json(path, 256 * 1024 * 1024)
        if not isinstance(data, dict):
            raise SourceError(f"{path}: must map file names to labels")
        folder = child(audio_dir, split, "split name")
        for name in sorted(data):
            wav = child(folder, name, "clip name")
            for cls, a, b in _clip_sounds(data[name], label_idx, f"{path} {name}"):
                x = reader.read(wav, a, b)
                if len(x) >= MIN_SOUND_S * sample_rate:
                    sounds.append(Sound(cls, f"{split}/{name}@{a:.3f}", x))
    desc = {"kind": "hear-task", "task": str(meta.get("task_name", task_dir.name))}
    return SoundBank(tuple(vocab), sample_rate, desc, sounds, folds)


def from_folder(folder: Path, sample_rate: int, folds: int) -> SoundBank:
    """A bank of `{folder}/{class}/*.wav|flac|ogg`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"{folder} is not a directory")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise SourceError(f"{folder}: no class sub-folders")
    reader, sounds = _Reader(sample_rate), []
    for c, name in enumerate(classes):
        sub = child(folder, name, "class folder")
        for p in sorted(sub.iterdir()):
            if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file():
                x = reader.read(child(sub, p.name, "sound file"))
                if len(x) >= MIN_SOUND_S * sample_rate:
                    sounds.append(Sound(c, f"{name}/{p.name}", x))
    return SoundBank(tuple(classes), sample_rate, {"kind": "folder"}, sounds, folds)


def load_bank(path: Path, sample_rate: int, folds: int) -> SoundBank:
    """A HEAR task directory (it has task_metadata.json) or a folder of class sub-folders."""
    path = Path(path)
    if (path / "task_metadata.json").is_file():
        return from_hear_task(path, sample_rate, folds)
    return from_folder(path, sample_rate, folds)


def describe(bank: SoundBank | None, classes: Sequence[str]) -> dict:
    """What the task's events were drawn from, for task_metadata.json and the resume stamp."""
    if bank is None:
        return {"kind": "toy", "classes": list(classes)}
    return {**bank.description, "classes": list(bank.classes), "sounds": len(bank.sounds),
            "sha256": bank.digest()}  # fmt: skip
