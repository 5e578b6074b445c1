"""Mamba-1 and Mamba-2 mixers in plain PyTorch, with the parameter layout of ``mamba_ssm``.

GRAM-M replaces the transformer blocks of GRAM with Mamba blocks. Its checkpoints were trained
with ``mamba_ssm`` (state-spaces/mamba), whose CUDA/Triton kernels are missing on CPUs and on
most evaluation machines. This module re-implements the two mixers so that ``mamba_ssm`` state
dicts load strictly, and runs them anywhere:

* a fast plain-PyTorch path, used by default: the scans of :mod:`hear_gram.scans`
  (``selective_scan``, ``ssd_chunked``; pure functions, each with a sequential reference
  recurrence written for clarity that the tests use as ground truth);
* ``mamba_ssm``'s fused kernels when that package imports and the input is on CUDA
  (see :func:`fused_available` and the ``use_fused`` keyword of the mixers).

The scans keep decays and carried states in float32 and the mixers return the input dtype, as
``mamba_ssm`` does; with bf16/fp16 weights the SSD products and output are in that dtype, as the
fused SSD scan's are.

Shapes use the einops letters listed in :mod:`hear_gram.scans`.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from hear_gram.config import MambaConfig
from hear_gram.config import Mixer as MixerKind
from hear_gram.scans import selective_scan, ssd_chunked

logger = logging.getLogger(__name__)


# Upstream hyper-parameters that GRAM-M keeps at mamba_ssm's defaults; they shape the
# initialisation only, never the parameter layout.
DT_MIN, DT_MAX, DT_INIT_FLOOR = 1e-3, 1e-1, 1e-4
MAMBA2_A_INIT_RANGE = (1.0, 16.0)
MAMBA2_NORM_EPS = 1e-5
# Chunk length handed to mamba_ssm's fused kernel (its Mamba2 default).
FUSED_SSD_CHUNK_SIZE = 256


# ----------------------------------------------------------------------------------------------
# Optional fused kernels from mamba_ssm


@functools.cache
def _selective_scan_kernel() -> Callable[..., Tensor] | None:
    """``mamba_ssm``'s fused Mamba-1 scan, or None when it cannot be imported."""
    try:
        # Recent mamba_ssm builds make the compiled extension optional and only fail when the
        # scan is called, so its presence is checked here.
        import selective_scan_cuda  # noqa: F401
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError, RuntimeError) as err:
        logger.debug("mamba_ssm selective scan unavailable: %s", err)
        return None
    return selective_scan_fn


@functools.cache
def _chunk_scan_kernel() -> Callable[..., Tensor] | None:
    """``mamba_ssm``'s fused Mamba-2 (SSD) scan, or None when it cannot be imported."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except (ImportError, OSError, RuntimeError) as err:
        logger.debug("mamba_ssm chunk scan unavailable: %s", err)
        return None
    return mamba_chunk_scan_combined


def fused_available(mixer: MixerKind | None = None) -> bool:
    """Whether ``mamba_ssm``'s fused kernels for ``mixer`` (both when None) can run here.

    Needs a CUDA device and an importable ``mamba_ssm``; the plain-PyTorch path needs neither.
    """
    if not torch.cuda.is_available():
        return False
    kernels = {"mamba1": _selective_scan_kernel, "mamba2": _chunk_scan_kernel}
    wanted = get_args(MixerKind) if mixer is None else (mixer,)
    return all(kernels[kind]() is not None for kind in wanted)


def _resolve_fused(use_fused: bool | None, mixer: MixerKind, u: Tensor) -> bool:
    """Whether a forward pass takes the fused path (``use_fused=None``: whenever possible)."""
    if use_fused is False:
        return False
    possible = u.is_cuda and fused_available(mixer)
    if use_fused and not possible:
        raise RuntimeError(
            f"use_fused=True needs an importable mamba_ssm with {mixer} kernels and a CUDA input "
            f"(the input is on {u.device}); use_fused=None falls back to plain PyTorch"
        )
    return possible


# ----------------------------------------------------------------------------------------------
# Pure functions: convolution


def causal_depthwise_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Depthwise convolution along time that only looks at the past, channels last.

    Same result as upstream's ``Conv1d(padding=k - 1)`` followed by keeping the first ``l``
    outputs, i.e. ``k - 1`` zeros on the left.

    Args:
        x: (b, l, channels) input.
        weight: (channels, 1, k) ``nn.Conv1d`` depthwise weight.
        bias: (channels,) or None.
    Returns:
        (b, l, channels), a view whose rows of ``channels`` values are contiguous.
    """
    k, length = weight.shape[-1], x.shape[1]
    # Seen as a channels-last (b, channels, 1, l) image, the projection output is read in place
    # by the depthwise conv2d kernel; Conv1d would first make transposed copies (measured
    # several times slower on CPU).
    image = rearrange(x, "b l c -> b c 1 l")
    y = F.conv2d(image, weight[:, :, None], bias, padding=(0, k - 1), groups=weight.shape[0])
    return rearrange(y[..., :length], "b c 1 l -> b l c")


