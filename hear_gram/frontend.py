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


# --- resampling --------------------------------------------------------------------------------
def sinc_resample_kernel(
    orig: int, new: int, width_zero_crossings: int = 6, rolloff: float = 0.99
) -> tuple[Tensor, int]:
    """Polyphase Hann-windowed sinc kernels (new, 1, taps) for orig -> new (already divided by their
    gcd), and the one-sided padding they need. Same design as torchaudio's default
    ``sinc_interp_hann`` resampler (6 zero crossings, roll-off 0.99)."""
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


def resample(audio: Tensor, orig_sr: int, new_sr: int, block_frames: int = 16384) -> Tensor:
    """Band-limited resampling of (..., N) from orig_sr to new_sr (Hz); output length
    ceil(N * new / orig). A no-op when the rates are equal.

    Works through the signal in blocks of ``block_frames`` polyphase frames, each zero-padded at
    the clip's edges exactly as a whole-signal convolution would be, so memory stays bounded on
    long audio (one output tensor plus a block) and results do not depend on the block size.
    """
    if orig_sr == new_sr:
        return audio
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    kernel, width = sinc_resample_kernel(orig, new)
    kernel = kernel.to(audio.device)
    taps = kernel.shape[-1]  # 2 * width + orig
    shape, n = audio.shape[:-1], audio.shape[-1]
    x = audio.reshape(-1, n)  # a view when possible
    target = math.ceil(new * n / orig)
    frames = math.ceil(target / new)  # polyphase frame j gives outputs [j*new, (j+1)*new)
    out = torch.empty(x.shape[0], frames * new, device=audio.device)
    for j0 in range(0, frames, block_frames):
        j1 = min(frames, j0 + block_frames)
        a, b = j0 * orig - width, (j1 - 1) * orig + taps - width  # input span of these frames
        seg = x[:, max(a, 0) : min(b, n)].float()
        seg = nn.functional.pad(seg, (max(0, -a), max(0, b - n))).unsqueeze(1)
        y = nn.functional.conv1d(seg, kernel, stride=orig)  # (M, new, j1 - j0)
        out[:, j0 * new : j1 * new] = y.transpose(1, 2).reshape(x.shape[0], -1)
    return out[:, :target].reshape(*shape, target)
