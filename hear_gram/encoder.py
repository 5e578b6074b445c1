"""GRAM encoders: chunk normalisation, patching, CLS + positions, then a transformer (GRAM-T) or a
Mamba stack (GRAM-M) (arXiv 2506.00934; labhamlet/GRAM-T, labhamlet/GRAM-M). Architecture only:
no front-end, no training logic.

Module names reproduce the released state-dict layouts (``patch_embed.proj``, ``cls_token``,
``encoder.*`` for GRAM-T; ``encoder_pos_embed``, ``encoder_v.*`` for GRAM-M) so weights load
strictly.

Dimension letters: B chunks, C channels, F mel bins, T frames (200 per chunk), Fg x Tg patch grid,
N = Fg*Tg patches, L = 1 + N tokens, D width.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hear_gram.config import GramConfig
from hear_gram.vit import TransformerStack


def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """Sin-cos table (M, dim) for positions (M,): first half sines, second half cosines."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim: int, grid: tuple[int, int], n_cls: int = 1) -> Tensor:
    """Fixed 2-D positions (1, n_cls + Fg*Tg, dim), frequency-major token order, zero rows for CLS.

    As upstream (MAE's table with ``meshgrid(w, h)``), the first half of the channels encodes the
    time index and the second half the frequency index.
    """
    if dim % 4:
        raise ValueError(f"sin-cos positions need a width divisible by 4, got {dim}")
    fg, tg = grid
    t_idx, f_idx = np.meshgrid(np.arange(tg), np.arange(fg))  # (Fg, Tg) each
    table = np.concatenate([sincos_1d(dim // 2, t_idx), sincos_1d(dim // 2, f_idx)], axis=1)
    table = np.concatenate([np.zeros((n_cls, dim)), table], axis=0)
    return torch.from_numpy(table).float().unsqueeze(0)


class PatchEmbed(nn.Module):
    """Non-overlapping Conv2d patches (stride = size): (B, C, F, T) -> (B, N, D), index f*Tg + t."""

    def __init__(self, cfg: GramConfig) -> None:
        super().__init__()
        size = (cfg.patch_f, cfg.patch_t)
        self.proj = nn.Conv2d(cfg.in_channels, cfg.width, kernel_size=size, stride=size)

    def forward(self, spec: Tensor) -> Tensor:
        return self.proj(spec).flatten(2).transpose(1, 2)


class GramEncoder(nn.Module):
    """Shared front half of both backbones; subclasses own the stack and its positional table."""

    cfg: GramConfig

    def __init__(self, cfg: GramConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.empty(1, 1, cfg.width))
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    @property
    def positions(self) -> Tensor:  # (1, L, D)
        raise NotImplementedError

    def normalize(self, spec: Tensor) -> Tensor:
        """Each 2 s chunk on its own: LayerNorm over (C, F, T) without affine parameters."""
        return F.layer_norm(spec.float(), spec.shape[1:])

    def tokens(self, spec: Tensor) -> Tensor:
        """(B, C, F, T) features -> (B, L, D) tokens: normalise, patch, add positions, prepend CLS."""
        c, f, t = self.cfg.in_channels, self.cfg.features.n_mels, self.cfg.features.chunk_frames
        if spec.shape[1:] != (c, f, t):
            raise ValueError(
                f"encoder expects chunks of shape (B, {c}, {f}, {t}), got {tuple(spec.shape)}"
            )
        pos = self.positions
        x = self.patch_embed(self.normalize(spec)) + pos[:, 1:]  # (B, N, D)
        cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    def run_layers(self, x: Tensor, n_layers: int | None) -> Tensor:
        raise NotImplementedError

    def forward(self, spec: Tensor, n_layers: int | None = None) -> Tensor:
        """(B, C, F, T) -> (B, L, D) float32: output of the first ``n_layers`` blocks (all when
        None) followed by the final norm, as upstream's ``get_audio_representation_from_layer``."""
        if n_layers is not None and not 1 <= n_layers <= self.cfg.depth:
            raise ValueError(f"layer must be in 1..{self.cfg.depth}, got {n_layers}")
        return self.run_layers(self.tokens(spec), n_layers)


class GramTEncoder(GramEncoder):
    """GRAM-T: ViT encoder (pre-norm, LayerNorm eps 1e-6, final LayerNorm)."""

    def __init__(self, cfg: GramConfig) -> None:
        super().__init__(cfg)
        pos = sincos_2d(cfg.width, cfg.grid)
        self.encoder = TransformerStack(cfg.depth, cfg.width, cfg.heads, cfg.mlp_dim, pos)

    @property
    def positions(self) -> Tensor:
        return self.encoder.pos_embedding

    def run_layers(self, x: Tensor, n_layers: int | None) -> Tensor:
        return self.encoder(x, n_layers)


class MambaStack(nn.Module):
    """``encoder_v`` of GRAM-M: residual Mamba blocks (RMSNorm, residual in float32), final RMSNorm.

    Unidirectional, as the released code: the CLS token sits at position 0 and so only sees itself.
    """

    def __init__(self, cfg: GramConfig) -> None:
        super().__init__()
        from hear_gram.mamba import MambaBlock, RMSNorm

        self.layers = nn.ModuleList(MambaBlock(cfg.mamba) for _ in range(cfg.depth))
        self.norm_f = RMSNorm(cfg.width, eps=1e-5)

    def forward(self, x: Tensor, n_layers: int | None = None) -> Tensor:
        hidden, residual = x, None
        for block in list(self.layers)[:n_layers]:
            hidden, residual = block(hidden, residual)
        residual = hidden.float() + residual if residual is not None else hidden.float()
        return self.norm_f(residual).float()


class GramMEncoder(GramEncoder):
    """GRAM-M: Mamba-2 (released code) or Mamba-1 (v1 paper) blocks, no MLP."""

    def __init__(self, cfg: GramConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("encoder_pos_embed", sincos_2d(cfg.width, cfg.grid))
        self.encoder_v = MambaStack(cfg)

    @property
    def positions(self) -> Tensor:
        return self.encoder_pos_embed

    def run_layers(self, x: Tensor, n_layers: int | None) -> Tensor:
        return self.encoder_v(x, n_layers)


def build_encoder(cfg: GramConfig) -> GramEncoder:
    """A randomly initialised encoder for ``cfg`` (use hear_gram.checkpoints to load weights)."""
    return GramTEncoder(cfg) if cfg.backbone == "transformer" else GramMEncoder(cfg)


def cast_matmuls(encoder: GramEncoder, dtype: torch.dtype) -> GramEncoder:
    """Run the blocks' matrix products in ``dtype`` (bf16/fp16 inference) while norms, positions,
    the patch projection and the residual stream stay float32."""
    blocks = (
        encoder.encoder.layers if isinstance(encoder, GramTEncoder) else encoder.encoder_v.layers
    )
    for module in blocks.modules():
        if isinstance(module, nn.Linear | nn.Conv1d) or hasattr(module, "in_proj_weight"):
            for name, p in module.named_parameters(recurse=False):
                if p.dim() >= 2 or name.endswith("bias"):
                    p.data = p.data.to(dtype)
    return encoder
