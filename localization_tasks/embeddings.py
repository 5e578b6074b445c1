"""Scene embeddings of a HEAR module on the localization and T60 tasks, cached.

The module's `load_model(model_file_path, **options)` and `get_scene_embeddings` on batches of
clips of equal length, audio passed as (B, N, C) float32 as soundfile reads it (heareval's
layout). The audio folder at the model's `sample_rate` is used; when the task lacks it, the
highest rate present is resampled (`hear_gram.resample`; a folder below 1 kHz, a file whose
header disagrees with its folder, or one that would resample to over 2**28 samples is refused,
naming it). A module takes the formats it declares (`LOCALIZATION_FORMATS`, e.g. the GCC-PHAT
baseline: binaural only), or else those whose channel count its `get_scene_embeddings` takes on
a short test clip.

Cache: OUT/embeddings/{tag}/{task}/{split}.npz through `hear_gram.cache` (one entry format and
key for every tool): the key holds the module, its package's code, the weights' sha256, the
options, the content of the task (task_metadata, the split's JSON, its audio bytes) and the file
list; a stale, truncated or corrupt entry is recomputed. Embeddings must be finite.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from hear_gram import cache
from hear_gram.resample import check_file_rate, check_resample_size, resample
from hear_gram.safeio import child
from naturalistic_hear.formats import CHANNELS

logger = logging.getLogger(__name__)


class EmbeddingError(ValueError):
    """A module output or audio file the evaluator cannot use; the message says why."""


def weights_path(value: str | Path | None) -> str:
    """A weights option as a path string, "" for none (`--model ""`, which argparse's Path
    would turn into ".", means no weights, as in heareval's runner)."""
    text = str(value or "")
    return "" if text in ("", ".") else text


def module_tag(module: str, model_path: str | Path | None, options: dict) -> str:
    """Folder name of a (module, weights, options) combination. The weights count by content
    (sha256), so a file retrained in place gets a new folder."""
    path = weights_path(model_path)
    content = cache.weights_sha256(path) if path and Path(path).is_file() else ""
    key = json.dumps([module, path, content, options], sort_keys=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", module.rsplit(".", 1)[-1])
    return f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def audio_folder(task_dir: Path, sample_rate: int) -> int:
    """The sample-rate folder to read: the model's, or else the highest present."""
    rates = sorted(int(p.name) for p in task_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not rates:
        raise EmbeddingError(f"{task_dir}: no audio folders")
    if sample_rate in rates:
        return sample_rate
    # A folder named "1" would be upsampled 32000-fold: refused by name.
    check_file_rate(rates[-1], f"audio folder {task_dir / str(rates[-1])}")
    logger.warning(
        "%s has no %d Hz folder: resampling from %d Hz", task_dir.name, sample_rate, rates[-1]
    )
    return rates[-1]


def read_clip(path: Path, folder_rate: int, model_rate: int) -> np.ndarray:
    """(N, C) float32 samples of a task's audio file, refused (naming it) when its header's rate
    is not its folder's or its resampling to the model's rate would be absurdly large."""
    info = sf.info(path)
    if info.samplerate != folder_rate:
        raise EmbeddingError(
            f"{path} is at {info.samplerate} Hz, but lies in the {folder_rate} folder"
        )
    if folder_rate != model_rate:
        check_resample_size((info.channels, info.frames), folder_rate, model_rate, str(path))
    return sf.read(path, dtype="float32", always_2d=True)[0]


def embed_split(
    hear: Any, model: Any, task_dir: Path, split: str, files: list[str], batch_size: int
) -> np.ndarray:
    """(M, E) float32 scene embeddings of `files` of `split`, in order."""
    rate = int(model.sample_rate)
    folder = audio_folder(task_dir, rate)
    audio_dir = child(child(task_dir, str(folder), "rate"), split, "split name")
    audio = [read_clip(child(audio_dir, f, "file name"), folder, rate) for f in files]
    out: list[np.ndarray | None] = [None] * len(files)
    by_length: dict[tuple, list[int]] = {}
    for i, a in enumerate(audio):
        by_length.setdefault(a.shape, []).append(i)
    for idx in by_length.values():
        for start in range(0, len(idx), batch_size):
            batch = idx[start : start + batch_size]
            x = torch.from_numpy(np.stack([audio[i] for i in batch]))  # (B, N, C)
            if folder != rate:
                x = resample(x.transpose(1, 2), folder, rate).transpose(1, 2).contiguous()
            emb = hear.get_scene_embeddings(x, model).detach().cpu().numpy().astype(np.float32)
            if emb.shape != (len(batch), model.scene_embedding_size):
                raise EmbeddingError(
                    f"module returned {emb.shape}, expected "
                    f"({len(batch)}, {model.scene_embedding_size})"
                )
            if not np.isfinite(emb).all():
                raise EmbeddingError(
                    f"{task_dir.name}/{split}: the module returned NaN or Inf embeddings "
                    f"(e.g. for {files[batch[0]]}); check the weights and the audio"
                )
            for i, e in zip(batch, emb, strict=True):
                out[i] = e
    return np.stack(out)  # type: ignore[arg-type]


class Embedder:
    """Scene embeddings of a HEAR module, cached per (tag, task, split) in `cache_dir` under a
    `hear_gram.cache` key (module docstring); the model is loaded only when something is
    missing."""

    def __init__(self, module: str, model_path: str | Path | None, options: dict,
                 cache_dir: Path, batch_size: int = 16) -> None:  # fmt: skip
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise EmbeddingError(f"batch size must be a positive integer, got {batch_size!r}")
        self.module, self.model_path, self.options = module, weights_path(model_path), options
        self.cache, self.batch_size = cache_dir, batch_size
        self.tag = cache_dir.name
        self._hear: Any = None
        self._model: Any = None
        self._accepts: dict[str, str | None] = {}

    def hear(self) -> Any:
        if self._hear is None:
            self._hear = importlib.import_module(self.module)
        return self._hear

    def model(self) -> tuple[Any, Any]:
        if self._model is None:
            self._model = self.hear().load_model(self.model_path, **self.options)
        return self.hear(), self._model

    def refusal(self, fmt: str) -> str | None:
        """Why the module does not take `fmt` audio, or None when it does."""
        if fmt not in self._accepts:
            self._accepts[fmt] = self._refusal(fmt)
        return self._accepts[fmt]

    def _refusal(self, fmt: str) -> str | None:
        if fmt not in CHANNELS:
            return f"unknown format {fmt!r}"
        declared = getattr(self.hear(), "LOCALIZATION_FORMATS", None)
        if declared is not None:
            return None if fmt in declared else f"takes {', '.join(declared)} audio only"
        hear, model = self.model()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, int(model.sample_rate), CHANNELS[fmt], generator=gen) * 0.1
        try:
            hear.get_scene_embeddings(x, model)
        except (ValueError, TypeError, RuntimeError) as e:
            return f"refused {CHANNELS[fmt]}-channel audio: {e}"
        return None

    def key(self, task_dir: Path, split: str, files: list[str]) -> cache.CacheKey:
        # extra: the file list (the rows' order) and the batch size (batches of equal length
        # are embedded together; a module may pad within a batch).
        extra = {"files": files, "batch_size": self.batch_size, "kind": "scene"}
        return cache.CacheKey.for_task(self.module, self.model_path or None, self.options, task_dir,
                                       split, files, extra)  # fmt: skip

    def __call__(self, task_dir: Path, split: str, files: list[str]) -> np.ndarray:
        path = child(child(self.cache, task_dir.name, "task name"), f"{split}.npz", "split name")
        key = self.key(task_dir, split, files)
        hit = cache.load(path, key, ["embeddings"])
        if hit is not None and hit["embeddings"].shape[:1] == (len(files),):
            return hit["embeddings"].astype(np.float32, copy=False)
        hear, model = self.model()
        emb = embed_split(hear, model, task_dir, split, files, self.batch_size)
        cache.store(path, key, {"embeddings": emb})
        return emb