def inverse_softplus(y: Tensor) -> Tensor:
    """x such that ``softplus(x) == y`` for y > 0 (stable form of ``log(expm1(y))``)."""
    return y + torch.log(-torch.expm1(-y))


# ----------------------------------------------------------------------------------------------
# Normalisation


class RMSNorm(nn.Module):
    """Root-mean-square norm with a weight and no bias, as ``mamba_ssm``'s Triton ``RMSNorm``.

    Computes in float32 and returns the input dtype.
    """

    def __init__(
        self,
        dim: int,
        eps: float,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        """(..., dim) -> (..., dim)."""
        normed = F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps)
        return normed.to(x.dtype)


class GatedRMSNorm(nn.Module):
    """Mamba-2's output norm: ``rmsnorm(x * silu(z))`` over groups of channels, then a weight.

    Matches ``mamba_ssm.ops.triton.layernorm_gated.RMSNorm`` with ``norm_before_gate=False``:
    each of the ``dim / group_size`` groups is normalised on its own. Computes in float32 and
    returns the dtype of ``x``.
    """

    def __init__(
        self,
        dim: int,
        group_size: int,
        eps: float = MAMBA2_NORM_EPS,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if dim % group_size:
            raise ValueError(f"dim {dim} is not a multiple of group_size {group_size}")
        self.eps = eps
        self.group_size = group_size
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: Tensor, z: Tensor, out_dtype: torch.dtype | None = None) -> Tensor:
        """x, z: (..., dim) -> (..., dim) in ``out_dtype`` (default: the dtype of ``x``)."""
        out_dtype = x.dtype if out_dtype is None else out_dtype
        if x.dtype == torch.float32 or z.dtype != x.dtype:
            gated = x.float() * F.silu(z.float())
            grouped = gated.unflatten(-1, (-1, self.group_size))  # (..., groups, group_size)
            normed = F.rms_norm(grouped, (self.group_size,), eps=self.eps).flatten(-2)
            return (normed * self.weight.float()).to(out_dtype)
        # bf16/fp16 x and z (low-precision inference): elementwise steps in that dtype, the sum
        # of squares in float32. Four passes over (..., dim) instead of about ten with float32
        # copies (F.rms_norm is several kernels on a CPU); each step rounds to the narrow dtype.
        gated = x * F.silu(z)
        grouped = gated.unflatten(-1, (-1, self.group_size))
        norm = torch.linalg.vector_norm(grouped, dim=-1, keepdim=True, dtype=torch.float32)
        rstd = norm.square_().div_(self.group_size).add_(self.eps).rsqrt_()  # (..., groups, 1)
        weight = self.weight.to(x.dtype).view(-1, self.group_size)
        return (grouped * rstd.to(x.dtype)).mul_(weight).flatten(-2).to(out_dtype)


# ----------------------------------------------------------------------------------------------
# Mixers


def _log_uniform_dt(size: int, device: torch.device | str | None) -> Tensor:
    """Initial time steps, log-uniform in [DT_MIN, DT_MAX] (upstream's ``dt_init="random"``)."""
    log_dt = torch.empty(size, device=device).uniform_(math.log(DT_MIN), math.log(DT_MAX))
    return torch.exp(log_dt).clamp(min=DT_INIT_FLOOR)


def _depthwise_conv(
    channels: int, width: int, device: torch.device | str | None, dtype: torch.dtype | None
) -> nn.Conv1d:
    """``nn.Conv1d`` with upstream's shape and default init; forward passes use its weights."""
    return nn.Conv1d(
        channels, channels, width, groups=channels, padding=width - 1, device=device, dtype=dtype
    )


def _exclude_from_weight_decay(*params: nn.Parameter) -> None:
    # Upstream tags these so that its optimiser grouping skips weight decay; kept for trainers
    # that follow the same convention.
    for param in params:
        param._no_weight_decay = True


