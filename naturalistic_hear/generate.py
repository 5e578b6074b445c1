"""Nat-HEAR generator: HEAR tasks re-rendered as binaural or Ambisonic scenes (GRAM, arXiv
2506.00934, Nat-HEAR; scene simulation as in its training data).

Per clip (`render_clip`): the source is downmixed to mono and RMS-normalised to -14 dBFS, convolved
with a held-out scene's source RIR; one noise clip (200 ms fades, at most 10 s, random offset when
shorter than the clip) is convolved with every noise RIR of the scene and summed; the noise gets
one gain over all channels so that the SNR, measured over the noise-active part, is uniform in
5..40 dB; the result keeps the input's length and is never clipped (a too-loud mix is scaled down
as a whole, `headroom_gain`). Every draw (scene, SNR, noise) comes from a numpy Generator seeded by
a SHA-256 of (seed, task, split, file name), so a clip is a pure function of those and the same at
every sample rate folder, in any order, shard or worker. The work is split in two:
`render_spatial` (draws and convolutions) and `mix_spatial` (SNR gain and headroom), so a clip can
be mixed at several SNRs for the cost of one rendering (`localization_tasks.generate`).

Per task (`process_task`): OUT/<task dir name>/ gets the input's labels, split JSONs and
vocabulary byte for byte, task_metadata.json with a `naturalistic` block added, the audio at the
same sample-rate folders, splits and file names with 2 (binaural) or 4 (Ambisonic) channels, and
`naturalistic_manifest.csv` (one row per rendered file).

Audio files keep the input's container and sample subtype when it is PCM_16, PCM_24, PCM_32, FLOAT
or DOUBLE (HEAR 2021 tasks are 16-bit WAV, so Nat-HEAR is too); any other subtype (e.g. PCM_U8, or
a lossy one) is written as 32-bit float WAV.

Resuming and sharding: each file is written to a hidden temporary name and renamed into place, then
its manifest row is appended to `.naturalistic-rows/rows-<K>-of-<N>.jsonl` (one JSON object per
line). A file counts as done when it exists and its row is in any rows file (or in an existing
manifest), so an interrupted run redoes at most the files in flight. Shard K of N renders the
clips whose index in the sorted (sample rate, split, file name) list is K modulo N. Whichever
process finds every clip of the task done (the last shard, or any rerun) writes the manifest
sorted by (sample rate, split, file name), then removes the rows files and stray temporary files:
the finished folder is byte-identical whatever the sharding, worker count or interruptions.

Hostile or broken input:
- Names from the task's JSON (split names, file names) and the task's top-level files become
  paths only through `naturalistic_hear.paths.child`: an absolute, `..` or sub-folder name, or a
  symbolic link leading outside the task, is an `UnsafePathError` before anything is written.
  Every file under the output folder is written by `write_bytes_atomic` / `open_append`, which
  never write through a link planted there, and output folders are `child`ren of --out too.
- Audio, noise and RIRs must be finite (`hear_gram.dsp.NonFiniteError` naming the file); a noise
  clip shorter than `hear_gram.dsp.NOISE_MIN_S` (or than the clip) or silent over the part it
  covers is an error, never a mix whose manifest claims an SNR its source was erased for.
- Concurrent runs: shard K/N of an output task is held by one run at a time (a lock file; a
  second run of the same shard stops with "another run holds ..."); different shards may run at
  once (the shared files are written under a short task lock, and what one shard removes when the
  task is complete no other shard still needs). Worker processes end with their parent, also
  when it is killed with SIGKILL (`_die_with_parent`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import ctypes
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from hear_gram import dsp
from naturalistic_hear.formats import CHANNELS, SpatialFormat, of_channels, scene_format  # noqa: F401  (re-exported)
from naturalistic_hear.noise import NoiseSource
from naturalistic_hear.paths import (  # noqa: F401  (TMP_SUFFIX re-exported)
    TMP_SUFFIX,
    UnsafePathError,
    check_name,
    child,
    write_bytes_atomic,
)

# The task-I/O protocol; re-exported because other tools import it from here.
from naturalistic_hear.taskio import (  # noqa: F401
    Clip,
    RowKey,
    TaskError,
    TaskLayout,
    append_row,
    cell,
    encode_audio,
    open_rows,
    output_subtype,
    read_audio,
    read_rows,
    read_task,
    row_key,
    write_static,
    zero_peak_timestamp,
)

try:
    import fcntl
except ImportError:  # not POSIX: no locks (concurrent runs of one shard are then not refused)
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:  # rooms imports pyroomacoustics (1 s); the mixer needs none of it
    from naturalistic_hear.rooms import Format

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "nat-hear-1"
DEFAULT_SNR_RANGE = (5.0, 40.0)
# The widest SNR range accepted (dB): beyond it the noise is inaudible or the source is, and
# 10 ** (snr / 10) leaves the range where the mix's powers are meaningful.
SNR_LIMIT_DB = 100.0

# The 11 HEAR tasks of Nat-HEAR (GRAM, arXiv 2506.00934), as named by the HEAR 2021 task folders.
NAT_HEAR_TASKS: tuple[str, ...] = (
    "dcase2016_task2-hear2021-full",
    "fsd50k-v1.0-full",
    "libricount-v1.0.0-hear2021-full",
    "esc50-v2.0.0-full",
    "tfds_crema_d-1.0.0-full",
    "vox_lingua_top10-hear2021-full",
    "speech_commands-v0.0.2-5h",
    "nsynth_pitch-v2.2.3-5h",
    "beijing_opera-v1.0-hear2021-full",
    "mridangam_stroke-v1.5-full",
    "mridangam_tonic-v1.5-full",
)

MANIFEST_NAME = "naturalistic_manifest.csv"
ROWS_DIR = ".naturalistic-rows"
TASK_LOCK = ".naturalistic-task.lock"
SHARD_LOCK = ".naturalistic-shard-{k}-of-{n}.lock"
# Manifest columns. Positions are room coordinates in m, directions (azimuth, elevation, distance)
# head coordinates in deg, deg, m, as `naturalistic_hear.rooms.Scene` gives them; lists are JSON.
# source_gain: amplitude gain bringing the mono source to -14 dBFS RMS; noise_gain: gain on the
# summed spatial noise (noise clip as drawn, faded); headroom_gain: gain on the whole mix (1.0
# unless its peak would exceed 0.999); snr_db: drawn; achieved_snr_db: measured on the written
# parts (-inf for a silent source); noise offset and length in samples. Scene fields an external
# bank does not know are null.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "task",
    "split",
    "filename",
    "sample_rate",
    "format",
    "channels",
    "input_channels",
    "num_samples",
    "scene_index",
    "scene_id",
    "pool",
    "room_dim",
    "absorption",
    "t60_s",
    "listener",
    "head_azimuth_deg",
    "source_position",
    "source_azimuth_deg",
    "source_elevation_deg",
    "source_distance_m",
    "noise_kind",
    "n_noises",
    "noise_positions",
    "noise_directions",
    "snr_db",
    "achieved_snr_db",
    "source_gain",
    "noise_gain",
    "headroom_gain",
    "noise_file",
    "noise_offset_samples",
    "noise_length_samples",
)

# Independent random streams of a clip: changing the noise source leaves scenes and SNRs alone.
_SCENE_STREAM, _SNR_STREAM, _NOISE_STREAM = 0, 1, 2


# --------------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------------


def clip_rng(seed: int, task: str, split: str, filename: str, stream: int) -> np.random.Generator:
    """Generator for one random stream of one clip, from a SHA-256 of (seed, task, split, file
    name): stable across processes, machines and Python versions (unlike `hash()`)."""
    key = json.dumps([int(seed), task, split, filename]).encode()
    entropy = np.frombuffer(hashlib.sha256(key).digest(), dtype="<u4").tolist()
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(stream,)))


@dataclass(frozen=True)
class RenderedClip:
    """The parts of a rendered clip at their final level (after `headroom_gain`)."""

    target: np.ndarray  # (C, N) reverberant source
    noise: np.ndarray  # (C, N) spatial noise, scaled
    active: np.ndarray  # (N,) bool, where the noise clip was placed
    row: dict[str, Any]  # manifest row (JSON-able values)

    @property
    def mix(self) -> np.ndarray:
        """(C, N) float32: what is written to the file."""
        return (self.target + self.noise).astype(np.float32)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _scene_fields(scene: Any) -> dict[str, Any]:
    """Manifest fields of a `naturalistic_hear.rooms.Scene` (directions in head coordinates)."""
    return {
        "scene_id": scene.scene_id,
        "pool": scene.pool,
        "room_dim": _jsonable(scene.room_dim),
        "absorption": _jsonable(scene.absorption),
        "t60_s": _jsonable(scene.t60_s),
        "listener": _jsonable(scene.listener),
        "head_azimuth_deg": _jsonable(scene.head_azimuth_deg),
        "source_position": _jsonable(scene.source),
        "source_azimuth_deg": _jsonable(scene.source_azimuth_deg),
        "source_elevation_deg": _jsonable(scene.source_elevation_deg),
        "source_distance_m": _jsonable(scene.source_distance_m),
        "noise_kind": scene.noise_kind,
        "n_noises": len(scene.noise_directions),
        "noise_positions": _jsonable(scene.noises),
        "noise_directions": _jsonable(scene.noise_directions),
    }


@dataclass(frozen=True)
class SpatialClip:
    """A clip rendered in its scene but not yet mixed: the parts that are the same at every SNR
    (`render_spatial`), to be mixed at one SNR or several (`mix_spatial`)."""

    target: np.ndarray  # (C, N) reverberant source (mono source at -14 dBFS RMS, convolved)
    noise: np.ndarray  # (C, N) spatial noise at unit gain (noise clip as drawn, faded, convolved)
    active: np.ndarray  # (N,) bool, where the noise clip was placed
    row: dict[str, Any]  # the manifest fields that do not depend on the SNR


def draw_snr_db(
    seed: int,
    task: str,
    split: str,
    filename: str,
    snr_range: tuple[float, float] = DEFAULT_SNR_RANGE,
) -> float:
    """The clip's SNR in dB, uniform in `snr_range` = (low, high) dB. Its own random stream: the
    same uniform draw mapped into any range, independent of the scene and noise draws."""
    lo, hi = check_snr_range(snr_range)
    return float(clip_rng(seed, task, split, filename, _SNR_STREAM).uniform(lo, hi))


def check_snr_range(snr_range: Sequence[float]) -> tuple[float, float]:
    """(low, high) in dB as floats; ValueError unless both are finite, low <= high and both lie
    within +-SNR_LIMIT_DB (a NaN used to pass `low > high` and reach the task metadata)."""
    try:
        lo, hi = (float(v) for v in snr_range)
    except (TypeError, ValueError):
        raise ValueError(f"snr_range must be (low, high) in dB, got {snr_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"the SNR range must be finite, got {lo} {hi} dB")
    if not lo <= hi:
        raise ValueError(f"snr_range must be (low, high) with low <= high, got {lo} {hi}")
    if not (-SNR_LIMIT_DB <= lo and hi <= SNR_LIMIT_DB):
        raise ValueError(f"the SNR range must lie within +-{SNR_LIMIT_DB:g} dB, got {lo} {hi}")
    return lo, hi


def _count_nonfinite(x: np.ndarray) -> int:
    return int(x.size - np.count_nonzero(np.isfinite(x)))


def render_spatial(
    audio: np.ndarray,
    sample_rate: int,
    bank: Any,
    noise_source: NoiseSource,
    seed: int,
    task: str,
    split: str,
    filename: str,
) -> SpatialClip:
    """Everything of `render_clip` but the SNR: the scene and noise draws and both convolutions
    (the costly part), done once however many SNRs the clip is mixed at."""
    if noise_source.sample_rate != sample_rate:
        raise ValueError(
            f"noise source is at {noise_source.sample_rate} Hz, clip at {sample_rate} Hz: "
            "use noise_source.at_rate(sample_rate)"
        )
    clip_name = f"{task}/{split}/{filename}"
    audio = np.asarray(audio, dtype=np.float64)
    bad = _count_nonfinite(audio)
    if bad:  # a NaN sample would spread through the convolution into every output sample
        raise dsp.NonFiniteError(f"{clip_name}: the audio holds {bad} NaN or infinite samples")
    source = dsp.downmix(audio)  # (N,)
    n = source.shape[0]
    source_gain = dsp.rms_gain(source, dsp.SOURCE_DBFS)

    index = int(clip_rng(seed, task, split, filename, _SCENE_STREAM).integers(len(bank)))
    scene, source_rir, noise_rirs = bank.get(index)  # (C, L), (K, C, L)
    channels = source_rir.shape[0]
    fmt = of_channels(channels)
    if fmt is None or noise_rirs.shape[1:] != source_rir.shape:
        raise ValueError(
            f"scene {index}: RIR shapes {source_rir.shape} and {noise_rirs.shape} are not "
            "(C, L) and (K, C, L) with C = 2 (binaural) or 4 (Ambisonic)"
        )
    if _count_nonfinite(source_rir) or _count_nonfinite(noise_rirs):
        raise dsp.NonFiniteError(f"scene {index} ({scene.scene_id}): NaN or infinite RIR taps")
    target = dsp.convolve_rir(source * source_gain, source_rir)  # (C, N)

    noise_rng = clip_rng(seed, task, split, filename, _NOISE_STREAM)
    noise_clip, noise_name = noise_source.draw(noise_rng)
    noise_clip = np.asarray(noise_clip, dtype=np.float64)
    _check_noise(noise_clip, noise_name, sample_rate, n, clip_name)
    noise, offset, active = dsp.prepare_noise(noise_clip, sample_rate, n, noise_rng)
    # Convolution is linear: the same noise clip through every noise RIR, summed, is the clip
    # through the summed RIRs (one convolution instead of K).
    spatial_noise = dsp.convolve_rir(noise, noise_rirs.sum(axis=0))  # (C, N)

    row = {
        "task": task,
        "split": split,
        "filename": filename,
        "sample_rate": sample_rate,
        "format": fmt.value,
        "channels": channels,
        "input_channels": 1 if np.ndim(audio) == 1 else int(np.shape(audio)[1]),
        "num_samples": n,
        "scene_index": index,
        **_scene_fields(scene),
        "source_gain": source_gain,
        "noise_file": noise_name,
        "noise_offset_samples": offset,
        "noise_length_samples": int(active.sum()),
    }
    return SpatialClip(target, spatial_noise, active, row)


def _check_noise(noise: np.ndarray, name: str, sample_rate: int, n: int, clip_name: str) -> None:
    """A noise clip must be finite and at least NOISE_MIN_S long (or as long as the clip)."""
    bad = _count_nonfinite(noise)
    if bad:
        raise dsp.NonFiniteError(f"{clip_name}: noise {name} holds {bad} NaN or infinite samples")
    need = min(n, int(round(dsp.NOISE_MIN_S * sample_rate)))
    if noise.shape[-1] < need:
        raise ValueError(
            f"{clip_name}: noise {name} has {noise.shape[-1]} samples at {sample_rate} Hz, fewer "
            f"than the {need} needed ({dsp.NOISE_MIN_S} s, or the whole clip) to set an SNR over"
        )


def mix_spatial(clip: SpatialClip, snr_db: float) -> RenderedClip:
    """Mix a rendered clip at `snr_db` dB: one gain on the noise over all channels, the SNR
    measured over the noise-active part, then the whole mix scaled down if its peak would exceed
    0.999 (`headroom_gain`). Cheap: no convolution."""
    target_power = dsp.power(clip.target)
    if target_power == 0.0:
        # A silent source (digital silence): the noise is set against a source at -14 dBFS.
        target_power = 10.0 ** (dsp.SOURCE_DBFS / 10.0)
    noise_power = dsp.power(clip.noise, clip.active)
    if noise_power == 0.0 and clip.active.any():
        row = clip.row
        raise ValueError(
            f"{row['task']}/{row['split']}/{row['filename']}: noise {row['noise_file']} is silent "
            f"over the part it covers (after the scene's noise RIRs): no gain reaches {snr_db} dB"
        )
    noise_gain = dsp.gain_for_snr(target_power, noise_power, snr_db)
    _, headroom_gain = dsp.limit_peak(clip.target + noise_gain * clip.noise, dsp.MAX_PEAK)
    target, noise = clip.target * headroom_gain, clip.noise * (noise_gain * headroom_gain)
    fields = {
        **clip.row,
        "snr_db": snr_db,
        "achieved_snr_db": dsp.measured_snr_db(target, noise, clip.active),
        "noise_gain": noise_gain,
        "headroom_gain": headroom_gain,
    }
    computed = ("snr_db", "achieved_snr_db", "source_gain", "noise_gain", "headroom_gain")
    nan = [k for k in computed if math.isnan(fields[k])]
    if nan:  # unreachable with finite inputs (dsp checks them): never a NaN level in a manifest
        raise dsp.NonFiniteError(f"{clip.row['filename']}: NaN in {nan}")
    return RenderedClip(target, noise, clip.active, {k: fields[k] for k in MANIFEST_COLUMNS})


def render_components(
    audio: np.ndarray,
    sample_rate: int,
    bank: Any,
    noise_source: NoiseSource,
    seed: int,
    task: str,
    split: str,
    filename: str,
    snr_range: tuple[float, float] = DEFAULT_SNR_RANGE,
) -> RenderedClip:
    """Render one clip and keep its parts; see `render_clip`. `render_spatial`, then
    `mix_spatial` at the clip's drawn SNR."""
    snr_db = draw_snr_db(seed, task, split, filename, snr_range)
    spatial = render_spatial(audio, sample_rate, bank, noise_source, seed, task, split, filename)
    return mix_spatial(spatial, snr_db)


