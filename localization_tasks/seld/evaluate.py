"""Evaluate SELD on HEAR-style SELD tasks: HEAR-module embeddings + heads, a SELDnet-style CRNN,
and a zero predictor, all scored with the DCASE metrics on the task's official test fold.

    python -m localization_tasks.seld.evaluate --tasks-dir T --out O
        [--module hear_gram.gram_t_ambisonic --model W.safetensors] [--model-options '{}']
        [--head mlp|bigru] [--baseline crnn --baseline zero] [--epochs 40] [--seed 0]
        [--multi-accdoa] [--scoring auto|3d|stereo]

Targets are single ACCDOA (Shimada et al., ICASSP 2021; DCASE 2022 baseline): per 100 ms frame
and class a vector whose length is the activity and whose direction is the DOA; trained with MSE;
a class is detected in a frame when its vector is longer than 0.5 (two instances of one class in
a frame keep the last one in the target). `--multi-accdoa`: multi-ACCDOA with ADPIT (Shimada et
al., ICASSP 2022; DCASE 2022 baseline `seldnet_model.py` MSELoss_ADPIT): 3 output tracks x
classes x 3, the loss of each (frame, class) is the smallest MSE over the 13 track-duplication
patterns of its 0-3 instances (`adpit_loss`); decoding merges two active tracks of a class closer
than 15 deg into their mean, as the baseline's inference does (`decode_multi_accdoa`).

Scoring: the DCASE metrics in 3-D, or for binaural tasks (`--scoring auto`, or `stereo`) DCASE
2025's stereo scoring, azimuth only and front-folded (`metrics.stereo_rows`).

- module: `get_timestamp_embeddings` of the HEAR module on the task's audio at the module's rate,
  cached per (module, weights, options, task, split); linearly interpolated to the centres of the
  100 ms label frames; head `mlp` (per frame, 2 x 256 hidden) or `bigru` (2-layer BiGRU 128).
- crnn: the DCASE FOA baseline recipe at small scale: 64-band log-mels of the 4 FOA channels +
  3 mel-scaled intensity-vector channels (hear_gram.frontend, 10 ms hop; binaural tasks: the 2
  log-mels + mel-scaled cosine and sine of the interaural phase difference), 3 conv blocks (64
  filters, frequency pooling 4-4-2, time pooling 5-2-1 to 100 ms), a 2-layer BiGRU (128), two
  dense layers, tanh -> ACCDOA.
- zero: predicts nothing (the floor every method must beat: ER 1, F 0, LE 180, LR 0).

Training: Adam 1e-3, full clips as batches of 8, seeded; after each epoch the validation fold's
SELD score decides early stopping (patience 10); the best epoch's weights predict the test fold.
Outputs under O/{method}/{task}/: pred/{clip}.csv (DCASE cartesian), results.json; O/results.csv
and O/results.json (all methods); O/{method}/{task}/tracks.png (one test clip's true and
predicted azimuths over time).
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import importlib
import io
import itertools
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
from torch import nn

from hear_gram.cli import model_options
from hear_gram.config import FeatureConfig
from hear_gram.frontend import LogMelFrontend
from hear_gram.plotting import save, subplots
from hear_gram.resample import resample
from hear_gram.safeio import child, write_bytes_atomic
from hear_gram.seeding import seeded
from localization_tasks.seld.labels import FRAME_S, Row, format_rows
from localization_tasks.seld.metrics import score_rows
from localization_tasks.seld.task import (
    TaskFormatError,
    clip_frames,
    read_metadata,
    read_vocabulary,
    task_rows,
)

log = logging.getLogger(__name__)
ACTIVE = 0.5
TRACKS = 3  # multi-ACCDOA output tracks (DCASE 2022 baseline)
UNIFY_DEG = 15.0  # multi-ACCDOA inference: merge same-class tracks closer than this (baseline)
Scoring = Literal["auto", "3d", "stereo"]


def _adpit_patterns() -> tuple[np.ndarray, np.ndarray]:
    """The 13 ADPIT track-duplication patterns: (13, 3) instance index per output track, and the
    number of instances (1, 2 or 3) each pattern is for. 1 instance: AAA; 2: the 6 sequences of
    A and B that use both; 3: the 6 permutations of A, B, C."""
    pats = [((0, 0, 0), 1)]
    pats += [(p, 2) for p in itertools.product((0, 1), repeat=3) if len(set(p)) == 2]
    pats += [(p, 3) for p in itertools.permutations((0, 1, 2))]
    return np.array([p for p, _ in pats]), np.array([n for _, n in pats])


ADPIT_PATTERNS, ADPIT_COUNTS = _adpit_patterns()


# ---------------------------------------------------------------------------------------------
# Data


def accdoa_target(rows: list[Row], n_frames: int, n_classes: int) -> np.ndarray:
    """(T, K, 3) unit DOA vectors where a class is active, zeros elsewhere."""
    y = np.zeros((n_frames, n_classes, 3), dtype=np.float32)
    for r in rows:
        if r.frame < n_frames:
            v = np.asarray(r.xyz, dtype=np.float32)
            y[r.frame, r.cls] = v / max(float(np.linalg.norm(v)), 1e-12)
    return y


def adpit_target(rows: list[Row], n_frames: int, n_classes: int) -> np.ndarray:
    """(T, K, 3, 3): the unit DOA vectors of up to 3 instances of each class in each frame, in
    track order (zeros for absent instances; a 4th simultaneous instance is dropped, as the
    baseline's ADPIT labels hold 3)."""
    y = np.zeros((n_frames, n_classes, TRACKS, 3), dtype=np.float32)
    n = np.zeros((n_frames, n_classes), dtype=np.int64)
    for r in sorted(rows, key=lambda r: (r.frame, r.cls, r.track)):
        if r.frame < n_frames and n[r.frame, r.cls] < TRACKS:
            v = np.asarray(r.xyz, dtype=np.float32)
            y[r.frame, r.cls, n[r.frame, r.cls]] = v / max(float(np.linalg.norm(v)), 1e-12)
            n[r.frame, r.cls] += 1
    return y


def adpit_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ADPIT loss of multi-ACCDOA `output` (B, T, 3 tracks, K, 3) against `target` (B, T, K, 3
    instances, 3) from `adpit_target`: per (frame, class), the MSE over the 3 x 3 outputs to each
    duplication pattern of that class's instances allowed by its instance count, minimised over
    the patterns (a silent class: all-zero target); mean over batch, frames and classes."""
    pats = torch.as_tensor(ADPIT_PATTERNS, device=target.device)  # (13, 3)
    count = (target.norm(dim=-1) > 0).sum(-1)  # (B, T, K) instances per class
    cand = target[..., pats, :]  # (B, T, K, 13, 3 tracks, 3)
    out = output.permute(0, 1, 3, 2, 4)[..., None, :, :]  # (B, T, K, 1, 3, 3)
    err = (out - cand).square().mean(dim=(-1, -2))  # (B, T, K, 13)
    allowed = torch.as_tensor(ADPIT_COUNTS, device=target.device) == count[..., None]
    allowed = allowed | (count[..., None] == 0)  # silent: every pattern is the zero target
    return err.masked_fill(~allowed, math.inf).min(dim=-1).values.mean()


def decode_multi_accdoa(y: np.ndarray, unify_deg: float = UNIFY_DEG) -> list[Row]:
    """(T, 3, K, 3) multi-ACCDOA -> DCASE rows, track = output track. Per frame and class, the
    active tracks (longer than 0.5) that lie within `unify_deg` of another active track are
    merged into one row at the mean of their vectors (all three when two or more pairs are
    close), as the DCASE 2022 baseline's inference does."""
    rows = []
    active = np.linalg.norm(y, axis=-1) > ACTIVE  # (T, 3, K)
    for t, k in zip(*np.nonzero(active.any(axis=1)), strict=True):
        on = [j for j in range(y.shape[1]) if active[t, j, k]]
        vecs = {j: y[t, j, k] for j in on}
        close = [(a, b) for a, b in itertools.combinations(on, 2)
                 if _angle(vecs[a], vecs[b]) < unify_deg]  # fmt: skip
        if len(close) >= 2:
            groups = [on]
        elif close:
            groups = [list(close[0])] + [[j] for j in on if j not in close[0]]
        else:
            groups = [[j] for j in on]
        for g in groups:
            v = np.mean([vecs[j] for j in g], axis=0)
            rows.append(Row(int(t), int(k), int(g[0]), tuple(float(x) for x in v)))
    return rows


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    c = float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
    return math.degrees(math.acos(min(1.0, max(-1.0, c))))


def decode_accdoa(y: np.ndarray) -> list[Row]:
    """(T, K, 3) -> DCASE rows (track 0) for vectors longer than 0.5."""
    rows = []
    for t, k in zip(*np.nonzero(np.linalg.norm(y, axis=-1) > ACTIVE), strict=True):
        rows.append(Row(int(t), int(k), 0, tuple(float(v) for v in y[t, k])))
    return rows


def load_split(task_dir: Path, split: str, rate: int) -> tuple[list[str], list[np.ndarray]]:
    """File names and audio (N, C) of a split, from the folder at `rate` or resampled from the
    highest rate present."""
    meta = read_metadata(task_dir)
    rates = sorted(int(r) for r in meta.get("sample_rates", []))
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


def _file_digest(path: Path) -> str:
    """sha256 of a weights file (empty for no file): a cache must not outlive its weights."""
    if not path or not Path(path).is_file():
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _audio_digest(task_dir: Path, split: str, names: list[str]) -> str:
    """Names, sizes and modification times of a split's audio at every rate: a regenerated task
    gets new embeddings."""
    h = hashlib.sha256()
    for rate in sorted(int(r) for r in read_metadata(task_dir).get("sample_rates", [])):
        for name in names:
            st = (task_dir / str(rate) / split / name).stat()
            h.update(f"{rate}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _check_embeddings(emb: np.ndarray, ts: np.ndarray, module: str) -> None:
    if emb.ndim != 2 or ts.shape != (emb.shape[0],) or emb.shape[0] < 1:
        raise ValueError(f"{module}: timestamp embeddings {emb.shape} / timestamps {ts.shape} "
                         "do not match")  # fmt: skip
    if not (np.all(np.isfinite(emb)) and np.all(np.isfinite(ts))):
        raise ValueError(f"{module}: NaN or infinite timestamp embeddings or timestamps")
    if emb.shape[0] > 1 and not np.all(np.diff(ts) > 0):
        raise ValueError(f"{module}: timestamps are not increasing")


class Features:
    """Per-clip input sequences (T_label, D) for a head, or frame features for the CRNN."""

    def __init__(self, kind: str, module: str = "", model: str = "", options: dict | None = None,
                 cache: Path | None = None) -> None:  # fmt: skip
        self.kind, self.module, self.model_path, self.options = kind, module, model, options or {}
        self.cache = cache
        self._hear = self._model = None
        self._weights = None

    def tag(self) -> str:
        if self._weights is None:
            self._weights = _file_digest(Path(self.model_path)) if self.model_path else ""
        key = [self.module, self.model_path, self._weights, self.options]
        return f"{self.module}-{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:10]}"

    def rate(self, task_dir: Path) -> int:
        if self.kind == "module":
            return int(self._load()[1].sample_rate)
        return int(read_metadata(task_dir)["sample_rates"][0])

    def _load(self):
        if self._model is None:
            self._hear = importlib.import_module(self.module)
            self._model = self._hear.load_model(self.model_path, **self.options)
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

    def __call__(self, task_dir: Path, split: str, n_frames: list[int]) -> list[np.ndarray]:
        rate = self.rate(task_dir)
        names, audio = load_split(task_dir, split, rate)
        if self.kind == "crnn":
            return self._crnn(audio, rate)
        path = None
        if self.cache:
            key = _audio_digest(task_dir, split, names)
            path = child(self.cache / self.tag() / task_dir.name, f"{split}-{key}.npz", "split")
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as f:
                if list(f["names"]) == names:
                    return [f[f"e{i}"] for i in range(len(names))]
        hear, model = self._load()
        out = []
        for a, n in zip(audio, n_frames, strict=True):
            with torch.no_grad():
                emb, ts = hear.get_timestamp_embeddings(torch.from_numpy(a)[None], model)
            emb, ts = emb[0].float().numpy(), ts[0].float().numpy()
            _check_embeddings(emb, ts, self.module)
            centres = (np.arange(n) + 0.5) * FRAME_S * 1000
            out.append(np.stack([np.interp(centres, ts, emb[:, d]) for d in range(emb.shape[1])], 1)
                       .astype(np.float32))  # fmt: skip
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            buf = {f"e{i}": e for i, e in enumerate(out)}
            tmp = path.with_name(f".{path.name}.tmp.npz")
            np.savez(tmp, names=np.array(names), **buf)
            tmp.replace(path)
        return out


# ---------------------------------------------------------------------------------------------
# Models


def _unflatten(y: torch.Tensor, k: int, tracks: int) -> torch.Tensor:
    """(B, T, tracks * K * 3) -> (B, T, K, 3) for single ACCDOA, (B, T, tracks, K, 3) else."""
    return y.unflatten(-1, (k, 3)) if tracks == 1 else y.unflatten(-1, (tracks, k, 3))


class MLPHead(nn.Module):
    def __init__(self, d: int, k: int, tracks: int = 1) -> None:
        super().__init__()
        self.k, self.tracks = k, tracks
        self.net = nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, 3 * k * tracks), nn.Tanh())  # fmt: skip

    def forward(self, x):  # (B, T, D) -> (B, T, [tracks,] K, 3)
        return _unflatten(self.net(x), self.k, self.tracks)


