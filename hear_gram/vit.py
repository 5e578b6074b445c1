"""The GRAM-T transformer stack in plain PyTorch (arXiv 2506.00934; labhamlet/GRAM-T
``src/model/utils.py``).

Upstream builds the encoder from torchvision's ``Encoder``; the module names here reproduce its
state-dict layout (``layers.encoder_layer_{i}.{ln_1, self_attention.in_proj_weight,
self_attention.out_proj, ln_2, mlp.0, mlp.3}``, ``ln``, ``pos_embedding``) so released weights load
strictly without renaming, and torchvision (a CUDA-only wheel here) is not needed.

Dimension letters: B batch, L tokens (CLS + patches), D width, H heads, E head width.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn import functional as F

log = logging.getLogger(__name__)


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype, so bf16/fp16 inference keeps
    normalisation statistics exact (the residual stream stays float32 too)."""

    def forward(self, x: Tensor) -> Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps)


class SelfAttention(nn.Module):
    """Multi-head self-attention with torch.nn.MultiheadAttention's parameter names."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, L, 3D)
        q, k, v = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, E)
        return linear(y.transpose(1, 2).reshape(b, n, d), self.out_proj.weight, self.out_proj.bias)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, gelu: bool = False) -> Tensor:
    """``F.linear`` (then exact GELU when ``gelu``), as ``nn.Linear`` (and ``nn.GELU``) compute it.

    bf16 inference on a CPU takes oneDNN's linear with the bias and the GELU fused into the
    matrix product (:func:`fused_linear_applies`): there, ``F.linear`` with a bias first copies
    the bias into the output and runs a slower accumulating product, and the GELU is one more
    pass; fused, the MLP of a bf16 GRAM-T block ran about 1.3x faster on a 2-core AVX-512 BF16
    CPU. float32 and everything else take the plain path, unchanged.
    """
    if fused_linear_applies(x, weight):
        attr, algorithm = ("gelu", "none") if gelu else ("none", "")  # "none": erf, not tanh
        y = torch.ops.mkldnn._linear_pointwise(
            x.reshape(-1, x.shape[-1]), weight, bias, attr, [], algorithm
        )
        return y.view(*x.shape[:-1], weight.shape[0])
    y = F.linear(x, weight, bias)
    return F.gelu(y) if gelu else y


def fused_linear_applies(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`linear` takes oneDNN's fused op: bf16 CPU tensors, no autograd (the op
    has no backward), and an op that exists and agrees with ``F.linear`` on this build."""
    return (
        x.dtype == torch.bfloat16
        and weight.dtype == torch.bfloat16
        and x.device.type == "cpu"
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and _fused_linear_works()
    )


@functools.cache
def _fused_linear_works() -> bool:
    """oneDNN's ``_linear_pointwise`` is a private op: check once that it is there and matches
    ``F.linear`` + GELU, and otherwise fall back to the plain path."""
    try:
        g = torch.Generator().manual_seed(0)
        x, w, b = (
            torch.randn(*shape, generator=g).bfloat16() for shape in [(5, 16), (8, 16), (8,)]
        )
        for attr, algorithm, act in [("none", "", lambda t: t), ("gelu", "none", F.gelu)]:
            got = torch.ops.mkldnn._linear_pointwise(x, w, b, attr, [], algorithm).float()
            want = act(F.linear(x.float(), w.float(), b.float()))
            if got.shape != want.shape or not torch.allclose(got, want, atol=0.1, rtol=0.02):
                log.info("oneDNN fused linear disagrees with F.linear; using F.linear")
                return False
    except (AttributeError, RuntimeError, NotImplementedError) as err:
        log.info("oneDNN fused linear unavailable (%s); using F.linear", err)
        return False
    return True


class EncoderLayer(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); exact GELU."""

    def __init__(self, width: int, heads: int, mlp_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.ln_1 = FP32LayerNorm(width, eps=eps)
        self.self_attention = SelfAttention(width, heads)
        self.ln_2 = FP32LayerNorm(width, eps=eps)
        # indices 0 and 3 carry weights, as torchvision's MLPBlock (Linear, GELU, Dropout, Linear)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_dim), nn.GELU(), nn.Identity(), nn.Linear(mlp_dim, width)
        )
        for m in (self.mlp[0], self.mlp[3]):
            nn.init.xavier_uniform_(m.weight)
            nn.init.normal_(m.bias, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        # x is the float32 residual stream; the sub-layers run in their weights' dtype.
        dtype = self.mlp[0].weight.dtype
        x = x + self.self_attention(self.ln_1(x).to(dtype))  # promotes to float32
        fc1, fc2 = self.mlp[0], self.mlp[3]  # as self.mlp computes, through the fused path
        hidden = linear(self.ln_2(x).to(dtype), fc1.weight, fc1.bias, gelu=True)
        return x + linear(hidden, fc2.weight, fc2.bias)


class TransformerStack(nn.Module):
    """``encoder`` of GRAM-T: fixed positional table, blocks and final LayerNorm."""

    def __init__(self, depth: int, width: int, heads: int, mlp_dim: int, pos: Tensor) -> None:
        super().__init__()
        self.register_buffer("pos_embedding", pos)  # (1, L, D), saved with the weights
        self.layers = nn.Sequential(
            OrderedDict(
                (f"encoder_layer_{i}", EncoderLayer(width, heads, mlp_dim)) for i in range(depth)
            )
        )
        self.ln = FP32LayerNorm(width, eps=1e-6)

    def forward(self, x: Tensor, n_layers: int | None = None) -> Tensor:
        """(B, L, D) tokens with positions added -> (B, L, D) after ``n_layers`` blocks + ln."""
        x = x.float()
        for block in list(self.layers)[:n_layers]:
            x = block(x)
        return self.ln(x)
