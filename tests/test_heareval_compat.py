"""hear_gram.heareval_compat and hear_gram.predict: one regression test per heareval breakage,
then the real HEAR tools end to end on synthetic tasks with a trivial spectral module."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from hear_gram import heareval_compat, scores, synthetic_tasks
from tests.conftest import REPO, run_module

MODULE = "tests.fixtures.spectral_module"


# ------------------------------------------------------------------ fix 1: torch.load


def test_heareval_checkpoints_need_the_weights_only_switch(tmp_path, monkeypatch):
    monkeypatch.delenv(heareval_compat.WEIGHTS_ONLY_ENV, raising=False)
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    # What heareval's checkpoints hold: hyper-parameters that are classes and functions.
    path = tmp_path / "hparams.ckpt"
    torch.save({"epoch": 3, "hyper_parameters": {"embedding_norm": torch.nn.Identity}}, path)
    with pytest.raises(pickle.UnpicklingError, match="Identity"):
        torch.load(path)
    with warnings.catch_warnings():
        heareval_compat.allow_heareval_checkpoints()
        assert torch.load(path)["epoch"] == 3
    assert os.environ[heareval_compat.WEIGHTS_ONLY_ENV] == "1"


def test_conflicting_weights_only_switch_is_refused(monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(RuntimeError, match="TORCH_FORCE_WEIGHTS_ONLY_LOAD"):
        heareval_compat.allow_heareval_checkpoints()


# ------------------------------------------------------------------ fix 2: hear-eval-kit#432


def _trainer() -> pl.Trainer:
    return pl.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=1
    )


def test_fit_loop_current_epoch_assignment_is_a_noop():
    """The root cause of #432: heareval's epoch hack does nothing on pytorch-lightning >= 1.6."""
    trainer = _trainer()
    trainer.fit_loop.current_epoch = 7
    assert trainer.current_epoch == 0
    heareval_compat.set_trainer_epoch(trainer, 7)
    assert trainer.current_epoch == 7


class _GridPoint:
    def __init__(self, epoch: int):
        self.trainer = _trainer()
        self.epoch = epoch


def test_task_predictions_test_sees_the_best_epoch(monkeypatch):
    from heareval.predictions import task_predictions as tp

    seen = []

    def fake_test(
        embedding_path, grid_point, metadata, data_splits, label_to_idx, nlabels, in_memory
    ):
        grid_point.trainer.fit_loop.current_epoch = grid_point.epoch  # heareval's no-op
        seen.append(grid_point.trainer.current_epoch)
        return {"test_score": 1.0}

    monkeypatch.setattr(tp, "task_predictions_test", fake_test)
    heareval_compat.patch_event_test_epoch()
    heareval_compat.patch_event_test_epoch()  # idempotent
    assert tp.task_predictions_test.__wrapped__ is fake_test
    # Called the way heareval's task_predictions calls it: all keywords.
    kwargs = {"metadata": {}, "data_splits": {}, "label_to_idx": {}, "nlabels": 2}
    result = tp.task_predictions_test(
        embedding_path=Path("."), grid_point=_GridPoint(epoch=5), in_memory=True, **kwargs
    )
    assert result == {"test_score": 1.0}
    assert seen == [5]


def test_predict_help_is_heareval_cli():
    out = subprocess.run(
        [sys.executable, "-m", "hear_gram.predict", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in ("--grid-points", "--grid", "--gpus", "--in-memory", "TASK_DIRS"):
        assert option in out


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def predicted(tmp_path_factory) -> Path:
    """Synthetic scene (5-fold) and event tasks at 16 kHz -> embeddings -> predictions."""
    work = tmp_path_factory.mktemp("e2e")
    tasks, embeddings = work / "tasks", work / "embeddings"
    synthetic_tasks.make_scene_task(tasks, sample_rates=(16000,))
    synthetic_tasks.make_event_task(tasks, sample_rates=(16000,))
    run_module(
        [
            "heareval.embeddings.runner",
            MODULE,
            "--tasks-dir",
            str(tasks),
            "--embeddings-dir",
            str(embeddings),
        ],
        cwd=work,
        log=work / "embeddings.log",
    )
    task_dirs = sorted(str(p) for p in (embeddings / MODULE).iterdir())
    # "fast" is the quickest grid that learns here: "faster" draws lr=1e-4 with patience 1
    # and stops at chance. One grid point; heareval seeds its grid shuffle, so this is fixed.
    run_module(
        ["hear_gram.predict", *task_dirs, "--grid", "fast", "--grid-points", "1"],
        cwd=work,
        log=work / "predict.log",
    )
    return embeddings


def _scores(embeddings: Path, task: str) -> dict:
    return json.loads((embeddings / MODULE / task / scores.SCORES_FILE).read_text())


@pytest.mark.slow
def test_end_to_end_scene_kfold(predicted):
    result = _scores(predicted, "hear-gram-demo-scene")
    folds = [f"fold{i:02d}" for i in range(5)]
    assert [k for k in result if k.startswith("fold")] == folds
    assert result["aggregated_scores"]["test_top1_acc_mean"] > 2 * (1 / 5)
    for fold in folds:
        assert 0.0 <= result[fold]["test_top1_acc"] <= 1.0
        assert (predicted / MODULE / "hear-gram-demo-scene" / f"{fold}.predictions.pkl").exists()
    assert (predicted / MODULE / "hear-gram-demo-scene" / "prediction-done.json").exists()


@pytest.mark.slow
def test_end_to_end_event_uses_best_epoch_postprocessing(predicted):
    result = _scores(predicted, "hear-gram-demo-event")
    test = result["test"]
    # Without the #432 fix this run dies with a KeyError before writing the file.
    grid = synthetic_tasks.EVENT_POSTPROCESSING_GRID
    postprocessing = dict(result["postprocessing"])
    assert postprocessing["median_filter_ms"] in grid["median_filter_ms"]
    assert postprocessing["min_duration"] in grid["min_duration"]
    assert 0.0 < test["test_event_onset_200ms_fms"] <= 1.0
    assert test["test_segment_1s_er"] >= 0.0
    assert isinstance(test["epoch"], int)


@pytest.mark.slow
def test_end_to_end_score_table(predicted):
    rows = scores.collect_scores(predicted)
    assert [(r["task"], r["metric"], r["n_folds"]) for r in rows] == [
        ("hear-gram-demo-event", "event_onset_200ms_fms", 1),
        ("hear-gram-demo-event", "segment_1s_er", 1),
        ("hear-gram-demo-scene", "top1_acc", 5),
    ]
    scene = _scores(predicted, "hear-gram-demo-scene")["aggregated_scores"]
    assert rows[2]["mean"] == pytest.approx(scene["test_top1_acc_mean"])
    assert rows[2]["std"] == pytest.approx(scene["test_top1_acc_std"])
    table = scores.format_table(rows)
    assert "hear-gram-demo-scene" in table and "top1_acc" in table


@pytest.mark.slow
def test_end_to_end_writes_nothing_outside_the_embeddings(predicted):
    work = predicted.parent
    assert sorted(p.name for p in work.iterdir()) == [
        "embeddings",
        "embeddings.log",
        "predict.log",
        "tasks",
    ]
