"""The GRAM-T transformer stack in plain PyTorch (REFERENCE §3).

Upstream builds the encoder from torchvision's ``Encoder``; the module names here reproduce its
state-dict layout (``layers.encoder_layer_{i}.{ln_1, self_attention.in_proj_weight,
self_attention.out_proj, ln_2, mlp.0, mlp.3}``, ``ln``, ``pos_embedding``) so released weights load
strictly without renaming, and torchvision (a CUDA-only wheel here) is not needed.

Dimension letters: B batch, L tokens (CLS + patches), D width, H heads, E head width.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn import functional as F


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
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, L, 3D)
        q, k, v = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, E)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))


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
        x = x + self.self_attention(self.ln_1(x).to(dtype)).float()
        return x + self.mlp(self.ln_2(x).to(dtype)).float()


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
