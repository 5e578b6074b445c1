"""The suite's uncertainty: per-fold rows in results.csv, "mean ± sd (n=N)" cells, the paired
t-test between models, `--seeds`, and figures with error bars.

The tools' subprocesses are replaced by fakes that write, by hand, the files those tools write:
heareval's `test.predicted-scores.json` (per-fold test scores) for the HEAR units, and
`localization_tasks.evaluate`'s results.json (per-fold figures per seed) for the spatial ones.
Every expected number is computed here, with numpy and scipy, from the hand-written values.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from scipy import stats as scipy_stats

from hear_gram.suite.__main__ import main as suite_main
from hear_gram.suite.condition import UnitError
from hear_gram.suite.conditions.hear import hear_figure
from hear_gram.suite.conditions.spatial import error_vs_bins

MODELS = """
[[model]]
name = "m1"
module = "fake_module_one"

[[model]]
name = "m2"
module = "fake_module_two"
"""
BROKEN = '\n[[model]]\nname = "broken"\nmodule = "fake_module_three"\n'

# heareval's per-fold test scores, by hand: task a, m1 clearly above m2 on every fold; task b,
# differences of either sign (noise); task c, one train/valid/test split (n = 1).
TOP1 = {
    ("m1", "a"): {"fold00": 0.80, "fold01": 0.78, "fold02": 0.83, "fold03": 0.79, "fold04": 0.81},
    ("m2", "a"): {"fold00": 0.61, "fold01": 0.60, "fold02": 0.64, "fold03": 0.58, "fold04": 0.62},
    ("m1", "b"): {"fold00": 0.52, "fold01": 0.47, "fold02": 0.55, "fold03": 0.45, "fold04": 0.51},
    ("m2", "b"): {"fold00": 0.49, "fold01": 0.53, "fold02": 0.50, "fold03": 0.48, "fold04": 0.52},
    ("m1", "c"): {"test": 0.70},
    ("m2", "c"): {"test": 0.65},
}
MAP_A = {"m1": 0.41, "m2": 0.44}  # task a's second metric (every fold): not the primary one


SEED_STEP = 0.01
PREDICT_CALLS: list[tuple[str, str, str]] = []  # (model, task, --seed or "") of the fake's calls


def _model(log_file: Path) -> str:
    return log_file.parent.parent.parent.name  # WORK/units/<model>/<condition>/<task>/unit.log


def fake_hear_tools(cmd: list[str], log_file: Path, step: str) -> None:
    """hear_gram.embed does nothing; hear_gram.predict writes heareval's JSON by hand."""
    model = _model(log_file)
    if model == "broken":
        raise UnitError(f"{step} exited 1: broken on purpose")
    if step != "hear_gram.predict":
        return
    emb = Path(cmd[3])
    task = emb.name
    metrics = ["top1_acc", "mAP"] if task == "a" else ["top1_acc"]
    emb.mkdir(parents=True, exist_ok=True)
    (emb / "task_metadata.json").write_text(json.dumps({"task_name": task, "evaluation": metrics}))
    scores: dict = {}
    # hear_gram.predict --seed S (--seeds): the scores move by SEED_STEP per seed above 42
    shift = SEED_STEP * (int(cmd[cmd.index("--seed") + 1]) - 42) if "--seed" in cmd else 0.0
    PREDICT_CALLS.append((model, task, cmd[cmd.index("--seed") + 1] if "--seed" in cmd else ""))
    for fold, value in TOP1[(model, task)].items():
        value = value + shift
        scores[fold] = {"test_top1_acc": value, "test_score": value, "validation_score": 0.5,
                        "epoch": 3, **({"test_mAP": MAP_A[model]} if task == "a" else {})}  # fmt: skip
    scores["hparams"] = {"lr": 0.001}
    scores["aggregated_scores"] = {"test_score_mean": 0.0}  # not a fold: no test_score
    (emb / "test.predicted-scores.json").write_text(json.dumps(scores))


@pytest.fixture
def hear_run(tmp_path, monkeypatch):
    return _hear_run(tmp_path, monkeypatch)


def _hear_run(tmp_path, monkeypatch, *extra: str) -> Path:
    PREDICT_CALLS.clear()
    monkeypatch.setattr("hear_gram.suite.conditions.hear.run_logged", fake_hear_tools)
    # the fake modules load nowhere: their rate is the tasks' own, so no resampling is asked
    monkeypatch.setattr("hear_gram.suite.probe.sample_rate", lambda resolved, settings: 16000)
    monkeypatch.setattr("hear_gram.suite.rates.ensure_rate", lambda root, *args: root)
    tasks = tmp_path / "tasks"
    for name in "abc":
        (tasks / name).mkdir(parents=True)
        (tasks / name / "task_metadata.json").write_text(json.dumps({"task_name": name}))
    models = tmp_path / "models.toml"
    models.write_text(MODELS + BROKEN)
    code = suite_main(["--models", str(models), "--tasks-dir", str(tasks), "--out",
                       str(tmp_path / "w"), "--conditions", "dry", "--quiet", "--no-probe", *extra])  # fmt: skip
    assert code == 1  # broken's units failed
    return tmp_path / "w"


