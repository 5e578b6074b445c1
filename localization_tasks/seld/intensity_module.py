"""A HEAR module of hand-made FOA features: a non-learned reference for SELD heads.

    python -m localization_tasks.seld.evaluate --module localization_tasks.seld.intensity_module \\
        --tasks-dir T --out O --head mlp

Timestamp embeddings every 100 ms (centred frames): 16 log-mel bands of the omni channel W and
the 3 x 16 mel-scaled normalised active-intensity bands (hear_gram.frontend's Ambisonic features,
the classic DOA cue of FOA), averaged over each 100 ms frame: 64 dimensions. Input: 4-channel
ACN/SN3D audio (W, Y, Z, X) at 24 kHz, (B, N, 4) or (B, 4, N). No weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hear_gram.config import FeatureConfig
from hear_gram.frontend import LogMelFrontend

SAMPLE_RATE = 24000
HOP_MS = 100.0
N_MELS = 16


class IntensityFeatures(nn.Module):
    sample_rate = SAMPLE_RATE
    timestamp_embedding_size = 4 * N_MELS
    scene_embedding_size = 4 * N_MELS

    def __init__(self) -> None:
        super().__init__()
        cfg = FeatureConfig(sample_rate=SAMPLE_RATE, n_mels=N_MELS, n_fft=512, win_length=480,
                            hop_length=240, f_min=50.0, f_max=12000.0)  # fmt: skip
        self.front = LogMelFrontend(cfg, ambisonic=True)

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, 4) or (B, 4, N) -> embeddings (B, S, 64), timestamps (B, S) in ms."""
        if audio.ndim != 3 or 4 not in audio.shape[1:]:
            raise ValueError(f"audio must be (B, N, 4) or (B, 4, N), got {tuple(audio.shape)}")
        x = audio if audio.shape[1] == 4 else audio.transpose(1, 2)
        feats = self.front(x.float())  # (B, 7, F, T) at 10 ms: 4 log-mels + 3 intensity
        feats = torch.cat([feats[:, :1], feats[:, 4:]], dim=1)  # W log-mel + intensity
        step = round(HOP_MS / 10)
        t = max(1, feats.shape[-1] // step)
        frames = feats[..., : t * step].unflatten(-1, (t, step)).mean(-1)  # (B, 4, F, S)
        emb = frames.flatten(1, 2).transpose(1, 2)  # (B, S, 64)
        ts = (torch.arange(t, device=emb.device) + 0.5) * HOP_MS
        return emb, ts.expand(emb.shape[0], t)


def load_model(model_file_path: str = "") -> IntensityFeatures:
    if model_file_path:
        raise ValueError("intensity_module has no weights; pass no --model")
    return IntensityFeatures().eval()


def get_timestamp_embeddings(audio: Tensor, model: IntensityFeatures) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        return model(audio)


def get_scene_embeddings(audio: Tensor, model: IntensityFeatures) -> Tensor:
    return get_timestamp_embeddings(audio, model)[0].mean(dim=1)