class Mamba1Mixer(nn.Module):
    """Mamba-1 selective-SSM mixer (Gu & Dao 2023), ``mamba_ssm.modules.mamba_simple.Mamba``.

    State-dict keys and shapes equal upstream's with ``bias=False, conv_bias=True``:
    ``in_proj`` (2e, d), ``conv1d`` (e, 1, k) + (e,), ``x_proj`` (r + 2n, e),
    ``dt_proj`` (e, r) + (e,), ``A_log`` (e, n), ``D`` (e,), ``out_proj`` (d, e).
    """

    def __init__(
        self,
        cfg: MambaConfig,
        *,
        use_fused: bool | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if cfg.mixer != "mamba1":
            raise ValueError(f"Mamba1Mixer needs a config with mixer='mamba1', got {cfg.mixer!r}")
        self.cfg = cfg
        self.use_fused = use_fused
        e, n, r = cfg.d_inner, cfg.d_state, cfg.resolved_dt_rank
        factory = {"device": device, "dtype": dtype}
        self.in_proj = nn.Linear(cfg.width, 2 * e, bias=False, **factory)
        self.conv1d = _depthwise_conv(e, cfg.d_conv, **factory)
        self.x_proj = nn.Linear(e, r + 2 * n, bias=False, **factory)
        self.dt_proj = nn.Linear(r, e, bias=True, **factory)
        # Upstream init: dt_proj preserves variance and softplus(bias) starts log-uniform in
        # [DT_MIN, DT_MAX]; A = -(1..n) for every channel (S4D-real); D = 1. A_log and D stay
        # float32 whatever ``dtype`` is, as upstream keeps them.
        nn.init.uniform_(self.dt_proj.weight, -(r**-0.5), r**-0.5)
        with torch.no_grad():
            self.dt_proj.bias.copy_(inverse_softplus(_log_uniform_dt(e, device)))
        self.dt_proj.bias._no_reinit = True  # upstream's model-level init leaves it alone
        A = torch.arange(1, n + 1, dtype=torch.float32, device=device).repeat(e, 1)  # (e, n)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(e, device=device))
        _exclude_from_weight_decay(self.A_log, self.D)
        self.out_proj = nn.Linear(e, cfg.width, bias=False, **factory)

    def forward(self, u: Tensor) -> Tensor:
        """(b, l, d) -> (b, l, d)."""
        n, r = self.cfg.d_state, self.cfg.resolved_dt_rank
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (b, l, e) each
        x = F.silu(causal_depthwise_conv1d(x, self.conv1d.weight, self.conv1d.bias))
        dt, B, C = self.x_proj(x).split([r, n, n], dim=-1)  # (b, l, r), (b, l, n), (b, l, n)
        dt = F.linear(dt, self.dt_proj.weight)  # (b, l, e); the bias is added in float32
        A = -torch.exp(self.A_log.float())  # (e, n)
        if _resolve_fused(self.use_fused, "mamba1", u):
            y = self._fused_scan(x, dt, A, B, C, z)
        else:
            dt = F.softplus(dt.float() + self.dt_proj.bias.float())
            y = selective_scan(x, dt, A, B, C, self.D) * F.silu(z.float())
        return self.out_proj(y.to(u.dtype))

    def _fused_scan(
        self, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, z: Tensor
    ) -> Tensor:
        """Gated scan by ``mamba_ssm``'s CUDA kernel, which wants channels before time."""
        channels_first = lambda t: rearrange(t, "b l c -> b c l")
        y = _selective_scan_kernel()(
            channels_first(x),
            channels_first(dt),
            A,
            channels_first(B),
            channels_first(C),
            self.D.float(),
            z=channels_first(z),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )  # (b, e, l)
        return rearrange(y, "b e l -> b l e")


class Mamba2Mixer(nn.Module):
    """Mamba-2 (SSD) mixer (Dao & Gu 2024), ``mamba_ssm.modules.mamba2.Mamba2``.

    State-dict keys and shapes equal upstream's defaults (``rmsnorm=True``,
    ``norm_before_gate=False``, ``D_has_hdim=False``, ``bias=False``, ``conv_bias=True``):
    ``in_proj`` (2e + 2gn + h, d) producing ``[z, x, B, C, dt]`` in that order,
    ``conv1d`` (e + 2gn, 1, k) + (e + 2gn,) over ``[x, B, C]``, ``dt_bias`` (h,),
    ``A_log`` (h,), ``D`` (h,), ``norm.weight`` (e,), ``out_proj`` (d, e).
    """

    def __init__(
        self,
        cfg: MambaConfig,
        *,
        use_fused: bool | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if cfg.mixer != "mamba2":
            raise ValueError(f"Mamba2Mixer needs a config with mixer='mamba2', got {cfg.mixer!r}")
        self.cfg = cfg
        self.use_fused = use_fused
        e, h, bc = cfg.d_inner, cfg.nheads, 2 * cfg.ngroups * cfg.d_state
        factory = {"device": device, "dtype": dtype}
        self.in_proj = nn.Linear(cfg.width, 2 * e + bc + h, bias=False, **factory)
        self.conv1d = _depthwise_conv(e + bc, cfg.d_conv, **factory)
        # Upstream init: softplus(dt_bias) log-uniform in [DT_MIN, DT_MAX]; A uniform in
        # MAMBA2_A_INIT_RANGE per head; D = 1 (kept float32).
        self.dt_bias = nn.Parameter(inverse_softplus(_log_uniform_dt(h, device)).to(dtype))
        A = torch.empty(h, dtype=torch.float32, device=device).uniform_(*MAMBA2_A_INIT_RANGE)
        self.A_log = nn.Parameter(torch.log(A).to(dtype))
        self.D = nn.Parameter(torch.ones(h, device=device))
        _exclude_from_weight_decay(self.dt_bias, self.A_log, self.D)
        self.norm = GatedRMSNorm(e, group_size=e // cfg.ngroups, **factory)
        self.out_proj = nn.Linear(e, cfg.width, bias=False, **factory)

    def forward(self, u: Tensor) -> Tensor:
        """(b, l, d) -> (b, l, d)."""
        cfg = self.cfg
        e, gn = cfg.d_inner, cfg.ngroups * cfg.d_state
        z, xBC, dt = self.in_proj(u).split([e, e + 2 * gn, cfg.nheads], dim=-1)
        xBC = F.silu(causal_depthwise_conv1d(xBC, self.conv1d.weight, self.conv1d.bias))
        x, B, C = xBC.split([e, gn, gn], dim=-1)  # (b, l, e), (b, l, gn), (b, l, gn)
        x = rearrange(x, "b l (h p) -> b l h p", p=cfg.headdim)
        B = rearrange(B, "b l (g n) -> b l g n", g=cfg.ngroups)
        C = rearrange(C, "b l (g n) -> b l g n", g=cfg.ngroups)
        A = -torch.exp(self.A_log.float())  # (h,)
        if _resolve_fused(self.use_fused, "mamba2", u):
            y = _chunk_scan_kernel()(
                x,
                dt,
                A,
                B,
                C,
                FUSED_SSD_CHUNK_SIZE,
                D=self.D,
                dt_bias=self.dt_bias,
                dt_softplus=True,
            )
        else:
            dt = F.softplus(dt.float() + self.dt_bias.float())  # (b, l, h)
            # bf16/fp16 inference (cast_matmuls) also runs the scan's products in that dtype.
            y = ssd_chunked(x, dt, A, B, C, self.D, matmul_dtype=_matmul_dtype(u))
        y = self.norm(rearrange(y, "b l h p -> b l (h p)"), z, out_dtype=u.dtype)  # (b, l, e)
        return self.out_proj(y)


def _matmul_dtype(u: Tensor) -> torch.dtype:
    """Operand dtype of the plain-PyTorch SSD products for mixer input ``u``."""
    return u.dtype if u.dtype in (torch.bfloat16, torch.float16) else torch.float32


def make_mixer(
    cfg: MambaConfig,
    *,
    use_fused: bool | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """The mixer that ``cfg.mixer`` names."""
    mixer_cls = Mamba1Mixer if cfg.mixer == "mamba1" else Mamba2Mixer
    return mixer_cls(cfg, use_fused=use_fused, device=device, dtype=dtype)


class MambaBlock(nn.Module):
    """Residual Mamba block: ``mamba_ssm.modules.block.Block`` as GRAM-M configures it.

    That is ``rms_norm=True, residual_in_fp32=True, fused_add_norm=True`` and no MLP: the block
    adds its input to the running residual stream (kept in float32), then returns the mixer
    applied to the normalised stream, together with that stream. The caller adds the last
    block's output to the residual and applies the final norm, as upstream's ``MixerModel``.
    """

    def __init__(
        self,
        cfg: MambaConfig,
        norm_eps: float = 1e-5,
        *,
        use_fused: bool | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.width, eps=norm_eps, device=device, dtype=dtype)
        self.mixer = make_mixer(cfg, use_fused=use_fused, device=device, dtype=dtype)

    def forward(self, hidden: Tensor, residual: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """hidden (b, l, d), residual (b, l, d) or None -> (mixer output, float32 residual)."""
        residual = hidden.float() if residual is None else residual.float() + hidden.float()
        # the mixer runs in its projection weights' dtype (bf16/fp16 inference casts them only)
        hidden = self.mixer(self.norm(residual).to(self.mixer.in_proj.weight.dtype))
        return hidden, residual
