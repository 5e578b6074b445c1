"""The chance and majority rows of the HEAR and Nat-HEAR table: models whose module is `chance` or
`majority` are scored on each task's test folds with heareval's own score functions and splits,
from the labels alone (no audio, no embeddings, no probe training).

Splits: heareval's (`heareval/predictions/task_predictions.py`, `get_splits_from_metadata` and
`data_splits_from_folds`): `trainvaltest` tasks test once on `test`, trained on `train`; k-fold
tasks test on each fold in turn (sorted), the next fold is validation and the rest train. A
baseline learns from the train folds only, as heareval's probe does.

- Scene tasks, multiclass (top1_acc, pitch_acc, chroma_acc): `majority` predicts the train folds'
  most frequent class for every test clip (ties: the lowest index of labelvocabulary.csv, as
  numpy's argmax); `chance` draws each test clip's class from the train folds' class frequencies
  (numpy Generator seeded with (CHANCE_SEED, fold index): a fixed seed, so the score depends on
  the task alone, which the unit's key holds). Multilabel (mAP, d_prime, aucroc): `majority`
  scores every clip with the train frequency of each class (a constant: mAP = each class's test
  prevalence, averaged); `chance` draws each class as present with its train frequency.
- Event tasks: both predict no event at all. sed_eval leaves the onset F-measure undefined then
  (precision 0/0, NaN); F = 2 TP / (2 TP + FP + FN), equal to sed_eval's wherever it is defined,
  is 0 with no predicted event and at least one reference event, and that is the row. Error
  rates (segment_1s_er) are sed_eval's: the deletions over the reference events, 1 without
  insertions.

Each metric of the task's `evaluation` list is computed by `heareval.score.available_scores`
with the label vocabulary as heareval reads it, and its row has the mean and sample standard
deviation over test folds, as `hear_gram.scores` reads a probe's.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from hear_gram.safeio import child

BASELINES = ("chance", "majority")
CHANCE_SEED = 0


class BaselineError(ValueError):
    """A task the baselines cannot score; the message says why."""


def data_splits(metadata: dict) -> list[dict[str, list[str]]]:
    """heareval's train/valid/test split names per test fold (module docstring)."""
    mode = metadata.get("split_mode")
    if mode == "trainvaltest":
        return [{"train": ["train"], "valid": ["valid"], "test": ["test"]}]
    if mode in ("new_split_kfold", "presplit_kfold"):
        folds = sorted(metadata["splits"])
        if len(folds) < 3 or len(set(folds)) != len(folds):
            raise BaselineError(f"k-fold tasks need 3 or more distinct folds, got {folds}")
        n = len(folds)
        return [{"train": [f for f in folds if f not in (folds[i], folds[(i + 1) % n])],
                 "valid": [folds[(i + 1) % n]], "test": [folds[i]]} for i in range(n)]  # fmt: skip
    raise BaselineError(f"unknown split_mode {mode!r}")


def label_to_idx(task_dir: Path) -> dict[str, int]:
    """labelvocabulary.csv as heareval reads it: label (as a string) -> idx, idx 0..K-1."""
    path = child(task_dir, "labelvocabulary.csv", "task file")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    try:
        vocab = {str(r["label"]): int(r["idx"]) for r in rows}
    except (KeyError, TypeError, ValueError):
        raise BaselineError(f"{path}: expected columns idx,label with integer idx") from None
    if sorted(vocab.values()) != list(range(len(rows))) or not vocab:
        raise BaselineError(f"{path}: idx must be 0..{len(rows) - 1}, one per label")
    return vocab


def _targets(labels: dict[str, list], vocab: dict[str, int]) -> np.ndarray:
    """(n, K) multi-hot targets of scene labels, in file order."""
    y = np.zeros((len(labels), len(vocab)), dtype=np.float32)
    for i, names in enumerate(labels.values()):
        for name in names:
            if str(name) not in vocab:
                raise BaselineError(f"label {name!r:.60} is not in labelvocabulary.csv")
            y[i, vocab[str(name)]] = 1.0
    return y


