"""hear_gram.dsp: fades, levels, RIR convolution, one-gain SNR mixing, noise placement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hear_gram import dsp

SR = 16000


def _db(x: float) -> float:
    return 10.0 * math.log10(x)


# --- fades and levels ---------------------------------------------------------------------------


def test_fade_is_a_raised_cosine_in_and_out():
    x = np.ones((2, SR))
    y = dsp.fade(x, SR, 0.2)
    n = int(0.2 * SR)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    np.testing.assert_allclose(y[:, :n], np.broadcast_to(ramp, (2, n)))
    np.testing.assert_allclose(y[:, -n:], np.broadcast_to(ramp[::-1], (2, n)))
    assert np.all(y[:, n:-n] == 1.0)
    assert y[0, 0] == y[0, -1] == 0.0
    assert np.all(np.diff(y[0, :n]) > 0)  # monotonic rise
    assert np.all(x == 1.0)  # input untouched


def test_fade_is_capped_at_half_the_signal_and_matches_torch():
    x = np.random.default_rng(0).standard_normal(100)
    y = dsp.fade(x, SR, 1.0)  # 16000-sample fade on 100 samples: 50 in, 50 out
    assert y[0] == 0.0 and y[-1] == 0.0 and abs(y[49]) > 0 and abs(y[50]) > 0
    yt = dsp.fade(torch.from_numpy(x), SR, 1.0)
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-12)
    assert np.array_equal(dsp.fade(x, SR, 0.0), x)


def test_levels():
    assert dsp.db_to_amplitude(20.0) == pytest.approx(10.0)
    assert dsp.db_to_amplitude(-6.0206) == pytest.approx(0.5, rel=1e-4)
    x = np.random.default_rng(1).standard_normal((2, 8000)) * [[1.0], [0.1]]
    y = dsp.rms_normalize(x, -14.0)
    assert dsp.rms_dbfs(y) == pytest.approx(-14.0)
    # one gain over all channels: the channel ratio is kept
    np.testing.assert_allclose(y[1] / y[0], x[1] / x[0])
    silence = np.zeros(100)
    assert np.array_equal(dsp.rms_normalize(silence), silence) and dsp.rms_gain(silence) == 1.0
    assert dsp.rms_dbfs(silence) == -math.inf
    assert float(np.abs(dsp.normalize_peak(x, 0.5)).max()) == pytest.approx(0.5)


def test_downmix_averages_channels():
    x = np.stack([np.ones(10), 3 * np.ones(10)], axis=1)  # (N, C) soundfile layout
    np.testing.assert_array_equal(dsp.downmix(x), 2 * np.ones(10))
    assert dsp.downmix(np.ones(5)).shape == (5,)
    with pytest.raises(ValueError, match="shape"):
        dsp.downmix(np.ones((2, 2, 2)))


def test_limit_peak_scales_down_only():
    x = np.array([[0.5, -2.0], [1.0, 0.0]])
    y, g = dsp.limit_peak(x, 0.999)
    assert g == pytest.approx(0.999 / 2.0) and float(np.abs(y).max()) == pytest.approx(0.999)
    z, g = dsp.limit_peak(x * 0.1)
    assert g == 1.0 and np.array_equal(z, x * 0.1)


# --- convolution ---------------------------------------------------------------------------------


def test_fft_size_is_the_next_5_smooth_number():
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in [1, 2, 7, 97, 1000, 4097, 16001, 191999]:
        size = dsp.fft_size(n)
        assert size >= n and smooth(size)
        assert not any(smooth(m) for m in range(n, size))


@pytest.mark.parametrize("n, taps", [(1000, 64), (50, 300), (1, 1)])
def test_convolve_rir_is_full_convolution_truncated(n, taps):
    rng = np.random.default_rng(n)
    x, rir = rng.standard_normal(n), rng.standard_normal((3, taps))
    y = dsp.convolve_rir(x, rir)
    assert y.shape == (3, n)
    for c in range(3):
        np.testing.assert_allclose(y[c], np.convolve(x, rir[c])[:n], atol=1e-9)


def test_convolve_rir_batches_and_torch():
    rng = np.random.default_rng(0)
    x, rirs = rng.standard_normal((4, 500)), rng.standard_normal((4, 2, 80))
    shared = dsp.convolve_rir(x, rirs[0])  # one RIR for the batch
    per_item = dsp.convolve_rir(x, rirs)  # one RIR per item
    assert shared.shape == per_item.shape == (4, 2, 500)
    for b in range(4):
        np.testing.assert_allclose(per_item[b], dsp.convolve_rir(x[b], rirs[b]), atol=1e-9)
        np.testing.assert_allclose(shared[b], dsp.convolve_rir(x[b], rirs[0]), atol=1e-9)
    yt = dsp.convolve_rir(torch.from_numpy(x), rirs)  # numpy RIR moved to the tensor's device
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float64
    np.testing.assert_allclose(yt.numpy(), per_item, atol=1e-9)
    y32 = dsp.convolve_rir(x.astype(np.float32), rirs.astype(np.float32))
    assert y32.dtype == np.float32


def test_convolve_rir_keeps_delay_and_drops_tail():
    x = np.zeros(100)
    x[90] = 1.0
    rir = np.zeros((2, 20))
    rir[0, 5], rir[1, 15] = 1.0, 0.5  # right channel later and weaker
    y = dsp.convolve_rir(x, rir)
    assert y[0, 95] == pytest.approx(1.0) and np.count_nonzero(np.abs(y[0]) > 1e-9) == 1
    assert not np.any(np.abs(y[1]) > 1e-9)  # its echo at 105 lies past the end


# --- SNR -------------------------------------------------------------------------------------------


def test_one_gain_over_channels_keeps_the_interaural_level_difference():
    rng = np.random.default_rng(2)
    target = rng.standard_normal((2, SR)) * [[1.0], [0.5]]
    noise = rng.standard_normal((2, SR)) * [[0.2], [1.0]]  # noise louder on the right
    ild_before = _db(np.mean(noise[0] ** 2) / np.mean(noise[1] ** 2))
    mix, gain = dsp.mix_at_snr(target, noise, 10.0)
    scaled = mix - target
    np.testing.assert_allclose(scaled, gain * noise)
    assert _db(np.mean(scaled[0] ** 2) / np.mean(scaled[1] ** 2)) == pytest.approx(ild_before)
    snr = _db(np.mean(target**2) / np.mean(scaled**2))  # over both channels together
    assert snr == pytest.approx(10.0, abs=1e-9)
    # per-channel SNRs differ (left much cleaner): one gain, not one per channel
    left = _db(np.mean(target[0] ** 2) / np.mean(scaled[0] ** 2))
    right = _db(np.mean(target[1] ** 2) / np.mean(scaled[1] ** 2))
    assert left - right > 10.0


def test_snr_is_measured_over_the_noise_active_part():
    rng = np.random.default_rng(3)
    target = rng.standard_normal((2, 2 * SR))
    noise = np.zeros((2, 2 * SR))
    noise[:, :SR] = rng.standard_normal((2, SR))  # noise in the first half only
    active = np.zeros(2 * SR, dtype=bool)
    active[:SR] = True
    gain = dsp.snr_gain(target, noise, 20.0, active)
    scaled = gain * noise
    assert _db(np.mean(target**2) / np.mean(scaled[:, :SR] ** 2)) == pytest.approx(20.0)
    assert dsp.measured_snr_db(target, scaled, active) == pytest.approx(20.0)
    # over the whole clip the zeros would count: 3 dB more apparent SNR, a quieter mix
    assert dsp.measured_snr_db(target, scaled) == pytest.approx(20.0 + _db(2.0), abs=0.05)
    assert dsp.snr_gain(target, noise, 20.0) > gain
    t = torch.from_numpy(target)
    assert dsp.snr_gain(t, torch.from_numpy(noise), 20.0, active) == pytest.approx(gain)


def test_snr_gain_of_silence_is_zero():
    x = np.ones((2, 10))
    assert dsp.snr_gain(x, np.zeros((2, 10)), 10.0) == 0.0
    assert dsp.snr_gain(np.zeros((2, 10)), x, 10.0) == 0.0
    assert dsp.measured_snr_db(x, np.zeros((2, 10))) == math.inf


# --- noise placement ----------------------------------------------------------------------------


def test_prepare_noise_shorter_than_clip_gets_random_offset_and_fades():
    noise = np.ones(SR)  # 1 s noise, 3 s clip
    offsets = set()
    for seed in range(20):
        out, offset, active = dsp.prepare_noise(noise, SR, 3 * SR, np.random.default_rng(seed))
        assert out.shape == active.shape == (3 * SR,)
        assert 0 <= offset <= 2 * SR and active.sum() == SR
        assert np.all(active[offset : offset + SR]) and not np.any(out[~active])
        seg = out[offset : offset + SR]
        np.testing.assert_allclose(seg, dsp.fade(noise, SR, 0.2))  # 200 ms in and out
        offsets.add(offset)
    assert len(offsets) == 20
    again = dsp.prepare_noise(noise, SR, 3 * SR, np.random.default_rng(0))
    first = dsp.prepare_noise(noise, SR, 3 * SR, np.random.default_rng(0))
    assert again[1] == first[1] and np.array_equal(again[0], first[0])


def test_prepare_noise_longer_than_clip_is_cut_at_its_start():
    noise = np.arange(5 * SR, dtype=float)
    out, offset, active = dsp.prepare_noise(noise, SR, 2 * SR, np.random.default_rng(0))
    assert offset == 0 and active.all()
    np.testing.assert_allclose(out, dsp.fade(noise[: 2 * SR], SR, 0.2))


def test_prepare_noise_is_cut_to_max_s():
    noise = np.ones(12 * SR)
    out, offset, active = dsp.prepare_noise(noise, SR, 15 * SR, np.random.default_rng(0))
    assert active.sum() == 10 * SR and 0 <= offset <= 5 * SR
    with pytest.raises(ValueError, match="mono"):
        dsp.prepare_noise(np.ones((2, 10)), SR, 10, np.random.default_rng(0))
