"""Noise clips for scene mixing: a folder of recordings (WHAM!/WHAMR! noise) or a built-in generator.

Both sources are frozen dataclasses with `draw(rng) -> (noise (N,), name)`: one mono clip at
`sample_rate` Hz chosen or synthesised with the given numpy Generator only, so a clip's noise is a
pure function of its seed. `at_rate(sr)` gives the same source at another rate (one per
sample-rate folder of a HEAR task) and `describe()` the JSON-able record kept in task metadata.

The built-in generator is an offline stand-in for WHAMR! noise (recorded cafés, restaurants, bars
and parks, GRAM, arXiv 2506.00934): it makes broadband ambiences of varied colour, texture and modulation so
the generator and its tests run without the dataset. Results with it are not comparable to the
paper's; the metadata says which source was used.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import torch

from hear_gram.dsp import (
    NOISE_MIN_S,
    NonFiniteError,
    band_noise,
    convolve_rir,
    db_to_amplitude,
    downmix,
    fade,
    normalize_peak,
    shaped_noise,
)
from hear_gram.resample import check_file_rate, check_resample_size, resample


class NoiseSource(Protocol):
    sample_rate: int

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """One mono noise clip (N,) at `sample_rate` Hz and a name for the manifest."""
        ...

    def at_rate(self, sample_rate: int) -> NoiseSource:
        """The same source producing clips at `sample_rate` Hz."""
        ...

    def describe(self) -> dict:
        """JSON-able description, identical for equal sources on any machine."""
        ...


def _audio_extensions() -> set[str]:
    return {"." + ext.lower() for ext in sf.available_formats()}


@dataclass(frozen=True)
class NoiseDir:
    """Noise recordings from a folder (searched recursively, files in sorted path order): each draw
    picks one file uniformly, averages its channels to mono and resamples it to `sample_rate` Hz
    (`hear_gram.resample`). Point it at e.g. `wham_noise/tt` for held-out WHAM! noise.

    Listing the folder reads every file's header (cheap): a file soundfile cannot open or shorter
    than `hear_gram.dsp.NOISE_MIN_S` is an error naming it, before anything is rendered. A file
    holding NaN or infinite samples, or only zeros, is an error when it is drawn (its samples are
    only read then). Symbolic links are followed: the folder is the user's own input."""

    path: Path
    sample_rate: int
    # Filled in by listing the folder (sorted relative POSIX paths); kept by `at_rate`.
    files: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    def __post_init__(self) -> None:
        root = Path(self.path)
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"noise folder {root} is a file, not a folder")
        if not root.is_dir():
            raise FileNotFoundError(f"noise folder {root} does not exist")
        if not self.files:
            ext = _audio_extensions()
            found = sorted(
                p.relative_to(root).as_posix()
                for p in root.rglob("*")
                if p.is_file() and p.suffix.lower() in ext
            )
            if not found:
                raise FileNotFoundError(
                    f"noise folder {root} holds no audio files soundfile can read "
                    f"(looked for {', '.join(sorted(ext))})"
                )
            _check_lengths(root, found)
            object.__setattr__(self, "files", tuple(found))
        object.__setattr__(self, "path", root)

    def at_rate(self, sample_rate: int) -> NoiseDir:
        return dataclasses.replace(self, sample_rate=sample_rate)

    def load(self, name: str) -> np.ndarray:
        """File `name` (relative to the folder) as mono float64 at `sample_rate` Hz."""
        path = self.path / name
        try:
            audio, sr = sf.read(path, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise ValueError(f"cannot read noise file {path}: {e}") from e
        bad = int(audio.size - np.count_nonzero(np.isfinite(audio)))
        if bad:  # checked before resampling, which would smear one NaN over the whole clip
            raise NonFiniteError(f"noise file {path} holds {bad} NaN or infinite samples")
        if not audio.any():
            raise ValueError(
                f"noise file {path} is silent (all samples are 0): no gain can set its SNR"
            )
        check_file_rate(sr, f"noise file {path}")
        check_resample_size((audio.shape[0],), sr, self.sample_rate, f"noise file {path}")
        mono = torch.from_numpy(downmix(audio))
        return resample(mono, sr, self.sample_rate).numpy().astype(np.float64)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        name = self.files[int(rng.integers(len(self.files)))]
        return self.load(name), name

    def describe(self) -> dict:
        # The folder's name and a digest of its file list and sizes, not its absolute path: shards
        # run on different machines must write identical metadata, and a resumed run must refuse
        # another folder of the same name (the sizes tell copies of a listing apart cheaply).
        listing = "\n".join(f"{name}\0{(self.path / name).stat().st_size}" for name in self.files)
        listing = listing.encode()
        return {
            "kind": "dir",
            "folder": self.path.name,
            "n_files": len(self.files),
            "files_sha256": hashlib.sha256(listing).hexdigest(),
        }


def _check_lengths(root: Path, names: list[str]) -> None:
    """Refuse unreadable files and files shorter than NOISE_MIN_S, from their headers."""
    short, unreadable = [], []
    for name in names:
        try:
            info = sf.info(root / name)
        except (sf.LibsndfileError, RuntimeError) as e:
            unreadable.append(f"{name} ({e})")
            continue
        check_file_rate(info.samplerate, f"noise file {root / name}")
        if info.frames < NOISE_MIN_S * info.samplerate:
            short.append(f"{name} ({info.frames} samples at {info.samplerate} Hz)")
    if unreadable:
        raise ValueError(
            f"noise folder {root}: unreadable audio files: {', '.join(unreadable[:5])}"
        )
    if short:
        raise ValueError(
            f"noise folder {root}: {len(short)} file(s) shorter than {NOISE_MIN_S} s, too short to "
            f"set an SNR over (remove them): {', '.join(short[:5])}"
            + (", ..." if len(short) > 5 else "")
        )


# --------------------------------------------------------------------------------------------
# Built-in ambiences: each a function (rng, n samples, sample rate) -> (n,) at an arbitrary level.
# --------------------------------------------------------------------------------------------


def coloured_noise(exponent: float, n: int, sample_rate: int, rng: np.random.Generator):
    """Gaussian noise with power spectrum ~ 1 / f**exponent (0 white, 1 pink, 2 brown) above
    20 Hz; nothing below."""

    def response(f):
        return np.where(f >= 20.0, np.maximum(f, 20.0) ** (-exponent / 2), 0.0)

    return shaped_noise(response, n, sample_rate, rng)


def slow_envelope(rate_hz: float, depth: float, n: int, sample_rate: int, rng) -> np.ndarray:
    """Positive random envelope 1 + depth * (noise low-passed at `rate_hz`, scaled to [-1, 1]),
    drawn at a 200 Hz control rate and linearly interpolated to n samples at `sample_rate`."""
    control_rate = 200.0
    m = int(np.ceil(n * control_rate / sample_rate)) + 2
    lfo = band_noise(0.0, rate_hz, m, int(control_rate), rng)
    lfo = np.interp(np.arange(n) * (control_rate / sample_rate), np.arange(m), lfo)
    return 1.0 + depth * lfo / max(float(np.abs(lfo).max()), 1e-12)


def _pink(rng, n, sr):
    return coloured_noise(rng.uniform(0.7, 1.3), n, sr, rng)


def _brown(rng, n, sr):
    return coloured_noise(rng.uniform(1.7, 2.2), n, sr, rng)


def _rumble(rng, n, sr):
    """Traffic / ventilation rumble: band-limited low noise swelling slowly."""
    high = rng.uniform(120.0, 400.0)
    env = slow_envelope(rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.8), n, sr, rng)
    return band_noise(20.0, high, n, sr, rng) * env


