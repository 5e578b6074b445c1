"""Writing weights: hear-gram's own safetensors (config in the metadata) or upstream's runtime
layout (the released files'), and randomly initialised encoders and decoders for tests and
pipelines."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from hear_gram.checkpoints.loading import (
    OWN_FORMAT,
    RELEASED_PREFIX,
    RUNTIME_FRONTEND,
    CheckpointError,
)
from hear_gram.config import GramConfig, preset
from hear_gram.encoder import GramEncoder, build_encoder
from hear_gram.frontend import LogMelFrontend
from hear_gram.safeio import write_bytes_atomic
from hear_gram.seeding import seeded


def upstream_decoder_state(mae) -> dict[str, Tensor]:
    """The decoder of a ``hear_gram.mae.GramMAE`` under upstream's names.

    Upstream GRAMT (labhamlet/GRAM-T ``src/model/GRAMT.py``) holds ``decoder_embed``,
    ``mask_token``, ``decoder_blocks.{i}`` (``MWMHABlock``, ``src/model/layers/mwmae.py``:
    ``norm1``, ``wmha.qkv``, ``wmha.attn_heads.{h}.relative_position_bias_table`` (2w - 1, 1)
    and ``relative_position_index`` (w, w) for windowed heads, ``wmha.proj``, ``norm2``,
    ``mlp.fc1``, ``mlp.fc2``), ``decoder_pos_embed``, ``decoder_norm`` and ``spec_pred.0``;
    GRAMM names the blocks ``decoder_v``. Our blocks compute the same function under shorter names."""
    blocks = "decoder_blocks" if mae.cfg.backbone == "transformer" else "decoder_v"
    out = {
        "decoder_embed.weight": mae.decoder_embed.weight,
        "decoder_embed.bias": mae.decoder_embed.bias,
        "mask_token": mae.mask_token,
        "decoder_pos_embed": mae.decoder_pos_embed,
        "decoder_norm.weight": mae.decoder_norm.weight,
        "decoder_norm.bias": mae.decoder_norm.bias,
        "spec_pred.0.weight": mae.spec_pred.weight,
        "spec_pred.0.bias": mae.spec_pred.bias,
    }
    for i, blk in enumerate(mae.decoder_blocks):
        p = f"{blocks}.{i}."
        mods = {"norm1": blk.norm1, "wmha.qkv": blk.attn.qkv, "wmha.proj": blk.attn.proj,
                "norm2": blk.norm2, "mlp.fc1": blk.mlp[0], "mlp.fc2": blk.mlp[2]}  # fmt: skip
        for name, m in mods.items():
            out[p + name + ".weight"], out[p + name + ".bias"] = m.weight, m.bias
        for h, head in enumerate(blk.attn.heads):
            if head.window:
                q = f"{p}wmha.attn_heads.{h}."
                out[q + "relative_position_bias_table"] = head.rel_bias[:, None]
                out[q + "relative_position_index"] = head.rel_index
    return {k: v.detach() for k, v in out.items()}


def released_state(encoder: GramEncoder, decoder: Mapping[str, Tensor] | None = None) -> dict:
    """``encoder`` (and an upstream-named ``decoder``) in upstream's runtime layout: GRAMT/GRAMM
    keys under ``model.`` (with the model's own ``melspec`` buffers and, for GRAM-M, its unused
    ``encoder_norm``), the runtime's ``mel_spec.melspec`` buffers at the top level."""
    cfg = encoder.cfg
    fe = LogMelFrontend(cfg.features, ambisonic=cfg.is_ambisonic)
    inner = dict(encoder.state_dict())
    if cfg.backbone == "mamba":  # GRAMM builds a LayerNorm it never applies (default init)
        inner["encoder_norm.weight"] = torch.ones(cfg.width)
        inner["encoder_norm.bias"] = torch.zeros(cfg.width)
    inner.update(decoder or {})
    mel = {"melspec.spectrogram.window": fe.window, "melspec.mel_scale.fb": fe.fb}
    inner.update(mel)
    state = {RELEASED_PREFIX + k: v for k, v in inner.items()}
    state.update({RUNTIME_FRONTEND + k: v.clone() for k, v in mel.items()})
    return state


def save_checkpoint(
    path: str | os.PathLike,
    encoder: GramEncoder,
    layout: str = "hear-gram",
    decoder: Mapping[str, Tensor] | None = None,
) -> Path:
    """Write ``encoder`` as hear-gram's own safetensors (config in the metadata) or in upstream's
    runtime layout, the released files' (``released``: see `released_state`; ``decoder``, from
    `upstream_decoder_state`, adds upstream's decoder keys)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a directory; give a file path to write")
    if layout == "hear-gram":
        if decoder:
            raise CheckpointError("decoder weights go in the released layout only")
        state = dict(encoder.state_dict())
        meta = {"format": OWN_FORMAT, "config": encoder.cfg.to_json()}
    elif layout == "released":
        state = released_state(encoder, decoder)
        meta = {"format": "pt"}
    else:
        raise ValueError(f"layout must be 'hear-gram' or 'released', got {layout!r}")
    keep = {k: v.dtype for k, v in state.items() if not v.is_floating_point()}  # index buffers
    state = {
        k: v.detach().to(keep.get(k, torch.float32)).contiguous().cpu() for k, v in state.items()
    }
    data = safetensors_bytes(state, metadata=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    # atomic and never through a planted link: an interrupted save leaves no half-written file
    write_bytes_atomic(path, data, tmp_suffix=".partial")
    return path


def random_encoder(model: str, depth: int | None = None, seed: int = 0) -> GramEncoder:
    """A randomly initialised encoder of a named preset (for tests and pipelines), seeded."""
    cfg = preset(model, **({"depth": depth} if depth is not None else {}))
    with seeded(seed):  # the caller's random stream is left as it was
        return build_encoder(cfg).eval()


def random_decoder(cfg: GramConfig, seed: int = 0) -> dict[str, Tensor]:
    """A randomly initialised upstream-shaped decoder (8 blocks, width 512, 8 heads, the paper's
    windows) under upstream's names, seeded apart from the encoder."""
    from hear_gram.mae import GramMAE

    with seeded(seed + 1):
        return upstream_decoder_state(GramMAE(cfg))
