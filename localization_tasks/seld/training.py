"""Training and scoring of the SELD models on a task's folds: the data of a role, hold-out, the
target kind, the training loop with early stopping on the validation score, and the one scoring
function (`seld_score`).

Adam (lr 1e-3), clips in batches of 8 padded to the longest clip of the batch with a mask, so
that clips of any length train together and the loss covers each clip's own frames only (the
BiGRU runs on the packed sequences); seeded (`hear_gram.seeding.seeded`: the caller's random
streams are untouched); embeddings standardised with training statistics; after each epoch the
validation fold's score decides early stopping (patience 10); the best epoch's weights predict the
test fold. A task without a validation split gives up every 5th training clip (`hold_out`).

Folds (`task_fold_sets`): every cross-validation fold a task lists in
`seld.cross_validation_folds` (TAU 2018: 3 splits, TAU 2019: 4 folds, as
`localization_tasks.seld.tau` writes them), else its one `seld.official_folds`.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from hear_gram.safeio import child
from hear_gram.seeding import seeded
from localization_tasks.seld import targets
from localization_tasks.seld.chance import chance_rows, distance_range
from localization_tasks.seld.features import Features
from localization_tasks.seld.heads import CRNN, BiGRUHead, MLPHead
from localization_tasks.seld.labels import Row
from localization_tasks.seld.score import score_files
from localization_tasks.seld.targets import Target
from localization_tasks.seld.task import TaskFormatError, clip_frames, read_metadata, task_rows

log = logging.getLogger(__name__)
Scoring = Literal["auto", "3d", "stereo"]
TARGET_CHOICES = ("auto", *targets.TARGETS)
# The metric families `seld_score` knows (`localization_tasks.seld.score.score_files`), the
# columns each reports, and the figure early stopping follows with its direction: the DCASE 2025
# baseline has no combined score and keeps the model of the best F (its `main.py`).
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "dcase2022": ("ER20", "F20", "LE_CD", "LR_CD", "SELD"),
    "dcase2024": ("ER", "F", "AngE", "DistE", "RelDistE", "LR", "SELD"),
    "dcase2025": ("F", "AngE", "DistE", "RelDistE", "OnscreenAq"),
    "dcase2019": ("ER", "F", "DOA_error", "frame_recall", "SELD"),
}
STOP_KEY: dict[str, str] = {"dcase2022": "SELD", "dcase2024": "SELD", "dcase2025": "F",
                            "dcase2019": "SELD"}  # fmt: skip
HIGHER_IS_BETTER = ("F", "F20", "LR", "LR_CD", "frame_recall", "OnscreenAq")
METRIC_CHOICES = ("auto", *METRIC_KEYS)
# Methods that read no model inputs: they predict from the labels' frames (chance) or nothing.
NO_INPUTS = ("zero", "chance")


@dataclass(frozen=True)
class SeldTrainConfig:
    """Head training and scoring settings (Adam, clips in padded batches). `target`: a kind of
    `localization_tasks.seld.targets`, or ``auto`` (from the task's labels: `resolve_target`);
    `multi_accdoa=True` is the old spelling of ``target="multi-accdoa"``. `metrics`: the metric
    family of `seld_score`."""

    head: Literal["mlp", "bigru"] = "bigru"
    epochs: int = 40
    patience: int = 10
    seed: int = 0
    multi_accdoa: bool = False
    scoring: Scoring = "auto"
    batch: int = 8
    lr: float = 1e-3
    target: str = "auto"
    metrics: str = "auto"  # `resolve_metrics`

    def __post_init__(self) -> None:
        if self.multi_accdoa and self.target == "auto":
            object.__setattr__(self, "target", "multi-accdoa")
        checks = {"head": self.head in ("mlp", "bigru"), "epochs": 1 <= self.epochs <= 10_000,
                  "patience": 1 <= self.patience <= 10_000, "scoring": self.scoring in
                  ("auto", "3d", "stereo"), "batch": 1 <= self.batch <= 4096,
                  "lr": math.isfinite(self.lr) and 0 < self.lr < 1,
                  "target": self.target in TARGET_CHOICES and not (
                      self.multi_accdoa and self.target != "multi-accdoa"),
                  "metrics": self.metrics in METRIC_CHOICES}  # fmt: skip
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training settings: {', '.join(bad)} ({self})")


def resolve_metrics(metrics: str, stereo: bool, distances: bool) -> str:
    """The metric family of a task: `metrics`, or for ``auto`` the newest DCASE year that scores
    what the task has: stereo (binaural) tasks with distances -> dcase2025; 3-D tasks with
    distances -> dcase2024; without distances the DCASE 2022/2023 metrics (stereo-folded)."""
    if metrics != "auto":
        return metrics
    if distances:
        return "dcase2025" if stereo else "dcase2024"
    return "dcase2022"


def _finite_or_none(value: object) -> object:
    """NaN (a figure with nothing to average, e.g. AngE without pairs) -> None, recursively: the
    results are JSON, which has no NaN, and None reads as "not defined", never as a number."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def seld_score(files: dict[str, tuple[list[Row], list[Row]]], n_frames: dict[str, int], k: int,
               stereo: bool, metrics: str = "dcase2022", jackknife: bool = False) -> dict:  # fmt: skip
    """Scores of {clip: (reference rows, predicted rows)} in the metric family `metrics` (not
    ``auto``: `resolve_metrics`), through `localization_tasks.seld.score.score_files`. Every score
    of the evaluator goes through here: the validation score of early stopping (`STOP_KEY`) and
    the test scores. NaN figures come back as None. `jackknife`: the baselines' leave-one-file-out
    95 % intervals (`jackknife` key; at least 2 files)."""
    jackknife = jackknife and len(files) > 1
    if metrics == "dcase2022":
        out = score_files(files, "dcase2022", k, jackknife, n_frames=n_frames, stereo=stereo)
    elif metrics == "dcase2024":
        # distances are scored when both sides carry them (a head without distance output, or
        # labels without them, is scored on directions alone, as the 2024 baseline's
        # `evaluate_distance=False`)
        rows = [r for ref, pred in files.values() for r in ref + pred]
        distance = all(r.distance is not None for r in rows)
        out = score_files(files, "dcase2024", k, jackknife, n_frames=n_frames,
                          evaluate_distance=distance)  # fmt: skip
    elif metrics == "dcase2025":
        if any(r.distance is None for _, pred in files.values() for r in pred):
            raise ValueError("dcase2025 metrics score distances: train a distance-aware head "
                             "(--target multi-accddoa or auto on labels with distances)")  # fmt: skip
        # Our heads see no video and predict no on-screen flag (a converted DCASE 2025 task's
        # labels carry one): every source counts as on-screen on both sides, so the on-screen
        # requirement is off (the baseline's default) and OnscreenAq is not reported.
        on = {n: ([replace(r, onscreen=1) for r in ref], [replace(r, onscreen=1) for r in pred])
              for n, (ref, pred) in files.items()}  # fmt: skip
        out = score_files(on, "dcase2025", k, jackknife, n_frames=n_frames)
        out["OnscreenAq"] = float("nan")
        out.get("jackknife", {}).pop("OnscreenAq", None)
    elif metrics == "dcase2019":
        out = score_files(files, "dcase2019", k, jackknife)
    else:
        raise ValueError(f"unknown metrics {metrics!r}; choose one of {', '.join(METRIC_KEYS)}")
    return _finite_or_none(out)


