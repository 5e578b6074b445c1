"""What the baseline HEAR modules share: input validation, framing, STFT and band edges.

Dimension letters: B clips, C channels, N samples, W windows, F frequency bins, T frames.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from hear_gram import runtime

FRAME_S = 0.032  # s, STFT window (Hann), hop half of it
TIMESTAMP_WINDOW_S = 0.2  # s, context of one timestamp embedding
TIMESTAMP_HOP_S = 0.05  # s, spacing of timestamp embeddings (HEAR asks for <= 50 ms)


def parse_sample_rate(options: dict[str, Any]) -> int:
    return runtime.parse_sample_rate(options.get("sample_rate", 48000))


def check_options(options: dict[str, Any], valid: tuple[str, ...]) -> None:
    runtime.check_option_names(options, valid)


def layout(audio: Tensor, channels: int, what: str) -> Tensor:
    """(B, N, C) (as soundfile reads) or (B, C, N) -> (B, C, N) float32, `channels` channels."""
    if not isinstance(audio, Tensor):
        raise TypeError(f"audio must be a torch.Tensor, got {type(audio).__name__}")
    if audio.ndim != 3:
        raise ValueError(
            f"{what} needs {channels}-channel audio (B, N, C) or (B, C, N), got {tuple(audio.shape)}"
        )
    if audio.shape[1] != channels and audio.shape[2] == channels:
        audio = audio.transpose(1, 2)
    if audio.shape[1] != channels:
        raise ValueError(f"{what} needs {channels} channels, got audio {tuple(audio.shape)}")
    if audio.shape[0] == 0 or audio.shape[-1] == 0:
        raise ValueError(f"empty audio {tuple(audio.shape)}")
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or Inf values")
    return audio.float()


def stft(x: Tensor, sample_rate: int) -> Tensor:
    """(..., N) -> complex (..., F, T), Hann window of FRAME_S, hop FRAME_S / 2."""
    n_fft = 2 ** round(math.log2(FRAME_S * sample_rate))
    lead, n = x.shape[:-1], x.shape[-1]
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(
        x.reshape(-1, n), n_fft, n_fft // 2, window=window, center=True, return_complex=True
    )
    return spec.reshape(*lead, *spec.shape[-2:])


def band_masks(sample_rate: int, n_freqs: int, edges_hz: Tensor) -> Tensor:
    """(K, F) float masks of the bins of K bands [edges[k], edges[k+1]) Hz; bands above
    Nyquist are empty (their features come out as 0)."""
    freqs = torch.linspace(0, sample_rate / 2, n_freqs)
    return ((freqs >= edges_hz[:-1, None]) & (freqs < edges_hz[1:, None])).float()


def log_band_edges(low_hz: float, high_hz: float, n_bands: int) -> Tensor:
    return torch.logspace(math.log10(low_hz), math.log10(high_hz), n_bands + 1)


def windows(x: Tensor, sample_rate: int) -> tuple[Tensor, Tensor]:
    """(B, C, N) -> windows (B, W, C, L) of TIMESTAMP_WINDOW_S centred every TIMESTAMP_HOP_S
    (zero-padded at the ends) and their centres (B, W) in ms."""
    length = int(round(TIMESTAMP_WINDOW_S * sample_rate))
    hop = int(round(TIMESTAMP_HOP_S * sample_rate))
    n = x.shape[-1]
    n_windows = n // hop + 1
    padded = torch.nn.functional.pad(x, (length // 2, length // 2 + hop))
    frames = padded.unfold(-1, length, hop)[:, :, :n_windows]  # (B, C, W, L)
    centres = torch.arange(n_windows, device=x.device) * hop / sample_rate * 1000.0
    return frames.permute(0, 2, 1, 3), centres.expand(x.shape[0], -1)


def timestamp_features(x: Tensor, model: Any) -> tuple[Tensor, Tensor]:
    """(B, C, N) -> model.features of each timestamp window (B, W, E), and centres (B, W) in ms."""
    frames, centres = windows(x, model.sample_rate)  # (B, W, C, L)
    b, n_w = frames.shape[:2]
    emb = model.features(frames.reshape(b * n_w, *frames.shape[2:]))
    return emb.reshape(b, n_w, -1), centres


DECAY_LOW_HZ, DECAY_HIGH_HZ, DECAY_BANDS = 125.0, 8000.0, 6
DECAY_SPAN = 3  # STFT hops over which a decay rate is measured (48 ms)
DECAY_QUANTILES = (0.02, 0.1, 0.25)
DECAY_RANGE_DB = 60.0  # levels more than this below a band's maximum count as the floor


def decay_features(power: Tensor, sample_rate: int) -> Tensor:
    """Blind reverberation cue: quantiles of each band's level slope (dB per ms, negative =
    decaying) over DECAY_SPAN hops, from power spectrograms (B, F, T).

    A room cannot make sound decay faster than its reverberation, about -60 / T60 dB/s, so the
    steepest slopes of a clip (its lowest quantiles) follow the T60 wherever the source stops or
    pauses. Levels are floored DECAY_RANGE_DB below each band's maximum, so silence and the
    digital floor add no infinite slopes. Returns (B, DECAY_BANDS * len(DECAY_QUANTILES))."""
    edges = log_band_edges(DECAY_LOW_HZ, DECAY_HIGH_HZ, DECAY_BANDS)
    masks = band_masks(sample_rate, power.shape[-2], edges).to(power.device)  # (K, F)
    band = torch.einsum("bft,kf->bkt", power, masks)  # (B, K, T)
    floor = band.amax(-1, keepdim=True) * 10 ** (-DECAY_RANGE_DB / 10) + 1e-20
    level_db = 10 * torch.log10(band + floor)
    hop_ms = FRAME_S / 2 * 1000.0
    if level_db.shape[-1] <= DECAY_SPAN:
        return torch.zeros(power.shape[0], DECAY_BANDS * len(DECAY_QUANTILES), device=power.device)
    slope = (level_db[..., DECAY_SPAN:] - level_db[..., :-DECAY_SPAN]) / (DECAY_SPAN * hop_ms)
    q = torch.tensor(DECAY_QUANTILES, device=power.device, dtype=slope.dtype)
    return torch.quantile(slope, q, dim=-1).permute(1, 2, 0).flatten(1)  # (B, K * Q)
