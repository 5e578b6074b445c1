"""Tests for hear_gram.mamba and hear_gram.scans: parameter layout, scans against their references,
mixer properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hear_gram import scans
from hear_gram.config import MambaConfig
from hear_gram.mamba import (
    DT_MAX,
    DT_MIN,
    MAMBA2_A_INIT_RANGE,
    GatedRMSNorm,
    Mamba1Mixer,
    Mamba2Mixer,
    MambaBlock,
    RMSNorm,
    causal_depthwise_conv1d,
    fused_available,
    make_mixer,
)
from hear_gram.scans import selective_scan, selective_scan_sequential, ssd_chunked, ssd_sequential

# Tiny sizes; Mamba-2 with two groups of two heads, so that group/head bookkeeping is exercised.
TINY2 = MambaConfig(d_model=16, mixer="mamba2", d_state=8, d_conv=4, expand=2, headdim=8, ngroups=2)
TINY1 = MambaConfig(d_model=16, mixer="mamba1", d_state=6, d_conv=4, expand=3)
TINY_CONFIGS = pytest.mark.parametrize("cfg", [TINY1, TINY2], ids=["mamba1", "mamba2"])
LENGTHS = [1, 3, 16, 17, 40]  # includes L < d_conv, L = 1 and lengths off the chunk grid


def _seeded_mixer(cfg: MambaConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return make_mixer(cfg)


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-4, rtol: float = 1e-4):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


# ----------------------------------------------------------------------------------------------
# Configuration and parameter layout


def test_config_derived_sizes():
    cfg = MambaConfig(d_model=768)
    assert (cfg.d_inner, cfg.nheads) == (1536, 24)
    assert MambaConfig(768, mixer="mamba1", d_state=24, expand=3).resolved_dt_rank == 48
    assert MambaConfig(768, mixer="mamba1", dt_rank=7).resolved_dt_rank == 7
    with pytest.raises(ValueError, match="no d_model"):  # sizes need the width it runs at
        _ = MambaConfig().d_inner


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mixer": "mamba3"}, "mixer must be 'mamba1' or 'mamba2'"),
        ({"d_model": 0}, "d_model must be in 1"),
        ({"d_state": 2.5}, "d_state must be an integer"),
        ({"expand": True}, "expand must be an integer"),
        ({"d_model": 40, "headdim": 64}, "must be divisible by headdim"),
        ({"d_model": 64, "headdim": 32, "ngroups": 3}, "split evenly into ngroups"),
        ({"dt_rank": 4}, "dt_rank applies to mixer='mamba1' only"),
        ({"mixer": "mamba1", "dt_rank": 0}, "dt_rank must be in 1"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MambaConfig(**kwargs)


def test_mixer_rejects_config_of_the_other_kind():
    with pytest.raises(ValueError, match="mixer='mamba1'"):
        Mamba1Mixer(TINY2)
    with pytest.raises(ValueError, match="mixer='mamba2'"):
        Mamba2Mixer(TINY1)
    assert isinstance(make_mixer(TINY1), Mamba1Mixer)
    assert isinstance(make_mixer(TINY2), Mamba2Mixer)


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def test_mamba2_layout_matches_mamba_ssm_at_gram_size():
    mixer = Mamba2Mixer(MambaConfig(768), device="meta")  # meta: shapes only, no memory or init
    assert _shapes(mixer) == {
        "in_proj.weight": (3352, 768),
        "conv1d.weight": (1792, 1, 4),
        "conv1d.bias": (1792,),
        "dt_bias": (24,),
        "A_log": (24,),
        "D": (24,),
        "norm.weight": (1536,),
        "out_proj.weight": (768, 1536),
    }


def test_mamba1_layout_matches_mamba_ssm_at_gram_v1_size():
    mixer = Mamba1Mixer(MambaConfig(768, mixer="mamba1", d_state=24, expand=3), device="meta")
    # x_proj maps the inner stream (2304 wide) to dt_rank + 2 * d_state, as upstream's
    # nn.Linear(d_inner, dt_rank + 2 * d_state).
    assert _shapes(mixer) == {
        "in_proj.weight": (4608, 768),
        "conv1d.weight": (2304, 1, 4),
        "conv1d.bias": (2304,),
        "x_proj.weight": (96, 2304),
        "dt_proj.weight": (2304, 48),
        "dt_proj.bias": (2304,),
        "A_log": (2304, 24),
        "D": (2304,),
        "out_proj.weight": (768, 2304),
    }


@pytest.mark.parametrize("ngroups", [1, 2, 4])
def test_mamba2_layout_follows_upstream_formulas(ngroups):
    cfg = MambaConfig(d_model=48, d_state=16, d_conv=3, expand=2, headdim=8, ngroups=ngroups)
    e, h, n, k = 96, 12, 16, 3
    conv_dim = e + 2 * ngroups * n
    assert _shapes(Mamba2Mixer(cfg, device="meta")) == {
        "in_proj.weight": (2 * e + 2 * ngroups * n + h, 48),
        "conv1d.weight": (conv_dim, 1, k),
        "conv1d.bias": (conv_dim,),
        "dt_bias": (h,),
        "A_log": (h,),
        "D": (h,),
        "norm.weight": (e,),
        "out_proj.weight": (48, e),
    }


def test_block_layout():
    block = MambaBlock(TINY2)
    assert set(block.state_dict()) == {"norm.weight"} | {
        f"mixer.{key}" for key in make_mixer(TINY2).state_dict()
    }


def test_state_dict_round_trip_is_strict_and_exact():
    for cfg in (TINY1, TINY2):
        source, target = _seeded_mixer(cfg, 0), _seeded_mixer(cfg, 1)
        target.load_state_dict(source.state_dict(), strict=True)
        u = torch.randn(2, 9, cfg.d_model)
        with torch.no_grad():
            _close(target(u), source(u), atol=0, rtol=0)


def test_initialisation_follows_mamba_ssm():
    torch.manual_seed(0)
    m1 = Mamba1Mixer(MambaConfig(mixer="mamba1", d_model=64, d_state=5))
    m2 = Mamba2Mixer(MambaConfig(d_model=64, d_state=8, headdim=4))  # 32 heads
    # Mamba-1: S4D-real A = -(1..n) for every channel, softplus(dt bias) in [DT_MIN, DT_MAX].
    _close(m1.A_log.exp(), torch.arange(1.0, 6.0).expand(128, 5))
    for dt in (F.softplus(m1.dt_proj.bias), F.softplus(m2.dt_bias)):
        assert dt.min() >= DT_MIN * (1 - 1e-5) and dt.max() <= DT_MAX * (1 + 1e-5)
        assert dt.max() / dt.min() > 10  # spread log-uniformly, not constant
    assert m1.dt_proj.weight.abs().max() <= m1.cfg.resolved_dt_rank**-0.5
    # Mamba-2: one A per head, uniform in the upstream range; D = 1; norm weight = 1.
    a = m2.A_log.exp()
    assert a.min() >= MAMBA2_A_INIT_RANGE[0] and a.max() <= MAMBA2_A_INIT_RANGE[1]
    for param in (m1.D, m2.D, m2.norm.weight):
        assert torch.equal(param, torch.ones_like(param))
    assert m1.A_log.dtype == m1.D.dtype == m2.D.dtype == torch.float32


# ----------------------------------------------------------------------------------------------
# Pure functions


@pytest.mark.parametrize("length", [1, 2, 3, 4, 11])
def test_causal_conv_matches_upstream_conv1d_truncation(length):
    conv = torch.nn.Conv1d(6, 6, 4, groups=6, padding=3)
    x = torch.randn(2, length, 6)
    expected = conv(x.transpose(1, 2))[..., :length].transpose(1, 2)  # mamba_ssm's fallback
    _close(causal_depthwise_conv1d(x, conv.weight, conv.bias), expected, atol=1e-6)


def _ssd_inputs(length: int, big_steps: bool = False, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    b, h, p, g, n = 2, 4, 3, 2, 5
    scale = 8.0 if big_steps else 1.0
    x = torch.randn(b, length, h, p, generator=gen)
    dt = torch.rand(b, length, h, generator=gen) * scale
    A = -torch.rand(h, generator=gen) * 4 * scale - 0.1
    B = torch.randn(b, length, g, n, generator=gen)
    C = torch.randn(b, length, g, n, generator=gen)
    D = torch.randn(h, generator=gen)
    return x, dt, A, B, C, D


def _selective_inputs(length: int, big_steps: bool = False, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    b, e, n = 2, 5, 4
    scale = 8.0 if big_steps else 1.0
    x = torch.randn(b, length, e, generator=gen)
    dt = torch.rand(b, length, e, generator=gen) * scale
    A = -torch.rand(e, n, generator=gen) * 4 * scale - 0.1
    B = torch.randn(b, length, n, generator=gen)
    C = torch.randn(b, length, n, generator=gen)
    D = torch.randn(e, generator=gen)
    return x, dt, A, B, C, D


def _values_and_grads(fn, inputs):
    inputs = [t.clone().requires_grad_(True) for t in inputs]
    out = fn(*inputs)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device)
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    return out.detach(), grads


# How ssd_chunked applies the decay, by input: per-head decay rates |A| and step sizes chosen so
# that every chunk of >= 2 steps lands on one side of the factored form's span limit (120).
SSD_ROUTES = {
    # all heads slow-forgetting: the factored form; two groups exercise its group bookkeeping
    "factored": (2, [-0.1, -0.4, -0.7, -1.0], (0.0, 0.5), ["factored"]),
    # two heads forget within a step or two (span >= 150 per step): those two through the
    # decay matrix, the other two factored
    "mixed": (1, [-0.1, -0.4, -300.0, -500.0], (0.5, 1.0), ["factored", "decay_matrix"]),
    # the same heads in two groups: a subset would split a group, so all take the decay matrix
    "mixed_groups": (2, [-0.1, -0.4, -300.0, -500.0], (0.5, 1.0), ["decay_matrix"]),
    "decay_matrix": (1, [-300.0, -400.0, -500.0, -600.0], (0.5, 1.0), ["decay_matrix"]),
}


def _routed_inputs(route: str, length: int, seed: int = 0):
    groups, A, (dt_lo, dt_hi), _ = SSD_ROUTES[route]
    gen = torch.Generator().manual_seed(seed)
    b, h, p, n = 2, len(A), 3, 5
    x = torch.randn(b, length, h, p, generator=gen)
    dt = dt_lo + (dt_hi - dt_lo) * torch.rand(b, length, h, generator=gen)
    B = torch.randn(b, length, groups, n, generator=gen)
    C = torch.randn(b, length, groups, n, generator=gen)
    D = torch.randn(h, generator=gen)
    return x, dt, torch.tensor(A), B, C, D


@pytest.fixture
def ssd_routes(monkeypatch):
    """The SSD forms that ssd_chunked called, in order."""
    called = []
    for name in ("factored", "decay_matrix"):
        inner = getattr(scans, f"_ssd_{name}")

        def spy(*args, _inner=inner, _name=name, **kwargs):
            called.append(_name)
            return _inner(*args, **kwargs)

        monkeypatch.setattr(scans, f"_ssd_{name}", spy)
    return called


@pytest.mark.parametrize("route", sorted(SSD_ROUTES))
@pytest.mark.parametrize(
    ("length", "chunk_size"), [(16, 4), (17, 16), (40, 16), (40, 256), (300, 256)]
)
def test_ssd_chunked_matches_sequential(route, length, chunk_size, ssd_routes):
    """Values and gradients of every route against the step-by-step recurrence, with one chunk
    and several (300 > 256: two chunks of the default size; 17 and 40 steps off the grid)."""
    inputs = _routed_inputs(route, length)
    chunked = lambda *t: ssd_chunked(*t, chunk_size=chunk_size)
    out, grads = _values_and_grads(chunked, inputs)
    assert ssd_routes == SSD_ROUTES[route][3]
    ref_out, ref_grads = _values_and_grads(ssd_sequential, inputs)
    _close(out, ref_out)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        assert torch.isfinite(grad).all()  # dropped heads' overflowing scales stay out of grads
        _close(grad, ref_grad)


@pytest.mark.parametrize("length", [1, 3])
def test_ssd_chunked_matches_sequential_on_short_sequences(length):
    inputs = _ssd_inputs(length)
    out, grads = _values_and_grads(ssd_chunked, inputs)
    ref_out, ref_grads = _values_and_grads(ssd_sequential, inputs)
    _close(out, ref_out)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        _close(grad, ref_grad)


@pytest.mark.parametrize(("per_step", "route"), [(1.99, "factored"), (2.02, "decay_matrix")])
def test_ssd_factored_form_holds_up_to_its_span_limit(per_step, route, ssd_routes):
    """A decay spanning 119.4 (factored) or 121.2 (not) over one 61-step chunk. Scales taken from
    the chunk's end instead of its middle would reach e^119, beyond float32."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 61, 1, 4, generator=gen)
    dt = torch.ones(2, 61, 1)
    A = torch.tensor([-per_step])
    B, C = torch.randn(2, 61, 1, 5, generator=gen), torch.randn(2, 61, 1, 5, generator=gen)
    D = torch.randn(1, generator=gen)
    out = ssd_chunked(x, dt, A, B, C, D)
    assert ssd_routes == [route]
    _close(out, ssd_sequential(x, dt, A, B, C, D))


