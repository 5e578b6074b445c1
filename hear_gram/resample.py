"""Band-limited resampling between any two integer sample rates, bounded in memory and time.

One filter for every rate pair: the Hann-windowed sinc of torchaudio's default resampler
(``sinc_interp_hann``, 6 zero crossings, roll-off 0.99), which the released GRAM weights saw when
their 32 kHz features were computed. Output sample m lies at input position tau = m * orig / new
(in input samples) and is

    y[m] = sum_n x[n] * h(n - tau),   h(d) = s * sinc(s d) * cos^2(pi s d / 12),  |s d| <= 6,

with s = 0.99 * min(1, new / orig) the cut-off in cycles per input sample and x zero outside the
clip. Two ways of evaluating that same sum:

* Polyphase (`sinc_resample_kernel`), torchaudio's own layout: after dividing the rates by their
  gcd, orig' -> new', one kernel row per output phase (new' rows of orig' + 2 * width taps) and a
  strided convolution. Its output is the torchaudio-equivalent one the model's features use
  (48000, 44100, 22050, 16000 -> 32000), but the kernel grows with orig' x new': 44101 -> 48000
  would need 8.5e9 taps (16.9 GB in torchaudio's layout), 7919 -> 32000 2.5e9.
* Fractional (`_resample_fractional`): each output's own taps, n in [floor(tau) - W, floor(tau) + W
  + 1] with W = ceil(6 / s), weights computed from the exact rational position (integer floor and
  remainder of m * orig', so no drift on long clips), chunked over outputs (and over taps for extreme
  down-sampling). Memory is O(chunk) and time O(output length x taps) whatever the rates.

`resample` takes the polyphase path while its kernel stays small (`POLYPHASE_MAX_TAPS`), which keeps
every result for those pairs bit-for-bit what it was, and the fractional path otherwise; the two
agree to float32 rounding (tests/test_resample.py).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor, nn

ZERO_CROSSINGS = 6
ROLLOFF = 0.99
# Sane bounds on a rate read from a file header or a folder name (Hz): audio hardware tops out
# around 768 kHz and DSD64 is 2.8 MHz, so anything above 10 MHz is a corrupt or hostile value.
MAX_RATE = 10_000_000
# Lowest rate accepted from a file header or folder name (Hz): below telephone speech (8 kHz) by a
# margin; lower "rates" come from corrupt or hostile headers.
MIN_FILE_RATE = 1000
# Most samples (all channels together) one resampling of a file may produce: 2**28 float32 = 1 GiB,
# some 2.3 hours of stereo at 32 kHz.
MAX_OUTPUT_ELEMENTS = 2**28
# Polyphase kernels up to 2**20 taps (4 MB): covers every rate pair of the HEAR tasks and the usual
# audio rates to and from 32 kHz (22050 -> 32000 is 640 x 455 = 291k taps).
POLYPHASE_MAX_TAPS = 2**20
# Elements per intermediate tensor of one polyphase block (float32: 64 MB); for the typical stereo
# clip at 44.1 or 48 kHz the block is the caller's `block_frames`, as before.
BLOCK_ELEMENTS = 2**24
# Elements per gathered (channels x outputs x taps) chunk of the fractional path; its float64
# weight temporaries are as large, so a chunk costs some 60 MB at most.
FRACTIONAL_ELEMENTS = 2**21


def check_rate(rate: object, what: str = "sample rate") -> int:
    """`rate` as an int in [1, MAX_RATE] Hz, or ValueError naming `what` and the value."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral):
        raise ValueError(f"{what} must be an integer number of Hz, got {rate!r}")
    rate = int(rate)
    if not 1 <= rate <= MAX_RATE:
        raise ValueError(f"{what} must be between 1 and {MAX_RATE} Hz, got {rate}")
    return rate


def check_file_rate(rate: object, what: str) -> int:
    """A sample rate read from a file header or a folder name, in [MIN_FILE_RATE, MAX_RATE] Hz;
    ValueError naming `what` otherwise. A header claiming 1 Hz is corrupt or hostile: upsampled
    to 32 kHz, each of its samples would become 32000."""
    rate = check_rate(rate, f"the sample rate of {what}")
    if rate < MIN_FILE_RATE:
        raise ValueError(
            f"{what}: a sample rate of {rate} Hz is below {MIN_FILE_RATE} Hz, not audio this "
            "tool resamples (a corrupt or hostile header?)"
        )
    return rate


