"""External RIR banks with `SceneBank`'s interface: SoundSpaces 2.0 scene folders and SOFA files.

Both give `get(i) -> (Scene, source RIR (C, L), noise RIRs (K, C, L))`, float32, at the bank's
sample rate and length, so `naturalistic_hear.generate` renders with them unchanged. `build()`
only reads and checks the index (the RIRs are already rendered); RIRs are loaded, resampled and
cut lazily in `get` and kept in a small LRU cache.

Every RIR goes through `fit_rir`: `hear_gram.resample.resample_ir` (band-limited resampling,
scaled by old rate / new rate so that the transfer function is kept), then cut or zero-padded to
`length_s`.

Scene fields an external bank does not know are NaN (scalars: absorption, T60, angles, distances)
or empty tuples (positions, room size). Directions are head coordinates as in
`naturalistic_hear.rooms`: azimuth counter-clockwise from the front (+90 deg = left), elevation up,
degrees, azimuth in [0, 360). Channels are used in the order stored: binaural = (left, right);
Ambisonic RIRs are assumed to be first-order B-format in the bank's convention (not converted).

SoundSpaces layout (`SoundSpacesBank`), as read by the upstream GRAM iterators (GRAM-M
`src/data_modules/iterators/SceneIterator.py`, GRAM-T `hear_api/heaRIR/iterators/SceneIterator.py`):
scene JSON files, each `{"sampled_regions": [{"region": {"scene": {"source": S, "noise": [S, ...]}}}]}`
with `S = {"rir": {"binaural_rir_path": ..., "ambisonic_rir_path": ...}, ...}`; every RIR is a
`.npy` array (C, L) at 32 kHz (upstream pads or cuts it to 2 s). Upstream GRAM-T also reads
`source.azimuth` and `source.elevation`; their unit and reference are not documented there, so we
take them as head-relative degrees in our convention. Optional keys read when present: `azimuth`,
`elevation`, `distance` (m) and `position` (3 numbers, m) of the source and of each noise, and
`scene.listener.position` / `scene.listener.azimuth` (head azimuth in room coordinates, deg).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hear_gram.resample import resample_ir
from naturalistic_hear.formats import CHANNELS, scene_format
from naturalistic_hear.hrtf import check_sofa_path
from naturalistic_hear.rooms import DIFFUSE_NOISE_COUNTS, Format, Scene, head_direction

log = logging.getLogger(__name__)

PATH_KEYS: dict[str, str] = {"binaural": "binaural_rir_path", "ambisonic": "ambisonic_rir_path"}
SOUNDSPACES_RATE = 32000  # Hz, the rate of GRAM's SoundSpaces RIRs (upstream SceneIterator)
NAN = float("nan")


class ExternalRIRError(ValueError):
    """An external RIR collection that cannot be used; the message names the file."""


def fit_rir(rir: np.ndarray, orig_sr: int, sample_rate: int, length: int) -> np.ndarray:
    """(C, L') RIR at `orig_sr` (Hz) -> (C, length) float32 at `sample_rate` (Hz), same transfer
    function: resampled, scaled by orig_sr / sample_rate, then cut or zero-padded."""
    x = resample_ir(rir, orig_sr, sample_rate)
    out = np.zeros((x.shape[0], length), dtype=np.float32)
    n = min(length, x.shape[-1])
    out[:, :n] = x[:, :n]
    return out


def channels_first(rir: np.ndarray, fmt: Format, path: Path | str) -> np.ndarray:
    """An RIR stored (C, L) or (L, C) as (C, L), checking C against the format (2 or 4)."""
    want = CHANNELS[fmt]
    if rir.ndim != 2:
        raise ExternalRIRError(f"{path}: RIR of shape {rir.shape}; expected (C, L) or (L, C)")
    if not np.isfinite(rir).all():  # one NaN tap would turn every clip of the scene into NaN
        raise ExternalRIRError(f"{path}: the RIR holds NaN or infinite taps")
    if rir.shape[0] == want:
        return rir
    if rir.shape[1] == want:
        return rir.T
    found = [c for c in rir.shape if c in (2, 4)]
    what = f"{found[0]} channels" if found else "no channel axis of 2 or 4"
    raise ExternalRIRError(
        f"{path}: RIR of shape {rir.shape} has {what}; {fmt} needs {want} (C, L) or (L, C)"
    )


def _direction(az: Any, el: Any, dist: Any) -> tuple[float, float, float]:
    """(azimuth in [0, 360), elevation, distance) from possibly missing values (-> NaN)."""
    az, el, dist = (NAN if v is None else float(v) for v in (az, el, dist))
    return (az % 360.0 if math.isfinite(az) else az), el, dist


def _noise_kind(k: int) -> str:
    return "localized" if k == 1 else "diffuse"


class _LRU(OrderedDict):
    """A dict keeping its `size` most recently used items."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or_make(self, key: int, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class _LazyBank:
    """Lazy indexing and an LRU cache of entries, shared by the external banks (subclasses define
    `_index`, `_size` and `_load`)."""

    def __init__(self, lru_size: int) -> None:
        self._lru = _LRU(lru_size)
        self._built = False

    def _index(self) -> None:
        raise NotImplementedError

    def _size(self) -> int:
        raise NotImplementedError

    def _load(self, i: int) -> tuple[Scene, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def build(self, workers: int = 1, progress: bool = True):
        """Read and check the index (no rendering: `workers` and `progress` are unused)."""
        if not self._built:
            self._index()
            self._built = True
        return self

    def __len__(self) -> int:
        self.build()
        return self._size()

    def get(self, i: int) -> tuple[Scene, np.ndarray, np.ndarray]:
        """Entry i: Scene, source RIR (C, L) and noise RIRs (K, C, L), float32 (read-only)."""
        if not 0 <= i < len(self):
            raise IndexError(f"scene {i} outside the bank's {len(self)} scenes")
        return self._lru.get_or_make(i, lambda: _read_only(*self._load(i)))


def _read_only(scene: Scene, source: np.ndarray, noises: np.ndarray):
    source.flags.writeable = noises.flags.writeable = False  # shared by the LRU caches
    return scene, source, noises


# --------------------------------------------------------------------------------------------
# SoundSpaces 2.0 scene folders (GRAM)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Region:
    scene: Scene
    source: Path
    noises: tuple[Path, ...]


class SoundSpacesBank(_LazyBank):
    """One entry per sampled region of the scene JSON files under `root` (sorted `**/*.json`).

    RIR paths in the JSON may be absolute, relative to the JSON file or relative to `root`; when
    none exists, a unique file of the same name anywhere under `rir_dir` (default `root`) is used,
    as upstream GRAM does (it joins the basename to its RIR folder). RIRs at `rir_sample_rate`
    (Hz) are resampled to `sample_rate` and cut or padded to `length_s` (s).

    describe()["checksum"] covers the JSON files' contents and the RIR files' names and sizes
    (not their contents: a full bank is ~100 GB and every worker process builds the index).
    """

    def __init__(
        self,
        root: str | Path,
        fmt: Format,
        sample_rate: int,
        rir_sample_rate: int = SOUNDSPACES_RATE,
        length_s: float = 2.0,
        rir_dir: str | Path | None = None,
        lru_size: int = 32,
    ) -> None:
        super().__init__(lru_size)
        scene_format(fmt, "format")
        self.root, self.fmt = Path(root).resolve(), fmt
        self.rir_dir = self.root if rir_dir is None else Path(rir_dir).resolve()
        self.sample_rate, self.rir_sample_rate = int(sample_rate), int(rir_sample_rate)
        self.length_s = float(length_s)
        self._regions: list[_Region] = []
        self._checksum = ""
        self._n_files = 0
        self._by_name: dict[str, list[Path]] | None = None

    def describe(self) -> dict:
        """JSON-able description: kind, folder, content checksum, format, rates, size."""
        self.build()
        return {
            "kind": "soundspaces",
            "pool": "soundspaces",
            "path": str(self.root),
            "rir_dir": str(self.rir_dir),
            "checksum": self._checksum,
            "checksum_covers": "scene JSON contents, RIR file names and sizes",
            "n_json_files": self._n_files,
            "n_scenes": len(self._regions),
            "format": self.fmt,
            "sample_rate": self.sample_rate,
            "rir_sample_rate": self.rir_sample_rate,
            "length_s": self.length_s,
            "hrtf": None,
            "ambisonic_convention": None if self.fmt == "binaural" else "as stored",
        }

    def _size(self) -> int:
        return len(self._regions)

    def _index(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"SoundSpaces scene folder {self.root} does not exist")
        files = sorted(self.root.rglob("*.json"), key=lambda p: p.relative_to(self.root).as_posix())
        if not files:
            raise ExternalRIRError(f"{self.root}: no scene JSON files (**/*.json)")
        digest = hashlib.sha256()
        regions: list[_Region] = []
        for path in files:
            data = path.read_bytes()
            digest.update(f"{path.relative_to(self.root).as_posix()}\0{len(data)}\0".encode())
            digest.update(data)
            regions += self._read_json(path, data)
        for rir in sorted({p for r in regions for p in (r.source, *r.noises)}):
            name = rir.relative_to(self.root).as_posix() if rir.is_relative_to(self.root) else rir
            digest.update(f"{name}\0{rir.stat().st_size}\0".encode())
        if not regions:
            raise ExternalRIRError(f"{self.root}: the scene JSON files hold no sampled regions")
        self._regions, self._checksum, self._n_files = regions, digest.hexdigest(), len(files)
        log.info("%s: %d scenes in %d JSON files", self.root, len(regions), len(files))

    def _read_json(self, path: Path, data: bytes) -> list[_Region]:
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ExternalRIRError(f"{path}: malformed JSON: {e}") from e
        sampled = doc.get("sampled_regions") if isinstance(doc, dict) else None
        if not isinstance(sampled, list):
            raise ExternalRIRError(f"{path}: expected an object with a list 'sampled_regions'")
        scene_name = path.relative_to(self.root).with_suffix("").as_posix()
        return [
            self._read_region(path, f"sampled_regions[{r}]", item, f"{scene_name}#{r}")
            for r, item in enumerate(sampled)
        ]

    def _read_region(self, path: Path, where: str, item: Any, scene_id: str) -> _Region:
        scene = _dig(item, ("region", "scene"), path, where)
        where += ".region.scene"
        source = _dig(scene, ("source",), path, where)
        noises = scene.get("noise", [])
        if not isinstance(noises, list) or not noises:
            raise ExternalRIRError(f"{path}: {where}.noise must be a non-empty list of noises")
        source_rir = self._rir_path(source, path, f"{where}.source")
        noise_rirs = tuple(
            self._rir_path(n, path, f"{where}.noise[{k}]") for k, n in enumerate(noises)
        )
        listener = scene.get("listener") if isinstance(scene.get("listener"), dict) else {}
        src_dir = _direction(source.get("azimuth"), source.get("elevation"), source.get("distance"))
        return _Region(
            Scene(
                scene_id=scene_id,
                pool="soundspaces",
                room_dim=(),
                absorption=NAN,
                t60_s=NAN,
                listener=_position(listener, path, f"{where}.listener"),
                head_azimuth_deg=_direction(listener.get("azimuth"), None, None)[0],
                source=_position(source, path, f"{where}.source"),
                source_azimuth_deg=src_dir[0],
                source_elevation_deg=src_dir[1],
                source_distance_m=src_dir[2],
                noise_kind=_noise_kind(len(noises)),
                noises=tuple(_position(n, path, f"{where}.noise") for n in noises),
                noise_directions=tuple(
                    _direction(n.get("azimuth"), n.get("elevation"), n.get("distance"))
                    for n in noises
                ),
            ),
            source_rir,
            noise_rirs,
        )

    def _rir_path(self, emitter: Any, path: Path, where: str) -> Path:
        key = PATH_KEYS[self.fmt]
        raw = _dig(emitter, ("rir", key), path, where)
        if not isinstance(raw, str) or not raw:
            raise ExternalRIRError(f"{path}: {where}.rir.{key} must be a non-empty path")
        p = Path(raw)
        tried = [p] if p.is_absolute() else [path.parent / p, self.root / p]
        for candidate in tried:
            if candidate.is_file():
                return candidate.resolve()
        hits = self._files_named(p.name)
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ExternalRIRError(
                f"{path}: {where}.rir.{key} = {raw!r}: not found as given, and {len(hits)} files "
                f"named {p.name} under {self.rir_dir} ({hits[0]}, {hits[1]}, ...)"
            )
        raise FileNotFoundError(
            f"{path}: {where}.rir.{key} = {raw!r}: no such RIR file (tried "
            f"{', '.join(map(str, tried))} and any {p.name} under {self.rir_dir})"
        )

    def _files_named(self, name: str) -> list[Path]:
        if self._by_name is None:  # walked once, and only when some path is not found as given
            self._by_name = {}
            for p in sorted(self.rir_dir.rglob("*.npy")):
                self._by_name.setdefault(p.name, []).append(p.resolve())
        return self._by_name.get(name, [])

    def _load(self, i: int) -> tuple[Scene, np.ndarray, np.ndarray]:
        region = self._regions[i]
        source = self._read_rir(region.source)
        noises = np.stack([self._read_rir(p) for p in region.noises])
        return region.scene, source, noises

    def _read_rir(self, path: Path) -> np.ndarray:
        try:
            rir = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as e:
            raise ExternalRIRError(f"{path}: not a readable .npy array: {e}") from e
        rir = channels_first(np.asarray(rir, dtype=np.float32), self.fmt, path)
        length = round(self.length_s * self.sample_rate)
        return fit_rir(rir, self.rir_sample_rate, self.sample_rate, length)


def _dig(obj: Any, keys: tuple[str, ...], path: Path, where: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise ExternalRIRError(f"{path}: {where} has no key {key!r} (found {found})")
        obj, where = obj[key], f"{where}.{key}"
    return obj


def _position(obj: Any, path: Path, where: str) -> tuple[float, ...]:
    """`obj["position"]` as 3 floats (m), or () when absent."""
    value = obj.get("position") if isinstance(obj, dict) else None
    if value is None:
        return ()
    if not (isinstance(value, list) and len(value) == 3):
        raise ExternalRIRError(f"{path}: {where}.position must be 3 numbers, got {value!r}")
    return tuple(float(v) for v in value)


# --------------------------------------------------------------------------------------------
# SOFA files of measured multichannel RIRs
# --------------------------------------------------------------------------------------------


class SofaBank(_LazyBank):
    """Scenes from the measurements of a SOFA file (`sofar`), e.g. SingleRoomSRIR,
    SingleRoomMIMOSRIR, MultiSpeakerBRIR or GeneralFIR.

    Data.IR is (M, R, N) (measurements, receivers, samples) or 4-D with E emitters, in the axis
    order of its convention (see `_ir_mren`); each (measurement, emitter) pair counts as one
    measurement. R must be 2 (binaural, receiver 0 =
    left ear; swapped when ReceiverPosition puts it on the right) or 4 (Ambisonic, used in file
    order). Data.Delay is applied (rounded to samples), Data.SamplingRate resampled to
    `sample_rate`, and every RIR cut or padded to `length_s` (s).

    Entry i (a pure function of (seed, i), whatever `n_scenes`): the source is measurement
    `order[i % M]`, `order` a permutation of the measurements drawn from `seed`, so the default
    `n_scenes` (None: M) uses each measurement once; half the entries get 1 noise measurement
    (localized), half 3, 4 or 5 (diffuse), drawn without replacement among the measurements with
    the same listener position and view and another source position (among all the others when
    there are none; fewer noises when there are not enough).

    Directions: the source position (SourcePosition, plus the EmitterPosition rotated by
    SourceView/SourceUp when E > 1) relative to ListenerPosition, in the head frame of ListenerView
    and ListenerUp (default +z); NaN where the source sits at the listener.
    """

    def __init__(
        self,
        path: str | Path,
        fmt: Format,
        sample_rate: int,
        n_scenes: int | None = None,
        seed: int = 0,
        length_s: float = 2.0,
        lru_size: int = 32,
    ) -> None:
        super().__init__(lru_size)
        scene_format(fmt, "format")
        if n_scenes is not None and n_scenes < 1:
            raise ValueError(f"n_scenes must be positive, got {n_scenes}")
        self.path, self.fmt, self.sample_rate = Path(path).resolve(), fmt, int(sample_rate)
        self.n_scenes, self.seed, self.length_s = n_scenes, int(seed), float(length_s)
        # Entries share measurements (one source and up to 5 noises each): keep the fitted ones.
        self._fitted = _LRU(2 * lru_size)

    def describe(self) -> dict:
        """JSON-able description: kind, file, content checksum, convention, format, rates, size."""
        self.build()
        return {
            "kind": "sofa",
            "pool": "sofa",
            "path": str(self.path),
            "checksum": self._checksum,
            "convention": self._convention,
            "n_measurements": len(self._ir),
            "n_scenes": len(self),
            "seed": self.seed,
            "format": self.fmt,
            "sample_rate": self.sample_rate,
            "rir_sample_rate": self._rate,
            "length_s": self.length_s,
            "hrtf": None,
            "ambisonic_convention": None if self.fmt == "binaural" else "as stored",
        }

    def _size(self) -> int:
        return len(self._ir) if self.n_scenes is None else self.n_scenes

    def _index(self) -> None:
        import sofar  # netCDF4 behind it: only when a SOFA bank is used

        check_sofa_path(self.path, "SOFA file")
        digest = hashlib.sha256()
        with self.path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        try:
            sofa = sofar.read_sofa(str(self.path), verify=False, verbose=False)
        except Exception as e:  # netCDF4 and sofar raise many kinds
            raise ExternalRIRError(f"{self.path}: not a readable SOFA file: {e}") from e
        self._checksum, self._convention = digest.hexdigest(), str(sofa.GLOBAL_SOFAConventions)
        self._rate = int(np.asarray(sofa.Data_SamplingRate).reshape(-1)[0])
        ir = _ir_mren(sofa, self.path)
        if not np.isfinite(ir).all():
            raise ExternalRIRError(f"{self.path}: the RIRs hold NaN or infinite taps")
        m, r, e, _ = ir.shape
        if r != CHANNELS[self.fmt]:
            raise ExternalRIRError(
                f"{self.path}: {r} receivers; {self.fmt} needs {CHANNELS[self.fmt]}"
            )
        delay = _sofa_delays(sofa, m, r, e, self.path)  # (M, R, E) samples
        ir = np.moveaxis(ir, 2, 1).reshape(m * e, r, -1)  # (M E, R, N), entry k = (k // E, k % E)
        order = _receiver_order(sofa, self.fmt, self.path)
        self._ir = ir if order == list(range(r)) else ir[:, order]
        self._delay = np.moveaxis(delay, 2, 1).reshape(m * e, r)[:, order]
        if len(self._ir) < 2:
            raise ExternalRIRError(f"{self.path}: needs at least 2 measurements (source + noise)")
        self._geometry(sofa, m, e)
        seq = np.random.SeedSequence(self.seed, spawn_key=(1,))
        self._order = np.random.default_rng(seq).permutation(len(self._ir))

    def _geometry(self, sofa: Any, m: int, e: int) -> None:
        """Per measurement: listener position, head azimuth, source position, direction."""
        listener = _sofa_points(sofa, "ListenerPosition", m, self.path)  # (M, 3), global
        view = _sofa_points(sofa, "ListenerView", m, self.path)
        up = _sofa_points(sofa, "ListenerUp", m, self.path, default=(0.0, 0.0, 1.0))
        source = _sofa_points(sofa, "SourcePosition", m, self.path)
        if e > 1:  # emitters in the source's frame (SourceView, SourceUp) around SourcePosition
            src_view = _sofa_points(sofa, "SourceView", m, self.path, default=(1.0, 0.0, 0.0))
            src_up = _sofa_points(sofa, "SourceUp", m, self.path, default=(0.0, 0.0, 1.0))
            local = _sofa_emitters(sofa, m, e, self.path)  # (M, E, 3)
            frames = np.stack([_frame(v, u) for v, u in zip(src_view, src_up, strict=True)])
            source = source[:, None] + np.einsum("mij,mei->mej", frames, local)  # (M, E, 3)
        else:
            source = source[:, None]
        self._source = source.reshape(m * e, 3)
        self._listener = np.repeat(listener, e, axis=0)
        views, ups = np.repeat(view, e, axis=0), np.repeat(up, e, axis=0)
        self._view = views / np.linalg.norm(views, axis=1, keepdims=True)
        rel = self._source - self._listener
        self._head = np.stack(
            [_frame(v, u) @ x for v, u, x in zip(views, ups, rel, strict=True)]
        )  # (M E, 3) head coordinates
        self._pose = np.round(np.concatenate([self._listener, self._view], axis=1), 3)

    def _noise_candidates(self, k: int) -> np.ndarray:
        same_pose = np.all(self._pose == self._pose[k], axis=1)
        other_place = np.linalg.norm(self._source - self._source[k], axis=1) > 1e-3
        candidates = np.flatnonzero(same_pose & other_place)
        if candidates.size == 0:
            candidates = np.flatnonzero(np.arange(len(self._ir)) != k)
        return candidates

    def _load(self, i: int) -> tuple[Scene, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(0, i)))
        k = int(self._order[i % len(self._ir)])
        diffuse = rng.random() < 0.5
        count = int(rng.choice(DIFFUSE_NOISE_COUNTS)) if diffuse else 1
        candidates = self._noise_candidates(k)
        picks = [int(j) for j in rng.choice(candidates, min(count, candidates.size), False)]
        azimuth, elevation, distance = self._direction(k)
        scene = Scene(
            scene_id=f"sofa-{i:05d}-m{k}",
            pool="sofa",
            room_dim=(),
            absorption=NAN,
            t60_s=NAN,
            listener=tuple(float(v) for v in self._listener[k]),
            head_azimuth_deg=math.degrees(math.atan2(self._view[k, 1], self._view[k, 0])) % 360,
            source=tuple(float(v) for v in self._source[k]),
            source_azimuth_deg=azimuth,
            source_elevation_deg=elevation,
            source_distance_m=distance,
            noise_kind=_noise_kind(len(picks)),
            noises=tuple(tuple(float(v) for v in self._source[j]) for j in picks),
            noise_directions=tuple(self._direction(j) for j in picks),
        )
        return scene, self._rir(k), np.stack([self._rir(j) for j in picks])

    def _direction(self, k: int) -> tuple[float, float, float]:
        if not np.linalg.norm(self._head[k]) > 1e-9:  # source at the listener (or NaN)
            return NAN, NAN, NAN
        return head_direction(self._head[k])

    def _rir(self, k: int) -> np.ndarray:
        return self._fitted.get_or_make(k, lambda: self._fit(k))

    def _fit(self, k: int) -> np.ndarray:
        ir, delay = self._ir[k], self._delay[k]  # (R, N), (R,)
        if delay.any():
            shifted = np.zeros((ir.shape[0], ir.shape[1] + int(delay.max())), dtype=np.float32)
            for c, d in enumerate(delay):
                shifted[c, d : d + ir.shape[1]] = ir[c]
            ir = shifted
        length = round(self.length_s * self.sample_rate)
        return fit_rir(ir, self._rate, self.sample_rate, length)


def _frame(view: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(3, 3) rows x (front), y (left), z (up) of the frame looking along `view` with `up`."""
    x = np.asarray(view, dtype=np.float64) / np.linalg.norm(view)
    z = np.asarray(up, dtype=np.float64) - np.dot(up, x) * x
    if np.linalg.norm(z) < 1e-9:  # up parallel to view: any perpendicular will do
        z = np.cross(x, [0.0, 1.0, 0.0]) if abs(x[1]) < 0.9 else np.cross(x, [1.0, 0.0, 0.0])
    z /= np.linalg.norm(z)
    return np.stack([x, np.cross(z, x), z])


def _to_cartesian(points: np.ndarray, kind: str, path: Path, name: str) -> np.ndarray:
    """(..., 3) SOFA coordinates -> cartesian (SOFA spherical: azimuth, elevation deg, radius m)."""
    if kind == "cartesian":
        return points
    if kind != "spherical":
        raise ExternalRIRError(f"{path}: {name}_Type {kind!r} is not cartesian or spherical")
    az, el, radius = np.radians(points[..., 0]), np.radians(points[..., 1]), points[..., 2]
    return np.stack(
        [radius * np.cos(el) * np.cos(az), radius * np.cos(el) * np.sin(az), radius * np.sin(el)],
        axis=-1,
    )


def _sofa_points(
    sofa: Any, name: str, m: int, path: Path, default: tuple[float, ...] | None = None
) -> np.ndarray:
    """A SOFA variable (I or M, 3) as (M, 3) cartesian float64."""
    value = getattr(sofa, name, None)
    if value is None:
        if default is None:
            raise ExternalRIRError(f"{path}: no {name}")
        value = default
    points = np.atleast_2d(np.asarray(value, dtype=np.float64))
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] not in (1, m):
        raise ExternalRIRError(f"{path}: {name} of shape {points.shape}; expected (1 or {m}, 3)")
    kind = str(getattr(sofa, f"{name}_Type", "cartesian")).lower()
    return np.broadcast_to(_to_cartesian(points, kind, path, name), (m, 3)).copy()


def _ir_mren(sofa: Any, path: Path) -> np.ndarray:
    """Data.IR as (M, R, E, N) float32. Conventions order a 4-D Data.IR differently (M R E N in
    MultiSpeakerBRIR, M R N E in SingleRoomMIMOSRIR and GeneralFIR-E): sofar's convention table
    says which (e.g. "mrne"; upper case marks a fixed size)."""
    ir = np.asarray(sofa.Data_IR, dtype=np.float32)
    if ir.ndim == 3:
        return ir[:, :, None, :]  # (M, R, E=1, N)
    convention = getattr(sofa, "_convention", None) or {}
    options = str(convention.get("Data_IR", {}).get("dimensions", "")).lower().split(",")
    dims = next((d.strip() for d in options if len(d.strip()) == 4), "")
    if ir.ndim != 4 or sorted(dims) != sorted("mren"):
        raise ExternalRIRError(
            f"{path}: Data.IR of shape {ir.shape} (dimensions {dims or 'unknown'}); expected "
            "(M, R, N) or a 4-D layout of M, R, E, N"
        )
    return np.ascontiguousarray(np.transpose(ir, [dims.index(d) for d in "mren"]))


def _sofa_emitters(sofa: Any, m: int, e: int, path: Path) -> np.ndarray:
    """EmitterPosition (E, 3, I or M), or (I, 3) for all emitters, as (M, E, 3) cartesian, in the
    source's frame."""
    points = np.asarray(sofa.EmitterPosition, dtype=np.float64)
    if points.ndim == 2:  # (I, C): every emitter at the source's origin
        points = np.broadcast_to(points.reshape(-1, 3)[:1, :, None], (e, 3, 1))
    if points.shape[:2] != (e, 3) or points.shape[2] not in (1, m):
        raise ExternalRIRError(
            f"{path}: EmitterPosition of shape {points.shape}; expected (E, 3, M)"
        )
    kind = str(getattr(sofa, "EmitterPosition_Type", "cartesian")).lower()
    points = _to_cartesian(np.moveaxis(points, 2, 0), kind, path, "EmitterPosition")  # (I/M, E, 3)
    return np.broadcast_to(points, (m, e, 3))


def _sofa_delays(sofa: Any, m: int, r: int, e: int, path: Path) -> np.ndarray:
    """Data.Delay (I or M, R[, E]) as (M, R, E) non-negative whole samples."""
    delay = np.asarray(getattr(sofa, "Data_Delay", 0), dtype=np.float64)
    delay = delay.reshape(delay.shape + (1,) * (3 - delay.ndim)) if delay.ndim < 3 else delay
    try:
        delay = np.broadcast_to(delay, (m, r, e))
    except ValueError:
        raise ExternalRIRError(f"{path}: Data.Delay of shape {delay.shape} does not fit") from None
    if (delay < 0).any():
        raise ExternalRIRError(f"{path}: negative Data.Delay")
    return np.rint(delay).astype(np.int64)


def _receiver_order(sofa: Any, fmt: Format, path: Path) -> list[int]:
    """Receiver order giving (left, right) for binaural; file order for Ambisonics."""
    points = np.asarray(getattr(sofa, "ReceiverPosition", np.zeros((1, 3))), dtype=np.float64)
    points = points[..., 0] if points.ndim == 3 else np.atleast_2d(points)  # (R, 3)
    kind = str(getattr(sofa, "ReceiverPosition_Type", "cartesian")).lower()
    if kind in ("cartesian", "spherical") and points.shape == (CHANNELS[fmt], 3):
        points = _to_cartesian(points, kind, path, "ReceiverPosition")
        if fmt == "binaural" and points[0, 1] < points[1, 1]:  # receiver 0 on the right (-y)
            return [1, 0]
        if fmt == "ambisonic" and np.ptp(points, axis=0).max() > 1e-6:
            log.warning(
                "%s: the 4 receivers sit at different positions (a capsule array, A-format?); "
                "they are used as B-format channels in file order",
                path,
            )
    return list(range(CHANNELS[fmt]))