@pytest.mark.parametrize("length", LENGTHS)
def test_selective_scan_matches_sequential(length):
    inputs = _selective_inputs(length)
    out, grads = _values_and_grads(selective_scan, inputs)  # autograd recurrence
    ref_out, ref_grads = _values_and_grads(selective_scan_sequential, inputs)
    _close(out, ref_out)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        _close(grad, ref_grad)
    with torch.no_grad():  # the in-place recurrence used for inference
        _close(selective_scan(*inputs), ref_out)


def test_scans_are_stable_for_large_decays():
    # dt * A down to about -260 per step: any exp of a positive cumulative sum would overflow.
    for fast, ref, inputs in (
        (ssd_chunked, ssd_sequential, _ssd_inputs(70, big_steps=True)),
        (selective_scan, selective_scan_sequential, _selective_inputs(70, big_steps=True)),
    ):
        out, grads = _values_and_grads(fast, inputs)
        assert all(torch.isfinite(t).all() for t in (out, *grads))
        _close(out, ref(*inputs))


def _naive_selective(x, dt, A, B, C, D) -> torch.Tensor:
    """Mamba-1's recurrence in float64 scalars, one channel and state element at a time (arXiv
    2312.00752, eq. 2a-2b with ZOH A-bar = exp(dt A), B-bar x ~ dt B x as mamba_ssm's
    selective_scan_ref): h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t, y_t = <h_t, C_t> + D x_t."""
    x, dt, A, B, C, D = (t.double().tolist() for t in (x, dt, A, B, C, D))
    nb, length, e, n = len(x), len(x[0]), len(A), len(A[0])
    y = [[[0.0] * e for _ in range(length)] for _ in range(nb)]
    for bi in range(nb):
        for ei in range(e):
            h = [0.0] * n
            for t in range(length):
                step, u = dt[bi][t][ei], x[bi][t][ei]
                h = [math.exp(step * A[ei][k]) * h[k] + step * u * B[bi][t][k] for k in range(n)]
                y[bi][t][ei] = sum(h[k] * C[bi][t][k] for k in range(n)) + D[ei] * u
    return torch.tensor(y, dtype=torch.float64)