def render_clip(
    audio: np.ndarray,
    sample_rate: int,
    bank: Any,
    noise_source: NoiseSource,
    seed: int,
    task: str,
    split: str,
    filename: str,
    snr_range: tuple[float, float] = DEFAULT_SNR_RANGE,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Re-render one HEAR clip as a naturalistic scene.

    Args:
        audio: (N,) or (N, C_in) at `sample_rate` Hz (soundfile layout); channels are averaged.
        bank: a built `naturalistic_hear.bank.SceneBank` at `sample_rate` (or one with its
            interface: `len`, `get(i) -> (scene, source RIR (C, L), noise RIRs (K, C, L))`).
        noise_source: a `NoiseSource` at `sample_rate`.
        seed, task, split, filename: the clip's identity; every random draw derives from them.
        snr_range: (low, high) in dB; the SNR is uniform in it.

    Returns:
        mix (C, N) float32 with C = 2 (binaural) or 4 (Ambisonic), |mix| <= 0.999, and its
        manifest row (see `MANIFEST_COLUMNS`).
    """
    clip = render_components(
        audio, sample_rate, bank, noise_source, seed, task, split, filename, snr_range
    )
    return clip.mix, clip.row


# --------------------------------------------------------------------------------------------
# Manifest rows (the protocol itself is `naturalistic_hear.taskio`)
# --------------------------------------------------------------------------------------------


def _read_rows(out_dir: Path) -> dict[RowKey, dict[str, str]]:
    """Rows recorded so far: the manifest, if any, and every shard's rows log (a torn line,
    from an interrupted write, is skipped)."""
    rows = {}
    manifest = out_dir / MANIFEST_NAME
    if manifest.is_file() and not manifest.is_symlink():
        with manifest.open(newline="") as f:
            rows.update({row_key(r): r for r in csv.DictReader(f)})
    for path in sorted((out_dir / ROWS_DIR).glob("*.jsonl")):
        rows.update({row_key(r): r for r in read_rows(path)})
    return rows


def _manifest_bytes(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=row_key))
    return buffer.getvalue().encode()


def _finish(layout: TaskLayout, out_dir: Path) -> bool:
    """Write the manifest and clean up if every clip of the task is done; True if so."""
    rows = _read_rows(out_dir)
    keys = [(c.sample_rate, c.split, c.filename) for c in layout.clips]
    if any(k not in rows for k in keys) or not all(c.path(out_dir).is_file() for c in layout.clips):
        return False
    manifest = out_dir / MANIFEST_NAME
    data = _manifest_bytes([rows[k] for k in keys])
    if manifest.is_symlink() or not manifest.is_file() or manifest.read_bytes() != data:
        write_bytes_atomic(manifest, data)
    # Every clip is done, so no shard has work in flight: its debris can go. A run of another
    # shard finishing at the same time does the same (hence missing_ok), under the task lock.
    rows_dir = out_dir / ROWS_DIR
    for path in sorted(rows_dir.glob("*")):
        path.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        rows_dir.rmdir()
    for sr in layout.sample_rates:
        for split in layout.splits:
            for tmp in (out_dir / str(sr) / split).glob(f".*{TMP_SUFFIX}"):
                tmp.unlink(missing_ok=True)
    for lock in out_dir.glob(SHARD_LOCK.format(k="*", n="*")):
        _remove_stale_lock(lock)
    return True


# --------------------------------------------------------------------------------------------
# Rendering files (in this process or in workers)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """What a worker needs to render any clip of a task (picklable)."""

    task_dir: Path
    out_dir: Path
    seed: int
    snr_range: tuple[float, float]
    bank_factory: Callable[[int], Any]
    noise_source: NoiseSource


class _Renderer:
    """Renders and writes clips of one task; banks and noise sources made once per rate."""

    def __init__(self, job: _Job, banks: dict[int, Any] | None = None) -> None:
        self.job = job
        self.banks = dict(banks or {})
        self.noise: dict[int, NoiseSource] = {}

    def bank(self, sample_rate: int) -> Any:
        if sample_rate not in self.banks:
            self.banks[sample_rate] = self.job.bank_factory(sample_rate).build(
                workers=1, progress=False
            )
        return self.banks[sample_rate]

    def noise_source(self, sample_rate: int) -> NoiseSource:
        if sample_rate not in self.noise:
            self.noise[sample_rate] = self.job.noise_source.at_rate(sample_rate)
        return self.noise[sample_rate]

    def __call__(self, clip: Clip) -> dict[str, str]:
        job, sr = self.job, clip.sample_rate
        audio, info = read_audio(clip.path(job.task_dir))
        mix, row = render_clip(
            audio,
            sr,
            self.bank(sr),
            self.noise_source(sr),
            job.seed,
            job.task_dir.name,
            clip.split,
            clip.filename,
            job.snr_range,
        )
        container, subtype = output_subtype(info)
        data = encode_audio(mix, sr, container, subtype)
        write_bytes_atomic(clip.path(job.out_dir), data)
        return {k: cell(row[k]) for k in MANIFEST_COLUMNS}


_WORKER: _Renderer | None = None
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """End this worker process when `parent` ends, SIGKILL included (a pool's own clean-up never
    runs then, and its workers used to live on, reparented to PID 1, holding the output). Linux:
    the kernel sends SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG); everywhere: a daemon
    thread polls the parent id. Checked once right away, in case the parent died before."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no libc symbol: the thread below still works
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(job: _Job, parent: int | None = None) -> None:
    global _WORKER
    if parent is not None:
        _die_with_parent(parent)
    torch.set_num_threads(1)  # one process per core; torch only resamples noise files
    _WORKER = _Renderer(job)


