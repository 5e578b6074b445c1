"""An on-disk bank of rendered scenes: scene i of a pool, its source RIR and its noise RIRs.

Layout: `<cache_dir>/<pool>-<format>-<rate>-<key>/scene-<index:05d>.npz`, where `key` hashes
every setting that changes a scene file (`describe()` without `n_scenes`: scene i is the same in
a bank of 200 or 2000 scenes, so a larger bank reuses a smaller one's files). Files are written
to a temporary name and renamed, so a file that exists is complete; an interrupted build resumes
where it stopped. Each file is a function of (settings, index) alone and the .npz is written with
fixed zip timestamps, so a bank is byte-identical whatever the number of workers or the order of
rendering.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from naturalistic_hear.hrtf import HRTF, load_kemar
from naturalistic_hear.rooms import (
    GENERATOR_VERSION,
    AmbisonicConvention,
    Format,
    Scene,
    render_rirs,
    sample_scene,
)

log = logging.getLogger(__name__)
TMP_SUFFIX = ".tmp"


class SceneBank:
    """Rendered scenes 0..n_scenes-1 of `pool` (see `sample_scene`) at one format and rate."""

    def __init__(
        self,
        cache_dir: str | Path,
        fmt: Format,
        sample_rate: int,
        pool: str = "test",
        n_scenes: int = 200,
        seed: int = 0,
        hrtf: HRTF | None = None,
        ambisonic_convention: AmbisonicConvention = "acn-sn3d",
        length_s: float = 2.0,
        lru_size: int = 32,
    ):
        if fmt not in ("binaural", "ambisonic"):
            raise ValueError(f"format must be 'binaural' or 'ambisonic', got {fmt!r}")
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
        _write_atomic(
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

    def get(self, i: int) -> tuple[Scene, np.ndarray, np.ndarray]:
        """Scene i, its source RIR (C, L) and noise RIRs (K, C, L), float32 (loaded lazily)."""
        if not 0 <= i < self.n_scenes:
            raise IndexError(f"scene {i} outside the bank's {self.n_scenes} scenes")
        if i in self._lru:
            self._lru.move_to_end(i)
            return self._lru[i]
        if not self.path(i).exists():
            raise FileNotFoundError(f"{self.path(i)} is missing: call SceneBank.build() first")
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
    _write_atomic(w["directory"] / f"scene-{i:05d}.npz", _npz_bytes(arrays))


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed .npz (readable by np.load) with fixed timestamps: same arrays, same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
