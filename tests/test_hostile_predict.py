"""Hostile inputs to the HEAR tool wrappers: hear_gram.predict (planted label pickles, broken task
dirs), hear_gram.embed (stale or mixed embeddings), hear_gram.scores and hear_gram.bench."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from hear_gram import heareval_compat
from tests.hostile import assert_clean_failure, run_cli, snapshot


class Payload:
    """A pickle that creates `marker` when loaded (what an attacker would plant)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def planted_pickle(marker: Path) -> bytes:
    return pickle.dumps([["a"], Payload(marker)])


def fake_embeddings_task(root: Path, train_labels: bytes) -> Path:
    """A trainvaltest scene task as heareval's embeddings runner lays it out (4 clips x 3 dims
    per split), with the given bytes as train.target-labels.pkl."""
    task = root / "planted-task"
    task.mkdir(parents=True)
    metadata = {"task_name": "planted-task", "embedding_type": "scene",
                "prediction_type": "multiclass", "split_mode": "trainvaltest",
                "splits": ["train", "valid", "test"], "evaluation": ["top1_acc"]}  # fmt: skip
    (task / "task_metadata.json").write_text(json.dumps(metadata))
    (task / "labelvocabulary.csv").write_text("idx,label\n0,a\n1,b\n")
    for split in metadata["splits"]:
        (task / f"{split}.embedding-dimensions.json").write_text("[4, 3]")
        np.arange(12, dtype=np.float32).tofile(task / f"{split}.embeddings.npy")
        labels = pickle.dumps([["a"], ["b"], ["a"], ["b"]])
        (task / f"{split}.target-labels.pkl").write_bytes(labels)
    (task / "train.target-labels.pkl").write_bytes(train_labels)
    return task


# ------------------------------------------------------------------ label pickles, in process


def test_heareval_label_layout_loads(tmp_path):
    """What heareval's embeddings runner pickles: lists of label strings (scene) or numbers."""
    labels = [["dog"], [], ["cat", "dog"], [3, 4.5]]
    assert heareval_compat.load_labels(io.BytesIO(pickle.dumps(labels))) == labels


@pytest.mark.hostile("code")
def test_planted_label_pickle_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    f = io.BytesIO(planted_pickle(marker))
    f.name = "x/train.target-labels.pkl"
    with pytest.raises(heareval_compat.UnsafePickleError, match=r"train.target-labels.pkl.*posix"):
        heareval_compat.load_labels(f)
    assert not marker.exists()


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    "data", [b"", b"not a pickle", pickle.dumps({"a": 1}), pickle.dumps([[["nested"]]])]
)
def test_foreign_label_pickles_are_refused(data):
    with pytest.raises(heareval_compat.UnsafePickleError, match="refusing to load"):
        heareval_compat.load_labels(io.BytesIO(data))


def test_patch_reaches_heareval_and_keeps_dump():
    from heareval.predictions import task_predictions as tp

    heareval_compat.patch_label_unpickling()
    heareval_compat.patch_label_unpickling()  # idempotent
    assert tp.pickle.load is heareval_compat.load_labels
    assert tp.pickle.dump is pickle.dump  # heareval's predictions files are written as before


# ------------------------------------------------------------------ the CLI


@pytest.mark.slow
@pytest.mark.hostile("code")
def test_predict_refuses_a_planted_pickle(tmp_path):
    """The whole predictions runner on a task dir with a planted train label pickle: one clear
    line, exit 2, no marker, and nothing outside the task dir changed."""
    marker = tmp_path / "pwned"
    task = fake_embeddings_task(tmp_path / "emb", planted_pickle(marker))
    (tmp_path / "neighbour.txt").write_text("untouched")
    before = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("emb/")}
    res = run_cli(["hear_gram.predict", str(task), "--grid", "faster", "--grid-points", "1"],
                  cwd=tmp_path, timeout=300)  # fmt: skip
    assert_clean_failure(res, "hear_gram.predict: error", "train.target-labels.pkl", "refusing")
    assert not marker.exists()
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("emb/")}
    assert after == before


@pytest.mark.hostile("crash")
def test_predict_on_a_file_is_one_line(tmp_path):
    f = tmp_path / "not-a-dir"
    f.write_text("")
    res = run_cli(["hear_gram.predict", str(f)], cwd=tmp_path, timeout=300)
    assert_clean_failure(res, "hear_gram.predict: error", "should be a directory")
