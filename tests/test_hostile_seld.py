"""Hostile inputs to the SELD tools: malformed or absurd label files end in one line, exit 2."""

from __future__ import annotations

import pytest

from tests.hostile import assert_clean_failure, run_cli

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
