"""The inputs of the SELD models, per clip of a split: HEAR-module embedding sequences on the
100 ms label grid (cached), or the CRNN's frame features.

- module: `get_timestamp_embeddings` of the HEAR module on the task's audio at the module's rate
  (the folder at that rate, or the highest rate resampled), linearly interpolated to the centres
  of the 100 ms label frames. Cached through `hear_gram.cache` as
  OUT/embeddings/{tag}/{task}/{split}.npz (tag: `localization_tasks.embeddings.module_tag`),
  keyed by the module's code, weights, options, the task's content (metadata, the split's
  labels, its audio bytes), the clip list and their frame counts; entries are written atomically,
  and a stale, truncated or corrupt entry is recomputed (and rewritten).
- random weights (`random_init=seed`): the same module with its weights re-drawn
  (`randomise_weights`), a probe of what the architecture gives without training.
- crnn: 64-band log-mels of the 4 FOA channels + 3 mel-scaled intensity-vector channels
  (hear_gram.frontend, 10 ms hop); binaural: the 2 log-mels + mel-scaled cosine and sine of the
  interaural phase difference (DCASE FOA baseline recipe).

A clip whose audio ends before its labels (fewer 100 ms frames than seld_clips.csv gives it) is
refused, naming the clip, instead of being trained on padding.
"""

from __future__ import annotations

import importlib
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import nn

from hear_gram import cache
from hear_gram.config import FeatureConfig
from hear_gram.frontend import LogMelFrontend
from hear_gram.resample import resample
from hear_gram.safeio import child
from hear_gram.seeding import seeded
from localization_tasks.embeddings import module_tag, weights_path
from localization_tasks.seld.labels import FRAME_S
from localization_tasks.seld.task import sample_rates, task_rows

log = logging.getLogger(__name__)


def load_split(task_dir: Path, split: str, rate: int) -> tuple[list[str], list[np.ndarray]]:
    """File names and audio (N, C) of a split, from the folder at `rate` or resampled from the
    highest rate present."""
    rates = sorted(sample_rates(task_dir))
    src = rate if rate in rates else rates[-1]
    folder = child(task_dir / str(src), split, "split name")
    names = sorted(task_rows(task_dir, split))
    audio = []
    for name in names:
        x, sr = sf.read(child(folder, name, "clip name"), dtype="float32", always_2d=True)
        if sr != src:
            raise ValueError(f"{folder / name} is {sr} Hz, its folder says {src}")
        if src != rate:
            x = resample(torch.from_numpy(x.T.copy()), src, rate).numpy().T
        audio.append(x)
    return names, audio


def check_covers_labels(task_dir: Path, split: str, names: list[str], audio: list[np.ndarray],
                        rate: int, n_frames: list[int]) -> None:  # fmt: skip
    """Refuse (ValueError, naming the clip) audio (N, C) at `rate` Hz that ends before the last of
    its `n_frames` 100 ms label frames begins to be covered: ceil(N / rate / 0.1) < n_frames (the
    rule seld_clips.csv counts frames by)."""
    for name, a, n in zip(names, audio, n_frames, strict=True):
        covered = math.ceil(round(len(a) / rate / FRAME_S, 6))
        if covered < n:
            raise ValueError(
                f"{task_dir.name}/{split}/{name}: the audio lasts {len(a) / rate:.3f} s "
                f"({covered} label frames) but its labels need {n} frames of {FRAME_S} s; "
                "refusing to train on padding"
            )


def randomise_weights(model: nn.Module, seed: int) -> nn.Module:
    """Re-draw every learned weight of `model` in place, seeded (the caller's random stream is
    untouched): each sub-module with a `reset_parameters` (or `_reset_parameters`, as
    nn.MultiheadAttention) re-initialises its own parameters as PyTorch builds them; any other
    parameter (class tokens, learned positional embeddings) is drawn from a normal of standard
    deviation 0.02 truncated at 2 sd (the ViT/MAE convention). Buffers (mel filter banks, windows,
    fixed positional tables) are kept: they are signal processing, not learned."""
    with seeded(seed):
        covered: set[int] = set()
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None) or getattr(m, "_reset_parameters", None)
            if callable(reset):
                reset()
                covered |= {id(p) for p in m.parameters(recurse=False)}
        with torch.no_grad():
            for p in model.parameters():
                if id(p) not in covered:
                    nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
    return model


def check_timestamp_embeddings(emb: np.ndarray, ts: np.ndarray, module: str) -> None:
    """Refuse (ValueError) timestamp embeddings (T, D) and timestamps (T,) in ms that do not
    match, are not finite or are not increasing."""
    if emb.ndim != 2 or ts.shape != (emb.shape[0],) or emb.shape[0] < 1:
        raise ValueError(f"{module}: timestamp embeddings {emb.shape} / timestamps {ts.shape} "
                         "do not match")  # fmt: skip
    if not (np.all(np.isfinite(emb)) and np.all(np.isfinite(ts))):
        raise ValueError(f"{module}: NaN or infinite timestamp embeddings or timestamps")
    if emb.shape[0] > 1 and not np.all(np.diff(ts) > 0):
        raise ValueError(f"{module}: timestamps are not increasing")