def stop_value(scores: dict, metrics: str) -> float:
    """The early-stopping figure of `scores` as a loss (lower is better); an undefined figure is
    the worst."""
    key = STOP_KEY[metrics]
    value = scores.get(key)
    if value is None:
        return math.inf
    return -float(value) if key in HIGHER_IS_BETTER else float(value)


def _fold_dict(folds: object, task_dir: Path, where: str) -> dict[str, list[str]]:
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


def task_folds(task_dir: Path) -> dict[str, list[str]]:
    """The task's official train/valid/test splits, checked: train and test non-empty lists of
    split names that exist, no split in two roles. ``valid`` may be absent or empty (STARSS23's
    dev-train/dev-test, TAU 2018's train/test splits): then `hold_out` holds out part of the
    training clips."""
    seld = read_metadata(task_dir).get("seld", {})
    folds = seld.get("official_folds") if isinstance(seld, dict) else None
    return _fold_dict(folds, task_dir, f"{task_dir}/task_metadata.json")


def task_fold_sets(task_dir: Path) -> list[dict[str, list[str]]]:
    """Every fold the task is scored on: the `seld.cross_validation_folds` list when the task has
    one (TAU 2018/2019), each checked as `task_folds` checks the official one; else the official
    fold alone."""
    official = task_folds(task_dir)
    cv = read_metadata(task_dir)["seld"].get("cross_validation_folds")
    if cv is None:
        return [official]
    where = f"{task_dir}/task_metadata.json"
    if not isinstance(cv, list) or not cv or len(cv) > 100:
        raise TaskFormatError(f"{where}: seld.cross_validation_folds must list 1..100 folds")
    return [_fold_dict(f, task_dir, f"{where} cross_validation_folds[{i}]")
            for i, f in enumerate(cv)]  # fmt: skip


