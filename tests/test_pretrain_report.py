"""The pretraining report's logic: the comparison rule, the outcome sentences, the markdown and
its figures, on scores written here (the full report runs the HEAR tools: ``make pretrain-report``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hear_gram.pretrain.report import (
    LOC_BINS,
    MODELS,
    Score,
    compare,
    outcome,
    run_config,
    write_report,
)


def acc(mean: float, std: float = 0.02, n: int = 5) -> Score:
    return Score(mean, std, n, higher_is_better=True)


def err(mean: float, std: float = 2.0, n: int = 3) -> Score:
    return Score(mean, std, n, higher_is_better=False)


def test_compare_needs_two_standard_errors():
    se = math.sqrt(2) * 0.02 / math.sqrt(5)  # 0.01265
    assert "within noise" in compare("a", acc(0.80 + 1.9 * se), "b", acc(0.80), "top1")
    assert compare("a", acc(0.80 + 2.1 * se), "b", acc(0.80), "top1").startswith(
        "top1: a is better than b"
    )
    assert compare("a", acc(0.80 - 2.1 * se), "b", acc(0.80), "top1").startswith(
        "top1: b is better than a"
    )
    # lower is better for errors: the smaller error wins
    assert compare("a", err(30.0), "b", err(60.0), "loc", " deg").startswith(
        "loc: a is better than b by 30 deg"
    )
    # a single test split has no spread estimate: stated, never judged
    single = compare("a", acc(0.95, 0.0, 1), "b", acc(0.80, 0.0, 1), "x")
    assert "single test split" in single and "better" not in single and "within" not in single


def test_outcome_covers_every_pair_task_and_bin():
    cls = {
        m: {"scene [dry] top1_acc": acc(v)} for m, v in zip(MODELS, (0.9, 0.9, 0.6), strict=True)
    }
    loc = {m: {**{b: err(v) for b in LOC_BINS}, "t60": Score(0.1, 0.01, 3, False)}
           for m, v in zip(MODELS, (20.0, 40.0, 60.0), strict=True)}  # fmt: skip
    lines = outcome(cls, {"cls": loc, "mean": loc})
    assert len(lines) == 3 * (1 + 2 * (len(LOC_BINS) + 1))
    assert "scene [dry] top1_acc: naturalistic is better than random" in lines[0]
    assert "naturalistic and clean are within noise" in lines[2]
    assert any(
        "direction error, snr05-10 (mean pooling): naturalistic is better than clean" in s
        for s in lines
    )
    assert sum("T60" in s and "within noise" in s for s in lines) == 6


def write_metrics(run_dir, losses):
    version = run_dir / "logs" / "version_0"
    version.mkdir(parents=True)
    rows = [f"{s},{s},{loss}" for s, loss in enumerate(losses)]
    (version / "metrics.csv").write_text("step,global_step,train/loss\n" + "\n".join(rows) + "\n")


def test_report_markdown_tables_and_figures(tmp_path):
    runs = {"naturalistic": run_config("naturalistic", str(tmp_path / "run"))}
    runs["clean"] = run_config("clean", str(tmp_path / "run"))
    assert runs["clean"].out_dir == str(tmp_path / "run") + "-clean"
    assert runs["clean"].clean_ratio == 1.0 and runs["naturalistic"].clean_ratio < 1.0
    nat_ratio = runs["naturalistic"].clean_ratio
    assert runs["clean"].replace(clean_ratio=nat_ratio, out_dir="x") == runs[
        "naturalistic"
    ].replace(out_dir="x")  # the two runs differ only in lambda and where they live
    for cfg in runs.values():
        write_metrics(Path(cfg.out_dir), [2.0 / (1 + s / 10) for s in range(120)])
    cls = {
        m: {"scene [dry] top1_acc": acc(v)} for m, v in zip(MODELS, (0.9, 0.85, 0.6), strict=True)
    }
    loc = {
        m: {b: err(v) for b in LOC_BINS} for m, v in zip(MODELS, (20.0, 40.0, 60.0), strict=True)
    }
    for m in MODELS:
        loc[m]["t60"] = Score(0.1, 0.01, 3, False)
    baselines = {"chance": {b: err(90.0) for b in LOC_BINS}}
    meta = {"date": "today", "seconds": 1.0}
    path = write_report(tmp_path, cls, {"cls": loc}, baselines, runs, meta)
    text = path.read_text()
    assert "| naturalistic | 0.900 ± 0.020 |" in text
    assert "| random (cls) | 60.00 ± 2.00 |" in text
    assert "| chance | 90.00 ± 2.00 | 90.00 ± 2.00 | 90.00 ± 2.00 | 90.00 ± 2.00 | - |" in text
    assert f"lambda = {nat_ratio}" in text
    for png in ("loss.png", "classification.png", "localization.png"):
        assert (tmp_path / png).stat().st_size > 1000 and f"]({png})" in text
    # the chance and baseline rows are shown but not compared
    assert "chance is" not in text and "chance and" not in text


@pytest.mark.parametrize("model", ["naturalistic", "clean"])
def test_run_config_defaults_to_the_demo_run(model):
    cfg = run_config(model)
    assert cfg.out_dir.startswith("work/pretrain/demo-cpu")
    assert (cfg.clean_ratio == 1.0) == (model == "clean")
