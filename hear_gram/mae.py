"""GRAM masked autoencoder for pretraining (arXiv 2506.00934; labhamlet/GRAM-T src/model/GRAMT.py), as named steps in the style of
facebookresearch/mae: `patchify`, `random_masking`, `forward_encoder`, `forward_decoder`,
`forward_loss`.

The encoder is hear_gram's own `GramEncoder` (the one HEAR loads); the decoder below exists only
for pretraining and is never part of a HEAR checkpoint. Architecture only: no data, optimiser or
logging here.

Dimension letters: B crops, C channels, F mel bins, T frames, Fg x Tg patch grid, N = Fg*Tg
patches, M masked patches, V = N - M visible patches, D encoder width, W decoder width,
H heads, E head width, P = pf*pt*C values per patch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F

from hear_gram.config import DECODERS, DecoderConfig, GramConfig
from hear_gram.encoder import GramEncoder, build_encoder, sincos_2d

# One window per decoder head; 0 = global attention (labhamlet/GRAM-T hear_api/runtime.py decoder_window_sizes, MW-MAE decoder).
PATCH_WINDOWS = (2, 5, 10, 25, 50, 100, 0, 0)
TIME_WINDOWS = (2, 5, 10, 25, 50, 0, 0, 0)


def default_windows(cfg: GramConfig, heads: int = 8) -> tuple[int, ...]:
    """The paper's window sizes for the patch or time variant, cut or padded (global) to `heads`."""
    base = TIME_WINDOWS if cfg.variant == "time" else PATCH_WINDOWS
    return tuple(base[:heads]) + (0,) * max(0, heads - len(base))


# --- patches and masks -------------------------------------------------------------------------
def patchify(spec: Tensor, pf: int, pt: int) -> Tensor:
    """(B, C, F, T) -> (B, N, pf*pt*C), patch index f*Tg + t (PatchEmbed's token order); values
    within a patch ordered (pf, pt, C) as MAE's ``patchify``."""
    return rearrange(spec, "b c (fg pf) (tg pt) -> b (fg tg) (pf pt c)", pf=pf, pt=pt)


def unpatchify(patches: Tensor, pf: int, pt: int, grid: tuple[int, int]) -> Tensor:
    """Inverse of `patchify`: (B, N, pf*pt*C) -> (B, C, F, T)."""
    return rearrange(
        patches, "b (fg tg) (pf pt c) -> b c (fg pf) (tg pt)", fg=grid[0], tg=grid[1], pf=pf, pt=pt
    )


