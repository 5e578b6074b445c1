"""HEAR module: binaural GCC-PHAT and interaural level differences (a classic DOA baseline).

    python -m localization_tasks.evaluate --module localization_tasks.baselines.gcc_phat \\
        --model-options '{"sample_rate": 16000}' ...

With the left and right STFTs L, R (Hann, 32 ms, hop 16 ms) of a clip, over the frames t:

    G(f)   = mean_t L conj(R) / |L conj(R)|                      PHAT-weighted cross-spectrum
    gcc(tau) = Re sum_f G(f) exp(-2 pi i f tau) / F              for n_lags lags tau in +-1 ms
    ILD_k  = 10 log10(sum_{t, f in k} |L|^2 / sum_{t, f in k} |R|^2)  dB, log-spaced bands k

The lags are evaluated directly at fixed times (not at sample lags), so the embedding has the same
meaning at every sample rate; +-1 ms covers the largest human interaural time difference
(~0.7 ms). A positive lag means the left ear leads (source on the left, y > 0). Embedding =
[gcc (n_lags), ILD (n_bands) / 10, decay (18), itd_ms], where itd_ms is the lag of the largest gcc
(ms) and decay the quantiles of the level slopes of 6 bands of L + R power
(`common.decay_features`, dB/ms): GCC and ILD carry almost no T60 cue (a probe on them alone did
worse than chance on the T60 task), the steepest decays of a clip do.

Options: sample_rate (default 48000), n_lags (odd, default 33), n_bands (default 16, 100 Hz ..
8 kHz; bands above Nyquist give 0).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from localization_tasks.baselines import common

MAX_LAG_S = 0.001
LOW_HZ, HIGH_HZ = 100.0, 8000.0
OPTIONS = ("sample_rate", "n_lags", "n_bands")
# Task formats this module takes (read by localization_tasks.embeddings.Embedder on mixed task
# folders).
LOCALIZATION_FORMATS = ("binaural",)


class GccPhat(nn.Module):
    def __init__(self, sample_rate: int = 48000, n_lags: int = 33, n_bands: int = 16):
        super().__init__()
        if n_lags < 3 or n_lags % 2 == 0:
            raise ValueError(f"n_lags must be odd and >= 3, got {n_lags}")
        if n_bands < 1:
            raise ValueError(f"n_bands must be >= 1, got {n_bands}")
        self.sample_rate, self.n_lags, self.n_bands = int(sample_rate), int(n_lags), int(n_bands)
        n_decay = common.DECAY_BANDS * len(common.DECAY_QUANTILES)
        self.scene_embedding_size = self.n_lags + self.n_bands + n_decay + 1
        self.timestamp_embedding_size = self.scene_embedding_size
        self.register_buffer("lags_s", torch.linspace(-MAX_LAG_S, MAX_LAG_S, self.n_lags))

    def features(self, x: Tensor) -> Tensor:
        """(B, 2, N) left, right -> (B, scene_embedding_size)."""
        spec = common.stft(x, self.sample_rate)  # (B, 2, F, T)
        left, right = spec[:, 0], spec[:, 1]
        cross = left * right.conj()
        phat = (cross / (cross.abs() + 1e-12)).mean(-1)  # (B, F)
        n_freqs = phat.shape[-1]
        freqs = torch.linspace(0, self.sample_rate / 2, n_freqs, device=x.device)
        steer = torch.exp(-2j * math.pi * freqs[:, None] * self.lags_s.to(x.device)[None, :])
        gcc = (phat @ steer.to(phat.dtype)).real / n_freqs  # (B, n_lags)
        edges = common.log_band_edges(LOW_HZ, HIGH_HZ, self.n_bands)
        masks = common.band_masks(self.sample_rate, n_freqs, edges).to(x.device)  # (K, F)
        p_left = left.abs().square().sum(-1) @ masks.T  # (B, K)
        p_right = right.abs().square().sum(-1) @ masks.T
        empty = masks.sum(-1) == 0
        ild = 10 * torch.log10((p_left + 1e-12) / (p_right + 1e-12))
        ild = torch.where(empty, torch.zeros_like(ild), ild)
        itd_ms = self.lags_s.to(x.device)[gcc.argmax(-1)] * 1000.0
        decay = common.decay_features(spec.abs().square().sum(1), self.sample_rate)
        return torch.cat([gcc, ild / 10.0, decay, itd_ms.unsqueeze(-1)], dim=-1)


def load_model(model_file_path: str = "", **options: Any) -> GccPhat:
    """No weights (`model_file_path` is ignored). Options: sample_rate, n_lags, n_bands."""
    common.check_options(options, OPTIONS)
    return GccPhat(
        common.parse_sample_rate(options),
        int(options.get("n_lags", 33)),
        int(options.get("n_bands", 16)),
    )


@torch.no_grad()
def get_scene_embeddings(audio: Tensor, model: GccPhat) -> Tensor:
    """(B, N, 2) or (B, 2, N) binaural -> (B, scene_embedding_size) float32."""
    return model.features(common.layout(audio, 2, "gcc_phat (binaural: left, right)"))


@torch.no_grad()
def get_timestamp_embeddings(audio: Tensor, model: GccPhat) -> tuple[Tensor, Tensor]:
    """Binaural -> features of 200 ms windows every 50 ms (B, W, E), centres (B, W) in ms."""
    return common.timestamp_features(
        common.layout(audio, 2, "gcc_phat (binaural: left, right)"), model
    )
