"""Shared DSP for scene synthesis: fades, levels, RIR convolution and SNR mixing (GRAM, arXiv 2506.00934).

One copy of each function, imported by the synthetic HEAR tasks, the Nat-HEAR generator
(`naturalistic_hear.mixing`) and pretraining alike. All are pure: randomness comes in through an
explicit `numpy.random.Generator`. Time is in s, rates in Hz, levels in dB (dBFS: relative to a
full-scale amplitude of 1.0, so a full-scale sine is -3 dBFS RMS).

Array functions accept numpy arrays or torch tensors (any device) and return the same kind, except
`prepare_noise`, which draws from a numpy Generator and works on numpy arrays (data loading).

Finite or fail: the level and gain functions (`power`, `rms_gain`, `normalize_peak`,
`gain_for_snr`, `snr_gain`, `measured_snr_db`, `limit_peak`) raise `NonFiniteError` when their
input holds NaN or an infinity, instead of returning a NaN gain (which a 16-bit writer turns into
constant -32768) or, through a failed comparison, a plausible 1.0. The check costs nothing extra:
it looks at the one reduced number (a NaN or infinite sample makes the mean square or the peak
non-finite). `snr_gains`, the batched device version used by pretraining, does not check (that
would synchronise the device on every batch); its callers feed it checked data.

Dimension letters: B batch (any leading dims), C channels, K noise positions, N samples, L RIR taps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# Scene mixing constants of arXiv 2602.03307 (source level, noise fades, longest noise clip) and
# the largest peak written to a file.
SOURCE_DBFS = -14.0
NOISE_FADE_S = 0.2
NOISE_MAX_S = 10.0
MAX_PEAK = 0.999
# Shortest noise clip the scene generators accept (s; or the whole clip when that is shorter).
# Not from the paper: the SNR is measured over the part the noise clip covers, so a clip of a
# few samples (mostly fade, its energy smeared past that part by the RIR) got a huge gain that
# the headroom then took out of the source (a 1-sample file left it at 2.7e-6 of its level while
# the manifest reported the drawn SNR). Two 0.2 s fades fit in 0.5 s with 0.1 s at full level.
NOISE_MIN_S = 0.5


class NonFiniteError(ValueError):
    """Audio, a level or a gain that is NaN or infinite where a finite number is needed."""


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise NonFiniteError(
            f"{what} is {value}: the input holds NaN or infinite samples (or overflows)"
        )
    return value


def db_to_amplitude(db: float) -> float:
    """Amplitude ratio of a level difference in dB: 10 ** (db / 20)."""
    return float(10.0 ** (db / 20.0))


def fade(x: Array, sample_rate: int, fade_s: float) -> Array:
    """Raised-cosine fade-in and fade-out of `fade_s` seconds on the last axis of `x`.

    The ramp is 0.5 - 0.5 cos(pi k / n) for k = 0..n-1 (n = fade_s * sample_rate samples, at most
    half the signal): the first and last samples are zeroed. Returns a new array.
    """
    n = min(int(round(fade_s * sample_rate)), x.shape[-1] // 2)
    out = x.clone() if isinstance(x, torch.Tensor) else x.copy()
    if n == 0:
        return out
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    if isinstance(x, torch.Tensor):
        ramp = torch.as_tensor(ramp, dtype=x.dtype, device=x.device)
        out[..., :n] *= ramp
        out[..., -n:] *= ramp.flip(0)
    else:
        out[..., :n] *= ramp
        out[..., -n:] *= ramp[::-1]
    return out


def normalize_peak(x: Array, peak: float) -> Array:
    """Scale `x` so that max |x| == `peak` (linear full scale); silence stays silent."""
    m = _finite(float(abs(x).max()), "the peak of the signal")
    return x if m == 0 else x * (peak / m)


def power(x: Array, active: Array | None = None) -> float:
    """Mean square of `x` (..., N) over every channel together, and over the samples where the
    boolean mask `active` (N,) is true when given. 0.0 for an empty selection; NonFiniteError
    when the selection holds NaN or infinite samples (or its mean square overflows)."""
    if active is not None:
        if isinstance(x, torch.Tensor):
            active = torch.as_tensor(active, dtype=torch.bool, device=x.device)
        x = x[..., active]
    if x.shape[-1] == 0 or 0 in x.shape:
        return 0.0
    return _finite(float((x * x).mean()), "the power (mean square) of the signal")


def rms_dbfs(x: Array) -> float:
    """RMS level of `x` over all channels in dBFS; -inf for silence."""
    p = power(x)
    return 10.0 * math.log10(p) if p > 0 else -math.inf


def rms_gain(x: Array, target_dbfs: float = SOURCE_DBFS) -> float:
    """Linear gain that brings the RMS of `x` (all channels together) to `target_dbfs`; 1.0 for
    digital silence (nothing to normalise)."""
    p = power(x)
    return math.sqrt(10.0 ** (target_dbfs / 10.0) / p) if p > 0 else 1.0


def rms_normalize(x: Array, target_dbfs: float = SOURCE_DBFS) -> Array:
    """`x` scaled so that its RMS over all channels is `target_dbfs` (dBFS); silence unchanged."""
    return x * rms_gain(x, target_dbfs)


def downmix(x: Array) -> Array:
    """Mono (N,) from audio in soundfile layout: (N,) is returned as is, (N, C) is averaged."""
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"expected audio of shape (N,) or (N, C), got {tuple(x.shape)}")
    return x.mean(1) if isinstance(x, torch.Tensor) else x.mean(axis=1)


def fft_size(n: int) -> int:
    """Smallest 5-smooth integer (2^a 3^b 5^c) >= n: a length the FFTs handle fast."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35 << max(0, math.ceil(math.log2(n / p35)))  # smallest p35 * 2^a >= n
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def shaped_noise(
    response: Callable[[np.ndarray], np.ndarray],
    n: int,
    sample_rate: int,
    rng: np.random.Generator,
    count: int | None = None,
    fft_length: int | None = None,
) -> np.ndarray:
    """Gaussian noise (n,), or (count, n), with amplitude spectrum `response(freqs_hz)` (a (F,) or
    (count, F) array), filtered circularly over `fft_length` >= n samples and cut to n.

    The default length is `fft_size(n)`, a fast 5-smooth one: arbitrary lengths hit pocketfft's
    slow prime-size path. `fft_length=n` filters over exactly the clip (what the synthetic HEAR
    tasks were generated with; it draws the same white noise and differs only in how the
    circular filter wraps)."""
    m = fft_size(n) if fft_length is None else int(fft_length)
    if m < n:
        raise ValueError(f"fft_length {m} is shorter than the {n} samples asked for")
    freqs = np.fft.rfftfreq(m, 1.0 / sample_rate)
    white = rng.standard_normal((m,) if count is None else (count, m))
    return np.fft.irfft(np.fft.rfft(white) * response(freqs), m)[..., :n]