def _babble(rng, n, sr):
    """Crowd-like noise: a few speech-band noises, each amplitude-modulated at a syllabic rate."""
    voices = int(rng.integers(3, 9))
    low = rng.uniform(150.0, 400.0, voices)[:, None]
    high = low + rng.uniform(1500.0, 3500.0, voices)[:, None]
    speech = shaped_noise(lambda f: (f >= low) & (f <= high), n, sr, rng, count=voices)
    envelopes = [
        np.clip(slow_envelope(rng.uniform(3.0, 6.0), 1.0, n, sr, rng), 0.0, None)
        for _ in range(voices)
    ]
    return np.sum(speech * np.stack(envelopes), axis=0)


def _hum(rng, n, sr):
    """Mains / machine hum: 50 or 60 Hz (or a motor tone) with decaying harmonics and some hiss."""
    f0 = [50.0, 60.0, rng.uniform(80.0, 300.0)][int(rng.integers(3))]
    k = np.arange(1, 13)
    amplitudes = np.where(k * f0 < 0.45 * sr, k ** -rng.uniform(0.5, 1.5, k.size), 0.0)
    phasors = amplitudes * np.exp(1j * rng.uniform(0, 2 * np.pi, k.size))
    # Harmonic k is Im(phasor_k z^k), z = exp(2 pi i f0 t): powers by recurrence, not 12 sin().
    z = np.exp(2j * np.pi * f0 * np.arange(n) / sr)
    zk, tone = np.ones(n, dtype=complex), np.zeros(n)
    for phasor in phasors:
        zk *= z
        tone += (phasor * zk).imag
    hiss = coloured_noise(1.0, n, sr, rng)
    hiss_gain = db_to_amplitude(rng.uniform(-30.0, -15.0))
    return tone / np.abs(tone).max() + hiss_gain * hiss / np.std(hiss)


