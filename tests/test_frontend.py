"""The front-end against torchaudio (the library the released weights were trained with)."""

from __future__ import annotations

import math

import pytest
import torch

from hear_gram.config import FeatureConfig
from hear_gram.frontend import LogMelFrontend, frame_count, mel_filterbank, resample
from tests.torchaudio_compat import import_torchaudio

ta = import_torchaudio()
CFG = FeatureConfig()


def torchaudio_melspec():
    return ta.transforms.MelSpectrogram(
        sample_rate=32000, n_fft=1024, win_length=1024, hop_length=320, f_min=50, f_max=16000,
        n_mels=128, power=2.0,
    )  # fmt: skip


def test_filterbank_equals_torchaudio_htk_no_norm():
    ref = ta.functional.melscale_fbanks(513, 50.0, 16000.0, 128, 32000, None, "htk")
    assert torch.equal(mel_filterbank(513, 50.0, 16000.0, 128, 32000), ref)


@pytest.mark.parametrize("n", [32000 * 3, 64000, 12345, 700])
def test_log_mel_equals_torchaudio(n):
    x = torch.randn(2, 2, n, generator=torch.Generator().manual_seed(n))
    ref = torch.log(torchaudio_melspec()(x) + torch.finfo(torch.float32).eps)
    ours = LogMelFrontend(CFG)(x)
    assert ours.shape == ref.shape == (2, 2, 128, n // 320 + 1)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_ambisonic_features_follow_reference_formula():
    """4 log-mels (eps 1e-6) + MelScale(2 Re(W* c) / (eps + sum |.|^2)), from torchaudio parts."""
    x = torch.randn(3, 4, 20000, generator=torch.Generator().manual_seed(1))
    spec = ta.transforms.Spectrogram(n_fft=1024, win_length=1024, hop_length=320, power=None)(x)
    mel = ta.transforms.MelScale(128, 32000, 50.0, 16000.0, 513, None, "htk")
    eps = 1e-6
    log_mels = torch.log(mel(spec.abs() ** 2) + eps)
    w, xyz = spec[:, :1], spec[:, 1:]
    energy = eps + (spec.abs() ** 2).sum(1, keepdim=True)
    iv = mel(2 * torch.real(torch.conj(w) * xyz) / energy)
    ours = LogMelFrontend(CFG, ambisonic=True)(x)
    assert ours.shape == (3, 7, 128, 20000 // 320 + 1)
    torch.testing.assert_close(ours[:, :4], log_mels, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours[:, 4:], iv, atol=1e-5, rtol=1e-4)


def test_ambisonic_needs_four_channels():
    with pytest.raises(ValueError, match="4 channels"):
        LogMelFrontend(CFG, ambisonic=True)(torch.zeros(1, 2, 4000))


@pytest.mark.parametrize("orig", [48000, 44100, 22050, 16000])
def test_resample_equals_torchaudio(orig):
    x = torch.randn(2, orig, generator=torch.Generator().manual_seed(orig))
    ref = ta.functional.resample(x, orig, 32000)
    ours = resample(x, orig, 32000)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=2e-4, rtol=1e-4)


def test_resample_keeps_a_tone_below_nyquist():
    t = torch.arange(48000) / 48000
    y = resample(torch.sin(2 * torch.pi * 1000 * t), 48000, 32000)
    ref = torch.sin(2 * torch.pi * 1000 * torch.arange(32000) / 32000)
    assert (y[200:-200] - ref[200:-200]).abs().max() < 1e-3


@pytest.mark.parametrize("n", [64000, 64001, 63999, 128000, 160000, 87680, 700])
def test_frame_count_is_torchaudios_centred_frame_count(n):
    """Upstream featurises with torchaudio's MelSpectrogram (center=True): the frame centred on
    the last sample counts too when N is a multiple of the hop (every 1, 2, 4, 5 s clip)."""
    frames = ta.transforms.Spectrogram(n_fft=1024, hop_length=320)(torch.zeros(n)).shape[-1]
    assert frame_count(n, 320) == frames


@pytest.mark.parametrize(
    ("n", "frames"),
    [(32000, 101), (64000, 201), (127680, 400), (128000, 401), (160000, 501), (1, 1), (320, 2)],
)
def test_frame_count_of_hear_clip_lengths(n, frames):
    assert frame_count(n, 320) == frames


def test_sliced_stft_equals_whole_clip():
    """The runtime featurises chunk slices of the padded clip; that must equal the whole clip."""
    fe = LogMelFrontend(CFG)
    x = torch.randn(1, 2, 32000 * 5)
    whole = fe(x)  # (1, 2, F, 501)
    padded = fe.pad(x)
    seg = 199 * 320 + 1024
    second = fe(padded[..., 200 * 320 : 200 * 320 + seg], center=False)
    torch.testing.assert_close(second, whole[..., 200:400], atol=1e-5, rtol=1e-5)


def test_tiny_clip_is_featurised_as_if_zero_padded_to_a_reflectable_length():
    """A clip too short to reflect-pad (<= n_fft / 2 samples) is zero-padded to n_fft / 2 + 1
    samples first (LogMelFrontend.pad): torchaudio on that padded clip is the reference."""
    x = torch.randn(1, 2, 100, generator=torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (0, CFG.n_fft // 2 + 1 - 100))
    ref = torch.log(torchaudio_melspec()(padded) + torch.finfo(torch.float32).eps)
    torch.testing.assert_close(LogMelFrontend(CFG)(x), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("orig", [48000, 44100])
def test_blockwise_resampling_equals_whole_signal(orig):
    x = torch.randn(2, 3 * orig + 7, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(resample(x, orig, 32000, block_frames=7), resample(x, orig, 32000))


def _htk_mel(f: float) -> float:
    return 2595.0 * math.log10(1.0 + f / 700.0)


def _htk_hz(m: float) -> float:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@pytest.mark.parametrize("band", [40, 70, 100, 120])
def test_a_tone_lands_in_the_mel_band_centred_on_it(band):
    """A sine at the centre of mel band i (HTK scale, 128 bands from 50 Hz to 16 kHz: centre i
    is mel point i + 1 of 130 equally spaced on the mel scale) peaks in band i in every frame,
    and doubling its amplitude adds log 4 there (the features are log power)."""
    lo, hi = _htk_mel(CFG.f_min), _htk_mel(CFG.f_max)
    freq = _htk_hz(lo + (band + 1) * (hi - lo) / (CFG.n_mels + 1))
    t = torch.arange(CFG.sample_rate, dtype=torch.float64) / CFG.sample_rate
    tone = (0.25 * torch.sin(2 * math.pi * freq * t)).float()[None, None]
    fe = LogMelFrontend(CFG)
    feats = fe(tone)[0, 0, :, 2:-2]  # frames whose window lies inside the clip
    assert (feats.argmax(dim=0) == band).all()
    louder = fe(2 * tone)[0, 0, band, 2:-2]
    torch.testing.assert_close(louder - feats[band], torch.full_like(louder, math.log(4.0)),
                               atol=1e-4, rtol=0)  # fmt: skip