def band_noise(
    low_hz: float,
    high_hz: float,
    n: int,
    sample_rate: int,
    rng: np.random.Generator,
    fft_length: int | None = None,
) -> np.ndarray:
    """White Gaussian noise (n,) with the FFT bins outside [low_hz, high_hz] zeroed (Hz); see
    `shaped_noise` for `fft_length`."""
    return shaped_noise(
        lambda f: (f >= low_hz) & (f <= high_hz), n, sample_rate, rng, None, fft_length
    )


def convolve_rir(x: Array, rir: Array | np.ndarray) -> Array:
    """Linear convolution of signals with multi-channel RIRs by FFT, truncated to the input length.

    Args:
        x: (..., N) signals, e.g. one mono clip (N,) or a batch (B, N).
        rir: (..., C, L) impulse responses; leading dims broadcast against those of `x`
            (e.g. (C, L) for every item, or (B, C, L) one per item).

    Returns:
        (..., C, N): channel c of an item is x * rir[c] (full convolution) cut to its first N
        samples, so a delayed direct path keeps its delay and the reverberant tail past the end of
        the clip is dropped (GRAM, arXiv 2506.00934, "output truncated to the original length"). A torch
        input gives a tensor on its device; the RIR is moved there.
    """
    n, taps = x.shape[-1], rir.shape[-1]
    size = fft_size(n + taps - 1)
    if isinstance(x, torch.Tensor):
        rir = torch.as_tensor(rir, device=x.device)
        dtype = torch.promote_types(torch.promote_types(x.dtype, rir.dtype), torch.float32)
        spec_x = torch.fft.rfft(x.to(dtype), n=size).unsqueeze(-2)  # (..., 1, K)
        spec_h = torch.fft.rfft(rir.to(dtype), n=size)  # (..., C, K)
        return torch.fft.irfft(spec_x * spec_h, n=size)[..., :n]
    dtype = np.result_type(x.dtype, rir.dtype, np.float32)
    spec_x = np.fft.rfft(np.asarray(x, dtype), n=size)[..., None, :]  # (..., 1, K)
    spec_h = np.fft.rfft(np.asarray(rir, dtype), n=size)  # (..., C, K)
    return np.fft.irfft(spec_x * spec_h, n=size)[..., :n].astype(dtype, copy=False)


