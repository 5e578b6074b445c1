"""`hear_gram.suite.channels_module`: a HEAR 2021 module that gives a mono HEAR module spatial
audio, so heareval's runner and the spatial evaluators run it unmodified.

The suite names it in place of a model's module for binaural and Ambisonic units when the models
file sets `channels` for that model (`hear_gram.suite.config`); `load_model`'s options name the
wrapped module and its own options:

    load_model(model_file_path, module="pkg.mono_module", channels="mean", format="binaural",
               options={...}, code="...")

- `channels = "mean"`: the channels are averaged into one signal (a downmix) and the wrapped
  module embeds that: embedding sizes are the wrapped module's. For Ambisonics this is the mean
  of W, Y, Z and X (ACN order), a beam towards (1, 1, 1), not the omnidirectional W.
- `channels = "per-channel"`: the wrapped module embeds each channel on its own and the
  embeddings are concatenated along the feature axis, channel 0 first: sizes are the wrapped
  module's times the format's channel count (2 binaural, 4 Ambisonic). Timestamps must agree
  between channels (they do for any module whose frames depend on the clip length only).

Input: (n_sounds, n_samples, n_channels) float audio, the layout heareval's runner gives
multi-channel WAVs (`heareval/embeddings/task_embeddings.py`: `soundfile.read` gives (N, C),
batched to (B, N, C)) and the localization and SELD evaluators pass; other shapes are refused.
`code` is a digest of the wrapped module's package code the suite adds so that every cache keyed
by (module, its code, options) changes when the wrapped module's code does; it is not used here.
The wrapped module must be a PyTorch one (its model an `nn.Module` or an object heareval's torch
path can call).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor

from hear_gram.formats import SCENE_FORMATS, SpatialFormat
from hear_gram.suite.config import CHANNEL_MODES as MODES


class ChannelAdapter(torch.nn.Module):
    """The wrapped module's model behind a channel adapter. It is an `nn.Module` (heareval's
    runner accepts only torch or TensorFlow models) holding the wrapped model as a submodule when
    it is one, so `.to(device)` moves both."""

    def __init__(self, hear: Any, inner: Any, mode: str, fmt: SpatialFormat) -> None:
        super().__init__()
        self.hear = hear  # the wrapped HEAR module (a Python module: a plain attribute)
        self.inner = inner
        self.mode, self.format = mode, fmt
        self.n_channels = fmt.channels
        k = self.n_channels if mode == "per-channel" else 1
        self.sample_rate = int(inner.sample_rate)
        self.scene_embedding_size = int(inner.scene_embedding_size) * k
        self.timestamp_embedding_size = int(inner.timestamp_embedding_size) * k


def load_model(model_file_path: str = "", *, module: str, channels: str, format: str,
               options: dict | None = None, code: str = "") -> ChannelAdapter:  # fmt: skip
    """Import `module`, load its model with `model_file_path` (when given, as heareval does) and
    `options`, and wrap it for `format` audio with the `channels` adapter."""
    if channels not in MODES:
        raise ValueError(f"channels must be one of {MODES}, got {channels!r}")
    fmt = SpatialFormat.parse(format, "format", among=SCENE_FORMATS)
    if not isinstance(options, dict | None):
        raise ValueError(f"options must be a JSON object, got {type(options).__name__}")
    hear = importlib.import_module(module)
    inner = hear.load_model(model_file_path, **(options or {})) if model_file_path else \
        hear.load_model(**(options or {}))  # fmt: skip
    return ChannelAdapter(hear, inner, channels, fmt)


def _signals(audio: Tensor, model: ChannelAdapter) -> list[Tensor]:
    """The mono (B, N) signals the wrapped module embeds: one downmix, or one per channel."""
    c = model.n_channels
    if audio.ndim != 3 or audio.shape[-1] != c:
        raise ValueError(
            f"{model.format} audio must be (n_sounds, n_samples, {c}) as heareval reads "
            f"{c}-channel WAVs, got shape {tuple(audio.shape)}"
        )
    if model.mode == "mean":
        return [audio.mean(dim=-1)]
    return [audio[..., i].contiguous() for i in range(c)]


def get_scene_embeddings(audio: Tensor, model: ChannelAdapter) -> Tensor:
    """(B, N, C) -> (B, scene_embedding_size)."""
    embs = [model.hear.get_scene_embeddings(x, model.inner) for x in _signals(audio, model)]
    return torch.cat(embs, dim=-1)


def get_timestamp_embeddings(audio: Tensor, model: ChannelAdapter) -> tuple[Tensor, Tensor]:
    """(B, N, C) -> embeddings (B, T, timestamp_embedding_size), timestamps (B, T) in ms."""
    outs = [model.hear.get_timestamp_embeddings(x, model.inner) for x in _signals(audio, model)]
    stamps = outs[0][1]
    for i, (_, ts) in enumerate(outs[1:], start=1):
        if ts.shape != stamps.shape or not torch.equal(ts, stamps):
            raise ValueError(f"the wrapped module's timestamps of channel {i} differ from "
                             "channel 0's; per-channel embeddings cannot be concatenated")  # fmt: skip
    return torch.cat([e for e, _ in outs], dim=-1), stamps
