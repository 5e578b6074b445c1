"""hear_gram.resample: torchaudio's filter at any rate pair, bounded in memory and time.

Reference values are independent of the code under test: the analytic sine at the new rate,
torchaudio's own resampler, and the polyphase path that tests/test_frontend.py pins to torchaudio.

Run as ``python -m tests.test_resample ORIG NEW`` it resamples 1 s of noise once and prints the
wall time as JSON: the bomb case runs that under an address-space limit.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time

import numpy as np
import pytest
import torch

from hear_gram.resample import (
    MAX_RATE,
    POLYPHASE_MAX_TAPS,
    check_file_rate,
    check_resample_size,
    polyphase_taps,
    resample,
    resample_ir,
)
from tests.hostile import REPO, run_limited
from tests.torchaudio_compat import import_torchaudio

HEAR_RATES = (16000, 22050, 44100, 48000)


def sine(freq: float, rate: int, seconds: float) -> torch.Tensor:
    n = round(rate * seconds)
    return torch.sin(2 * math.pi * freq * torch.arange(n, dtype=torch.float64) / rate)


def snr_db(y: torch.Tensor, ref: torch.Tensor, edge: int) -> float:
    err = (y.double() - ref)[edge:-edge]
    return 10 * math.log10(ref[edge:-edge].square().sum() / err.square().sum())


@pytest.mark.parametrize(("orig", "new"), [(7919, 32000), (44101, 48000), (32000, 7919)])
def test_coprime_rates_keep_a_sine(orig, new):
    """1 kHz at a coprime pair vs the analytic sine at the new rate: the filter's own accuracy
    (66-78 dB at the HEAR rates, `make bench-resample`), not a drifting approximation."""
    assert polyphase_taps(orig, new) > POLYPHASE_MAX_TAPS  # exercises the fractional path
    y = resample(sine(1000, orig, 1.0).float(), orig, new)
    assert y.shape == (new,)
    assert snr_db(y, sine(1000, new, 1.0), edge=new // 50) > 65


def test_long_clip_positions_do_not_drift():
    """Positions come from exact integer arithmetic: the last second of 30 s is as accurate as
    the first (a float32 position m * orig / new would be off by ~0.1 sample by then)."""
    orig, new = 44101, 48000
    y = resample(sine(1000, orig, 30.0).float(), orig, new)
    ref = sine(1000, new, 30.0)
    assert y.shape == ref.shape
    assert snr_db(y[-new:], ref[-new:], edge=100) > 65


def test_fractional_path_equals_torchaudio_on_a_coprime_pair():
    """1009 -> 1601 is coprime yet small enough for torchaudio's kernel (1.6M taps). torchaudio
    builds its kernel in the input's dtype: in float64 it is the precise reference (in float32 it
    is itself off by ~2e-4, hence the looser tolerance of tests/test_frontend.py)."""
    ta = import_torchaudio()
    x = torch.randn(2, 3, 5000, generator=torch.Generator().manual_seed(0))
    assert polyphase_taps(1009, 1601) > POLYPHASE_MAX_TAPS
    ours = resample(x, 1009, 1601)
    ref = ta.functional.resample(x.double(), 1009, 1601).float()
    assert ours.shape == ref.shape == (2, 3, math.ceil(5000 * 1601 / 1009))
    torch.testing.assert_close(ours, ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize("orig", HEAR_RATES)
def test_hear_rates_keep_the_polyphase_path_bit_for_bit(orig):
    x = torch.randn(2, orig + 13, generator=torch.Generator().manual_seed(orig))
    assert torch.equal(resample(x, orig, 32000), resample(x, orig, 32000, method="polyphase"))


@pytest.mark.parametrize(
    ("orig", "new"), [(44100, 32000), (48000, 32000), (22050, 32000), (32000, 44100), (32000, 8000)]
)
def test_two_paths_agree_on_nice_pairs(orig, new):
    """Same filter, two evaluations: equal to float32 rounding (up- and down-sampling)."""
    x = torch.randn(3, orig // 2 + 7, generator=torch.Generator().manual_seed(1))
    poly = resample(x, orig, new, method="polyphase")
    frac = resample(x, orig, new, method="fractional")
    assert poly.shape == frac.shape == (3, math.ceil((orig // 2 + 7) * new / orig))
    torch.testing.assert_close(frac, poly, atol=2e-6, rtol=0)


def test_fractional_path_chunks_do_not_change_the_result(monkeypatch):
    """Chunking over outputs and over taps (extreme down-sampling) is exact bookkeeping."""
    import hear_gram.resample as rs

    x = torch.randn(2, 30011, generator=torch.Generator().manual_seed(3))
    whole = resample(x, 30011, 997)  # ~2 x 187 taps per output
    monkeypatch.setattr(rs, "FRACTIONAL_ELEMENTS", 50)  # 25 taps, 1 output per chunk
    torch.testing.assert_close(resample(x, 30011, 997), whole, atol=1e-6, rtol=0)


def test_channels_are_independent_and_shape_is_kept():
    x = torch.randn(2, 3, 4001, generator=torch.Generator().manual_seed(4))
    y = resample(x, 7919, 32000)
    assert y.shape == (2, 3, math.ceil(4001 * 32000 / 7919))
    torch.testing.assert_close(y[1, 2], resample(x[1, 2], 7919, 32000), atol=1e-6, rtol=0)


def test_empty_and_equal_rates():
    assert resample(torch.zeros(2, 0), 7919, 32000).shape == (2, 0)
    x = torch.randn(5)
    assert resample(x, 7919, 7919) is x


@pytest.mark.parametrize(
    ("rate", "message"),
    [(0, "between 1 and"), (-44100, "between 1 and"), (MAX_RATE + 1, "between 1 and"),
     (44100.5, "integer"), (48000.0, "integer"), (True, "integer"), ("48000", "integer")],
)  # fmt: skip
def test_absurd_rates_are_refused(rate, message):
    with pytest.raises(ValueError, match=message):
        resample(torch.zeros(100), rate, 32000)
    with pytest.raises(ValueError, match="target sample rate"):
        resample(torch.zeros(100), 32000, rate)


@pytest.mark.hostile("bomb")
@pytest.mark.parametrize(("orig", "new"), [(7919, 32000), (44101, 48000), (22051, 32000)])
def test_coprime_rate_bomb_stays_small(orig, new):
    """The kernel-only resampler needed 2-17 GB here; 1 GB of address space (torch itself takes
    ~0.6 GB of it) and 1 s must do now."""
    res = run_limited(["tests.test_resample", str(orig), str(new)], cwd=REPO, mem_mb=1024)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["length"] == new
    assert out["seconds"] < 1.0


def _bomb_main(orig: int, new: int) -> None:
    torch.set_num_threads(1)
    x = torch.randn(orig, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    y = resample(x, orig, new)
    print(json.dumps({"seconds": time.perf_counter() - t0, "length": y.shape[-1]}))


if __name__ == "__main__":
    _bomb_main(int(sys.argv[1]), int(sys.argv[2]))


@pytest.mark.parametrize("new_sr", [16000, 48000])
def test_resample_ir_keeps_the_transfer_function(new_sr):
    """An impulse response's gain in dB at each in-band frequency is the same at the new rate
    (without the orig/new scaling it would move by 20 log10(new/orig) dB: +-3.5 or 6 dB)."""
    orig = 32000
    rng = np.random.default_rng(0)
    spectrum = np.fft.rfft(rng.standard_normal(4096) * np.exp(-np.arange(4096) / 300.0))
    spectrum[np.fft.rfftfreq(4096, 1 / orig) > 6000] = 0  # band-limited below both Nyquists
    ir = np.fft.irfft(spectrum, 4096).astype(np.float32)
    out = resample_ir(ir, orig, new_sr)
    assert out.dtype == np.float32 and out.shape == (math.ceil(4096 * new_sr / orig),)
    f = np.array([200.0, 1000.0, 3000.0, 5000.0])
    gain = lambda h, sr: np.abs(np.exp(-2j * np.pi * np.outer(f, np.arange(len(h))) / sr) @ h)  # noqa: E731
    np.testing.assert_allclose(
        20 * np.log10(gain(out, new_sr)), 20 * np.log10(gain(ir, orig)), atol=0.05
    )


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: check_file_rate(1, "x.wav"), "x.wav: a sample rate of 1 Hz is below 1000 Hz"),
        (lambda: check_file_rate(0, "x.wav"), "sample rate of x.wav must be between"),
        (lambda: check_resample_size((2, 2**26), 8000, 32000, "y.wav"), "y.wav: resampling"),
    ],
)
def test_rates_and_sizes_from_files_are_bounded(call, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        call()
    assert check_file_rate(8000, "ok.wav") == 8000
    assert check_resample_size((2, 44100), 44100, 32000, "ok.wav") == 32000
