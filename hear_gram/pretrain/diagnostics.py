"""Why a binaural encoder does or does not localize: the left/right similarity of its first layer.

GRAM-T's binaural input is the log-mel of each ear, stacked as two channels, and its first layer
(``patch_embed.proj``, a Conv2d with stride = kernel) gives each token the sum of a left-ear kernel
applied to the left patch and a right-ear kernel applied to the right patch. Split each filter's
pair of kernels (w_L, w_R) into a common part (w_L + w_R) / 2, which sees the sum of the two
log-mels, and a difference part (w_L - w_R) / 2, which sees their difference: the interaural level
difference per band and frame. The cosine between w_L and w_R measures the balance: 1 when the two
kernels are identical (the filter sees only the sum: blind to interaural level differences), near
0 for independent random kernels (as at initialisation: sum and difference weighted alike), -1
when the filter sees only the difference.

Training on dry audio (lambda = 1) copies the mono clip to both channels, so both kernels get the
same gradient and the same Adam update: their difference stays what initialisation made it, only
shrunk by weight decay, while the common part learns. The cosine nears 1 as the common part
outgrows the initial difference, and the later layers learn to read a first layer whose
difference part never carried signal. Binaural scene mixes (lambda < 1) give the two kernels
different gradients.

Dimension letters: D width (output filters), C input channels, Pf x Pt patch size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def lr_kernel_cosine(weight: Tensor, left: int = 0, right: int = 1) -> np.ndarray:
    """Per output filter, the cosine between its `left` and `right` channel kernels: (D,) float64.

    `weight`: a first-layer Conv2d weight (D, C, Pf, Pt). A filter whose two kernels are both zero
    has no direction: its cosine is NaN, never a plausible-looking number.
    """
    if weight.dim() != 4 or weight.shape[1] <= max(left, right):
        raise ValueError(
            f"need a conv weight (D, C, Pf, Pt) with channels {left} and {right}, "
            f"got shape {tuple(weight.shape)}"
        )
    w = weight.detach().to(torch.float64).cpu()
    a, b = w[:, left].flatten(1), w[:, right].flatten(1)  # (D, Pf*Pt) each
    norms = a.norm(dim=1) * b.norm(dim=1)
    cos = (a * b).sum(dim=1) / norms
    return torch.where(norms > 0, cos, torch.full_like(cos, float("nan"))).numpy()


def encoder_lr_cosine(encoder: torch.nn.Module) -> np.ndarray:
    """`lr_kernel_cosine` of a GRAM encoder's ``patch_embed.proj`` (channels 0 = left, 1 = right)."""
    return lr_kernel_cosine(encoder.patch_embed.proj.weight)


def weights_lr_cosine(path: str | Path) -> np.ndarray:
    """`encoder_lr_cosine` of the encoder in a weights file (any layout `load_encoder` reads)."""
    from hear_gram.checkpoints import load_encoder

    encoder, _ = load_encoder(path)
    if encoder.cfg.in_channels < 2:
        raise ValueError(f"{path}: a {encoder.cfg.in_channels}-channel encoder has no left/right")
    return encoder_lr_cosine(encoder)
