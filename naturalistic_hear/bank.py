"""An on-disk bank of rendered scenes: scene i of a pool, its source RIR and its noise RIRs.

Layout: `<cache_dir>/<pool>-<format>-<rate>-<key>/scene-<index:05d>.npz`, where `key` hashes
every setting that changes a scene file (`describe()` without `n_scenes`: scene i is the same in
a bank of 200 or 2000 scenes, so a larger bank reuses a smaller one's files). Files are written
to a temporary name and renamed, so a file that exists is complete; an interrupted build resumes
where it stopped. Each file is a function of (settings, index) alone and the .npz is written with
fixed zip timestamps, so a bank is byte-identical whatever the number of workers or the order of
rendering.

Fold-disjoint scene pools (`assign_pools`, `PoolView`): a task whose clips all draw from one bank
lets a probe recognise a scene (and its room) seen in training instead of localizing; splitting
the bank's scenes between the task's splits, whole rooms at a time, makes every test fold's rooms
and source positions unseen in its training folds by construction.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hear_gram.safeio import TMP_SUFFIX, write_bytes_atomic
from naturalistic_hear.formats import scene_format
from naturalistic_hear.hrtf import HRTF, load_kemar
from naturalistic_hear.rooms import (
    DIFFUSE_NOISE_COUNTS,
    GENERATOR_VERSION,
    AmbisonicConvention,
    Format,
    Scene,
    render_rirs,
    sample_scene,
)

log = logging.getLogger(__name__)

# Scenes in a built-in bank unless a tool is told otherwise: the held-out scenes a Nat-HEAR,
# localization or suite build draws from (the one default every tool takes from here).
DEFAULT_N_SCENES = 200
MAX_CHANNELS = 4  # first-order Ambisonics; binaural has 2


class SceneBank:
    """Rendered scenes 0..n_scenes-1 of `pool` (see `sample_scene`) at one format and rate."""

    def __init__(
        self,
        cache_dir: str | Path,
        fmt: Format,
        sample_rate: int,
        pool: str = "test",
        n_scenes: int = DEFAULT_N_SCENES,
        seed: int = 0,
        hrtf: HRTF | None = None,
        ambisonic_convention: AmbisonicConvention = "acn-sn3d",
        length_s: float = 2.0,
        lru_size: int = 32,
    ):
        scene_format(fmt, "format")
        if n_scenes < 1:
            raise ValueError(f"n_scenes must be positive, got {n_scenes}")
        self.fmt, self.sample_rate, self.pool = fmt, int(sample_rate), pool
        self.n_scenes, self.seed, self.length_s = int(n_scenes), int(seed), float(length_s)
        self.ambisonic_convention = ambisonic_convention
        # Binaural banks own an HRTF at the bank's rate; Ambisonic banks need none.
        self.hrtf = None
        if fmt == "binaural":
            self.hrtf = (load_kemar() if hrtf is None else hrtf).resampled(self.sample_rate)
        settings = {k: v for k, v in self.describe().items() if k != "n_scenes"}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        self.directory = Path(cache_dir) / f"{pool}-{fmt}-{self.sample_rate}-{key}"
        self._settings = settings
        self._lru: OrderedDict[int, tuple[Scene, np.ndarray, np.ndarray]] = OrderedDict()
        self._lru_size = lru_size

    def describe(self) -> dict:
        """JSON-able description of everything the bank's files depend on (and its size)."""
        binaural = self.fmt == "binaural"
        return {
            "pool": self.pool,
            "seed": self.seed,
            "n_scenes": self.n_scenes,
            "format": self.fmt,
            "sample_rate": self.sample_rate,
            "hrtf": self.hrtf.name if binaural else None,
            "hrtf_fingerprint": self.hrtf.fingerprint() if binaural else None,
            "ambisonic_convention": None if binaural else self.ambisonic_convention,
            "length_s": self.length_s,
            "generator_version": GENERATOR_VERSION,
        }

    def __len__(self) -> int:
        return self.n_scenes

    def path(self, i: int) -> Path:
        return self.directory / f"scene-{i:05d}.npz"

    def missing(self) -> list[int]:
        return [i for i in range(self.n_scenes) if not self.path(i).exists()]

    def build(self, workers: int = 1, progress: bool = True) -> SceneBank:
        """Render the scenes that are not on disk yet (in `workers` processes); returns self."""
        self.directory.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(
            self.directory / "bank.json", json.dumps(self._settings, indent=2).encode() + b"\n"
        )
        _remove_stale_temporaries(self.directory)
        todo = self.missing()
        if not todo:
            return self
        log.info("rendering %d of %d scenes into %s", len(todo), self.n_scenes, self.directory)
        bar = tqdm(total=len(todo), desc=f"scenes {self.pool}/{self.fmt}", disable=not progress)
        args = (self.fmt, self.sample_rate, self.pool, self.seed, self.hrtf)
        args += (self.ambisonic_convention, self.length_s, str(self.directory))
        if workers <= 1:
            _init_worker(*args)
            for i in todo:
                _render_scene(i)
                bar.update()
        else:
            # spawn, not fork: the caller may hold threads (torch, BLAS) that fork would break.
            with ProcessPoolExecutor(
                workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=args
            ) as pool:
                for future in as_completed([pool.submit(_render_scene, i) for i in todo]):
                    future.result()
                    bar.update()
        bar.close()
        return self

    def scene(self, i: int) -> Scene:
        """Scene i's geometry alone (no rendering, no file): what `assign_pools` needs."""
        if not 0 <= i < self.n_scenes:
            raise IndexError(f"scene {i} outside the bank's {self.n_scenes} scenes")
        return sample_scene(self.pool, i, self.seed)

    def _check_file(self, path: Path) -> None:
        """Refuse a scene file this bank could not have written before inflating it: other
        members, or more bytes than a scene of these settings has (a deflated file could
        otherwise expand to any size in memory). Files of the older, stored layout pass too."""
        longest = math.ceil(self.length_s * self.sample_rate) * 4  # float32 samples per channel
        most = (1 + max(DIFFUSE_NOISE_COUNTS)) * MAX_CHANNELS * longest + (1 << 20)
        try:
            with zipfile.ZipFile(path) as zf:
                members = {m.filename: m.file_size for m in zf.infolist()}
        except (zipfile.BadZipFile, OSError) as e:
            raise ValueError(
                f"{path} is not a scene file ({e}); delete it to render it again"
            ) from None
        if (
            set(members) != {"scene.npy", "source.npy", "noises.npy"}
            or sum(members.values()) > most
        ):
            raise ValueError(f"{path} is not a scene file of this bank (members {sorted(members)[:4]}, "
                             f"{sum(members.values())} bytes inflated; at most {most}); delete it "
                             "to render it again")  # fmt: skip

    def get(self, i: int) -> tuple[Scene, np.ndarray, np.ndarray]:
        """Scene i, its source RIR (C, L) and noise RIRs (K, C, L), float32 (loaded lazily)."""
        if not 0 <= i < self.n_scenes:
            raise IndexError(f"scene {i} outside the bank's {self.n_scenes} scenes")
        if i in self._lru:
            self._lru.move_to_end(i)
            return self._lru[i]
        if not self.path(i).exists():
            raise FileNotFoundError(f"{self.path(i)} is missing: call SceneBank.build() first")
        self._check_file(self.path(i))
        with np.load(self.path(i)) as f:
            scene = Scene.from_dict(json.loads(str(f["scene"])))
            source, noises = f["source"], f["noises"]
        source.flags.writeable = noises.flags.writeable = False  # shared by the LRU cache
        item = (scene, source, noises)
        self._lru[i] = item
        if len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)
        return item