def resampled_length(n_samples: int, orig_sr: int, new_sr: int) -> int:
    """Samples per channel `resample` returns for `n_samples` at orig_sr -> new_sr (Hz)."""
    orig, new = _reduced(check_rate(orig_sr), check_rate(new_sr))
    return math.ceil(new * n_samples / orig)


def check_resample_size(shape: tuple[int, ...], orig_sr: int, new_sr: int, what: str) -> int:
    """Refuse, naming `what`, to resample audio of `shape` (..., N) when the result would hold
    more than MAX_OUTPUT_ELEMENTS samples; returns the output length N'. Callers that read
    rates from files check this before the work (and the memory) is spent."""
    n_out = resampled_length(shape[-1], orig_sr, new_sr)
    elements = math.prod(shape[:-1]) * n_out
    if elements > MAX_OUTPUT_ELEMENTS:
        raise ValueError(
            f"{what}: resampling {shape[-1]} samples from {orig_sr} to {new_sr} Hz would give "
            f"{elements} samples, more than the {MAX_OUTPUT_ELEMENTS} allowed"
        )
    return n_out


def _reduced(orig_sr: int, new_sr: int) -> tuple[int, int]:
    g = math.gcd(orig_sr, new_sr)
    return orig_sr // g, new_sr // g


def _polyphase_width(orig: int, new: int) -> int:
    """One-sided kernel padding of the polyphase path, in input samples (torchaudio's `width`)."""
    return math.ceil(ZERO_CROSSINGS * orig / (min(orig, new) * ROLLOFF))


def polyphase_taps(orig_sr: int, new_sr: int) -> int:
    """Size (rows x taps) of the polyphase kernel for this rate pair."""
    orig, new = _reduced(orig_sr, new_sr)
    return new * (orig + 2 * _polyphase_width(orig, new))