def _render_in_worker(clip: Clip) -> dict[str, str]:
    assert _WORKER is not None
    return _WORKER(clip)


class _SingleThreadTorch:
    """Same torch thread count as the workers, so results never depend on `workers`."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.threads)


def _run(
    renderer: _Renderer,
    job: _Job,
    clips: list[Clip],
    workers: int,
    append: Callable[[dict[str, str]], None],
) -> None:
    if workers <= 1:
        with _SingleThreadTorch():
            for clip in clips:
                append(renderer(clip))
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with cf.ProcessPoolExecutor(workers, context, _init_worker, (job, os.getpid())) as pool:
        futures = [pool.submit(_render_in_worker, clip) for clip in clips]
        try:
            for future in cf.as_completed(futures):
                append(future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


# --------------------------------------------------------------------------------------------
# Locks: one run per shard of an output task; short critical sections for the shared files
# --------------------------------------------------------------------------------------------


def _lock_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return os.pread(fd, 32, 0).decode().strip() or "?"
    return "?"


@contextlib.contextmanager
def _locked(path: Path, wait: bool) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created, never through a link; removed on release so
    that a finished folder holds no lock files). `wait`: block until free, else TaskError at
    once. A run that opened the file just before its holder removed it sees that the path no
    longer names the inode it locked, and tries again."""
    if fcntl is None:
        yield
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            if path.is_symlink():
                raise UnsafePathError(f"{path} is a symbolic link; refusing to use it") from e
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise TaskError(
                f"another run holds {path} (pid {holder}): the same shard of this task is being "
                "rendered into the same --out; wait for it to finish (or stop it) and rerun"
            ) from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: the next run creates a fresh one
        os.close(fd)


