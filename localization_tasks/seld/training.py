"""Training of the SELD models on a task's official folds: data of a role, hold-out, the
training loop with early stopping on the validation SELD score.

Adam (lr 1e-3), full clips as batches of 8, seeded (`hear_gram.seeding.seeded`: the caller's
random streams are untouched); embeddings standardised with training statistics; after each epoch
the validation fold's SELD score (`localization_tasks.seld.metrics.score_rows`) decides early
stopping (patience 10); the best epoch's weights predict the test fold. A task without a
validation split gives up every 5th training clip (`hold_out`).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from hear_gram.safeio import child
from hear_gram.seeding import seeded
from localization_tasks.seld.features import Features
from localization_tasks.seld.heads import CRNN, BiGRUHead, MLPHead
from localization_tasks.seld.metrics import score_rows
from localization_tasks.seld.targets import TRACKS, accdoa_target, adpit_loss, adpit_target, decode
from localization_tasks.seld.task import TaskFormatError, clip_frames, read_metadata, task_rows

log = logging.getLogger(__name__)
Scoring = Literal["auto", "3d", "stereo"]


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
class SeldTrainConfig:
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


def seld_score(preds, refs, names, frames, k, multi: bool, stereo: bool) -> dict:
    """DCASE metrics of predictions (decoded) against reference rows, per clip."""
    files = {n: (r, decode(p, multi)) for n, p, r in zip(names, preds, refs, strict=True)}
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


def stereo_scoring(task_dir: Path, cfg: SeldTrainConfig) -> bool:
    """DCASE 2025 stereo scoring: asked for, or `auto` on a binaural task."""
    seld = read_metadata(task_dir).get("seld", {})
    return cfg.scoring == "stereo" or (cfg.scoring == "auto" and seld.get("audio") == "binaural")


def load_roles(task_dir: Path, method: str, feats: Features | None, k: int, multi: bool) -> dict:
    """{train, valid, test: (names, refs, frames, xs, ys)} of the task's official folds (valid
    held out of train when the task names none)."""
    folds, n_of = task_folds(task_dir), clip_frames(task_dir)
    data = {role: _load_role(task_dir, folds[role], feats, method, k, multi, n_of)
            for role in ("train", "test")}  # fmt: skip
    if folds["valid"]:
        data["valid"] = _load_role(task_dir, folds["valid"], feats, method, k, multi, n_of)
    else:
        data["train"], data["valid"] = hold_out(data["train"], task_dir)
    return data


def fit_predict(data: dict, method: str, cfg: SeldTrainConfig, k: int, stereo: bool,
                what: str) -> tuple[list[np.ndarray], tuple, int]:  # fmt: skip
    """Train `method` (crnn, or a head on embeddings) on data["train"] with early stopping on
    data["valid"]; (test predictions, the test data as predicted (standardised), best epoch).
    `zero` predicts nothing."""
    multi = cfg.multi_accdoa
    names, refs, frames, xs, ys = data["test"]
    best_epoch = 0
    if method == "zero":
        preds = [np.zeros((y.shape[0], TRACKS, *y.shape[1:2], 3) if multi else y.shape,
                          dtype=np.float32) for y in ys]  # fmt: skip
        return preds, data["test"], best_epoch
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
            score = seld_score(_predict(model, vx, vy, crnn), vr, vn, vf, k, multi, stereo)["SELD"]
            log.info("%s epoch %d: loss %.4f valid SELD %.3f", what, epoch,
                     float(loss.detach()), score)  # fmt: skip
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
        return _predict(model, xs, ys, crnn), data["test"], best_epoch