def scene_predictions(train: np.ndarray, n_test: int, baseline: str, multilabel: bool,
                      rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """(n_test, K) predictions of `baseline` from the (n_train, K) train targets."""
    if train.shape[0] == 0:
        raise BaselineError("the train folds hold no clips")
    freq = train.mean(axis=0)  # (K,) multilabel: each class's frequency
    k = train.shape[1]
    if multilabel:
        if baseline == "majority":
            return np.broadcast_to(freq, (n_test, k)).copy()
        return (rng.random((n_test, k)) < freq).astype(np.float32)
    prior = train.sum(axis=0) / train.sum()
    picks = np.full(n_test, int(np.argmax(prior))) if baseline == "majority" else rng.choice(k, size=n_test, p=prior)  # fmt: skip
    return np.eye(k, dtype=np.float32)[picks]


def _score(fn: Any, *args: Any) -> float:
    """heareval's score: the first of a tuple of sub-scores (heareval's `log_scores`)."""
    value = fn(*args)
    return float(value[0][1] if isinstance(value, tuple) else value)


def fold_scores(task_dir: Path, baseline: str) -> tuple[dict, list[dict[str, float]]]:
    """(metadata, one {metric: score} per test fold) of `baseline` on a HEAR task folder."""
    from heareval.score import available_scores

    from hear_gram.heareval_compat import check_task

    if baseline not in BASELINES:
        raise BaselineError(f"unknown baseline {baseline!r}; choose from {BASELINES}")
    metadata, labels = check_task(task_dir)
    metrics = metadata.get("evaluation")
    if not metrics:
        raise BaselineError(f"{task_dir}: task_metadata.json has no evaluation metrics")
    unknown = [m for m in metrics if m not in available_scores]
    if unknown:
        raise BaselineError(f"{task_dir}: metrics {unknown} are not heareval's")
    vocab = label_to_idx(task_dir)
    event = metadata.get("embedding_type") == "event"
    multilabel = metadata.get("prediction_type") == "multilabel"
    out = []
    for i, split in enumerate(data_splits(metadata)):
        missing = [s for s in split["train"] + split["test"] if s not in labels]
        if missing:
            raise BaselineError(f"{task_dir}: splits {missing} are not in task_metadata.json")
        train = {f: y for s in split["train"] for f, y in labels[s].items()}
        test = {f: y for s in split["test"] for f, y in labels[s].items()}
        if not test:
            raise BaselineError(f"{task_dir}: test split {split['test']} holds no clips")
        if event:
            args: tuple = ({f: [] for f in test}, test)
        else:
            rng = np.random.default_rng([CHANCE_SEED, i])
            pred = scene_predictions(_targets(train, vocab), len(test), baseline, multilabel, rng)
            args = (pred, _targets(test, vocab))
        scores = {}
        for metric in metrics:
            value = _score(available_scores[metric](label_to_idx=vocab), *args)
            if event and math.isnan(value) and metric.endswith("_fms"):
                if not any(test.values()):
                    raise BaselineError(f"{task_dir}: {metric} is undefined: the test split "
                                        "holds no events")  # fmt: skip
                value = 0.0  # no predicted event: F = 2 TP / (2 TP + FP + FN) = 0 (docstring)
            if not math.isfinite(value):
                raise BaselineError(f"{task_dir}: heareval's {metric} of {baseline} is {value} on "
                                    f"test split {split['test']}")  # fmt: skip
            scores[metric] = value
        out.append(scores)
    return metadata, out


def rows(task_dir: Path, baseline: str, fmt: str) -> list[dict]:
    """Score rows (the suite's `ROW_KEYS`) of `baseline` on a task: per metric of its
    `evaluation`, in that order, mean and sample sd over test folds."""
    from hear_gram.scores import LOWER_IS_BETTER

    metadata, folds = fold_scores(task_dir, baseline)
    out = []
    for metric in metadata["evaluation"]:
        values = [f[metric] for f in folds]
        out.append({"task": metadata.get("task_name") or task_dir.name, "format": fmt,
                    "snr_bin": "", "metric": metric, "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "folds": len(values),
                    "better": "lower" if metric in LOWER_IS_BETTER else "higher"})  # fmt: skip
    return out
