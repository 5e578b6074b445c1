"""A small stand-in for naturalistic_hear.bank.SceneBank with the same interface, for tests.

Scenes are drawn from a seed and their RIRs are synthetic: a direct path with the source's delay
(distance / c), an azimuth-dependent interaural level and time difference (binaural) or first-order
Ambisonic gains (ACN/SN3D: W, Y, Z, X), and an exponentially decaying noise tail for the room.
Picklable (worker processes rebuild it from its factory).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from naturalistic_hear.bank import DEFAULT_N_SCENES
from naturalistic_hear.rooms import Scene

SPEED_OF_SOUND = 343.0


# The real Scene record: the fake bank fakes only the acoustics.
FakeScene = Scene


def _direction_rir(az_deg, el_deg, dist_m, fmt, sample_rate, length, t60_s, rng) -> np.ndarray:
    """(C, L) float32 synthetic RIR of a source at (azimuth, elevation, distance) in head coords."""
    channels = 2 if fmt == "binaural" else 4
    rir = np.zeros((channels, length))
    delay = int(round(dist_m / SPEED_OF_SOUND * sample_rate))
    az, el = np.radians(az_deg), np.radians(el_deg)
    if fmt == "binaural":
        # Positive azimuth to the left: the left ear is nearer, louder and earlier.
        lateral = np.sin(az) * np.cos(el)
        itd = int(round(abs(lateral) * 0.0007 * sample_rate))
        gains = (1.0 + 0.5 * lateral, 1.0 - 0.5 * lateral)
        delays = (delay + itd * (lateral < 0), delay + itd * (lateral > 0))
        for c in range(2):
            rir[c, min(delays[c], length - 1)] = gains[c] / max(dist_m, 0.5)
    else:
        gains = (1.0, np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el))
        rir[:, min(delay, length - 1)] = np.array(gains) / max(dist_m, 0.5)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal((channels, length)) * np.exp(-6.9 * t / t60_s) * 0.05
    tail[:, : delay + 1] = 0.0
    return (rir + tail).astype(np.float32)


class FakeSceneBank:
    """Same constructor and methods as naturalistic_hear.bank.SceneBank."""

    def __init__(
        self,
        cache_dir,
        fmt: str,
        sample_rate: int,
        pool: str = "test",
        n_scenes: int = DEFAULT_N_SCENES,
        seed: int = 0,
        hrtf=None,
        ambisonic_convention: str = "acn-sn3d",
        length_s: float = 2.0,
    ) -> None:
        if fmt not in ("binaural", "ambisonic"):
            raise ValueError(f"fmt must be binaural or ambisonic, got {fmt!r}")
        self.cache_dir = Path(cache_dir)
        self.fmt, self.sample_rate, self.pool = fmt, sample_rate, pool
        self.n_scenes, self.seed, self.length_s = n_scenes, seed, length_s
        self.ambisonic_convention = ambisonic_convention
        self._scenes: list | None = None
        self.build_calls = 0

    def build(self, workers: int = 1, progress: bool = True) -> FakeSceneBank:
        self.build_calls += 1
        if self._scenes is None:
            self._scenes = [self._make(i) for i in range(self.n_scenes)]
        return self

    def _make(self, i: int):
        rng = np.random.default_rng([self.seed, i])
        length = int(round(self.length_s * self.sample_rate))
        t60 = float(rng.uniform(0.2, 0.8))
        kind = "localized" if rng.random() < 0.5 else "diffuse"
        k = 1 if kind == "localized" else int(rng.integers(3, 6))
        src = (
            float(rng.uniform(-180, 180)),
            float(rng.uniform(-60, 60)),
            float(rng.uniform(1.5, 5)),
        )
        dirs = tuple(
            (float(rng.uniform(-180, 180)), float(rng.uniform(-30, 30)), float(rng.uniform(1, 5)))
            for _ in range(k)
        )
        scene = FakeScene(
            scene_id=f"fake-{self.pool}-{i:04d}",
            pool=self.pool,
            room_dim=(6.0, 5.0, 3.0),
            absorption=0.3,
            t60_s=t60,
            listener=(3.0, 2.5, 1.5),
            head_azimuth_deg=float(rng.uniform(0, 360)),
            source=(4.0, 3.0, 1.5),
            source_azimuth_deg=src[0],
            source_elevation_deg=src[1],
            source_distance_m=src[2],
            noise_kind=kind,
            noises=tuple((1.0, 1.0, 1.5) for _ in range(k)),
            noise_directions=dirs,
        )
        args = (self.fmt, self.sample_rate, length, t60, rng)
        source_rir = _direction_rir(*src, *args)
        noise_rirs = np.stack([_direction_rir(*d, *args) for d in dirs])
        return scene, source_rir, noise_rirs

    def __len__(self) -> int:
        return self.n_scenes

    def get(self, i: int):
        if self._scenes is None:
            raise RuntimeError("call build() first")
        return self._scenes[i]

    def describe(self) -> dict:
        return {
            "bank": "fake (tests)",
            "format": self.fmt,
            "sample_rate": self.sample_rate,
            "pool": self.pool,
            "n_scenes": self.n_scenes,
            "seed": self.seed,
            "hrtf": None,
            "ambisonic_convention": self.ambisonic_convention,
            "length_s": self.length_s,
        }