def _csv(work: Path) -> list[dict]:
    with open(work / "report" / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _cell(values, digits: int = 1, scale: float = 1.0) -> str:
    v = np.asarray(values, dtype=float) * scale
    sd = f" ± {np.std(v, ddof=1):.{digits}f}" if len(v) > 1 else ""
    return f"{np.mean(v):.{digits}f}{sd} (n={len(v)})"


def test_per_fold_rows_equal_heareval_json_and_seconds_come_from_the_unit_record(hear_run):
    rows = _csv(hear_run)
    ok = [r for r in rows if r["status"] == "ok"]
    for (model, task), folds in TOP1.items():
        mine = [r for r in ok if (r["model"], r["task"], r["metric"]) == (model, task, "top1_acc")]
        per_fold = {r["fold"]: float(r["mean"]) for r in mine if r["fold"]}
        assert per_fold == folds  # the JSON's values, fold by fold, nothing else
        assert all(r["seed"] == "" and r["folds"] == "1" for r in mine if r["fold"])
        (agg,) = [r for r in mine if r["fold"] == ""]
        values = list(folds.values())
        assert float(agg["mean"]) == pytest.approx(np.mean(values))
        assert int(agg["folds"]) == len(values)
        if len(values) > 1:
            assert float(agg["std"]) == pytest.approx(np.std(values, ddof=1))
    # the second metric of task a: its own per-fold rows
    maps = [r for r in ok if r["metric"] == "mAP" and r["fold"] and r["model"] == "m2"]
    assert [float(r["mean"]) for r in maps] == [MAP_A["m2"]] * 5
    # the aggregate row comes first per unit (the report reads its first row as the primary)
    first = next(r for r in ok if (r["model"], r["unit"]) == ("m1", "a"))
    assert (first["metric"], first["fold"]) == ("top1_acc", "")
    for r in rows:
        if r["status"] == "missing":
            continue
        name = "result.json" if r["status"] == "ok" else "failed.json"
        record = json.loads(
            (hear_run / "units" / r["model"] / "dry" / r["unit"] / name).read_text()
        )
        assert float(r["seconds"]) == round(record["seconds"], 1) >= 0


def test_one_seed_is_heareval_own_run_and_seeds_2_trains_42_and_43_on_every_fold(tmp_path, monkeypatch):  # fmt: skip
    """Without --seeds, hear_gram.predict gets no --seed (heareval's own 42); with --seeds 2 it
    runs once with --seed 42 and once with 43 per unit, each seed's scores kept, and the rows are
    seeds x folds: the aggregate their mean and sd (n = 10 on a 5-fold task)."""
    _hear_run(tmp_path / "one", monkeypatch)
    assert sorted(PREDICT_CALLS) == [(m, t, "") for m in ("m1", "m2") for t in "abc"]
    work = _hear_run(tmp_path / "two", monkeypatch, "--seeds", "2")
    assert sorted(PREDICT_CALLS) == [(m, t, s) for m in ("m1", "m2") for t in "abc"
                                     for s in ("42", "43")]  # fmt: skip
    rows = [r for r in _csv(work) if r["status"] == "ok" and r["metric"] == "top1_acc"]
    for (model, task), folds in TOP1.items():
        mine = [r for r in rows if (r["model"], r["task"]) == (model, task)]
        expected = {
            (str(s), f): v + SEED_STEP * (s - 42) for s in (42, 43) for f, v in folds.items()
        }
        assert {(r["seed"], r["fold"]): float(r["mean"]) for r in mine if r["fold"]} == (
            pytest.approx(expected))  # fmt: skip
        (agg,) = [r for r in mine if not r["fold"]]
        values = list(expected.values())
        assert float(agg["mean"]) == pytest.approx(np.mean(values))
        assert float(agg["std"]) == pytest.approx(np.std(values, ddof=1))
        assert int(agg["folds"]) == len(values) == 2 * len(folds)
        unit = work / "embeddings" / "dry" / task
        # m1 and m2 (broken fails at its embedding): two kept scores each
        assert len(list(unit.rglob("test.predicted-scores.seed4[23].json"))) == 2 * 2
    report = (work / "report" / "REPORT.md").read_text()
    a1 = [v + SEED_STEP * d for d in (0, 1) for v in TOP1[("m1", "a")].values()]
    assert f"| a | {_cell(a1, 1, 100)} |" in report and "(n=10)" in report
    assert "seed k of `--seeds` makes that call seed with 42 + k" in report


def test_report_cells_carry_sd_and_n_and_the_paired_test_agrees_with_scipy(hear_run):
    report = (hear_run / "report" / "REPORT.md").read_text()
    for task in "abc":
        cells = [_cell(list(TOP1[(m, task)].values()), 1, 100) for m in ("m1", "m2")]
        assert f"| {task} | {cells[0]} | {cells[1]} | failed |" in report
    assert "| a | 80.2 ± 1.9 (n=5) |" in report  # one cell worked out by hand, too

    def line(task: str) -> str:
        return next(ln for ln in report.splitlines() if ln.startswith(f"| dry | {task} | mono |"))

    for task, verdict in (("a", "m1 better"), ("b", "noise")):
        a, b = (np.array(list(TOP1[(m, task)].values())) for m in ("m1", "m2"))
        p = scipy_stats.ttest_rel(a, b).pvalue
        assert (p < 0.05) == (task == "a")  # the hand-written data are what they claim
        d = a - b
        assert line(task) == (f"| dry | {task} | mono | top1_acc | m1 vs m2 | {d.mean():+.3g} ± "
                              f"{d.std(ddof=1):.2g} | 5 | {p:.3g} | {verdict} |")  # fmt: skip
    assert line("c").endswith("| 1 | - | n too small |")
    assert not any("| mAP |" in ln for ln in report.splitlines())  # the primary metric only
    assert "paired t-test (scipy.stats.ttest_rel, two-sided, alpha = 0.05)" in report
    # averages: mean ± sd over the 3 tasks; m2's difference from the best (m1) over the tasks
    means = {m: np.array([np.mean(list(TOP1[(m, t)].values())) for t in "abc"]) for m in ("m1", "m2")}  # fmt: skip
    p = scipy_stats.ttest_rel(means["m2"], means["m1"]).pvalue
    assert p >= 0.05  # one clear task of three: noise over tasks
    assert f"| m1 | {_cell(means['m1'], 1, 100)} |" in report
    assert f"| m2 | {_cell(means['m2'], 1, 100)} ≈ |" in report


def test_hear_figure_has_sd_error_bars_shared_y_outside_legend_and_failed_marks(hear_run):
    rows = json.loads((hear_run / "report" / "results.json").read_text())
    fig = hear_figure(rows, ["dry"], ["m1", "m2", "broken"])
    axes = fig.axes
    assert len(axes) == 3 and all(axes[0].get_shared_y_axes().joined(axes[0], ax) for ax in axes)
    for ax, model in zip(axes[:2], ("m1", "m2"), strict=True):
        (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
        segments = bars.errorbar.lines[2][0].get_segments()  # one vertical line per bar
        for seg, task in zip(segments, "ab", strict=False):
            values = 100 * np.array(list(TOP1[(model, task)].values()))
            assert seg[:, 1] == pytest.approx(
                [values.mean() - values.std(ddof=1), values.mean() + values.std(ddof=1)]
            )
        assert not [ln for ln in ax.lines if ln.get_marker() == "x"]  # nothing failed here
    fig.draw_without_rendering()
    for ax in axes[:2]:
        assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    broken = axes[2]
    assert not broken.containers  # no bar of a unit that failed
    assert len([ln for ln in broken.lines if ln.get_marker() == "x"]) == 3
    assert [t.get_text() for t in broken.texts] == ["failed"] * 3


# ------------------------------------------------------------------ --seeds: localization

# localization_tasks.evaluate's figures by hand, per model and seed: per test fold, and pooled
# over the test clips of all folds (not their mean: the aggregate must take the pooled one).
LOC = {
    ("fake_module_one", 0): ([10.0, 12.0, 14.0], 12.5),
    ("fake_module_one", 1000): ([11.0, 13.0, 16.0], 13.5),
    ("fake_module_two", 0): ([20.0, 25.0, 22.0], 22.0),
    ("fake_module_two", 1000): ([21.0, 24.0, 27.0], 24.5),
}
TASK = "src-loc-binaural-clean"


def fake_evaluator(calls: list):
    def run(cmd: list[str], log_file: Path, step: str) -> None:
        from localization_tasks.evaluate import module_tag

        arg = {k: cmd[cmd.index(k) + 1] for k in ("--module", "--seed", "--out", "--model-options")}
        calls.append((_model(log_file), int(arg["--seed"])))
        folds, pooled = LOC[(arg["--module"], int(arg["--seed"]))]
        out = Path(arg["--out"]) / module_tag(arg["--module"], "", json.loads(arg["--model-options"]))  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        entry = {"task": TASK, "snr_bin": "clean", "mean_angular_error_deg": pooled,
                 "folds": [{"test": [f"fold0{i}"], "valid": [f"fold0{(i + 1) % 3}"],
                            "mean_angular_error_deg": v} for i, v in enumerate(folds)]}  # fmt: skip
        (out / "results.json").write_text(json.dumps({"tasks": [entry]}))
        (out / "error_vs_snr.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # the evaluator's own plot

    return run


@pytest.fixture
def loc_run(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr("hear_gram.suite.conditions.spatial.run_logged", fake_evaluator(calls))
    given = tmp_path / "loc" / TASK
    given.mkdir(parents=True)
    (given / "task_metadata.json").write_text(json.dumps({"task_name": TASK, "localization": {
        "source_task": "src", "format": "binaural", "target": "direction", "snr_bin": "clean"}}))  # fmt: skip
    (tmp_path / "tasks").mkdir()
    models = tmp_path / "models.toml"
    models.write_text(re.sub(r'(module = "\w+"\n)', r'\1formats = ["binaural"]\n', MODELS))

    def run(work: str, *extra: str) -> Path:
        code = suite_main(["--models", str(models), "--tasks-dir", str(tmp_path / "tasks"),
                           "--out", str(tmp_path / work), "--conditions", "localization",
                           "--localization-dir", str(tmp_path / "loc"), "--quiet", "--no-probe", *extra])  # fmt: skip
        assert code == 0
        return tmp_path / work

    return run, calls


def test_seeds_repeat_the_training_and_give_seeds_times_folds_rows(loc_run):
    run, calls = loc_run
    one = _csv(run("one"))
    assert sorted(calls) == [("m1", 0), ("m2", 0)]
    assert len([r for r in one if r["fold"] and r["model"] == "m1"]) == 3
    work = run("two", "--seeds", "2")
    assert sorted(calls[2:]) == [("m1", 0), ("m1", 1000), ("m2", 0), ("m2", 1000)]
    rows = _csv(work)
    for model, module in (("m1", "fake_module_one"), ("m2", "fake_module_two")):
        per_fold = [r for r in rows if r["model"] == model and r["fold"]]
        assert len(per_fold) == 2 * 3
        expected = {(str(s), f"fold0{i}"): v for s in (0, 1000)
                    for i, v in enumerate(LOC[(module, s)][0])}  # fmt: skip
        assert {(r["seed"], r["fold"]): float(r["mean"]) for r in per_fold} == expected
        (agg,) = [r for r in rows if r["model"] == model and not r["fold"]]
        assert float(agg["mean"]) == pytest.approx(np.mean([LOC[(module, s)][1] for s in (0, 1000)]))  # fmt: skip
        assert float(agg["std"]) == pytest.approx(np.std(list(expected.values()), ddof=1))
        assert agg["folds"] == "6"
    report = (work / "report" / "REPORT.md").read_text()
    m1 = [*LOC[("fake_module_one", 0)][0], *LOC[("fake_module_one", 1000)][0]]
    assert f"| m1 | binaural | src | {np.mean([12.5, 13.5]):.1f} ± {np.std(m1, ddof=1):.1f} (n=6) |" in report  # fmt: skip
    # paired over (seed, fold): lower error is better
    m2 = [*LOC[("fake_module_two", 0)][0], *LOC[("fake_module_two", 1000)][0]]
    p = scipy_stats.ttest_rel(m1, m2).pvalue
    assert p < 0.05
    assert f"| m1 vs m2 | {np.mean(np.subtract(m1, m2)):+.3g} ± " in report
    assert f"| 6 | {p:.3g} | m1 better |" in report
    # each seed's results.json kept; the evaluator's own figures linked from the report
    assert len(list((work / "units" / "m1").rglob("results-seed*.json"))) == 2
    links = re.findall(r"\]\((\.\./units/[^)]+)\)", report)
    assert len(links) == 2 and all((work / "report" / unquote(ln)).is_file() for ln in links)


def test_localization_figure_has_sd_error_bars(loc_run):
    run, _ = loc_run
    work = run("two", "--seeds", "2")
    rows = json.loads((work / "report" / "results.json").read_text())
    rows.append({**rows[0], "model": "m3", "status": "failed", "fold": "", "mean": ""})
    fig = error_vs_bins(rows, "localization", (("snr05-10", "5-10 dB"), ("clean", "clean")), "err")
    (ax,) = fig.axes
    errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(errorbars) == 2  # one line with error bars per model that ran
    for bars, module in zip(errorbars, ("fake_module_one", "fake_module_two"), strict=True):
        values = [*LOC[(module, 0)][0], *LOC[(module, 1000)][0]]
        mean = np.mean([LOC[(module, s)][1] for s in (0, 1000)])
        (segment,) = [s for s in bars.lines[2][0].get_segments() if len(s)]  # the bin with data
        sd = np.std(values, ddof=1)
        assert segment[:, 1] == pytest.approx([mean - sd, mean + sd])
    labels = ax.get_legend_handles_labels()[1]
    assert "m3 / binaural / src: failed" in labels
