"""Feature front-ends of GRAM (arXiv 2506.00934; labhamlet/GRAM-T
``hear_api/feature_helper_gram_t.py``): binaural log-mels and the Ambisonic 7-channel input.

Plain PyTorch, numerically the same as torchaudio's ``MelSpectrogram`` / ``MelScale`` with the
settings of the released weights (HTK mel scale, no filter-bank norm, periodic Hann window, power 2,
reflect-padded centred frames), so torchaudio is not a runtime dependency.

Dimension letters: B batch, C channels, N samples, K frequency bins of the STFT, F mel bins,
T frames.

Ambisonic channel order: ACN, i.e. W, Y, Z, X (AmbiX). Upstream's training pipeline
(labhamlet/GRAM-T ``src/data_modules/iterators/SceneIterator.py``, ``hear_api/heaRIR``) feeds the
stored SoundSpaces first-order RIRs without reordering, and SoundSpaces' Ambisonic RIRs are ACN
(its maintainers answered "ACN/N3D" for the released RIR set, facebookresearch/sound-spaces
issue #58; the SoundSpaces 2.0 documentation names no order); its DCASE/STARSS fine-tuning code
(``seld-dcase-2022-GRAM/cls_feature_class_gram.py``) likewise reads FOA files, which DCASE ships
in ACN/SN3D, in file order. Upstream's extractor comments say "[W, X, Y, Z]", but its arithmetic
only uses "channel 0 is W, 1-3 are first order", so the released model expects ACN order.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hear_gram.config import FeatureConfig

# Resampling lives in hear_gram.resample; re-exported here because the runtime, the scene
# generators and the localization evaluation import it from the front-end.
from hear_gram.resample import resample, sinc_resample_kernel

__all__ = [
    "LogMelFrontend",
    "frame_count",
    "mel_filterbank",
    "mel_to_hz",
    "resample",
    "sinc_resample_kernel",
]

# The channel order the released Ambisonic model was trained on (module docstring).
AMBISONIC_ORDER = "first-order Ambisonics in ACN order W, Y, Z, X"


def mel_to_hz(m: Tensor) -> Tensor:
    """Inverse of the HTK mel scale m = 2595 log10(1 + f / 700); returns Hz."""
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int
) -> Tensor:
    """Triangular HTK mel filters without area normalisation, shape (K, F).

    Args:
        n_freqs: STFT bins (n_fft // 2 + 1). f_min, f_max: band edges in Hz.
        n_mels: number of filters. sample_rate: in Hz.
    """
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    # band edges converted in double precision, as torchaudio does: narrow low filters are
    # sensitive to it
    m_min, m_max = (2595.0 * math.log10(1.0 + f / 700.0) for f in (f_min, f_max))
    f_pts = mel_to_hz(torch.linspace(m_min, m_max, n_mels + 2))
    f_diff = f_pts[1:] - f_pts[:-1]  # (F + 1,)
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # (K, F + 2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0)


def frame_count(n_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT of N samples: N // hop + 1 (torch.stft / torchaudio
    ``MelSpectrogram`` with ``center=True``), the frames upstream's HEAR runtime encodes
    (labhamlet/GRAM-T ``hear_api/feature_helper_gram_t.py``). Frame j is centred on sample j * hop,
    so when N is a multiple of the hop the last frame is centred on the clip's end (and half made
    of reflected samples); it is kept, as upstream keeps it. A 4.0 s clip at 32 kHz has 401."""
    if n_samples < 1 or hop_length < 1:
        raise ValueError(f"need at least one sample and hop, got {n_samples}, {hop_length}")
    return n_samples // hop_length + 1


class LogMelFrontend(nn.Module):
    """Waveform (B, C, N) at ``cfg.sample_rate`` -> features (B, C', F, T).

    ``ambisonic=False``: C' = C log-mels, ``log(mel + log_eps)``.
    ``ambisonic=True``: input is first-order Ambisonics in ACN order (W, Y, Z, X; see the module
    docstring) and C' = 7: four log-mels with eps 1e-6 and three mel-scaled normalised
    active-intensity channels ``MelScale(2 Re(W* c_i) / (eps + |W|^2 + sum |c|^2))`` (no log) for
    c_i = Y, Z, X, as the released Ambisonic model was trained on.
    """

    def __init__(self, cfg: FeatureConfig, ambisonic: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.ambisonic = ambisonic
        window = torch.hann_window(cfg.win_length)
        if cfg.win_length < cfg.n_fft:  # torch.stft centres a short window inside n_fft
            left = (cfg.n_fft - cfg.win_length) // 2
            window = nn.functional.pad(window, (left, cfg.n_fft - cfg.win_length - left))
        self.register_buffer("window", window, persistent=False)
        fb = mel_filterbank(cfg.n_freqs, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate)
        self.register_buffer("fb", fb, persistent=False)  # (K, F)

    @property
    def out_channels_per_input(self) -> int:
        return 7 if self.ambisonic else 1

    def pad(self, audio: Tensor) -> Tensor:
        """Reflect-pad n_fft/2 on both sides (torch.stft ``center=True``); zero-pads clips too
        short to reflect so that even a clip shorter than one hop has a defined spectrum."""
        half = self.cfg.n_fft // 2
        n = audio.shape[-1]
        if n <= half:
            audio = nn.functional.pad(audio, (0, half + 1 - n))
        return nn.functional.pad(audio, (half, half), mode="reflect")

    def stft(self, padded: Tensor) -> Tensor:
        """Complex STFT of already padded audio (B, C, N') -> (B, C, K, T)."""
        b, c, n = padded.shape
        spec = torch.stft(
            padded.reshape(b * c, n).float(),
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            window=self.window,
            center=False,
            onesided=True,
            return_complex=True,
        )
        return spec.reshape(b, c, *spec.shape[-2:])

    def mel(self, x: Tensor) -> Tensor:
        """(..., K, T) -> (..., F, T)."""
        return torch.matmul(x.transpose(-1, -2), self.fb).transpose(-1, -2)

    def features(self, spec: Tensor) -> Tensor:
        """Complex STFT (B, C, K, T) -> features (B, C', F, T)."""
        power = spec.real.square() + spec.imag.square()
        if not self.ambisonic:
            return torch.log(self.mel(power) + self.cfg.log_eps)
        if spec.shape[1] != 4:
            raise ValueError(
                f"Ambisonic features need 4 channels ({AMBISONIC_ORDER}), got {spec.shape[1]}"
            )
        eps = self.cfg.ambisonic_eps
        log_mels = torch.log(self.mel(power) + eps)  # (B, 4, F, T)
        w, xyz = spec[:, :1], spec[:, 1:]
        intensity = 2.0 * (w.conj() * xyz).real  # (B, 3, K, T)
        energy = eps + power.sum(dim=1, keepdim=True)  # (B, 1, K, T)
        return torch.cat([log_mels, self.mel(intensity / energy)], dim=1)

    def forward(self, audio: Tensor, center: bool = True) -> Tensor:
        """Waveform (B, C, N) -> features (B, C', F, T) with T = N // hop + 1 when centred."""
        padded = self.pad(audio) if center else audio
        return self.features(self.stft(padded))