class TaskData:
    """A task's labels and one method's inputs, per split, each read once and shared by every fold
    and seed. A split's labels are checked against seld_clips.csv: every clip has a length, and
    no label lies past it (labels longer than the audio are refused, naming the clip)."""

    def __init__(self, task_dir: Path, method: str, feats: Features | None) -> None:
        self.task_dir, self.method, self.feats = task_dir, method, feats
        self.n_of = clip_frames(task_dir)
        self._labels: dict[str, tuple[list[str], list[list[Row]], list[int]]] = {}
        self._inputs: dict[str, list] = {}

    def labels(self, split: str) -> tuple[list[str], list[list[Row]], list[int]]:
        """(clip names sorted, their rows, their frame counts)."""
        if split not in self._labels:
            rows = task_rows(self.task_dir, split)
            names = sorted(rows)
            if not names:
                raise TaskFormatError(f"{self.task_dir}: split {split} has no clips")
            where = f"{self.task_dir}/seld_clips.csv"
            missing = [n for n in names if (split, n) not in self.n_of]
            if missing:
                raise TaskFormatError(f"{where}: no length for {split}/{missing[0]}")
            frames = [self.n_of[(split, n)] for n in names]
            for n, f in zip(names, frames, strict=True):
                last = max((r.frame for r in rows[n]), default=-1)
                if last >= f:
                    raise TaskFormatError(
                        f"{self.task_dir.name}/{split}/{n}: labels reach frame {last}, past the "
                        f"clip's {f} frames of 100 ms ({where}); the audio is shorter than its "
                        "labels"
                    )
            self._labels[split] = (names, [rows[n] for n in names], frames)
        return self._labels[split]

    def inputs(self, split: str) -> list:
        if split not in self._inputs:
            names, _, frames = self.labels(split)
            if self.method in NO_INPUTS or self.feats is None:
                self._inputs[split] = [None] * len(names)
            else:
                self._inputs[split] = self.feats(self.task_dir, split, frames)
        return self._inputs[split]

    def role(self, splits: list[str], kind: Target, k: int) -> tuple:
        """(names, refs, frames, xs, ys) of the splits of one role, ys the `kind` targets."""
        names: list[str] = []
        refs: list[list[Row]] = []
        frames: list[int] = []
        xs: list = []
        ys: list[np.ndarray] = []
        for split in splits:
            n, r, f = self.labels(split)
            names, refs, frames, xs = names + n, refs + r, frames + f, xs + self.inputs(split)
            ys += [self._target(split, *clip, kind, k) for clip in zip(n, r, f, strict=True)]
        return names, refs, frames, xs, ys

    def _target(self, split: str, name: str, rows: list[Row], n_frames: int, kind: Target,
                k: int) -> np.ndarray:  # fmt: skip
        try:
            return targets.encode(rows, n_frames, k, kind)
        except ValueError as e:  # a row without the distance multi-ACCDDOA needs
            raise TaskFormatError(f"{self.task_dir.name}/{split}/{name}: {e}") from None