# Per-process rendering state, set once by the pool initializer (the HRTF is sent only once).
_WORKER: dict = {}


def _init_worker(fmt, sample_rate, pool, seed, hrtf, convention, length_s, directory) -> None:
    _WORKER.update(
        fmt=fmt,
        sample_rate=sample_rate,
        pool=pool,
        seed=seed,
        hrtf=hrtf,
        convention=convention,
        length_s=length_s,
        directory=Path(directory),
    )


def _render_scene(i: int) -> None:
    w = _WORKER
    scene = sample_scene(w["pool"], i, w["seed"])
    source, noises = render_rirs(
        scene, w["fmt"], w["sample_rate"], w["hrtf"], w["convention"], w["length_s"]
    )
    arrays = {
        "scene": np.array(json.dumps(scene.to_dict(), sort_keys=True)),
        "source": source,
        "noises": noises,
    }
    write_bytes_atomic(w["directory"] / f"scene-{i:05d}.npz", _npz_bytes(arrays))


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deflated .npz (readable by np.load) with fixed timestamps: same arrays, same bytes.
    Deflate is lossless, so renders do not change; it roughly halves a bank, mostly by the
    silent tails of the fixed-length RIRs (zeros after the room's decay). Level 1: higher
    levels took 1.5x the time for under 1 % less."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arr), allow_pickle=False)
            # a ZipInfo given to ZipFile.open is written with its own compress_type (stored)
            # whatever the archive's default: the method is named here, per member
            zf.writestr(info, member.getvalue(), zipfile.ZIP_DEFLATED, compresslevel=1)
    return buf.getvalue()


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files left by builds that died (their process no longer exists)."""
    for tmp in directory.glob(f".*{TMP_SUFFIX}"):
        pid = tmp.name[: -len(TMP_SUFFIX)].rsplit(".", 1)[-1]
        if not pid.isdigit() or not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------
# Fold-disjoint scene pools
# ---------------------------------------------------------------------------------------------

ASSIGNMENT_VERSION = "fold-disjoint-1"


class SceneAssignmentError(ValueError):
    """A bank whose scenes cannot be split between a task's splits without sharing a room or
    a source position."""


def _num(value: Any, digits: int) -> str:
    """A float rounded for identity keys; NaN (unknown) stays "nan"."""
    v = float(value)
    return "nan" if v != v else f"{round(v, digits):.{digits}f}"


def room_key(scene: Scene) -> str:
    """Identity of the room a scene is rendered in.

    A simulated scene's room is its geometry and walls (size, absorption, T60: the built-in bank
    draws a new room per scene); a SoundSpaces region's room is its scene JSON file (one house);
    a SOFA file, whose measurements carry no room, counts as one room."""
    if scene.room_dim:
        dims = ",".join(_num(d, 3) for d in scene.room_dim)
        return f"{scene.pool}:[{dims}]:a{_num(scene.absorption, 6)}:t{_num(scene.t60_s, 4)}"
    if scene.pool == "soundspaces":
        return "soundspaces:" + scene.scene_id.rsplit("#", 1)[0]
    return f"{scene.pool}:single-room"


def position_key(scene: Scene) -> str:
    """Identity of a source position: its room, direction (0.1 deg) and distance (1 cm) from
    the listener; the room position (1 cm) where the direction is unknown."""
    where = [scene.source_azimuth_deg, scene.source_elevation_deg, scene.source_distance_m]
    if any(v != v for v in where) and scene.source:
        return room_key(scene) + ":p" + ",".join(_num(v, 2) for v in scene.source)
    direction = ",".join((_num(where[0] % 360.0, 1), _num(where[1], 1), _num(where[2], 2)))
    return room_key(scene) + ":d" + direction


def scene_of(bank: Any, i: int) -> Scene:
    """Scene i of any bank: `bank.scene(i)` where cheap (`SceneBank`), else `bank.get(i)[0]`."""
    scene = getattr(bank, "scene", None)
    return scene(i) if callable(scene) else bank.get(i)[0]


@dataclass(frozen=True)
class ScenePools:
    """Scene indices of each split; `disjoint_by` is "room" (no room in two splits) or
    "source_position" (rooms shared, no source position in two splits)."""

    disjoint_by: str
    pools: Mapping[str, tuple[int, ...]]
    n_groups: Mapping[str, int]
    rooms: tuple[str, ...]  # room_key of every scene of the bank
    t60_known: bool  # every scene has a finite T60

    def describe(self) -> dict:
        """JSON-able record for task metadata: the rule and each split's index ranges."""
        return {
            "method": "fold-disjoint scene pools",
            "version": ASSIGNMENT_VERSION,
            "disjoint_by": self.disjoint_by,
            "room_disjoint": self.disjoint_by == "room",
            "rule": (
                "the bank's scenes are grouped by "
                + ("room" if self.disjoint_by == "room" else "source position")
                + "; consecutive groups go to the splits in order, in proportion to their number "
                "of clips (at least one group each); a clip draws its scene uniformly from its "
                "split's pool"
            ),
            "pools": {
                split: {
                    "n_scenes": len(idx),
                    "n_groups": self.n_groups[split],
                    "ranges": _ranges(idx),
                }
                for split, idx in self.pools.items()
            },
        }