def _remove_stale_lock(path: Path) -> None:
    """Remove a shard lock file no run holds (left by a killed run, or another sharding)."""
    if fcntl is None or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
    except BlockingIOError:
        pass  # a live run: it removes its own
    finally:
        os.close(fd)


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_workers(workers: int) -> int:
    """`workers` if it is an int >= 1, capped (with a warning) at the CPU cores available: the
    rendering is CPU-bound, so more processes only multiply memory."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    cores = _cpu_count()
    if workers > cores:
        logger.warning("workers: %d capped at %d (the CPU cores available)", workers, cores)
    return min(workers, cores)


# --------------------------------------------------------------------------------------------
# A whole task
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    out_dir: Path
    rendered: int  # files rendered by this call
    skipped: int  # files of this shard already done
    complete: bool  # every file of the task done and the manifest written


def naturalistic_metadata(
    fmt: Format,
    seed: int,
    snr_range: tuple[float, float],
    noise_source: NoiseSource,
    banks: dict[int, Any],
) -> dict:
    """The `naturalistic` block added to task_metadata.json (heareval ignores unknown keys)."""
    descriptions = {str(sr): _jsonable(bank.describe()) for sr, bank in sorted(banks.items())}
    first = next(iter(descriptions.values()))
    return {
        "generator": GENERATOR_VERSION,
        "format": fmt,
        "channels": scene_format(fmt).channels,
        "seed": seed,
        "scene_pool": first.get("pool"),
        "hrtf": first.get("hrtf"),
        "snr_db_range": list(snr_range),
        "source_dbfs": dsp.SOURCE_DBFS,
        "noise_fade_s": dsp.NOISE_FADE_S,
        "noise_max_s": dsp.NOISE_MAX_S,
        "max_peak": dsp.MAX_PEAK,
        "noise_source": noise_source.describe(),
        "sample_rates": sorted(banks),
        "banks": descriptions,
        "manifest": MANIFEST_NAME,
    }


def _parse_shard(shard: tuple[int, int]) -> tuple[int, int]:
    k, n = shard
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"shard must be (K, N) with 0 <= K < N, got {shard}")
    return k, n


def process_task(
    task_dir: str | Path,
    out_root: str | Path,
    fmt: Format,
    bank_factory: Callable[[int], Any],
    noise_source: NoiseSource,
    seed: int = 0,
    snr_range: tuple[float, float] = DEFAULT_SNR_RANGE,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    sample_rates: Sequence[int] | None = None,
) -> TaskResult:
    """Render shard `shard` = (K, N) of the HEAR task at `task_dir` into OUT/<task dir name>/.

    Args:
        fmt: "binaural" (2 channels) or "ambisonic" (4); the banks must produce that format.
        bank_factory: sample rate (Hz) -> SceneBank, called once per sample-rate folder here and
            in each worker process (so it must be picklable, e.g. a `functools.partial`); `build()`
            is called on what it returns.
        noise_source: a `NoiseSource`; `at_rate` gives it each folder's rate.
        seed: generator seed (scene choice, SNR, noise per clip).
        snr_range: (low, high) dB.
        workers: processes (1: render here).
        shard: (K, N), 0 <= K < N: this call renders the clips whose sorted index is K mod N.
        sample_rates: only these sample-rate folders (default: all of the input's).

    Returns a `TaskResult`; raises `TaskError` for a malformed task directory.
    """
    fmt = scene_format(fmt)
    k, n = _parse_shard(shard)
    snr_range = check_snr_range(snr_range)
    workers = check_workers(workers)
    layout = read_task(task_dir, sample_rates)
    banks = {
        sr: bank_factory(sr).build(workers=workers, progress=progress) for sr in layout.sample_rates
    }
    job = _Job(
        layout.path,
        child(out_root, layout.name, "task folder name"),
        seed,
        snr_range,
        bank_factory,
        noise_source,
    )
    renderer = _Renderer(job, banks)
    for sr in layout.sample_rates:  # fail before writing anything if the bank does not fit
        scene, rir, _ = renderer.bank(sr).get(0)
        if rir.shape[0] != fmt.channels:
            raise ValueError(f"the {sr} Hz bank gives {rir.shape[0]}-channel RIRs, not {fmt}")

    out_dir = job.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = dict(layout.metadata)
    metadata["naturalistic"] = naturalistic_metadata(fmt, seed, snr_range, noise_source, banks)
    # allow_nan=False: a NaN that slipped through would not be valid JSON for other readers
    meta_bytes = (json.dumps(metadata, indent=4, allow_nan=False) + "\n").encode()
    with _locked(out_dir / SHARD_LOCK.format(k=k, n=n), wait=False):
        with _locked(out_dir / TASK_LOCK, wait=True):
            _prepare_output(layout, out_dir, meta_bytes)
        rendered, skipped = _render_shard(layout, job, renderer, (k, n), workers, progress)
        with _locked(out_dir / TASK_LOCK, wait=True):
            complete = _finish(layout, out_dir)
    logger.info(
        "%s: rendered %d, skipped %d%s",
        layout.name,
        rendered,
        skipped,
        ", task complete" if complete else "",
    )
    return TaskResult(out_dir, rendered, skipped, complete)


def _prepare_output(layout: TaskLayout, out_dir: Path, meta_bytes: bytes) -> None:
    """The files every shard writes identically, and the audio folders (all under out_dir)."""
    write_static(child(out_dir, "task_metadata.json", "output file"), meta_bytes)
    for name in layout.copied_files:
        data = child(layout.path, name, "top-level file of the task").read_bytes()
        write_static(child(out_dir, name, "output file"), data)
    for sr in layout.sample_rates:
        for split in layout.splits:
            child(out_dir, f"{sr}/{split}", "output folder", subdirs=True).mkdir(
                parents=True, exist_ok=True
            )
    child(out_dir, ROWS_DIR, "output folder").mkdir(exist_ok=True)


def _render_shard(
    layout: TaskLayout,
    job: _Job,
    renderer: _Renderer,
    shard: tuple[int, int],
    workers: int,
    progress: bool,
) -> tuple[int, int]:
    """Render this shard's clips not done yet; (rendered, skipped)."""
    k, n = shard
    out_dir = job.out_dir
    mine = [c for i, c in enumerate(layout.clips) if i % n == k]
    done = _read_rows(out_dir)
    todo = [
        c
        for c in mine
        if (c.sample_rate, c.split, c.filename) not in done or not c.path(out_dir).is_file()
    ]
    rows_path = child(out_dir, f"{ROWS_DIR}/rows-{k}-of-{n}.jsonl", "rows file", subdirs=True)
    bar = tqdm(
        total=len(mine), initial=len(mine) - len(todo), desc=layout.name, disable=not progress
    )
    with open_rows(rows_path) as rows_file, bar:

        def append(row: dict[str, str]) -> None:
            append_row(rows_file, row)
            bar.update()

        _run(renderer, job, todo, min(workers, max(len(todo), 1)), append)
    return len(todo), len(mine) - len(todo)


def find_tasks(tasks_dir: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """Task directories to process: `names` (each must exist), else the Nat-HEAR tasks present."""
    root = Path(tasks_dir)
    if not root.is_dir():
        state = "is not a directory" if root.exists() else "does not exist"
        raise TaskError(f"tasks directory {root} {state}")
    present = sorted(p.name for p in root.iterdir() if (p / "task_metadata.json").is_file())
    for name in names or ():
        check_name(name, "--task")
    if names:
        missing = [name for name in names if not (root / name).is_dir()]
        if missing:
            raise TaskError(f"{root}: no task folder {missing}; found {present}")
        return [root / name for name in names]
    chosen = [root / name for name in NAT_HEAR_TASKS if name in present]
    if not chosen:
        raise TaskError(
            f"{root} holds none of the Nat-HEAR tasks {list(NAT_HEAR_TASKS)}; found task "
            f"folders {present} (pick some with --task)"
        )
    return chosen