def sinc_resample_kernel(
    orig: int, new: int, width_zero_crossings: int = ZERO_CROSSINGS, rolloff: float = ROLLOFF
) -> tuple[Tensor, int]:
    """Polyphase Hann-windowed sinc kernels (new, 1, taps) for orig -> new (already divided by their
    gcd), and the one-sided padding they need. Same design as torchaudio's default
    ``sinc_interp_hann`` resampler (6 zero crossings, roll-off 0.99). Size new x (orig + 2 width):
    only for small reduced rates (see `resample`)."""
    base = min(orig, new) * rolloff
    width = math.ceil(width_zero_crossings * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx[None, :]
    t = (t * base).clamp(-width_zero_crossings, width_zero_crossings)
    window = torch.cos(t * math.pi / width_zero_crossings / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    kernel = sinc * window * (base / orig)
    return kernel.unsqueeze(1).float(), width


def _resample_polyphase(x: Tensor, orig: int, new: int, target: int, block_frames: int) -> Tensor:
    """(M, N) -> (M, target) through torchaudio's polyphase kernel, `block_frames` polyphase
    frames at a time (fewer when M x new' x frames would pass BLOCK_ELEMENTS)."""
    kernel, width = sinc_resample_kernel(orig, new)
    kernel = kernel.to(x.device)
    taps = kernel.shape[-1]  # 2 * width + orig
    m_rows, n = x.shape
    frames = math.ceil(target / new)  # polyphase frame j gives outputs [j*new, (j+1)*new)
    block = max(1, min(block_frames, BLOCK_ELEMENTS // (m_rows * max(new, taps))))
    out = torch.empty(m_rows, frames * new, device=x.device)
    for j0 in range(0, frames, block):
        j1 = min(frames, j0 + block)
        a, b = j0 * orig - width, (j1 - 1) * orig + taps - width  # input span of these frames
        seg = x[:, max(a, 0) : min(b, n)].float()
        seg = nn.functional.pad(seg, (max(0, -a), max(0, b - n))).unsqueeze(1)
        y = nn.functional.conv1d(seg, kernel, stride=orig)  # (M, new, j1 - j0)
        out[:, j0 * new : j1 * new] = y.transpose(1, 2).reshape(m_rows, -1)
    return out[:, :target]


def _sinc_weights(d: Tensor, scale: float) -> Tensor:
    """h(d) of the module docstring for offsets d (input samples, float64) -> float32."""
    t = (d * scale).clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS)
    window = torch.cos(t * (math.pi / ZERO_CROSSINGS / 2)) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return (sinc * window * scale).float()


def _resample_fractional(x: Tensor, orig: int, new: int, target: int) -> Tensor:
    """(M, N) -> (M, target), each output's taps evaluated at its exact fractional position."""
    m_rows, n = x.shape
    scale = min(orig, new) * ROLLOFF / orig  # cut-off in cycles per input sample
    half = math.ceil(ZERO_CROSSINGS / scale)
    k_all = torch.arange(-half, half + 2, device=x.device)  # tap offsets from floor(tau)
    tap_chunk = max(1, min(k_all.numel(), FRACTIONAL_ELEMENTS // m_rows))
    out_chunk = max(1, FRACTIONAL_ELEMENTS // (m_rows * tap_chunk))
    out = torch.zeros(m_rows, target, device=x.device)
    for m0 in range(0, target, out_chunk):
        m = torch.arange(m0, min(target, m0 + out_chunk), device=x.device)
        pos = m * orig  # exact in int64: tau = pos / new
        base = torch.div(pos, new, rounding_mode="floor")
        frac = (pos - base * new).double() / new  # tau - floor(tau), in [0, 1)
        for k0 in range(0, k_all.numel(), tap_chunk):
            k = k_all[k0 : k0 + tap_chunk]
            idx = base[:, None] + k[None, :]  # (C, K) input samples
            w = _sinc_weights(k[None, :].double() - frac[:, None], scale)
            w = w * ((idx >= 0) & (idx < n))  # zeros outside the clip
            taps = x[:, idx.clamp(0, n - 1)].float()  # (M, C, K)
            out[:, m0 : m0 + m.numel()] += torch.einsum("mck,ck->mc", taps, w)
    return out


def resample(
    audio: Tensor, orig_sr: int, new_sr: int, block_frames: int = 16384, method: str = "auto"
) -> Tensor:
    """Band-limited resampling of (..., N) from orig_sr to new_sr (Hz, integers in
    [1, MAX_RATE]); float32 output of length ceil(N * new_sr / orig_sr). A no-op when the rates
    are equal.

    ``method``: "auto" (polyphase while its kernel has at most POLYPHASE_MAX_TAPS taps, fractional
    otherwise), "polyphase" or "fractional" (both are the same filter; forcing one is for tests).
    Memory stays bounded on long audio and any rate pair: one output tensor plus a block.
    Polyphase results do not depend on ``block_frames`` (polyphase frames per block).
    """
    orig_sr = check_rate(orig_sr, "original sample rate")
    new_sr = check_rate(new_sr, "target sample rate")
    if method not in ("auto", "polyphase", "fractional"):
        raise ValueError(f"method must be auto, polyphase or fractional, got {method!r}")
    if orig_sr == new_sr:
        return audio
    orig, new = _reduced(orig_sr, new_sr)
    shape, n = audio.shape[:-1], audio.shape[-1]
    target = math.ceil(new * n / orig)
    if audio.numel() == 0:
        return torch.zeros(*shape, target, device=audio.device)
    x = audio.reshape(-1, n)  # a view when possible
    if method == "auto":
        small = polyphase_taps(orig_sr, new_sr) <= POLYPHASE_MAX_TAPS
        method = "polyphase" if small else "fractional"
    if method == "polyphase":
        out = _resample_polyphase(x, orig, new, target, block_frames)
    else:
        out = _resample_fractional(x, orig, new, target)
    return out.reshape(*shape, target)


def resample_ir(ir: np.ndarray | Tensor, orig_sr: int, new_sr: int) -> np.ndarray | Tensor:
    """Impulse responses (..., L) from orig_sr to new_sr (Hz) with their transfer function kept.

    `resample` interpolates sample values; the samples of an impulse response scale with the
    sampling period (a unit impulse at 16 kHz and one at 48 kHz carry the same energy per unit
    time only when the latter is a third as tall), so the result is also scaled by
    orig_sr / new_sr: the response's gain in dB is unchanged below the cut-off. float32, of
    length ceil(L * new_sr / orig_sr); a numpy input gives a numpy array, a tensor a tensor."""
    as_numpy = not isinstance(ir, Tensor)
    x = torch.from_numpy(np.ascontiguousarray(ir, dtype=np.float32)) if as_numpy else ir.float()
    if orig_sr != new_sr:
        x = resample(x, int(orig_sr), int(new_sr)) * (orig_sr / new_sr)
    return x.numpy() if as_numpy else x
