"""Measured head-related transfer functions (HRTFs) for binaural rendering.

Coordinates are HEAD coordinates throughout: x to the front, y to the left, z up; azimuth is
measured counter-clockwise from the front seen from above (+90 deg = left ear side), elevation
upwards from the horizontal plane (+90 deg = above the head). This is the SOFA spherical
convention, so SOFA files load without sign changes.

The default set is the MIT KEMAR "normal pinna" measurement (Gardner and Martin, MIT Media Lab
Perceptual Computing Technical Report #280, 1994; free to use with citation) in the copy that the
`slab` wheel bundles (`slab/data/mit_kemar_normal_pinna.bz2`: 710 directions, 512 taps,
44.1 kHz). That file is a bz2 pickle of a `slab.HRTF` whose `sources` are vertical-polar
(azimuth, elevation, distance) with azimuth 0 = front, 90 = left, 180 = back (slab converted the
MIT data to the SOFA convention), and whose filters hold (taps, 2) arrays with the left ear in
column 0. The physics tests check this: a source at +90 deg is louder and earlier in channel 0.
The pickle is read with a restricted unpickler that replaces slab's classes by plain
containers, so slab itself is never imported (its import pulls in sounddevice/PortAudio and
matplotlib); only its data file is needed.
"""

from __future__ import annotations

import bz2
import functools
import hashlib
import importlib.util
import pickle
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

KEMAR_FILE = "mit_kemar_normal_pinna.bz2"


def unit_vectors(az_deg: np.ndarray, el_deg: np.ndarray) -> np.ndarray:
    """Unit vectors [x, y, z] (..., 3) of head-coordinate directions given in degrees."""
    az, el = np.radians(az_deg), np.radians(el_deg)
    return np.stack([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)], axis=-1)


@dataclass
class HRTF:
    """A set of head-related impulse responses on a grid of directions.

    directions: (D, 2) azimuth, elevation in degrees, head coordinates (see module docstring).
    hrirs: (D, 2, taps) float32, ear order (left, right), time zero = the measurement's.
    """

    name: str
    sample_rate: int
    directions: np.ndarray
    hrirs: np.ndarray

    def __post_init__(self) -> None:
        self.directions = np.asarray(self.directions, dtype=np.float64)
        self.hrirs = np.ascontiguousarray(self.hrirs, dtype=np.float32)
        d = self.directions.shape[0]
        if (
            self.directions.shape != (d, 2)
            or self.hrirs.ndim != 3
            or self.hrirs.shape[:2] != (d, 2)
        ):
            raise ValueError(
                f"expected directions (D, 2) and hrirs (D, 2, taps), got "
                f"{self.directions.shape} and {self.hrirs.shape}"
            )
        self._vectors = unit_vectors(self.directions[:, 0], self.directions[:, 1])

    @property
    def taps(self) -> int:
        return self.hrirs.shape[-1]

    def nearest_index(self, vectors: np.ndarray) -> np.ndarray:
        """Index of the grid direction nearest (great circle) to each unit vector (..., 3)."""
        return np.argmax(np.asarray(vectors) @ self._vectors.T, axis=-1)

    def nearest(self, az_deg: float, el_deg: float) -> np.ndarray:
        """HRIR pair (2, taps) of the measured direction nearest to (az_deg, el_deg)."""
        return self.hrirs[self.nearest_index(unit_vectors(az_deg, el_deg))]

    def resampled(self, sample_rate: int) -> HRTF:
        """The same HRTF at another sample rate (Hz), with its frequency response preserved."""
        if sample_rate == self.sample_rate:
            return self
        # Deliberately not `hear_gram.resample.resample_ir` (the resampler of every other RIR):
        # the binaural scene banks, and so every binaural Nat-HEAR file, were made with this
        # longer Kaiser-window filter. The Hann-sinc one differs most near the new Nyquist
        # frequency (KEMAR 44.1 -> 16 kHz: up to 0.10 of a 1.7 peak; a rendered RIR then moves by
        # -29 dB of its energy), which would change every binaural output byte.
        ratio = Fraction(int(sample_rate), int(self.sample_rate))
        out = resample_poly(
            self.hrirs.astype(np.float64), ratio.numerator, ratio.denominator, axis=-1
        )
        # resample_poly interpolates sample values; an impulse response's samples scale with the
        # sampling period, so rescale to keep the transfer function (dB) unchanged.
        out *= self.sample_rate / sample_rate
        return HRTF(self.name, int(sample_rate), self.directions, out.astype(np.float32))

    def fingerprint(self) -> str:
        """Short content hash (directions, responses, rate) for cache keys."""
        h = hashlib.sha256()
        h.update(str(self.sample_rate).encode())
        h.update(self.directions.astype("<f8").tobytes())
        h.update(self.hrirs.astype("<f4").tobytes())
        return h.hexdigest()[:16]


