"""GRAM encoders: positional table, token order, torchvision-compatible blocks, normalisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hear_gram.config import preset
from hear_gram.encoder import build_encoder, cast_matmuls, sincos_2d
from hear_gram.vit import EncoderLayer, _fused_linear_works, fused_linear_applies, linear

TINY = dict(depth=2, width=64, heads=4, mlp_dim=128)


def test_sincos_table_reference_values():
    """Row 0 (CLS) is zero; token f*Tg + t: first half encodes t, second half f (MAE, w first)."""
    d, (fg, tg) = 16, (3, 5)
    table = sincos_2d(d, (fg, tg))[0]
    assert table.shape == (1 + fg * tg, d)
    assert torch.all(table[0] == 0)
    q = d // 4
    for f in range(fg):
        for t in range(tg):
            row = table[1 + f * tg + t]
            for i in range(q):
                w = 1.0 / 10000 ** (i / q)
                expect = [math.sin(t * w), math.cos(t * w), math.sin(f * w), math.cos(f * w)]
                got = [row[i], row[q + i], row[2 * q + i], row[3 * q + i]]
                assert all(abs(float(a) - b) < 1e-6 for a, b in zip(got, expect, strict=True))


@pytest.mark.parametrize(("name", "grid"), [("gram-t", (8, 25)), ("gram-t-time", (1, 100))])
def test_token_order_is_frequency_major(name, grid):
    enc = build_encoder(preset(name, **TINY)).eval()
    cfg = enc.cfg
    assert cfg.grid == grid
    spec = torch.zeros(1, cfg.in_channels, 128, 200)
    base = enc.patch_embed(spec)
    f, t = grid[0] - 1, grid[1] // 2  # light up one patch
    spec[..., f * cfg.patch_f : (f + 1) * cfg.patch_f, t * cfg.patch_t : (t + 1) * cfg.patch_t] = 1
    changed = (enc.patch_embed(spec) - base).abs().sum(-1)[0].nonzero().flatten().tolist()
    assert changed == [f * grid[1] + t]


def test_encoder_layer_matches_torch_multihead_attention_layout():
    """Same weights in torch.nn.MultiheadAttention (the class upstream's keys come from)."""
    torch.manual_seed(0)
    layer = EncoderLayer(64, 4, 128).eval()
    mha = nn.MultiheadAttention(64, 4, batch_first=True)
    mha.load_state_dict(layer.self_attention.state_dict())
    x = torch.randn(2, 7, 64)
    h = layer.ln_1(x)
    y = x + mha(h, h, h, need_weights=False)[0]
    y = y + layer.mlp[3](nn.functional.gelu(layer.mlp[0](layer.ln_2(y))))
    torch.testing.assert_close(layer(x), y, atol=1e-5, rtol=1e-5)


def test_released_key_layout():
    keys = set(build_encoder(preset("gram-t", depth=1)).state_dict())
    p = "encoder.layers.encoder_layer_0."
    expected = {
        "cls_token", "patch_embed.proj.weight", "patch_embed.proj.bias", "encoder.pos_embedding",
        "encoder.ln.weight", "encoder.ln.bias", p + "ln_1.weight", p + "ln_1.bias",
        p + "self_attention.in_proj_weight", p + "self_attention.in_proj_bias",
        p + "self_attention.out_proj.weight", p + "self_attention.out_proj.bias",
        p + "ln_2.weight", p + "ln_2.bias", p + "mlp.0.weight", p + "mlp.0.bias",
        p + "mlp.3.weight", p + "mlp.3.bias",
    }  # fmt: skip
    assert keys == expected


def test_parameter_count_of_gram_t_is_vit_base():
    n = sum(p.numel() for p in build_encoder(preset("gram-t")).parameters())
    assert 84e6 < n < 87e6  # arXiv 2506.00934: ~85 M


def test_chunk_normalisation_makes_tokens_gain_and_offset_invariant():
    enc = build_encoder(preset("gram-t", **TINY)).eval()
    spec = torch.randn(2, 2, 128, 200)
    torch.testing.assert_close(enc(spec), enc(3.0 * spec - 7.0), atol=1e-4, rtol=1e-4)


def test_layer_option_runs_the_first_n_blocks_then_the_final_norm():
    enc = build_encoder(preset("gram-t", **TINY)).eval()
    spec = torch.randn(1, 2, 128, 200)
    x = enc.tokens(spec)
    manual = enc.encoder.ln(enc.encoder.layers[0](x))
    torch.testing.assert_close(enc(spec, n_layers=1), manual)
    with pytest.raises(ValueError, match="layer must be in 1..2"):
        enc(spec, n_layers=3)


def test_bf16_matmuls_stay_close_to_fp32():
    torch.manual_seed(0)
    enc = build_encoder(preset("gram-t", **TINY)).eval()
    spec = torch.randn(2, 2, 128, 200)
    ref = enc(spec)
    out = cast_matmuls(enc, torch.bfloat16)(spec)
    assert out.dtype == torch.float32
    cos = nn.functional.cosine_similarity(out.flatten(1), ref.flatten(1)).min()
    assert cos > 0.9999


@pytest.mark.parametrize("gelu", [False, True])
def test_linear_fast_path_matches_float32_and_plain_path(gelu):
    """vit.linear: float32 is exactly nn.Linear (+ exact GELU); bf16 CPU inference (oneDNN's
    fused op where it works here) stays within bf16 rounding of the float32 result."""
    torch.manual_seed(0)
    fc = nn.Linear(64, 96)
    x = torch.randn(3, 7, 64)
    with torch.no_grad():
        plain = nn.functional.gelu(fc(x)) if gelu else fc(x)
        assert torch.equal(linear(x, fc.weight, fc.bias, gelu=gelu), plain)
        w, b, xb = fc.weight.bfloat16(), fc.bias.bfloat16(), x.bfloat16()
        assert fused_linear_applies(xb, w) == _fused_linear_works()
        got = linear(xb, w, b, gelu=gelu)
        ref = nn.functional.linear(xb.float(), w.float(), b.float())
        ref = nn.functional.gelu(ref) if gelu else ref  # exact (erf) GELU, not the tanh one
    assert got.dtype == torch.bfloat16 and got.shape == (3, 7, 96)
    torch.testing.assert_close(got.float(), ref, atol=0.02, rtol=0.02)


def test_linear_fast_path_is_not_taken_when_autograd_records():
    w = torch.randn(8, 16, dtype=torch.bfloat16, requires_grad=True)
    x = torch.randn(2, 16, dtype=torch.bfloat16)
    assert not fused_linear_applies(x, w)  # the fused op has no backward
    linear(x, w, None, gelu=True).float().sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad.float()).all()