def _naive_ssd(x, dt, A, B, C, D) -> torch.Tensor:
    """Mamba-2's recurrence in float64 scalars (arXiv 2405.21060, SSD with scalar decay per
    head): per head and head channel, h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t, y_t = <h_t, C_t>
    + D x_t; head i reads the B and C of group i // (heads / groups)."""
    x, dt, A, B, C, D = (t.double().tolist() for t in (x, dt, A, B, C, D))
    nb, length, heads, p = len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])
    groups, n = len(B[0][0]), len(B[0][0][0])
    y = [[[[0.0] * p for _ in range(heads)] for _ in range(length)] for _ in range(nb)]
    for bi in range(nb):
        for hi in range(heads):
            g = hi // (heads // groups)
            for pi in range(p):
                h = [0.0] * n
                for t in range(length):
                    step, u = dt[bi][t][hi], x[bi][t][hi][pi]
                    decay = math.exp(step * A[hi])
                    h = [decay * h[k] + step * u * B[bi][t][g][k] for k in range(n)]
                    out = sum(h[k] * C[bi][t][g][k] for k in range(n))
                    y[bi][t][hi][pi] = out + D[hi] * u
    return torch.tensor(y, dtype=torch.float64)


SCANS = {  # name -> (scan, its inputs, the naive recurrence)
    "selective_scan": (selective_scan, _selective_inputs, _naive_selective),
    "selective_scan_sequential": (selective_scan_sequential, _selective_inputs, _naive_selective),
    "ssd_chunked": (lambda *t: ssd_chunked(*t, chunk_size=4), _ssd_inputs, _naive_ssd),
    "ssd_sequential": (ssd_sequential, _ssd_inputs, _naive_ssd),
}


