"""The HEAR 2021 API (``load_model``, ``get_scene_embeddings``, ``get_timestamp_embeddings``) for one
family of GRAM checkpoints. Each public module (``hear_gram``, ``hear_gram.gram_t``, ...) is a
`ModuleSpec` plus these three functions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from hear_gram import checkpoints
from hear_gram.runtime import EmbeddingOptions, GramRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModuleSpec:
    """Which checkpoints a HEAR module accepts, and the registry name it loads by default."""

    name: str
    backbone: str
    variants: tuple[str, ...]
    channels: tuple[int, ...]
    default: str | None
    hint: str

    def check(self, rt: GramRuntime) -> None:
        cfg = rt.cfg
        if (
            cfg.backbone != self.backbone
            or cfg.variant not in self.variants
            or cfg.in_channels not in self.channels
        ):
            raise ValueError(
                f"{rt.source} is a {cfg.backbone} {cfg.format} checkpoint ({cfg.variant} variant, "
                f"{cfg.in_channels} input channels); {self.name} takes {self.hint}. "
                f"Use {suggest(cfg)} instead."
            )


def suggest(cfg) -> str:
    if cfg.backbone == "mamba":
        return "hear_gram.gram_m"
    if cfg.is_ambisonic:
        return "hear_gram.gram_t_ambisonic"
    return "hear_gram.gram_t_time" if cfg.variant == "time" else "hear_gram.gram_t"


def load(spec: ModuleSpec, model_file_path: str = "", **model_options: Any) -> GramRuntime:
    """Load weights (a file path, or a registry name already fetched) with HEAR model options."""
    options = EmbeddingOptions.parse(model_options)
    source = model_file_path or spec.default
    if not source:
        raise ValueError(
            f"{spec.name} has no released default weights: pass a checkpoint path "
            "(python -m hear_gram.checkpoints random --model gram-m --out W makes a random one)"
        )
    path = checkpoints.resolve(source)
    encoder, report = checkpoints.load_encoder(path, allow_pickle=options.allow_pickle)
    rt = GramRuntime(encoder, options, source=str(path))
    spec.check(rt)
    log.info(
        "%s: loaded %s (%s layout, %s)", spec.name, path, report.layout, report.config.to_json()
    )
    return rt


def bind(spec: ModuleSpec):
    """The three HEAR functions of a module, bound to its spec."""

    def load_model(model_file_path: str = "", **model_options: Any) -> GramRuntime:
        """Load GRAM weights (file path or fetched registry name). Model options: strategy,
        layer, precision, sample_rate, max_chunks, allow_pickle (hear_gram.runtime)."""
        return load(spec, model_file_path, **model_options)

    def get_scene_embeddings(audio: Tensor, model: GramRuntime) -> Tensor:
        """(B, N), (B, N, C) or (B, C, N) audio -> (B, scene_embedding_size) float32."""
        return model.scene_embeddings(audio)

    def get_timestamp_embeddings(audio: Tensor, model: GramRuntime) -> tuple[Tensor, Tensor]:
        """Audio -> (embeddings (B, S, timestamp_embedding_size), timestamps (B, S) in ms)."""
        return model.timestamp_embeddings(audio)

    return load_model, get_scene_embeddings, get_timestamp_embeddings