def random_masking(
    batch: int,
    n_patches: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(B, N) bool mask, True = masked: exactly round(ratio * N) patches per crop, chosen
    uniformly at random and independently per crop (160 of 200 at the paper's 0.8)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    n_mask = round(ratio * n_patches)
    noise = torch.rand(batch, n_patches, generator=generator)  # CPU: generator-reproducible
    ranks = noise.argsort(dim=1).argsort(dim=1)  # rank of each patch's noise
    return (ranks < n_mask).to(device)


# --- multi-window decoder ----------------------------------------------------------------------
class WindowHead(nn.Module):
    """One attention head restricted to non-overlapping windows of `window` consecutive tokens
    of the flattened sequence, with a learned relative-position bias (2w - 1 entries), as
    upstream MW-MAE's windowed head; `window` 0 = global attention, no bias."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window
        if window:
            self.rel_bias = nn.Parameter(torch.zeros(2 * window - 1))
            nn.init.trunc_normal_(self.rel_bias, std=0.02)
            idx = torch.arange(window)
            self.register_buffer("rel_index", idx[:, None] - idx[None, :] + window - 1, False)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """(B, N, E) each -> (B, N, E)."""
        if not self.window:
            return F.scaled_dot_product_attention(q, k, v)
        b, n, e = q.shape
        if n % self.window:
            raise ValueError(f"{n} tokens cannot be cut into windows of {self.window}")
        q, k, v = (x.reshape(b, n // self.window, self.window, e) for x in (q, k, v))
        bias = self.rel_bias[self.rel_index].to(q.dtype)  # (w, w)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias).reshape(b, n, e)


class MultiWindowAttention(nn.Module):
    """Multi-head self-attention where head h attends within windows of size `windows[h]`."""

    def __init__(self, width: int, windows: Sequence[int]) -> None:
        super().__init__()
        if width % len(windows):
            raise ValueError(f"width {width} is not divisible by {len(windows)} heads")
        self.qkv = nn.Linear(width, 3 * width)
        self.heads = nn.ModuleList(WindowHead(w) for w in windows)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        h = len(self.heads)
        q, k, v = self.qkv(x).view(b, n, 3, h, d // h).unbind(2)  # (B, N, H, E) each
        out = [head(q[:, :, i], k[:, :, i], v[:, :, i]) for i, head in enumerate(self.heads)]
        return self.proj(torch.stack(out, dim=2).reshape(b, n, d))


class DecoderBlock(nn.Module):
    """Pre-norm block: x + mwa(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, width: int, windows: Sequence[int], mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = MultiWindowAttention(width, windows)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# --- the masked autoencoder --------------------------------------------------------------------
class GramMAE(nn.Module):
    """GRAM encoder + multi-window decoder; ``forward`` returns (loss, prediction, mask)."""

    def __init__(
        self,
        cfg: GramConfig,
        decoder: DecoderConfig = DECODERS["gram"],
        windows: Sequence[int] | None = None,
        mask_ratio: float = 0.8,
    ) -> None:
        super().__init__()
        self.cfg, self.mask_ratio = cfg, mask_ratio
        decoder_width, decoder_depth = decoder.width, decoder.depth
        windows = tuple(windows) if windows is not None else default_windows(cfg, decoder.heads)
        if len(windows) != decoder.heads:
            raise ValueError(f"need one window per head: {len(windows)} for {decoder.heads}")
        bad = [w for w in windows if w and cfg.num_patches % w]
        if bad:
            raise ValueError(f"windows {bad} do not divide the {cfg.num_patches} patches")
        self.encoder: GramEncoder = build_encoder(cfg)
        self.decoder_embed = nn.Linear(cfg.width, decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        nn.init.normal_(self.mask_token, std=0.02)
        # No CLS in the decoder: windows tile the N patch tokens exactly (as upstream MW-MAE).
        self.register_buffer("decoder_pos_embed", sincos_2d(decoder_width, cfg.grid, n_cls=0))
        self.decoder_blocks = nn.ModuleList(
            DecoderBlock(decoder_width, windows) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_width)
        self.spec_pred = nn.Linear(decoder_width, cfg.patch_f * cfg.patch_t * cfg.in_channels)
        for m in [self.decoder_embed, self.spec_pred, *self.decoder_blocks.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def mask(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """A fresh (B, N) mask at this model's ratio, on the model's device."""
        device = self.mask_token.device
        return random_masking(batch, self.cfg.num_patches, self.mask_ratio, generator, device)

    def forward_encoder(self, spec: Tensor, mask: Tensor) -> Tensor:
        """(B, C, F, T), mask (B, N) -> (B, 1 + V, D): CLS + visible tokens only."""
        x = self.encoder.tokens(spec)  # (B, 1 + N, D), normalised, positions added
        b, _, d = x.shape
        visible = x[:, 1:][~mask].reshape(b, -1, d)  # (B, V, D), same V for every crop
        return self.encoder.run_layers(torch.cat([x[:, :1], visible], dim=1), None)

    def forward_decoder(self, latent: Tensor, mask: Tensor) -> Tensor:
        """(B, 1 + V, D), mask (B, N) -> predicted patches (B, N, P)."""
        y = self.decoder_embed(latent[:, 1:])  # (B, V, W), CLS dropped
        b, _, w = y.shape
        x = self.mask_token.to(y.dtype).expand(b, mask.shape[1], w).clone()  # (B, N, W)
        x[~mask] = y.reshape(-1, w)
        x = x + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.spec_pred(self.decoder_norm(x))

    def target(self, spec: Tensor) -> Tensor:
        """Patches (B, N, P) of the chunk-normalised spectrogram the encoder sees."""
        return patchify(self.encoder.normalize(spec), self.cfg.patch_f, self.cfg.patch_t)

    def forward_loss(self, spec: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """MSE over masked patches only, times the channel count (labhamlet/GRAM-T src/model/GRAMT.py `loss`)."""
        per_patch = (pred.float() - self.target(spec)).square().mean(dim=-1)  # (B, N)
        m = mask.float()
        return (per_patch * m).sum() / m.sum() * self.cfg.in_channels

    def forward(
        self, spec: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        mask = self.mask(spec.shape[0], generator) if mask is None else mask
        pred = self.forward_decoder(self.forward_encoder(spec, mask), mask)
        return self.forward_loss(spec, pred, mask), pred, mask
