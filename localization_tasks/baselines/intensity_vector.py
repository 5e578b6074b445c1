"""HEAR module: first-order Ambisonic active-intensity features (a classic DOA baseline).

    python -m localization_tasks.evaluate --module localization_tasks.baselines.intensity_vector \\
        --model-options '{"sample_rate": 16000}' ...

Per frequency band k (log-spaced, 100 Hz .. 8 kHz), summed over the STFT frames of the clip
(energy-weighted time average):

    I_k = sum_{t, f in k} Re(conj(W) [X, Y, Z])                     active intensity (a.u.)
    E_k = sum_{t, f in k} (|W|^2 + |X|^2 + |Y|^2 + |Z|^2) / 2        energy density (a.u.)
    n_k = I_k / E_k                                                  normalised intensity (3)

With SN3D gains a single plane wave from unit direction u gives W = s, [X, Y, Z] = s u, so
n_k = u; a diffuse field gives |n_k| -> 0 (|n_k| = 1 - diffuseness). The embedding is
[n_1 .. n_K (3 K values), d_mean (3), |I| / E (1), d_onset (3)], where d_mean = I / |I| is the
unit direction of the broadband (100 Hz .. 8 kHz) intensity I = sum_k I_k, and d_onset the unit
direction of the broadband intensity of each frame weighted by the rise of the frame's log energy
over the previous frame (max(0, log E_t - log E_{t-1})): onsets are dominated by the direct sound
(precedence effect), so d_onset is less biased by reflections and late reverberation (on our
simulated rooms: mean error 12 deg instead of 15 deg, clean). d_onset is the baseline's own
direction estimate, in the head frame of the Ambisonic channels (x front, y left, z up);
`direction(embedding)` returns it.

Options: sample_rate (Hz of the input audio, default 48000), convention ("acn-sn3d": channels W, Y,
Z, X, the generator's; "fuma": W/sqrt 2, X, Y, Z), n_bands (default 8).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from localization_tasks.baselines import common

LOW_HZ, HIGH_HZ = 100.0, 8000.0
OPTIONS = ("sample_rate", "convention", "n_bands")
# Task formats this module takes (read by localization_tasks.embeddings.Embedder on mixed task
# folders).
LOCALIZATION_FORMATS = ("ambisonic",)


class IntensityVector(nn.Module):
    def __init__(self, sample_rate: int = 48000, convention: str = "acn-sn3d", n_bands: int = 8):
        super().__init__()
        if convention not in ("acn-sn3d", "fuma"):
            raise ValueError(f"convention must be acn-sn3d or fuma, got {convention!r}")
        if n_bands < 1:
            raise ValueError(f"n_bands must be >= 1, got {n_bands}")
        self.sample_rate = int(sample_rate)
        self.convention = convention
        self.n_bands = int(n_bands)
        self.scene_embedding_size = 3 * self.n_bands + 7
        self.timestamp_embedding_size = self.scene_embedding_size

    def wxyz(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 4, N) in the module's convention -> W (B, N), [X, Y, Z] (B, 3, N) in SN3D."""
        if self.convention == "fuma":
            return x[:, 0] * math.sqrt(2.0), x[:, 1:4]
        return x[:, 0], x[:, [3, 1, 2]]

    def features(self, x: Tensor) -> Tensor:
        """(B, 4, N) -> (B, scene_embedding_size)."""
        w, xyz = self.wxyz(x)
        sw, sv = common.stft(w, self.sample_rate), common.stft(xyz, self.sample_rate)
        # sw (B, F, T), sv (B, 3, F, T)
        intensity = (sw.conj().unsqueeze(1) * sv).real.sum(-1)  # (B, 3, F)
        energy = energy_tf(sw, sv).sum(-1)  # (B, F)
        edges = common.log_band_edges(LOW_HZ, HIGH_HZ, self.n_bands)
        masks = common.band_masks(self.sample_rate, sw.shape[-2], edges).to(x.device)  # (K, F)
        band_i = torch.einsum("bcf,kf->bkc", intensity, masks)  # (B, K, 3)
        band_e = energy @ masks.T  # (B, K)
        eps = 1e-12
        n_k = band_i / (band_e.unsqueeze(-1) + eps)
        total_i, total_e = band_i.sum(1), band_e.sum(1)  # (B, 3), (B,)
        norm = total_i.norm(dim=-1, keepdim=True)
        d = total_i / (norm + eps)
        # Onset weighting: per-frame broadband intensity and energy over the same bins.
        broad = masks.amax(0)  # (F,) bins of any band
        frame_i = (sw.conj().unsqueeze(1) * sv).real.mul(broad[:, None]).sum(-2)  # (B, 3, T)
        frame_e = energy_tf(sw, sv).mul(broad[:, None]).sum(-2)  # (B, T)
        log_e = torch.log(frame_e + eps)
        rise = torch.relu(log_e[:, 1:] - log_e[:, :-1])  # (B, T - 1)
        onset_i = (frame_i[..., 1:] * rise.unsqueeze(1)).sum(-1)  # (B, 3)
        d_onset = onset_i / (onset_i.norm(dim=-1, keepdim=True) + eps)
        diffuse = norm / (total_e.unsqueeze(-1) + eps)
        return torch.cat([n_k.flatten(1), d, diffuse, d_onset], dim=-1)


def energy_tf(sw: Tensor, sv: Tensor) -> Tensor:
    """Energy density (B, F, T) of W (B, F, T) and [X, Y, Z] (B, 3, F, T) STFTs (SN3D)."""
    return 0.5 * (sw.abs().square() + sv.abs().square().sum(1))


def direction(embedding: Tensor) -> Tensor:
    """The onset-weighted intensity direction d_onset (..., 3) (unit, head frame) of
    embeddings (..., E)."""
    return embedding[..., -3:]


def load_model(model_file_path: str = "", **options: Any) -> IntensityVector:
    """No weights (`model_file_path` is ignored). Options: sample_rate, convention, n_bands."""
    common.check_options(options, OPTIONS)
    return IntensityVector(
        common.parse_sample_rate(options),
        str(options.get("convention", "acn-sn3d")),
        int(options.get("n_bands", 8)),
    )


@torch.no_grad()
def get_scene_embeddings(audio: Tensor, model: IntensityVector) -> Tensor:
    """(B, N, 4) or (B, 4, N) FOA -> (B, scene_embedding_size) float32."""
    return model.features(
        common.layout(audio, 4, "intensity_vector (first-order Ambisonics, ACN/SN3D: W, Y, Z, X)")
    )


@torch.no_grad()
def get_timestamp_embeddings(audio: Tensor, model: IntensityVector) -> tuple[Tensor, Tensor]:
    """FOA -> features of 200 ms windows every 50 ms (B, W, E) and their centres (B, W) in ms."""
    return common.timestamp_features(
        common.layout(audio, 4, "intensity_vector (first-order Ambisonics, ACN/SN3D: W, Y, Z, X)"),
        model,
    )
