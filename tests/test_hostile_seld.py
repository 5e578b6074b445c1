"""Hostile inputs to the SELD tools (scorer and evaluator): malformed or absurd label files, task
directories and options end in one line, exit 2; names from data never escape; caches follow
their inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from localization_tasks.seld import evaluate, synth
from localization_tasks.seld.features import Features, check_timestamp_embeddings
from localization_tasks.seld.labels import Row, polar_to_unit
from localization_tasks.seld.task import write_labels
from tests.hostile import assert_clean_failure, run_cli, snapshot

SCORE = ["localization_tasks.seld.score"]


def _dirs(tmp_path, ref: str, pred: str, pred_name: str = "a.csv"):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref" / "a.csv").write_text(ref)
    (tmp_path / "pred" / pred_name).write_text(pred)
    return ["--ref-dir", str(tmp_path / "ref"), "--pred-dir", str(tmp_path / "pred")]


@pytest.mark.hostile("nonfinite")
def test_score_refuses_nan_direction(tmp_path):
    res = run_cli(SCORE + _dirs(tmp_path, "0,0,0,0,0\n", "0,0,0,nan,0,0\n"))
    assert_clean_failure(res, "a.csv:1", "finite")


@pytest.mark.hostile("bomb")
def test_score_refuses_absurd_frame_index(tmp_path):
    res = run_cli(SCORE + _dirs(tmp_path, "0,0,0,0,0\n", "999999999999,0,0,1,0,0\n"))
    assert_clean_failure(res, "frame")


@pytest.mark.hostile("crash")
def test_score_refuses_prediction_without_reference(tmp_path):
    res = run_cli(SCORE + _dirs(tmp_path, "0,0,0,0,0\n", "0,0,0,1,0,0\n", pred_name="b.csv"))
    assert_clean_failure(res, "without a reference", "b.csv")


# --- the evaluator ------------------------------------------------------------------------------

EVALUATE = ["localization_tasks.seld.evaluate"]


def _task(root: Path, events: dict | None = None, seld: dict | None = None) -> Path:
    """A label-only SELD task (train fold01, valid fold02, test fold03; one clip each): enough for
    every check the evaluator runs before it reads audio."""
    task = root / "tasks" / "t"
    rows = [Row(f, 0, 0, polar_to_unit(30, 0), None, (30, 0)) for f in range(5)]
    labels = {s: {"c.wav": rows} for s in ("fold01", "fold02", "fold03")}
    durations = {s: {"c.wav": 1.0} for s in labels}
    folds = {"train": ["fold01"], "valid": ["fold02"], "test": ["fold03"]}
    meta = {"task_name": "t", "seld": {"official_folds": folds} if seld is None else seld}
    write_labels(task, meta, ["a"], labels, durations)
    if events is not None:
        (task / "fold01.json").write_text(json.dumps(events))
    return task


def _evaluate_fails(capsys, argv: list[str], *needles: str) -> None:
    """In-process main(): exit 2 with one `...: error:` line naming the needles (an unexpected
    exception would propagate and fail the test)."""
    try:
        code = evaluate.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[-1].startswith("python -m localization_tasks.seld.evaluate: error:")
    for n in needles:
        assert n.lower() in err[-1].lower(), (n, err[-1])


def _args(tmp_path, *extra: str) -> list[str]:
    return ["--tasks-dir", str(tmp_path / "tasks"), "--out", str(tmp_path / "out"),
            "--baseline", "zero", "--quiet", *extra]  # fmt: skip


@pytest.mark.hostile("crash")
def test_evaluate_refuses_missing_tasks_dir(tmp_path):
    res = run_cli(EVALUATE + _args(tmp_path))
    assert_clean_failure(res, "--tasks-dir", "not a directory")


@pytest.mark.hostile("path")
def test_evaluate_refuses_clip_name_escaping_the_task(tmp_path):
    """A clip name `../../x.wav` in a split file must not be read or written outside; the task
    and everything beside it stay unchanged."""
    _task(tmp_path, events={"../../x.wav": []})
    before = snapshot(tmp_path / "tasks")
    res = run_cli(EVALUATE + _args(tmp_path))
    assert_clean_failure(res, "../../x.wav")
    assert snapshot(tmp_path / "tasks") == before and not (tmp_path / "x.wav").exists()


@pytest.mark.hostile("nonfinite")
def test_evaluate_refuses_nan_direction(tmp_path, capsys):
    bad = {"c.wav": [{"label": "a", "start": 0, "end": 100, "direction": [float("nan"), 0]}]}
    _task(tmp_path, events=bad)
    _evaluate_fails(capsys, _args(tmp_path), "fold01.json", "NaN")


@pytest.mark.hostile("crash")
def test_evaluate_refuses_task_without_official_folds(tmp_path, capsys):
    _task(tmp_path, seld={"folds": {"train": ["fold01"], "test": ["fold03"]}})
    _evaluate_fails(capsys, _args(tmp_path), "official_folds")


@pytest.mark.hostile("crash")
def test_evaluate_without_valid_split_needs_two_training_clips(tmp_path, capsys):
    """No validation split (as STARSS23, TAU 2018): one training clip cannot be split."""
    _task(tmp_path, seld={"official_folds": {"train": ["fold01"], "test": ["fold03"]}})
    _evaluate_fails(capsys, _args(tmp_path), "no validation split", "at least 2")


@pytest.mark.hostile("path")
def test_evaluate_refuses_split_name_escaping(tmp_path, capsys):
    folds = {"train": ["../../fold01"], "valid": ["fold02"], "test": ["fold03"]}
    _task(tmp_path, seld={"official_folds": folds})
    _evaluate_fails(capsys, _args(tmp_path), "../../fold01")


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--epochs", "0"], "epochs"),
        (["--lr", "nan"], "lr"),
        (["--module", "no_such_module_xyz"], "no_such_module_xyz"),
        (["--module", "localization_tasks.seld.intensity_module", "--model-options", "{"], "JSON"),
        (["--module", "localization_tasks.seld.intensity_module", "--name", "../up"], "../up"),
    ],
)
def test_evaluate_refuses_bad_options(tmp_path, capsys, extra, needle):
    _task(tmp_path)
    _evaluate_fails(capsys, _args(tmp_path, *extra), needle)


@pytest.mark.hostile("nonfinite")
def test_evaluate_refuses_nonfinite_embeddings():
    ts = np.array([50.0, 150.0])
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_timestamp_embeddings(np.array([[0.0], [np.nan]]), ts, "m")
    with pytest.raises(ValueError, match="not increasing"):
        check_timestamp_embeddings(np.zeros((2, 1)), ts[::-1].copy(), "m")


@pytest.mark.hostile("stale")
def test_embedding_cache_key_follows_the_weights_file(tmp_path):
    """Same module, path and options, new weights in the file: a new cache key (else the cache
    would serve the old model's embeddings)."""
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"one")
    a = Features("module", "m", str(w), {}, tmp_path).tag()
    w.write_bytes(b"two")
    b = Features("module", "m", str(w), {}, tmp_path).tag()
    w.write_bytes(b"one")
    assert a != b and Features("module", "m", str(w), {}, tmp_path).tag() == a


@pytest.mark.hostile("path")
def test_synth_refuses_source_clip_name_escaping(tmp_path, capsys):
    """A HEAR task given as --sources whose split file names `../../x.wav`: refused, one line."""
    src = tmp_path / "src"
    (src / "16000" / "s").mkdir(parents=True)
    (src / "task_metadata.json").write_text(json.dumps({"splits": ["s"]}))
    (src / "labelvocabulary.csv").write_text("idx,label\n0,a\n")
    (src / "s.json").write_text(json.dumps({"../../x.wav": ["a"]}))
    code = synth.main(["--out", str(tmp_path / "out"), "--sources", str(src), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "../../x.wav" in err[0] and err[0].startswith("python -m localization_tasks.seld.synth")
