"""One clip rendered as a naturalistic scene: the mixing both generators share (GRAM, arXiv
2506.00934, Nat-HEAR; scene simulation as in its training data).

Per clip (`render_scene_mix`): the source is downmixed to mono and RMS-normalised to -14 dBFS, convolved
with a held-out scene's source RIR; one noise clip (200 ms fades, at most 10 s, random offset when
shorter than the clip) is convolved with every noise RIR of the scene and summed; the noise gets
one gain over all channels so that the SNR, measured over the noise-active part, is uniform in
5..40 dB; the result keeps the input's length and is never clipped (a too-loud mix is scaled down
as a whole, `headroom_gain`). Every draw (scene, SNR, noise) comes from a numpy Generator seeded by
a SHA-256 of (seed, task, split, file name), so a clip is a pure function of those and the same at
every sample rate folder, in any order, shard or worker. The work is split in two:
`render_spatial` (draws and convolutions) and `mix_spatial` (SNR gain and headroom), so a clip can
be mixed at several SNRs for the cost of one rendering (`localization_tasks.generate`).

`naturalistic_hear.generate` writes Nat-HEAR tasks with it; `localization_tasks.generate` mixes
each rendering at the SNRs of its bins.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hear_gram import dsp
from naturalistic_hear.formats import of_channels
from naturalistic_hear.noise import NoiseSource

DEFAULT_SNR_RANGE = (5.0, 40.0)
# The widest SNR range accepted (dB): beyond it the noise is inaudible or the source is, and
# 10 ** (snr / 10) leaves the range where the mix's powers are meaningful.
SNR_LIMIT_DB = 100.0
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


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _scene_fields(scene: Any) -> dict[str, Any]:
    """Manifest fields of a `naturalistic_hear.rooms.Scene` (directions in head coordinates)."""
    return {
        "scene_id": scene.scene_id,
        "pool": scene.pool,
        "room_dim": jsonable(scene.room_dim),
        "absorption": jsonable(scene.absorption),
        "t60_s": jsonable(scene.t60_s),
        "listener": jsonable(scene.listener),
        "head_azimuth_deg": jsonable(scene.head_azimuth_deg),
        "source_position": jsonable(scene.source),
        "source_azimuth_deg": jsonable(scene.source_azimuth_deg),
        "source_elevation_deg": jsonable(scene.source_elevation_deg),
        "source_distance_m": jsonable(scene.source_distance_m),
        "noise_kind": scene.noise_kind,
        "n_noises": len(scene.noise_directions),
        "noise_positions": jsonable(scene.noises),
        "noise_directions": jsonable(scene.noise_directions),
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
    """Everything of `render_scene_mix` but the SNR: the scene and noise draws and both convolutions
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
    """Render one clip and keep its parts; see `render_scene_mix`. `render_spatial`, then
    `mix_spatial` at the clip's drawn SNR."""
    snr_db = draw_snr_db(seed, task, split, filename, snr_range)
    spatial = render_spatial(audio, sample_rate, bank, noise_source, seed, task, split, filename)
    return mix_spatial(spatial, snr_db)


def render_scene_mix(
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