def _rain(rng, n, sr):
    """Rain / crackle: Poisson drops (short decaying high-passed bursts) over a soft pink bed."""
    rate = rng.uniform(50.0, 800.0)  # drops per second
    impulses = np.zeros(n)
    count = rng.poisson(rate * n / sr)
    impulses[rng.integers(0, n, count)] = rng.lognormal(0.0, 0.8, count)
    taps = max(8, int(rng.uniform(0.001, 0.006) * sr))
    kernel = rng.standard_normal(taps) * np.exp(-np.arange(taps) / (taps / 5))
    drops = convolve_rir(impulses, kernel[None, :])[0]
    bed = coloured_noise(1.0, n, sr, rng)
    drops /= max(float(np.std(drops)), 1e-12)  # no drop at all in a very short clip: bed only
    return drops + db_to_amplitude(rng.uniform(-25.0, -10.0)) * bed / np.std(bed)


BUILTIN_KINDS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "pink": _pink,
    "brown": _brown,
    "rumble": _rumble,
    "babble": _babble,
    "hum": _hum,
    "rain": _rain,
}


@dataclass(frozen=True)
class BuiltinNoise:
    """Offline stand-in for WHAMR! noise: each draw picks one of `BUILTIN_KINDS` uniformly and
    synthesises `min_s`..`max_s` seconds of it at `sample_rate` Hz, peak-normalised to 0.5 with
    10 ms fades (the mixer sets the level). Lengths straddle typical clip lengths so both
    noise-placement cases (shorter and longer than the clip) occur."""

    sample_rate: int
    min_s: float = 2.0
    max_s: float = 12.0

    def at_rate(self, sample_rate: int) -> BuiltinNoise:
        return dataclasses.replace(self, sample_rate=sample_rate)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        kind = list(BUILTIN_KINDS)[int(rng.integers(len(BUILTIN_KINDS)))]
        n = int(round(rng.uniform(self.min_s, self.max_s) * self.sample_rate))
        noise = BUILTIN_KINDS[kind](rng, n, self.sample_rate)
        return fade(normalize_peak(noise, 0.5), self.sample_rate, 0.01), f"builtin:{kind}"

    def describe(self) -> dict:
        return {
            "kind": "builtin",
            "stand_in_for": "WHAMR! noise",
            "kinds": list(BUILTIN_KINDS),
            "length_s": [self.min_s, self.max_s],
        }