@pytest.mark.parametrize("name", sorted(SCANS))
@pytest.mark.parametrize("length", [1, 5, 11])
def test_scans_match_a_naive_scalar_recurrence(name, length):
    """Every scan, the library's own references included, against the recurrence written out
    here in float64 scalars (ssd_chunked with 4-step chunks: several chunks and a partial one)."""
    scan, make_inputs, naive = SCANS[name]
    inputs = make_inputs(length, seed=4)
    with torch.no_grad():
        out = scan(*inputs)
    _close(out.double(), naive(*inputs), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(SCANS))
def test_scans_are_causal(name):
    """Changing the inputs at step t leaves every output before t as it was (up to float32
    rounding of the chunked forms' scales), and changes the output at t."""
    scan, make_inputs, _ = SCANS[name]
    inputs = make_inputs(13, seed=5)
    changed = [t.clone() for t in inputs]
    for i in (0, 1, 3, 4):  # x, dt, B and C at step 6 (dt stays positive)
        changed[i][:, 6] += 1.0
    with torch.no_grad():
        before, after = scan(*inputs), scan(*changed)
    _close(after[:, :6], before[:, :6], atol=1e-6, rtol=0)
    assert (after[:, 6] - before[:, 6]).abs().min() > 0


def test_scans_return_float32_for_bfloat16_inputs():
    for fast, ref, inputs in (
        (ssd_chunked, ssd_sequential, _ssd_inputs(20)),
        (selective_scan, selective_scan_sequential, _selective_inputs(20)),
    ):
        low = [t.bfloat16() for t in inputs]
        out = fast(*low)
        assert out.dtype == torch.float32
        _close(out, ref(*[t.float() for t in low]))  # same bf16 values, computed in float32


