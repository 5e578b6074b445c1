"""GRAM in MTEB's audio benchmark MAEB (`mteb` 2.x; ``pip install hear-gram[mteb]``).

    import mteb
    import hear_gram.adapters.mteb  # registers labhamlet/gramt-* with mteb
    model = mteb.get_model("labhamlet/gramt-binaural")
    mteb.evaluate(model, mteb.get_benchmark("MAEB(v1, audio-only)"))

mteb finds models in a registry it builds from its own files and offers no hook for another
package to add to it (no entry point; ``mteb/models/model_implementations/__init__.py``), so
importing this module adds one `ModelMeta` per released checkpoint to that registry
(`register`). `MODEL_METAS` can also be passed to ``mteb.evaluate`` directly.

Embeddings are the HEAR module's scene embeddings (the mean over time of the timestamp
embeddings, strategy ``raw``), one clip at a time: no clip is padded to another's length, so a
clip's embedding does not depend on what else is in its batch.

Audio: mteb hands the encoder each clip as it is stored (``{"array", "sampling_rate"}``); its own
`AudioCollator`, which most wrappers install, averages channels and resamples with torchaudio.
This encoder installs none: a clip of shape (C, N), channels first as mteb lays them out, with 2
channels (binaural) or 4 (W, Y, Z, X) reaches the model whole, as in the HEAR module, and any
rate is resampled to the model's 32 kHz by hear-gram's own resampler. The datasets of MAEB are
read through ``datasets``' ``Audio`` feature, which already averages a file's channels when it
decodes it, so on those the spatial models get mono audio (see `hear_gram.adapters`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

try:
    from mteb.models import ModelMeta
    from mteb.models.abs_encoder import AbsEncoder
except ImportError as err:  # the extra is not installed
    raise ImportError(
        f"hear_gram.adapters.mteb needs mteb 2.x ({err}): pip install 'hear-gram[mteb]'"
    ) from err

from hear_gram import checkpoints
from hear_gram.adapters import load_runtime, mono_warning
from hear_gram.config import preset
from hear_gram.encoder import build_encoder
from hear_gram.resample import check_rate, check_resample_size, resample

log = logging.getLogger(__name__)

# The paper's arXiv v1 (2506.00934), the first public release of the GRAM-T weights' description.
RELEASE_DATE = "2025-06-01"
PAPER = "https://arxiv.org/abs/2506.00934"
CODE = "https://github.com/labhamlet/GRAM-T"


class GramMtebEncoder(AbsEncoder):
    """An mteb encoder for one released GRAM checkpoint (``model_name`` = its hub repository,
    e.g. ``labhamlet/gramt-binaural``; the weights of ``$HEAR_GRAM_WEIGHTS`` when set)."""

    def __init__(self, model_name: str, revision: str | None = None, device: str | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        self.registry_name = registry_name(model_name)
        self.runtime = load_runtime(self.registry_name)
        self.device = torch.device(device or "cpu")
        self.rate = self.runtime.cfg.features.sample_rate
        self._warning = mono_warning("mteb", self.runtime)

    def encode(self, inputs, *, task_metadata=None, hf_split: str = "", hf_subset: str = "",
               prompt_type=None, **kwargs: Any) -> np.ndarray:  # fmt: skip
        """One scene embedding per clip of ``inputs`` (mteb's DataLoader of batches with an
        ``"audio"`` list), in order: (n, embed_dim) float32."""
        rows = []
        for batch in inputs:
            if not isinstance(batch, Mapping) or "audio" not in batch:
                raise ValueError("mteb gave a batch without an 'audio' column: not an audio task")
            for item in batch["audio"]:
                rows.append(self.embed_clip(item))
        if not rows:
            return np.zeros((0, self.runtime.scene_embedding_size), dtype=np.float32)
        return np.stack(rows)

    def embed_clip(self, item: Any) -> np.ndarray:
        """One clip (``{"array", "sampling_rate"}``, or a decoder that answers those keys) ->
        its scene embedding, (embed_dim,) float32."""
        try:
            array, rate = item["array"], item["sampling_rate"]
        except (KeyError, TypeError, IndexError) as err:
            raise ValueError(
                f"an audio item must hold 'array' and 'sampling_rate', got {type(item).__name__}"
            ) from err
        rate = check_rate(
            int(rate) if isinstance(rate, (int, np.integer)) else rate, "sampling_rate"
        )
        audio = torch.as_tensor(np.asarray(array, dtype=np.float32))
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim != 2 or audio.shape[0] not in (1, 2, 4) or audio.shape[1] == 0:
            raise ValueError(
                f"an audio clip must be (N,) or channels-first (C, N) with C in 1, 2, 4 and N > 0, "
                f"got shape {tuple(audio.shape)}"
            )
        if audio.shape[0] == 1 and self._warning:
            log.warning(self._warning)
            self._warning = None
        check_resample_size(tuple(audio.shape), rate, self.rate, "an mteb audio clip")
        audio = resample(audio, rate, self.rate)[None].to(self.device)  # (1, C, N)
        return self.runtime.scene_embeddings(audio)[0].cpu().numpy()


def registry_name(model_name: str) -> str:
    """The checkpoints.json name of the released checkpoint at hub repository ``model_name``."""
    for name, entry in checkpoints.registry().items():
        if entry["source"] == "huggingface" and entry["repo_id"] == model_name:
            return name
    known = sorted(
        e["repo_id"] for e in checkpoints.registry().values() if e["source"] == "huggingface"
    )
    raise ValueError(f"{model_name!r} is not a released GRAM checkpoint; known: {known}")


def _model_meta(name: str, entry: Mapping) -> ModelMeta:
    """The ModelMeta of registry entry ``name``: sizes counted from its architecture preset
    (built on the meta device: no memory, no weights), licence from its model card."""
    with torch.device("meta"):
        encoder = build_encoder(preset(entry["preset"]))
    n_params = sum(p.numel() for p in encoder.parameters())
    cfg = encoder.cfg
    embed_dim = cfg.width * (cfg.features.n_mels // cfg.patch_f)  # raw: all frequency tokens
    card_licence = (entry.get("card") or {}).get("license")
    return ModelMeta(
        loader=GramMtebEncoder,
        name=entry["repo_id"],
        revision=entry.get("revision") or "main",
        release_date=RELEASE_DATE,
        languages=None,
        n_parameters=n_params,
        memory_usage_mb=round(n_params * 4 / 2**20, 1),
        max_tokens=None,
        embed_dim=embed_dim,
        # the card's licence where one could be read, else the card itself (see checkpoints.json)
        license=card_licence or f"https://huggingface.co/{entry['repo_id']}",
        open_weights=True,
        public_training_code=CODE,
        public_training_data=None,
        framework=["PyTorch", "safetensors"],
        reference=PAPER,
        similarity_fn_name="cosine",
        use_instructions=False,
        training_datasets=None,
        modalities=["audio"],
    )


MODEL_METAS: dict[str, ModelMeta] = {
    entry["repo_id"]: _model_meta(name, entry)
    for name, entry in checkpoints.registry().items()
    if entry["source"] == "huggingface"
}


def register() -> None:
    """Add `MODEL_METAS` to mteb's model registry, so ``mteb.get_model(name)`` finds them."""
    from mteb.models.model_implementations import MODEL_REGISTRY

    for name, meta in MODEL_METAS.items():
        MODEL_REGISTRY.setdefault(name, meta)


register()