def on_label_grid(emb: np.ndarray, ts: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, D) float32: `emb` (T, D) at times `ts` (ms) linearly interpolated to the
    centres of the 100 ms label frames."""
    centres = (np.arange(n_frames) + 0.5) * FRAME_S * 1000
    return np.stack([np.interp(centres, ts, emb[:, d]) for d in range(emb.shape[1])], 1).astype(
        np.float32
    )


class Features:
    """Per-clip input sequences (T_label, D) for a head, or frame features for the CRNN."""

    def __init__(self, kind: str, module: str = "", model: str | Path | None = "",
                 options: dict | None = None, cache_dir: Path | None = None,
                 random_init: int | None = None) -> None:  # fmt: skip
        self.kind, self.module, self.options = kind, module, options or {}
        self.random_init = random_init
        self.model_path = weights_path(model)
        self.cache = cache_dir
        self._hear: Any = None
        self._model: Any = None

    def tag(self) -> str:
        """Cache folder of this (module, weights, options)."""
        tag = module_tag(self.module, self.model_path, self.options)
        return tag if self.random_init is None else f"{tag}-random{self.random_init}"

    def _load(self):
        if self._model is None:
            self._hear = importlib.import_module(self.module)
            self._model = self._hear.load_model(self.model_path, **self.options)
            if self.random_init is not None:
                if not isinstance(self._model, nn.Module):
                    raise TypeError(f"{self.module}: load_model gave no torch module to randomise")
                randomise_weights(self._model, self.random_init)
                log.info("%s: weights re-drawn with seed %d", self.module, self.random_init)
        return self._hear, self._model

    def _crnn(self, audio: list[np.ndarray], rate: int) -> list[np.ndarray]:
        """FOA: 4 log-mels + 3 mel intensity channels; 2 channels (binaural): 2 log-mels + mel
        cosine and sine of the interaural phase difference."""
        cfg = FeatureConfig(sample_rate=rate, n_mels=64, n_fft=512, win_length=min(512, rate // 50),
                            hop_length=rate // 100, f_min=50.0, f_max=rate / 2)  # fmt: skip
        c = audio[0].shape[1]
        if c not in (2, 4):
            raise ValueError(f"the CRNN takes FOA (4 channels) or binaural (2) audio, not {c}")
        front = LogMelFrontend(cfg, ambisonic=c == 4)
        out = []
        with torch.no_grad():
            for a in audio:
                x = torch.from_numpy(a.T.copy())[None]
                if c == 4:
                    out.append(front(x)[0].numpy())
                    continue
                spec = front.stft(front.pad(x))  # (1, 2, K, T)
                cross = spec[:, 0] * spec[:, 1].conj()
                ipd = cross / (cross.abs() + 1e-8)
                feats = [front.features(spec), front.mel(ipd.real)[:, None],
                         front.mel(ipd.imag)[:, None]]  # fmt: skip
                out.append(torch.cat(feats, dim=1)[0].numpy())
        return out

    def key(
        self, task_dir: Path, split: str, names: list[str], n_frames: list[int]
    ) -> cache.CacheKey:
        # extra: the clip order and the label grid the embeddings are interpolated to.
        extra = {"kind": "timestamp-on-label-grid", "files": names, "n_frames": n_frames,
                 "frame_s": FRAME_S}  # fmt: skip
        if self.random_init is not None:
            extra["random_init"] = self.random_init
        return cache.CacheKey.for_task(self.module, self.model_path or None, self.options,
                                       task_dir, split, names, extra)  # fmt: skip

    def __call__(self, task_dir: Path, split: str, n_frames: list[int]) -> list[np.ndarray]:
        if self.kind == "crnn":
            rate = sample_rates(task_dir)[0]
            names, audio = load_split(task_dir, split, rate)
            check_covers_labels(task_dir, split, names, audio, rate, list(n_frames))
            return self._crnn(audio, rate)
        names = sorted(task_rows(task_dir, split))
        path = key = None
        if self.cache:
            key = self.key(task_dir, split, names, list(n_frames))
            folder = child(child(self.cache, self.tag(), "module tag"), task_dir.name, "task")
            path = child(folder, f"{split}.npz", "split name")
            hit = cache.load(path, key, [f"e{i}" for i in range(len(names))])
            if hit is not None and all(
                hit[f"e{i}"].ndim == 2 and len(hit[f"e{i}"]) == n for i, n in enumerate(n_frames)
            ):
                return [hit[f"e{i}"] for i in range(len(names))]
        hear, model = self._load()
        _, audio = load_split(task_dir, split, int(model.sample_rate))
        check_covers_labels(task_dir, split, names, audio, int(model.sample_rate), list(n_frames))
        out = []
        for a, n in zip(audio, n_frames, strict=True):
            with torch.no_grad():
                emb, ts = hear.get_timestamp_embeddings(torch.from_numpy(a)[None], model)
            emb, ts = emb[0].float().numpy(), ts[0].float().numpy()
            check_timestamp_embeddings(emb, ts, self.module)
            out.append(on_label_grid(emb, ts, n))
        if path is not None and key is not None:
            cache.store(path, key, {f"e{i}": e for i, e in enumerate(out)})
        return out