def resolve_target(cfg: SeldTrainConfig, source: TaskData, fold_sets: list[dict]) -> Target:
    """`cfg.target`, or for ``auto`` the kind `targets.choose_target` picks from the labels of
    every split the folds use (distance -> multi-ACCDDOA, same-class polyphony -> multi-ACCDOA,
    else ACCDOA)."""
    if cfg.target != "auto":
        return targets.check_target(cfg.target)
    splits = sorted({s for f in fold_sets for v in f.values() for s in v})
    return targets.choose_target(r for s in splits for r in source.labels(s)[1])


HOLD_OUT_EVERY = 5


def hold_out(train: tuple, task_dir: Path) -> tuple[tuple, tuple]:
    """Split the loaded training clips (names, refs, frames, xs, ys) into train and validation
    when the task names no validation split: every HOLD_OUT_EVERY-th clip in the sorted order
    `TaskData.role` gives, so the split is deterministic and independent of the seed."""
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


# seld.audio of the two-channel tasks: binaural (seld.synth) and stereo (the DCASE 2025 set,
# `seld.convert`); neither resolves elevation or front from back
TWO_CHANNEL = ("binaural", "stereo")


def stereo_scoring(task_dir: Path, cfg: SeldTrainConfig) -> bool:
    """DCASE 2025 stereo scoring: asked for, or `auto` on a binaural or stereo task."""
    seld = read_metadata(task_dir).get("seld", {})
    return cfg.scoring == "stereo" or (cfg.scoring == "auto" and seld.get("audio") in TWO_CHANNEL)


def load_roles(source: TaskData, folds: dict[str, list[str]], kind: Target, k: int) -> dict:
    """{train, valid, test: (names, refs, frames, xs, ys)} of one fold (valid held out of train
    when the fold names none)."""
    data = {role: source.role(folds[role], kind, k) for role in ("train", "test")}
    if folds["valid"]:
        data["valid"] = source.role(folds["valid"], kind, k)
    else:
        data["train"], data["valid"] = hold_out(data["train"], source.task_dir)
    return data


def _batch(xs: list[np.ndarray], ys: list[np.ndarray], idx, crnn: bool):
    """Clips `idx` as one batch, zero-padded to the longest: x (B, T, D) or for the CRNN
    (B, C, F, 10 T) (10 ms frames: N // hop + 1 of them; whole label frames kept), targets
    (B, T, ...), and the clips' lengths (B,) in 100 ms frames."""
    lengths = [ys[i].shape[0] for i in idx]
    t = max(lengths)
    y = np.zeros((len(idx), t, *ys[idx[0]].shape[1:]), dtype=np.float32)
    x0 = xs[idx[0]]
    x = np.zeros((len(idx), *x0.shape[:-1], 10 * t) if crnn else (len(idx), t, x0.shape[1]),
                 dtype=np.float32)  # fmt: skip
    for b, (i, n) in enumerate(zip(idx, lengths, strict=True)):
        y[b, :n] = ys[i]
        if crnn:
            m = min(xs[i].shape[-1], 10 * n)
            x[b, ..., :m] = xs[i][..., :m]
        else:
            x[b, :n] = xs[i]
    return torch.from_numpy(x), torch.from_numpy(y), torch.tensor(lengths)


