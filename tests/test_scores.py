"""hear_gram.scores on hand-written files in heareval 2021.1.3's output format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hear_gram.scores import ScoresError, collect_scores, format_table


def _task(root: Path, module: str, name: str, evaluation: list[str], scores: dict) -> None:
    task = root / module / name
    task.mkdir(parents=True)
    (task / "task_metadata.json").write_text(
        json.dumps({"task_name": name, "evaluation": evaluation})
    )
    (task / "test.predicted-scores.json").write_text(json.dumps(scores))


@pytest.fixture
def embeddings(tmp_path) -> Path:
    folds = {
        f"fold0{i}": {"test_score": acc, "test_top1_acc": acc, "epoch": 3}
        for i, acc in enumerate([0.5, 0.7, 0.9])
    }
    _task(
        tmp_path,
        "m",
        "scene",
        ["top1_acc"],
        {
            **folds,
            "aggregated_scores": {"test_top1_acc_mean": 0.7},
            "hparams": {"lr": 0.001},
            "postprocessing": [],
            "score_mode": "max",
        },
    )
    _task(
        tmp_path,
        "m",
        "event",
        ["event_onset_200ms_fms", "segment_1s_er"],
        {
            "test": {
                "test_score": 0.4,
                "test_event_onset_200ms_fms": 0.4,
                "test_segment_1s_er": 0.8,
            },
            "hparams": {},
            "postprocessing": [["median_filter_ms", 250]],
            "score_mode": "max",
        },
    )
    return tmp_path


def test_collect_scores(embeddings):
    rows = collect_scores(embeddings)
    assert [(r["module"], r["task"], r["metric"], r["n_folds"], r["better"]) for r in rows] == [
        ("m", "event", "event_onset_200ms_fms", 1, "higher"),
        ("m", "event", "segment_1s_er", 1, "lower"),
        ("m", "scene", "top1_acc", 3, "higher"),
    ]
    assert rows[0]["mean"] == 0.4 and rows[0]["std"] == 0.0
    assert rows[2]["mean"] == pytest.approx(0.7)
    assert rows[2]["std"] == pytest.approx(0.2)  # sample std, as heareval's aggregated scores


def test_collect_scores_from_a_task_dir(embeddings):
    assert [r["metric"] for r in collect_scores(embeddings / "m" / "scene")] == ["top1_acc"]
    assert collect_scores(embeddings / "nothing-here") == []


def test_format_table(embeddings):
    lines = format_table(collect_scores(embeddings)).splitlines()
    assert lines[0].split() == ["module", "task", "metric", "mean", "std", "folds", "better"]
    assert lines[-1].split() == ["m", "scene", "top1_acc", "0.7000", "0.2000", "3", "higher"]
    assert len(lines) == 2 + 3


# ------------------------------------------------------------------ hostile score files


@pytest.mark.hostile("nonfinite")
@pytest.mark.parametrize(
    ("value", "shown"),
    [("NaN", "nan"), ("Infinity", "inf"), ("true", "True"), ('"0.9"', "'0.9'"), ("null", "None"),
     ("[0.9]", "[0.9]"), ("{}", "{}")],
)  # fmt: skip
def test_a_score_that_is_not_a_finite_number_is_refused_naming_the_file(tmp_path, value, shown):
    """Python's json reads NaN, Infinity, true and "0.9" happily, and float() turns each into a
    plausible table cell; every one is refused, the file and the fold named."""
    task = tmp_path / "m" / "scene"
    task.mkdir(parents=True)
    (task / "task_metadata.json").write_text(json.dumps({"evaluation": ["top1_acc"]}))
    (task / "test.predicted-scores.json").write_text(
        '{"fold00": {"test_score": 0.5, "test_top1_acc": 0.5},'
        f' "fold01": {{"test_score": 0.5, "test_top1_acc": {value}}}}}'
    )
    with pytest.raises(ScoresError) as e:
        collect_scores(tmp_path)
    assert str(task / "test.predicted-scores.json") in str(e.value)
    assert f"fold01.test_top1_acc is {shown}" in str(e.value)


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    ("scores", "metadata", "needle"),
    [
        ("[" * 100_000 + "]" * 100_000, {}, "nests too deep"),
        ('{"fold00": {"test_score": 1}}', {"evaluation": "top1_acc"}, "not a list"),
        ('{"fold00": {"test_score": 1}}', {"task_name": 5}, "task_name is 5"),
        ('{"fold00": {"test_score": 1}}', {"evaluation": ["top1_acc"]}, "lacks test_top1_acc"),
    ],
)  # fmt: skip
def test_broken_heareval_files_are_refused_in_one_line(tmp_path, capsys, scores, metadata, needle):
    from hear_gram.scores import main

    task = tmp_path / "m" / "t"
    task.mkdir(parents=True)
    (task / "task_metadata.json").write_text(json.dumps(metadata))
    (task / "test.predicted-scores.json").write_text(scores)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m hear_gram.scores: error:")
    assert needle in err[0]