def snr_gain(target: Array, noise: Array, snr_db: float, active: Array | None = None) -> float:
    """One linear gain g for `noise` so that the mix target + g * noise has SNR `snr_db` (dB).

    Signal power is the mean square of `target` (C, N) over all channels and samples; noise power
    is the mean square of `noise` (C, N) over all channels and only the samples where `active`
    (N,) is true (the part of the clip the noise clip was placed in; None: all). The gain is common
    to every channel, so the noise keeps its interaural level and time differences (GRAM, arXiv 2506.00934).
    Returns 0.0 when the noise or the target is silent (no finite gain reaches the SNR).
    """
    return gain_for_snr(power(target), power(noise, active), snr_db)


def gain_for_snr(target_power: float, noise_power: float, snr_db: float) -> float:
    """Amplitude gain g with 10 log10(target_power / (g^2 noise_power)) = snr_db; 0.0 when
    either power is 0. The powers must be finite and >= 0 and `snr_db` finite (else
    NonFiniteError / ValueError: a NaN here used to become a NaN gain)."""
    _finite(target_power, "the target power")
    _finite(noise_power, "the noise power")
    _finite(snr_db, "the SNR in dB")
    if target_power < 0.0 or noise_power < 0.0:
        raise ValueError(f"powers must be >= 0, got {target_power} and {noise_power}")
    if target_power == 0.0 or noise_power == 0.0:
        return 0.0
    return math.sqrt(target_power / (noise_power * 10.0 ** (snr_db / 10.0)))


def snr_gains(
    target: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor, active: torch.Tensor
) -> torch.Tensor:
    """`snr_gain` for a batch at once: target and noise (B, C, N), snr_db (B,) in dB, active
    (B, N) bool -> gains (B,), 0 where the target or the active noise is silent."""
    mask = active[:, None, :].to(noise.dtype)  # (B, 1, N)
    target_power = (target * target).mean(dim=(1, 2))
    n_active = mask.sum(dim=(1, 2)) * noise.shape[1]
    noise_power = (noise * noise * mask).sum(dim=(1, 2)) / n_active.clamp(min=1)
    ratio = target_power / (noise_power * 10.0 ** (snr_db.to(noise.dtype) / 10.0))
    silent = (target_power == 0) | (noise_power == 0)
    return torch.where(silent, torch.zeros_like(ratio), ratio.clamp(min=0).sqrt())


def measured_snr_db(target: Array, noise: Array, active: Array | None = None) -> float:
    """SNR in dB with the powers of `snr_gain`: all channels, noise over its active part only.
    +inf when the noise is silent, -inf when the target is."""
    p_target, p_noise = power(target), power(noise, active)
    if p_noise == 0.0:
        return math.inf
    return 10.0 * math.log10(p_target / p_noise) if p_target > 0 else -math.inf


def mix_at_snr(
    target: Array, noise: Array, snr_db: float, active: Array | None = None
) -> tuple[Array, float]:
    """target + g * noise with g = `snr_gain(target, noise, snr_db, active)`; returns (mix, g)."""
    gain = snr_gain(target, noise, snr_db, active)
    return target + gain * noise, gain


def limit_peak(x: Array, max_peak: float = MAX_PEAK) -> tuple[Array, float]:
    """Scale the whole of `x` down so that max |x| <= `max_peak` (never clips, keeps every ratio
    between channels and components); returns (x, gain) with gain 1.0 when already below.
    NonFiniteError for NaN or infinite samples (their peak used to give a NaN gain)."""
    peak = _finite(float(abs(x).max()) if x.shape[-1] else 0.0, "the peak of the mix")
    if peak <= max_peak:
        return x, 1.0
    gain = max_peak / peak
    return x * gain, gain


def prepare_noise(
    noise: np.ndarray,
    sample_rate: int,
    length: int,
    rng: np.random.Generator,
    fade_s: float = NOISE_FADE_S,
    max_s: float = NOISE_MAX_S,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Place a mono noise clip in a clip of `length` samples (GRAM, arXiv 2506.00934).

    The noise (N_noise,) is cut to its first min(`max_s` s, `length`) samples, faded in and out by
    `fade_s` s (raised cosine) and, when shorter than the clip, put at a random offset drawn
    uniformly from [0, length - its length] with `rng`; zeros elsewhere.

    Returns:
        noise (length,) float64; offset in samples (0 when the noise fills the clip); active
        (length,) bool, true where the noise clip lies (the part its power is measured over).
    """
    if noise.ndim != 1:
        raise ValueError(f"noise must be mono (N,), got shape {noise.shape}")
    seg_len = min(noise.shape[0], int(round(max_s * sample_rate)), length)
    segment = fade(np.asarray(noise[:seg_len], dtype=np.float64), sample_rate, fade_s)
    offset = int(rng.integers(0, length - seg_len + 1))
    out = np.zeros(length)
    out[offset : offset + seg_len] = segment
    active = np.zeros(length, dtype=bool)
    active[offset : offset + seg_len] = True
    return out, offset, active
