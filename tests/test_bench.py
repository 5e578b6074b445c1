"""hear_gram.bench: its fresh-process measurements (`run_child`) and what it writes."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hear_gram import bench
from hear_gram.resample import resample


def test_resample_child_measures_in_a_fresh_process_what_it_says():
    """The child's SNR equals one computed here from its definition (1 kHz sine, 20 ms edges
    excluded), so it ran the asked pair and method (the fractional path, not the polyphase one
    that "auto" takes for this pair); its RSS is another process's."""
    got = bench.run_child("resample", 44100, 32000, "fractional")
    x = torch.sin(2 * math.pi * 1000 * torch.arange(44100, dtype=torch.float64) / 44100).float()
    y = resample(x, 44100, 32000, method="fractional").double()
    ref = torch.sin(2 * math.pi * 1000 * torch.arange(32000, dtype=torch.float64) / 32000)
    err = (y - ref)[640:-640]
    snr = 10 * math.log10(float(ref[640:-640].square().sum() / err.square().sum()))
    assert got["out_len"] == 32000 and got["snr_db"] == pytest.approx(snr, abs=1e-6)
    assert snr > 60  # tests/test_resample.py: 66-78 dB at the HEAR rates
    assert 0 < got["seconds"] < 60 and got["peak_rss_delta_mb"] >= 0


def test_unknown_child_is_refused(capsys):
    assert bench.main(["--child", "nope"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "python -m hear_gram.bench: error: --child: unknown 'nope'"
    )


def test_non_finite_numbers_are_written_as_null(tmp_path, capsys):
    out = tmp_path / "sub" / "b.json"
    bench.write_json(out, {"a": [1.5, math.nan], "b": {"c": math.inf, "d": "x"}, "e": None})
    assert json.loads(out.read_text()) == {"a": [1.5, None], "b": {"c": None, "d": "x"}, "e": None}
    assert capsys.readouterr().out.strip() == f"wrote {out}"


def test_encoder_flops_is_what_torch_counts_for_a_forward():
    """`bench.encoder_flops` (the numerator of the matmul-ceiling fraction) equals torch's own
    FLOP count of a GRAM-T forward: the patch convolution, the blocks' linears and attention's
    two products (the math SDPA backend, whose products torch's counter sees)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from hear_gram.config import preset
    from hear_gram.encoder import build_encoder

    cfg = preset("gram-t", depth=2, width=64, heads=4, mlp_dim=128)
    enc = build_encoder(cfg).eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as count:
        enc(torch.randn(3, 2, 128, 200))
    assert bench.encoder_flops(cfg, 3) == count.get_total_flops()
    full = preset("gram-t")  # ViT-B, 201 tokens per chunk: 35.7 GFLOP a chunk
    assert bench.encoder_flops(full, 1) == 2 * 200 * 768 * 256 + 12 * (
        2 * 201 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072) + 4 * 201**2 * 768
    )
