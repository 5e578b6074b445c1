"""hear_gram.heareval_compat and hear_gram.predict: one regression test per heareval breakage,
then the real HEAR tools end to end on synthetic tasks with a trivial spectral module."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from hear_gram import heareval_compat, predict, scores, synthetic_tasks
from tests.conftest import run_module

MODULE = "tests.fixtures.spectral_module"


# ------------------------------------------------------------------ fix 1: torch.load


def test_heareval_checkpoints_need_the_weights_only_switch(tmp_path, monkeypatch):
    # setenv first so that monkeypatch restores the variables' absence afterwards: the switch
    # set below must not leak into later tests (Lightning loads would stop being weights-only)
    for var in (heareval_compat.WEIGHTS_ONLY_ENV, "TORCH_FORCE_WEIGHTS_ONLY_LOAD"):
        monkeypatch.setenv(var, "0")
        monkeypatch.delenv(var)
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


@pytest.mark.parametrize(
    "args",
    [["t1"],
     ["t1", "t2", "--grid-points", "3", "--in-memory", "no", "--deterministic", "F",
      "--grid", "fast", "--shuffle", "yes", "--gpus", "[0]"],
     ["t1", "--in-memory", "1", "--deterministic", "off", "--shuffle", "True", "--grid", "faster"]],
)  # fmt: skip
def test_predict_parses_heareval_options_as_heareval_does(args):
    """Every option of heareval's own runner, spelled as click accepts it, gives the value
    heareval's click command parses (the independent reference); `--gpus` defaults to None here
    and is filled in as heareval's default when run."""
    from heareval.predictions.runner import runner

    reference = runner.make_context("runner", list(args)).params
    ours = vars(predict.build_parser().parse_args(args))
    assert set(reference) <= set(ours)
    for name, value in reference.items():
        if name == "gpus" and "--gpus" not in args:
            assert ours[name] is None
        else:
            assert ours[name] == (list(value) if isinstance(value, tuple) else value), name


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
    # Relative task paths from the working directory: heareval's CSVLogger would put its logs
    # and checkpoints under ./logs/embeddings/... there.
    task_dirs = sorted(str(p.relative_to(work)) for p in (embeddings / MODULE).iterdir())
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
def test_predict_output_is_one_bar_per_task_then_the_table(predicted):
    # bytes, not read_text: universal newlines would turn tqdm's "\r" redraws into lines
    out = (predicted.parent / "predict.log").read_bytes().decode()
    lines = out.rstrip("\n").split("\n")  # tqdm redraws a bar with "\r": one line per bar
    assert len(lines) == 2 + 5 + 1, out[-3000:]  # two bars, the table (3 rows), where logs are
    # fits and tests counted by hand: scene 5 folds, 1 grid point: 1 + 4 trainings + 5 tests;
    # event trainvaltest: 1 training + 1 test
    assert "hear-gram-demo-scene: 100%" in out and "10/10" in out
    assert "hear-gram-demo-event: 100%" in out and " 2/2 " in out
    assert "Profiler Report" not in out and "Epoch" not in out
    table = lines[lines.index(next(ln for ln in lines if ln.startswith("module"))) :]
    assert [ln.split()[2] for ln in table[2:5]] == ["event_onset_200ms_fms", "segment_1s_er",
                                                   "top1_acc"]  # fmt: skip
    for task in ("hear-gram-demo-scene", "hear-gram-demo-event"):
        full = (predicted / MODULE / task / predict.OUTPUT_LOG).read_text()
        assert "FIT Profiler Report" in full  # heareval's profiler, in the task's log


@pytest.mark.slow
def test_predict_keeps_lightning_logs_in_the_task_and_no_checkpoints(predicted):
    for task in ("hear-gram-demo-scene", "hear-gram-demo-event"):
        logs = predicted / MODULE / task / "lightning_logs"
        assert sorted(p.name for p in logs.glob("version_*/metrics.csv"))
        assert not list(logs.rglob("*.ckpt"))


def test_checkpoints_are_deleted_once_tested_unless_kept(tmp_path, monkeypatch):
    class GridPoint:
        def __init__(self, path):
            self.model_path = str(path)

    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "epoch=3.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x" * 10)
    seen = []

    def fake_test(embedding_path, grid_point, **kwargs):
        seen.append(Path(grid_point.model_path).exists())  # still there while testing
        return {"test_score": 1.0}

    monkeypatch.setattr(predict._Hooks, "keep_checkpoints", True)
    monkeypatch.setattr(predict._Hooks, "task", tmp_path)  # every checkpoint made in this run
    monkeypatch.setattr(predict._Hooks, "before", frozenset())
    wrapped = predict._step(fake_test, delete_checkpoint=True)
    wrapped(embedding_path=tmp_path, grid_point=GridPoint(ckpt))
    assert ckpt.exists()
    monkeypatch.setattr(predict._Hooks, "keep_checkpoints", False)
    assert wrapped(tmp_path, GridPoint(ckpt)) == {"test_score": 1.0}
    assert seen == [True, True] and not ckpt.exists()
    # the untested grid points' checkpoints go when the task is done; other files stay
    other = ckpt.with_name("epoch=1.ckpt")
    other.write_bytes(b"y" * 7)
    (ckpt.parent.parent / "metrics.csv").write_text("epoch\n")
    assert predict.remove_checkpoints(tmp_path) == 7
    assert not ckpt.parent.exists() and (ckpt.parent.parent / "metrics.csv").exists()


@pytest.mark.slow
def test_end_to_end_writes_nothing_outside_the_embeddings(predicted):
    work = predicted.parent
    assert sorted(p.name for p in work.iterdir()) == [
        "embeddings",
        "embeddings.log",
        "predict.log",
        "tasks",
    ]