def _ranges(indices: Sequence[int]) -> list[list[int]]:
    """Sorted indices as half-open runs [[start, stop), ...]."""
    out: list[list[int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def _allocate(n_groups: int, weights: Sequence[int]) -> list[int]:
    """Groups per split: proportional to `weights` (largest remainder), at least 1 each."""
    total = sum(weights)
    share = [n_groups * w / total if total else n_groups / len(weights) for w in weights]
    counts = [max(1, int(s)) for s in share]
    while sum(counts) > n_groups:  # the minimum of 1 overshot: take from the largest
        counts[max(range(len(counts)), key=lambda k: (counts[k], -k))] -= 1
    order = sorted(range(len(counts)), key=lambda k: (counts[k] - share[k], k))
    for k in order[: n_groups - sum(counts)]:
        counts[k] += 1
    return counts


def assign_pools(bank: Any, clips_per_split: Mapping[str, int], need_rooms: bool) -> ScenePools:
    """Split a built bank's scenes between splits (in the mapping's order) without sharing a room
    (or, where the bank has fewer rooms than splits and `need_rooms` is false, without sharing a
    source position). A pure function of the bank's scenes and the clip counts.

    Raises SceneAssignmentError when not even source positions can be kept apart, or when rooms
    cannot be and `need_rooms` is true (e.g. a T60 task from a one-room SOFA file)."""
    splits = list(clips_per_split)
    if not splits:
        raise SceneAssignmentError("a task without splits has no scenes to assign")
    scenes = [scene_of(bank, i) for i in range(len(bank))]
    rooms = [room_key(s) for s in scenes]
    by, keys = "room", rooms
    if len(set(rooms)) < len(splits):
        what = f"{len(scenes)} scenes in {len(set(rooms))} room(s) for {len(splits)} splits"
        if need_rooms:
            raise SceneAssignmentError(
                f"{what}: no room-disjoint folds are possible; use a bank with at least one room "
                "per split"
            )
        by, keys = "source_position", [position_key(s) for s in scenes]
        log.warning(
            "%s: rooms are shared between folds; folds keep source positions apart only", what
        )
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    ordered = sorted(groups.values(), key=lambda g: g[0])
    if len(ordered) < len(splits):
        raise SceneAssignmentError(
            f"{len(scenes)} scenes hold {len(ordered)} distinct source positions for "
            f"{len(splits)} splits: raise the number of scenes (--n-scenes) or use a larger bank"
        )
    counts = _allocate(len(ordered), [clips_per_split[s] for s in splits])
    pools, n_groups, start = {}, {}, 0
    for split, count in zip(splits, counts, strict=True):
        chosen = ordered[start : start + count]
        pools[split] = tuple(sorted(i for g in chosen for i in g))
        n_groups[split], start = count, start + count
    t60_known = all(math.isfinite(float(s.t60_s)) for s in scenes)
    return ScenePools(by, pools, n_groups, tuple(rooms), t60_known)


class PoolView:
    """The scenes `indices` of a bank as a bank of their own (`len`, `get`, `describe`): a clip
    drawing from it draws only from its split's pool; `index(j)` is the bank's scene index."""

    def __init__(self, bank: Any, indices: Sequence[int]):
        if not indices:
            raise SceneAssignmentError("an empty scene pool")
        self.bank, self.indices = bank, tuple(int(i) for i in indices)

    def __len__(self) -> int:
        return len(self.indices)

    def index(self, j: int) -> int:
        return self.indices[j]

    def get(self, j: int) -> tuple[Scene, np.ndarray, np.ndarray]:
        return self.bank.get(self.indices[j])

    def describe(self) -> dict:
        return self.bank.describe()