class _Stub:
    """Stand-in for slab's classes: keeps the pickled attributes and nothing else."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class _KemarUnpickler(pickle.Unpickler):
    """Reads slab's pickle without importing slab; refuses every other global."""

    _NUMPY = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str):
        if module in ("slab.hrtf", "slab.filter") and name in ("HRTF", "Filter"):
            return _Stub
        if module.startswith("numpy") and name in self._NUMPY:
            if module.startswith("numpy.core") and hasattr(np, "_core"):
                module = "numpy._core" + module[len("numpy.core") :]  # numpy 2 renamed the module
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in the KEMAR pickle")


def kemar_path() -> Path:
    """Path of the KEMAR file inside the installed `slab` package (found without importing it)."""
    spec = importlib.util.find_spec("slab")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the MIT KEMAR HRTF comes from the `slab` wheel: "
            "pip install --no-deps -c constraints.txt slab==1.8.2"
        )
    return Path(spec.submodule_search_locations[0]) / "data" / KEMAR_FILE


@functools.cache
def load_kemar() -> HRTF:
    """MIT KEMAR normal pinna, 710 directions, 512 taps, 44.1 kHz (cached in memory)."""
    with bz2.open(kemar_path(), "rb") as f:
        obj = _KemarUnpickler(f).load()
    sources = np.asarray(obj.sources, dtype=np.float64)  # (D, 3) azimuth, elevation, distance
    hrirs = np.stack([np.asarray(flt.data, dtype=np.float32).T for flt in obj.data])  # (D, 2, taps)
    return HRTF("mit-kemar-normal-pinna", int(obj.samplerate), sources[:, :2], hrirs)


def check_sofa_path(path: Path, what: str) -> None:
    """Refuse, naming `path`, what sofar would misreport: a directory, a missing file, or a
    name not ending in `.sofa` (sofar would open `path.with_suffix('.sofa')` instead)."""
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a directory, not a SOFA file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.suffix != ".sofa":
        raise ValueError(
            f"{what} {path}: the name must end in .sofa (sofar, which reads it, would open "
            f"{path.with_suffix('.sofa').name} instead); rename or link it"
        )


def load_sofa(path: str | Path) -> HRTF:
    """An HRTF from a SOFA file of convention SimpleFreeFieldHRIR (read with `sofar`).

    Errors name `path` as given: sofar itself swaps any other extension for `.sofa` and then
    reports that (non-existent) name, so such files are refused here first."""
    import sofar

    path = Path(path)
    check_sofa_path(path, "HRTF file")
    try:
        sofa = sofar.read_sofa(str(path), verbose=False)
    except Exception as e:  # netCDF4 and sofar raise many kinds
        raise ValueError(f"HRTF file {path}: not a readable SOFA file: {e}") from e
    if sofa.GLOBAL_SOFAConventions != "SimpleFreeFieldHRIR":
        raise ValueError(f"{path}: expected SimpleFreeFieldHRIR, got {sofa.GLOBAL_SOFAConventions}")
    ir = np.asarray(sofa.Data_IR, dtype=np.float32)  # (M, R, N)
    if not np.isfinite(ir).all():
        raise ValueError(f"{path}: the HRIRs hold NaN or infinite taps")
    if ir.ndim != 3 or ir.shape[1] != 2:
        raise ValueError(f"{path}: expected 2 receivers (ears), got {ir.shape[1]}")
    pos = np.atleast_2d(np.asarray(sofa.SourcePosition, dtype=np.float64))
    if str(sofa.SourcePosition_Type).lower() == "cartesian":
        x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
        az = np.degrees(np.arctan2(y, x))
        el = np.degrees(np.arctan2(z, np.hypot(x, y)))
    else:  # SOFA spherical: azimuth counter-clockwise, elevation up, degrees
        az, el = pos[:, 0], pos[:, 1]
    # Head coordinates are relative to where the listener looks (ListenerView, usually +x).
    view = np.asarray(sofa.ListenerView, dtype=np.float64).reshape(-1)[:3]
    if str(sofa.ListenerView_Type).lower() == "cartesian":
        az = az - np.degrees(np.arctan2(view[1], view[0]))
    else:
        az = az - view[0]
    # Receiver 0 is the left ear by convention; trust ReceiverPosition's y (left = +y) if given.
    ears = np.asarray(sofa.ReceiverPosition, dtype=np.float64).reshape(2, -1)
    if str(sofa.ReceiverPosition_Type).lower() == "cartesian" and ears[0, 1] < ears[1, 1]:
        ir = ir[:, ::-1]
    directions = np.stack([np.mod(az, 360.0), el], axis=1)
    return HRTF(Path(path).stem, int(np.asarray(sofa.Data_SamplingRate).item()), directions, ir)