def _predict(model, xs, ys, crnn: bool) -> list[np.ndarray]:
    model.eval()
    with torch.no_grad():
        return [model(_batch(xs, ys, [i], crnn)[0])[0].numpy() for i in range(len(xs))]


def _rows(preds: list[np.ndarray], kind: Target) -> list[list[Row]]:
    return [targets.decode(p, kind) for p in preds]


def _files(names, refs, preds_rows) -> dict[str, tuple[list[Row], list[Row]]]:
    return {n: (r, p) for n, r, p in zip(names, refs, preds_rows, strict=True)}


def fit_predict(data: dict, method: str, cfg: SeldTrainConfig, k: int, kind: Target,
                stereo: bool, what: str) -> tuple[list[list[Row]], tuple, int | None]:  # fmt: skip
    """Predict the test clips of one fold; (predicted rows per test clip, the test data as
    predicted (standardised), the best epoch or None). `crnn` or a head on embeddings
    (``module``) is trained on data["train"] with early stopping on data["valid"]; `zero`
    predicts nothing; `chance` the true activity with random directions (`chance_rows`)."""
    names, refs, frames, xs, ys = data["test"]
    cfg = replace(cfg, metrics=resolve_metrics(cfg.metrics, stereo, kind == "multi-accddoa"))
    if method == "zero":
        return [[] for _ in names], data["test"], None
    if method == "chance":
        dist = distance_range(data["train"][1]) if kind == "multi-accddoa" else None
        preds = [chance_rows(r, n, cfg.seed, dist) for n, r in zip(names, refs, strict=True)]
        return preds, data["test"], None
    with seeded(cfg.seed):  # initialisation and dropout; the caller's stream is untouched
        rng = np.random.default_rng(cfg.seed)
        crnn = method == "crnn"
        x0 = data["train"][3][0]
        d = x0.shape[0] if crnn else x0.shape[1]
        head = MLPHead if cfg.head == "mlp" else BiGRUHead
        out = (k, targets.tracks(kind), targets.values(kind))
        model = CRNN(d, x0.shape[1], *out) if crnn else head(d, *out)
        if not crnn:  # standardise embeddings with training statistics
            cat = np.concatenate(data["train"][3])
            mu, sd = cat.mean(0), cat.std(0) + 1e-6
            for role in data:
                data[role] = (*data[role][:3], [(x - mu) / sd for x in data[role][3]],
                              data[role][4])  # fmt: skip
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        best, best_state, best_epoch, bad = math.inf, None, 0, 0
        tx, ty = data["train"][3], data["train"][4]
        vn, vr, vf, vx, vy = data["valid"]
        for epoch in range(cfg.epochs):
            model.train()
            order = rng.permutation(len(tx))
            for s in range(0, len(order), cfg.batch):
                x, y, lengths = _batch(tx, ty, order[s : s + cfg.batch], crnn)
                mask = torch.arange(y.shape[1])[None] < lengths[:, None]  # (B, T)
                loss = targets.loss(kind, model(x, lengths), y, mask)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if not math.isfinite(float(loss.detach())):
                raise ValueError(f"{method}: the training loss became {float(loss.detach())}")
            pred = _rows(_predict(model, vx, vy, crnn), kind)
            valid = seld_score(_files(vn, vr, pred), dict(zip(vn, vf, strict=True)), k, stereo,
                               cfg.metrics)  # fmt: skip
            score = stop_value(valid, cfg.metrics)
            log.info("%s epoch %d: loss %.4f valid %s %s", what, epoch, float(loss.detach()),
                     STOP_KEY[cfg.metrics], valid.get(STOP_KEY[cfg.metrics]))  # fmt: skip
            if score < best or best_state is None:  # an undefined figure keeps the first epoch
                best, best_epoch, bad = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        model.load_state_dict(best_state)
        names, refs, frames, xs, ys = data["test"]  # standardised like the training data
        return _rows(_predict(model, xs, ys, crnn), kind), data["test"], best_epoch
