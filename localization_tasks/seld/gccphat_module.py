"""A HEAR module of per-frame GCC-PHAT features: the classical reference for binaural (and
microphone-array) SELD heads, as `intensity_module` is for FOA.

    python -m localization_tasks.seld.evaluate --module localization_tasks.seld.gccphat_module \\
        --tasks-dir T --out O --head mlp

The generalized cross-correlation with the phase transform (Knapp and Carter, "The generalized
correlation method for estimation of time delay", IEEE Trans. ASSP 24(4), 1976): for the STFTs
X_i, X_j of two channels (20 ms Hann windows, 10 ms hop),

    gcc_ij(tau) = IDFT[ conj(X_i) X_j / |conj(X_i) X_j| ](tau),   tau = -24 .. 24 samples

(+-1 ms at 24 kHz, beyond the largest interaural delay of ~0.7 ms), a peak at tau > 0 meaning
channel i leads (binaural: a source on the left). The DCASE baselines feed the same whitened
cross-correlation of every microphone pair to their CRNN (partha2409/DCASE2024_seld_baseline
`cls_feature_class.py`, `_get_gcc`). With 16 log-mel bands per channel, for detection, both are
averaged over each 100 ms frame (centred timestamps): 2 x 16 + 49 = 81 dimensions for binaural
audio. Input (B, N, C) or (B, C, N) at 24 kHz, C = `channels` (default 2: left, right); every
channel pair is correlated. No weights.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from hear_gram.config import FeatureConfig
from hear_gram.frontend import LogMelFrontend

SAMPLE_RATE = 24000
HOP_MS = 100.0
N_MELS = 16
N_FFT = 512
MAX_LAG = 24  # samples: +-1 ms at 24 kHz


class GccPhatFeatures(nn.Module):
    sample_rate = SAMPLE_RATE

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        if not 2 <= channels <= 16:
            raise ValueError(f"gccphat_module needs 2..16 channels, got {channels}")
        self.channels = channels
        pairs = list(itertools.combinations(range(channels), 2))
        self.register_buffer("first", torch.tensor([i for i, _ in pairs]), persistent=False)
        self.register_buffer("second", torch.tensor([j for _, j in pairs]), persistent=False)
        self.timestamp_embedding_size = channels * N_MELS + len(pairs) * (2 * MAX_LAG + 1)
        self.scene_embedding_size = self.timestamp_embedding_size
        cfg = FeatureConfig(sample_rate=SAMPLE_RATE, n_mels=N_MELS, n_fft=N_FFT, win_length=480,
                            hop_length=240, f_min=50.0, f_max=12000.0)  # fmt: skip
        self.front = LogMelFrontend(cfg)

    def gcc_phat(self, spec: Tensor) -> Tensor:
        """Complex STFTs (B, C, K, T) -> GCC-PHAT (B, P pairs, 2 MAX_LAG + 1 lags, T), lags from
        -MAX_LAG to MAX_LAG samples."""
        cross = spec[:, self.first].conj() * spec[:, self.second]  # (B, P, K, T)
        cc = torch.fft.irfft(cross / (cross.abs() + 1e-8), n=N_FFT, dim=2)  # (B, P, N_FFT, T)
        return torch.cat([cc[:, :, -MAX_LAG:], cc[:, :, : MAX_LAG + 1]], dim=2)

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, C) or (B, C, N) -> embeddings (B, S, D), timestamps (B, S) in ms."""
        c = self.channels
        if audio.ndim != 3 or c not in audio.shape[1:]:
            raise ValueError(f"audio must be (B, N, {c}) or (B, {c}, N), got {tuple(audio.shape)}")
        x = audio if audio.shape[1] == c else audio.transpose(1, 2)
        spec = self.front.stft(self.front.pad(x.float()))  # (B, C, K, T) at 10 ms
        mels, gcc = self.front.features(spec), self.gcc_phat(spec)  # (B, C, F, T), (B, P, L, T)
        feats = torch.cat([mels.flatten(1, 2), gcc.flatten(1, 2)], dim=1)  # (B, D, T)
        step = round(HOP_MS / 10)
        s = max(1, feats.shape[-1] // step)
        frames = feats[..., : s * step].unflatten(-1, (s, step)).mean(-1)  # (B, D, S)
        ts = (torch.arange(s, device=feats.device) + 0.5) * HOP_MS
        return frames.transpose(1, 2), ts.expand(feats.shape[0], s)


def load_model(model_file_path: str = "", channels: int = 2) -> GccPhatFeatures:
    if model_file_path:
        raise ValueError("gccphat_module has no weights; pass no --weights")
    return GccPhatFeatures(int(channels)).eval()


def get_timestamp_embeddings(audio: Tensor, model: GccPhatFeatures) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        return model(audio)


def get_scene_embeddings(audio: Tensor, model: GccPhatFeatures) -> Tensor:
    return get_timestamp_embeddings(audio, model)[0].mean(dim=1)