# ----------------------------------------------------------------------------------------------
# Norms


def test_rms_norm_formula_and_dtype():
    norm = RMSNorm(8, eps=1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 8)
    expected = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-5) * norm.weight
    _close(norm(x), expected, atol=1e-6)
    assert norm(x.bfloat16()).dtype == torch.bfloat16


def test_gated_rms_norm_normalises_each_group_on_its_own():
    norm = GatedRMSNorm(8, group_size=4)
    x, z = torch.randn(2, 8), torch.randn(2, 8)
    gated = x * F.silu(z)
    for half in (slice(0, 4), slice(4, 8)):
        part = gated[:, half]
        expected = part * torch.rsqrt(part.square().mean(-1, keepdim=True) + 1e-5)
        _close(norm(x, z)[:, half], expected, atol=1e-6)
    scaled = x.clone()
    scaled[:, :4] *= 10  # changes the first group's scale only ...
    _close(norm(scaled, z)[:, 4:], norm(x, z)[:, 4:], atol=1e-6)  # ... not the second's output


# ----------------------------------------------------------------------------------------------
# Mixers


def _reference_mamba2(mixer: Mamba2Mixer, u: torch.Tensor) -> torch.Tensor:
    """Mamba-2 forward written independently after mamba_ssm's non-fused path."""
    cfg = mixer.cfg
    b, length, _ = u.shape
    e, g, n, h = cfg.d_inner, cfg.ngroups, cfg.d_state, cfg.nheads
    z, xBC, dt = torch.split(mixer.in_proj(u), [e, e + 2 * g * n, h], dim=-1)
    conv = F.conv1d(
        xBC.transpose(1, 2),
        mixer.conv1d.weight,
        mixer.conv1d.bias,
        padding=cfg.d_conv - 1,
        groups=xBC.shape[-1],
    )
    xBC = F.silu(conv[..., :length].transpose(1, 2))
    x, B, C = torch.split(xBC, [e, g * n, g * n], dim=-1)
    y = ssd_sequential(
        x.reshape(b, length, h, cfg.headdim),
        F.softplus(dt + mixer.dt_bias),
        -torch.exp(mixer.A_log),
        B.reshape(b, length, g, n),
        C.reshape(b, length, g, n),
        mixer.D,
    ).reshape(b, length, e)
    gated = (y * F.silu(z)).reshape(b, length, g, e // g)
    normed = gated * torch.rsqrt(gated.square().mean(-1, keepdim=True) + 1e-5)
    return mixer.out_proj(normed.reshape(b, length, e) * mixer.norm.weight)


def _reference_mamba1(mixer: Mamba1Mixer, u: torch.Tensor) -> torch.Tensor:
    """Mamba-1 forward written independently after mamba_ssm's non-fused path."""
    cfg = mixer.cfg
    length = u.shape[1]
    x, z = mixer.in_proj(u).chunk(2, dim=-1)
    conv = F.conv1d(
        x.transpose(1, 2),
        mixer.conv1d.weight,
        mixer.conv1d.bias,
        padding=cfg.d_conv - 1,
        groups=cfg.d_inner,
    )
    x = F.silu(conv[..., :length].transpose(1, 2))
    r, n = cfg.resolved_dt_rank, cfg.d_state
    dt, B, C = torch.split(mixer.x_proj(x), [r, n, n], dim=-1)
    dt = F.softplus(mixer.dt_proj(dt))
    y = selective_scan_sequential(x, dt, -torch.exp(mixer.A_log), B, C, mixer.D)
    return mixer.out_proj(y * F.silu(z))


def _reference(mixer: torch.nn.Module, u: torch.Tensor) -> torch.Tensor:
    if isinstance(mixer, Mamba1Mixer):
        return _reference_mamba1(mixer, u)
    return _reference_mamba2(mixer, u)


@TINY_CONFIGS
@pytest.mark.parametrize("length", LENGTHS)
def test_mixer_matches_reference_outputs_and_input_gradients(cfg, length):
    mixer = _seeded_mixer(cfg)
    u = torch.randn(2, length, cfg.d_model)
    out, (grad,) = _values_and_grads(mixer, [u])
    ref_out, (ref_grad,) = _values_and_grads(lambda t: _reference(mixer, t), [u])
    _close(out, ref_out)
    _close(grad, ref_grad)
    with torch.no_grad():
        _close(mixer(u), ref_out)


@TINY_CONFIGS
def test_mixer_parameter_gradients_match_reference(cfg):
    mixer = _seeded_mixer(cfg)
    u = torch.randn(2, 21, cfg.d_model)
    params = list(mixer.parameters())
    grads = torch.autograd.grad(mixer(u).square().sum(), params)
    ref_grads = torch.autograd.grad(_reference(mixer, u).square().sum(), params)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        _close(grad, ref_grad, atol=1e-4, rtol=1e-3)


@TINY_CONFIGS
def test_mixer_is_causal(cfg):
    mixer = _seeded_mixer(cfg)
    u = torch.randn(1, 30, cfg.d_model)
    changed = u.clone()
    changed[:, 12] += 1.0
    with torch.no_grad():
        before, after = mixer(u), mixer(changed)
    # Float32 rounding, not exact equality: the factored SSD form scales a chunk around the
    # middle of its decay span, which a later step moves. Any leak of the future would show
    # at the size of the outputs (about 0.1-1), not 1e-7.
    _close(after[:, :12], before[:, :12], atol=1e-6, rtol=0)
    assert (after[:, 12:] - before[:, 12:]).abs().amax(dim=-1).min() > 0


@TINY_CONFIGS
def test_batched_equals_one_by_one(cfg):
    mixer = _seeded_mixer(cfg)
    u = torch.randn(3, 25, cfg.d_model)
    with torch.no_grad():
        batched = mixer(u)
        single = torch.cat([mixer(u[i : i + 1]) for i in range(3)])
    _close(batched, single, atol=1e-5)


@TINY_CONFIGS
def test_bfloat16_input_is_close_to_float32(cfg):
    mixer = _seeded_mixer(cfg)
    low = make_mixer(cfg).to(torch.bfloat16)
    low.load_state_dict(mixer.state_dict())
    u = torch.randn(2, 33, cfg.d_model)
    with torch.no_grad():
        expected = mixer(u)
        out = low(u.bfloat16())
    assert out.dtype == torch.bfloat16
    relative = (out.float() - expected).norm() / expected.norm()
    assert relative < 0.03


@TINY_CONFIGS
@pytest.mark.parametrize("length", LENGTHS)
def test_output_of_a_prefix_is_the_prefix_of_the_output(cfg, length):
    """Off the chunk grid and shorter than the convolution: padding, chunking or a reversed
    scan would change the outputs of the first steps with the length of what follows."""
    mixer = _seeded_mixer(cfg)
    u = torch.randn(2, 45, cfg.d_model, generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        whole, prefix = mixer(u), mixer(u[:, :length])
    _close(prefix, whole[:, :length], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Block


def test_block_adds_residual_in_float32_then_mixes_the_normalised_stream():
    torch.manual_seed(0)
    block = MambaBlock(TINY2, norm_eps=1e-6)
    hidden = torch.randn(2, 9, 16)
    out, residual = block(hidden)  # first block: the residual starts as the input
    assert residual.dtype == torch.float32
    _close(residual, hidden, atol=0, rtol=0)
    _close(out, block.mixer(block.norm(hidden)), atol=0, rtol=0)

    previous = torch.randn(2, 9, 16)
    out, residual = block(hidden, previous)
    _close(residual, hidden + previous, atol=0, rtol=0)
    _close(out, block.mixer(block.norm(hidden + previous)), atol=0, rtol=0)


def test_block_keeps_the_residual_in_float32_for_bfloat16_activations():
    torch.manual_seed(0)
    block = MambaBlock(TINY1).to(torch.bfloat16)
    hidden = torch.randn(2, 9, 16).bfloat16()
    out, residual = block(hidden)  # first block
    assert out.dtype == torch.bfloat16 and residual.dtype == torch.float32
    residual = torch.randn(2, 9, 16)
    out, new_residual = block(hidden, residual)
    assert out.dtype == torch.bfloat16 and new_residual.dtype == torch.float32
    _close(new_residual, residual + hidden.float(), atol=0, rtol=0)
    assert block.norm.eps == 1e-5


# ----------------------------------------------------------------------------------------------
# Fused kernels (optional)


def test_fused_path_is_never_required():
    u = torch.randn(1, 5, 16)
    for cfg in (TINY1, TINY2):
        torch.manual_seed(0)
        auto = make_mixer(cfg)  # use_fused=None: plain PyTorch on CPU
        torch.manual_seed(0)
        plain = make_mixer(cfg, use_fused=False)
        with torch.no_grad():
            _close(auto(u), plain(u), atol=0, rtol=0)
        forced = make_mixer(cfg, use_fused=True)
        if not (u.is_cuda and fused_available(cfg.mixer)):
            with pytest.raises(RuntimeError, match="use_fused=True needs"):
                forced(u)
    if not torch.cuda.is_available():
        assert not fused_available()


def _needs_fused(mixer: str, cfg: MambaConfig):
    ready = torch.cuda.is_available() and fused_available(mixer)
    reason = f"needs a CUDA device and mamba_ssm with its {mixer} kernels"
    return pytest.param(cfg, id=mixer, marks=pytest.mark.skipif(not ready, reason=reason))


@pytest.mark.parametrize(
    "cfg",
    [
        _needs_fused("mamba1", MambaConfig(d_model=64, mixer="mamba1", d_state=16, expand=2)),
        _needs_fused(
            "mamba2", MambaConfig(d_model=64, mixer="mamba2", d_state=32, headdim=16, ngroups=2)
        ),
    ],
)
def test_fused_kernels_match_plain_pytorch(cfg):
    torch.manual_seed(0)
    fused = make_mixer(cfg, use_fused=True, device="cuda")
    plain = make_mixer(cfg, use_fused=False, device="cuda")
    plain.load_state_dict(fused.state_dict())
    u = torch.randn(2, 300, cfg.d_model, device="cuda")  # 300 > 256: several fused chunks
    out, (grad,) = _values_and_grads(fused, [u])
    ref_out, (ref_grad,) = _values_and_grads(plain, [u])
    # Tolerances of mamba_ssm's own kernel tests (tests/ops/triton/test_ssd.py): the Triton
    # matmuls may round float32 inputs to TF32.
    _close(out, ref_out, atol=3e-3, rtol=1e-2)
    _close(grad, ref_grad, atol=6e-3, rtol=2e-2)


# ----------------------------------------------------------------------------------------------
# Low-precision (bf16) inference paths


@pytest.mark.parametrize("route", sorted(SSD_ROUTES))
@pytest.mark.parametrize("chunk_size", [4, 256])
def test_ssd_chunked_bf16_matmuls_stay_close_to_sequential(route, chunk_size, ssd_routes):
    """bf16 operands in the SSD products, float32 decays/state, bf16 output (mamba_ssm's fused
    scan returns its input's dtype): within bf16 rounding of the float32 recurrence on every
    route, also where decays drive exp(cumsum) far below 1."""
    x, dt, A, B, C, D = _routed_inputs(route, 41)
    ref = ssd_sequential(x, dt, A, B, C, D)
    out = ssd_chunked(x.bfloat16(), dt, A, B, C, D, chunk_size, matmul_dtype=torch.bfloat16)
    assert ssd_routes == SSD_ROUTES[route][3]
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    out = out.float()
    assert (out - ref).norm() / ref.norm() < 0.01
    assert F.cosine_similarity(out.flatten(), ref.flatten(), dim=0) > 0.9999


def test_ssd_chunked_float16_takes_the_decay_matrix(ssd_routes):
    """float16's range (6.5e4) cannot hold the factored form's scales."""
    x, dt, A, B, C, D = _routed_inputs("factored", 41)
    out = ssd_chunked(x.half(), dt, A, B, C, D, matmul_dtype=torch.float16)
    assert ssd_routes == ["decay_matrix"] and out.dtype == torch.float16
    ref = ssd_sequential(x.half().float(), dt, A, B, C, D)
    assert (out.float() - ref).norm() / ref.norm() < 0.01


def test_ssd_chunked_rejects_an_integer_matmul_dtype():
    x, dt, A, B, C, D = _ssd_inputs(5)
    with pytest.raises(ValueError, match="matmul_dtype"):
        ssd_chunked(x, dt, A, B, C, D, matmul_dtype=torch.int32)


def test_gated_rms_norm_low_precision_path_matches_float32_path():
    """bf16 x and z take the narrow path (bf16 steps, float32 sum of squares): within bf16
    rounding of the float32 formula on the same values, one norm per group, weight applied."""
    torch.manual_seed(0)
    norm = GatedRMSNorm(16, group_size=8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x, z = torch.randn(3, 5, 16).bfloat16(), torch.randn(3, 5, 16).bfloat16()
    gated = (x.float() * F.silu(z.float())).unflatten(-1, (2, 8))
    rms = gated.square().mean(-1, keepdim=True).add(1e-5).sqrt()
    ref = (gated / rms).flatten(-2) * norm.weight
    out = norm(x, z)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.02, rtol=0.02)
    assert norm(x, z, out_dtype=torch.float32).dtype == torch.float32
    scaled = x.clone()
    scaled[..., :8] *= 10  # still one norm per group on the fast path
    torch.testing.assert_close(
        norm(scaled, z, torch.float32)[..., 8:], norm(x, z, torch.float32)[..., 8:]
    )


def test_mamba2_mixer_in_bf16_inference_stays_close_to_float32():
    """The bf16 mixer (bf16 SSD products, fast gated norm) under no_grad, against float32."""
    cfg = TINY2
    ref_mixer = _seeded_mixer(cfg)
    low = make_mixer(cfg).to(torch.bfloat16)
    low.load_state_dict(ref_mixer.state_dict())
    u = torch.randn(2, 90, cfg.d_model)
    with torch.no_grad():
        expected, out = ref_mixer(u), low(u.bfloat16())
    assert F.cosine_similarity(out.float().flatten(1), expected.flatten(1)).min() > 0.999