class BiGRUHead(nn.Module):
    def __init__(self, d: int, k: int, tracks: int = 1) -> None:
        super().__init__()
        self.k, self.tracks = k, tracks
        self.gru = nn.GRU(d, 128, num_layers=2, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(nn.Linear(256, 3 * k * tracks), nn.Tanh())

    def forward(self, x):  # (B, T, D) -> (B, T, [tracks,] K, 3)
        return _unflatten(self.out(self.gru(x)[0]), self.k, self.tracks)


class CRNN(nn.Module):
    """SELDnet-style CRNN on (B, 7, F, T_10ms) -> (B, T_10ms / 10, K, 3)."""

    def __init__(self, channels: int, n_mels: int, k: int, tracks: int = 1) -> None:
        super().__init__()
        blocks, c = [], channels
        for fp, tp in ((4, 5), (4, 2), (2, 1)):
            blocks += [nn.Conv2d(c, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d((fp, tp)), nn.Dropout(0.05)]  # fmt: skip
            c = 64
        self.conv = nn.Sequential(*blocks)
        self.head = BiGRUHead(64 * (n_mels // 32), k, tracks)

    def forward(self, x):
        h = self.conv(x)  # (B, 64, F / 32, T / 10)
        return self.head(h.flatten(1, 2).transpose(1, 2))


def _batch(xs: list[np.ndarray], ys: list[np.ndarray], idx, crnn: bool):
    x = torch.from_numpy(np.stack([xs[i] for i in idx]))
    y = torch.from_numpy(np.stack([ys[i] for i in idx]))
    if crnn:  # 10 ms frames: T = N // hop + 1; keep whole label frames
        x = x[..., : y.shape[1] * 10]
        if x.shape[-1] < y.shape[1] * 10:
            x = nn.functional.pad(x, (0, y.shape[1] * 10 - x.shape[-1]))
    return x, y


def _predict(model, xs, ys, crnn: bool) -> list[np.ndarray]:
    model.eval()
    with torch.no_grad():
        return [model(_batch(xs, ys, [i], crnn)[0])[0].numpy() for i in range(len(xs))]


@dataclass(frozen=True)
class TrainConfig:
    """Head training and scoring settings (Adam, full clips as batches)."""

    head: Literal["mlp", "bigru"] = "bigru"
    epochs: int = 40
    patience: int = 10
    seed: int = 0
    multi_accdoa: bool = False
    scoring: Scoring = "auto"
    batch: int = 8
    lr: float = 1e-3

    def __post_init__(self) -> None:
        checks = {"head": self.head in ("mlp", "bigru"), "epochs": 1 <= self.epochs <= 10_000,
                  "patience": 1 <= self.patience <= 10_000, "scoring": self.scoring in
                  ("auto", "3d", "stereo"), "batch": 1 <= self.batch <= 4096,
                  "lr": math.isfinite(self.lr) and 0 < self.lr < 1}  # fmt: skip
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training settings: {', '.join(bad)} ({self})")

    @property
    def tracks(self) -> int:
        return TRACKS if self.multi_accdoa else 1


def _decode(y: np.ndarray, multi: bool) -> list[Row]:
    return decode_multi_accdoa(y) if multi else decode_accdoa(y)


def _seld(preds, refs, names, frames, k, multi: bool, stereo: bool) -> dict:
    files = {n: (r, _decode(p, multi)) for n, p, r in zip(names, preds, refs, strict=True)}
    return score_rows(files, k, n_frames=dict(zip(names, frames, strict=True)), stereo=stereo)


def task_folds(task_dir: Path) -> dict[str, list[str]]:
    """The task's official train/valid/test splits, checked: train and test non-empty lists of
    split names that exist, no split in two roles. ``valid`` may be absent or empty (STARSS23's
    dev-train/dev-test, TAU 2018's train/test splits): then `train_and_test` holds out part of
    the training clips (`hold_out`)."""
    folds = read_metadata(task_dir).get("seld", {})
    folds = folds.get("official_folds") if isinstance(folds, dict) else None
    where = f"{task_dir}/task_metadata.json"
    if not isinstance(folds, dict):
        raise TaskFormatError(f"{where}: no seld.official_folds; not a SELD task")
    out = {}
    for role in ("train", "valid", "test"):
        splits = folds.get(role)
        if role == "valid" and splits in (None, []):
            out[role] = []
            continue
        if (
            not isinstance(splits, list)
            or not splits
            or not all(isinstance(x, str) for x in splits)
        ):
            raise TaskFormatError(f"{where}: seld.official_folds.{role} must list split names")
        for x in splits:
            if not child(task_dir, f"{x}.json", "split name").is_file():
                raise TaskFormatError(f"{where}: split {x!r} ({role}) has no {x}.json")
        out[role] = splits
    every = [x for v in out.values() for x in v]
    if len(set(every)) != len(every):
        raise TaskFormatError(f"{where}: a split is in two of train/valid/test")
    return out


def _load_role(task_dir: Path, splits: list[str], feats, method: str, k: int, multi: bool,
               n_of: dict) -> tuple:  # fmt: skip
    names, refs, frames, xs, ys = [], [], [], [], []
    for split in splits:
        rows = task_rows(task_dir, split)
        nm = sorted(rows)
        if not nm:
            raise TaskFormatError(f"{task_dir}: split {split} has no clips")
        missing = [n for n in nm if (split, n) not in n_of]
        if missing:
            raise TaskFormatError(f"{task_dir}/seld_clips.csv: no length for {split}/{missing[0]}")
        fr = [n_of[(split, n)] for n in nm]
        names += nm
        refs += [rows[n] for n in nm]
        frames += fr
        xs += feats(task_dir, split, fr) if method != "zero" else [None] * len(nm)
        target = adpit_target if multi else accdoa_target
        ys += [target(rows[n], f, k) for n, f in zip(nm, fr, strict=True)]
    return names, refs, frames, xs, ys


HOLD_OUT_EVERY = 5


def hold_out(train: tuple, task_dir: Path) -> tuple[tuple, tuple]:
    """Split the loaded training clips (names, refs, frames, xs, ys) into train and validation
    when the task names no validation split: every HOLD_OUT_EVERY-th clip in the sorted order
    `_load_role` gives, so the split is deterministic and independent of the seed."""
    n = len(train[0])
    if n < 2:
        raise TaskFormatError(
            f"{task_dir}: no validation split and {n} training clip(s); need at least 2 to hold "
            "one out for early stopping"
        )
    # every HOLD_OUT_EVERY-th clip; a training fold shorter than that gives up its last clip
    held = {i for i in range(n) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1} or {n - 1}
    log.info("%s: no validation split; holding out %d of %d training clips", task_dir.name,
             len(held), n)  # fmt: skip

    def pick(keep: bool) -> tuple:
        return tuple([v for i, v in enumerate(col) if (i in held) == keep] for col in train)

    return pick(False), pick(True)


def train_and_test(task_dir: Path, method: str, feats: Features | None, cfg: TrainConfig,
                   out: Path, label: str | None = None) -> dict:  # fmt: skip
    """Train on the official train fold(s), stop early on valid, score on test; write outputs."""
    meta, vocab = read_metadata(task_dir), read_vocabulary(task_dir)
    folds, k, multi = task_folds(task_dir), len(vocab), cfg.multi_accdoa
    stereo = cfg.scoring == "stereo" or (
        cfg.scoring == "auto" and meta.get("seld", {}).get("audio") == "binaural"
    )
    n_of = clip_frames(task_dir)
    data = {role: _load_role(task_dir, folds[role], feats, method, k, multi, n_of)
            for role in ("train", "test")}  # fmt: skip
    if folds["valid"]:
        data["valid"] = _load_role(task_dir, folds["valid"], feats, method, k, multi, n_of)
    else:
        data["train"], data["valid"] = hold_out(data["train"], task_dir)
    names, refs, frames, xs, ys = data["test"]
    best_epoch = 0
    if method == "zero":
        preds = [np.zeros((y.shape[0], TRACKS, *y.shape[1:2], 3) if multi else y.shape,
                          dtype=np.float32) for y in ys]  # fmt: skip
    else:
        with seeded(cfg.seed):  # initialisation and dropout; the caller's stream is untouched
            rng = np.random.default_rng(cfg.seed)
            crnn = method == "crnn"
            x0 = data["train"][3][0]
            d = x0.shape[0] if crnn else x0.shape[1]
            head = MLPHead if cfg.head == "mlp" else BiGRUHead
            model = CRNN(d, x0.shape[1], k, cfg.tracks) if crnn else head(d, k, cfg.tracks)
            if not crnn:  # standardise embeddings with training statistics
                cat = np.concatenate(data["train"][3])
                mu, sd = cat.mean(0), cat.std(0) + 1e-6
                for role in data:
                    data[role] = (*data[role][:3], [(x - mu) / sd for x in data[role][3]],
                                  data[role][4])  # fmt: skip
            loss_fn = adpit_loss if multi else nn.functional.mse_loss
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            best, best_state, bad = math.inf, None, 0
            tx, ty = data["train"][3], data["train"][4]
            for epoch in range(cfg.epochs):
                model.train()
                order = rng.permutation(len(tx))
                for s in range(0, len(order), cfg.batch):
                    x, y = _batch(tx, ty, order[s : s + cfg.batch], crnn)
                    loss = loss_fn(model(x), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                vn, vr, vf, vx, vy = data["valid"]
                score = _seld(_predict(model, vx, vy, crnn), vr, vn, vf, k, multi, stereo)["SELD"]
                log.info("%s %s epoch %d: loss %.4f valid SELD %.3f", label or method, task_dir.name,
                         epoch, float(loss.detach()), score)  # fmt: skip
                if not math.isfinite(float(loss.detach())):
                    raise ValueError(f"{method}: the training loss became {float(loss.detach())}")
                if score < best:
                    best, best_state, best_epoch, bad = (
                        score,
                        copy.deepcopy(model.state_dict()),
                        epoch,
                        0,
                    )
                else:
                    bad += 1
                    if bad >= cfg.patience:
                        break
            model.load_state_dict(best_state)
            names, refs, frames, xs, ys = data["test"]  # standardised like the training data
            preds = _predict(model, xs, ys, crnn)
    result = _seld(preds, refs, names, frames, k, multi, stereo)
    result.update({"method": label or method, "task": task_dir.name, "best_epoch": best_epoch,
                   "test_clips": len(names), "multi_accdoa": multi})  # fmt: skip
    run_dir = out / child(out, label or method, "method name").name / task_dir.name
    (run_dir / "pred").mkdir(parents=True, exist_ok=True)
    for n, p in zip(names, preds, strict=True):
        path = child(run_dir / "pred", Path(n).stem + ".csv", "clip name")
        write_bytes_atomic(path, format_rows(_decode(p, multi), "cartesian").encode())
    write_bytes_atomic(run_dir / "results.json", json.dumps(result, indent=1).encode())
    plot_tracks(run_dir / "tracks.png", names[0], refs[0], _decode(preds[0], multi), vocab)
    return result


def plot_tracks(path: Path, name: str, ref: list[Row], pred: list[Row], vocab: list[str]) -> None:
    """Azimuth over time of one clip: reference (lines of dots) vs prediction (crosses)."""
    fig, ax = subplots(figsize=(7, 3))
    for rows, marker, what in ((ref, "o", "true"), (pred, "x", "predicted")):
        for c in sorted({r.cls for r in rows}):
            pts = [(r.frame * FRAME_S, r.azimuth_elevation[0]) for r in rows if r.cls == c]
            ax.plot(*zip(*pts, strict=True), marker, ms=3, label=f"{vocab[c]} ({what})")
    ax.set(xlabel="time (s)", ylabel="azimuth (deg)", ylim=(-180, 180), title=name)
    ax.legend(fontsize=6, loc="upper right")
    save(fig, path, dpi=100)


COLUMNS = ("method", "task", "ER20", "F20", "LE_CD", "LR_CD", "SELD", "best_epoch")


def format_table(results: list[dict]) -> str:
    lines = [
        "| method | task | ER20 | F20 | LE_CD | LR_CD | SELD |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['method']} | {r['task']} | {r['ER20']:.3f} | {r['F20']:.3f} | "
                     f"{r['LE_CD']:.1f} | {r['LR_CD']:.3f} | {r['SELD']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m localization_tasks.seld.evaluate")
    p.add_argument("--tasks-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--task", action="append", default=None)
    p.add_argument("--module", default=None)
    p.add_argument("--model", default="")
    p.add_argument("--model-options", default="{}")
    p.add_argument("--name", default=None, help="method name of the module in the table")
    p.add_argument("--head", choices=("mlp", "bigru"), default="bigru")
    p.add_argument("--baseline", action="append", choices=("crnn", "zero"), default=[])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=8, help="clips per training batch")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--multi-accdoa", action="store_true", help="multi-ACCDOA targets, ADPIT loss")
    p.add_argument("--scoring", choices=("auto", "3d", "stereo"), default="auto",
                   help="auto: DCASE 2025 stereo scoring for binaural tasks, 3-D otherwise")  # fmt: skip
    return p


def run(args: argparse.Namespace) -> list[dict]:
    cfg = TrainConfig(head=args.head, epochs=args.epochs, patience=args.patience, seed=args.seed,
                      multi_accdoa=args.multi_accdoa, scoring=args.scoring, batch=args.batch,
                      lr=args.lr)  # fmt: skip
    options = model_options(args.model_options)
    if not args.tasks_dir.is_dir():
        raise FileNotFoundError(f"--tasks-dir {args.tasks_dir} is not a directory")
    tasks = [child(args.tasks_dir, t, "task") for t in args.task] if args.task else sorted(
        p for p in args.tasks_dir.iterdir() if (p / "task_metadata.json").is_file())  # fmt: skip
    if not tasks:
        raise FileNotFoundError(f"no SELD tasks (task_metadata.json) under {args.tasks_dir}")
    if not args.baseline and not args.module:
        raise ValueError("nothing to evaluate: give --module and/or --baseline")
    methods = [(b, b, Features(b)) for b in args.baseline]
    if args.module:
        feats = Features("module", args.module, args.model, options, args.out / "embeddings")
        methods.append((args.name or f"{args.module}+{args.head}", "module", feats))
    for name, _, _ in methods:  # refuse a bad --name before any work
        child(args.out, name, "method name")
    results = []
    for task in tasks:
        for name, method, feats in methods:
            results.append(train_and_test(task, method, feats, cfg, args.out, name))
    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out / "results.json", json.dumps(results, indent=1).encode())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows([[r[c] for c in COLUMNS] for r in results])
    write_bytes_atomic(args.out / "results.csv", buf.getvalue().encode())
    return results


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        results = run(args)
    except (ValueError, OSError, ImportError) as e:
        # expected failures (bad task, bad option, missing module or file): one line, exit 2
        print(f"localization_tasks.seld.evaluate: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_table(results))


if __name__ == "__main__":
    main()
