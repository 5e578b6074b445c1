"""hear_gram.suite's conditions as plugins: a toy condition defined here (no project file edited)
runs through the real runner, report and unit keys; units rerun when their task's content or
their module's code changes (and only then); a held unit lock keeps a second runner off it."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from hear_gram.cache import task_digest
from hear_gram.safeio import locked
from hear_gram.suite import condition as conditions
from hear_gram.suite.__main__ import main as suite_main
from hear_gram.suite.condition import Condition, UnitInterrupted

CALLS: list[str] = []  # the toy units run, in order
TOY_SCORE = 0.25  # the toy's score is len(task name) + TOY_SCORE (a value set here, by hand)


class Toy(Condition):
    """A condition with no heareval: one unit per task folder, score from the task's name."""

    name = "toy"
    formats = ("mono",)
    better = "lower"
    title = "Toy condition"
    interrupt = False  # raise as Ctrl-C does inside a unit's step

    def plan(self, settings):
        tasks = settings.tasks or sorted(p.name for p in settings.tasks_dir.iterdir())
        return [(t, "mono", "") for t in tasks]

    def task_key(self, unit, settings):
        return task_digest(settings.tasks_dir / unit.task)

    def run(self, unit, resolved, settings, folder):
        CALLS.append(unit.id)
        if self.interrupt:
            raise UnitInterrupted("toy step interrupted")
        return [{"task": unit.task, "format": unit.fmt, "snr_bin": "", "metric": "toy_error",
                 "mean": len(unit.task) + TOY_SCORE, "std": 0.0, "folds": 1, "better": "lower"}]  # fmt: skip


@pytest.fixture
def toy():
    cond = conditions.register(Toy())
    CALLS.clear()
    yield cond
    conditions.unregister("toy")


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Two tasks (metadata + labels JSON), a throwaway HEAR module package on sys.path and a
    models file naming it; `run(*extra)` runs the suite on them with the toy condition."""
    tasks = tmp_path / "tasks"
    for name in ("a", "bb"):
        (tasks / name).mkdir(parents=True)
        (tasks / name / "task_metadata.json").write_text(json.dumps({"task_name": name}))
        (tasks / name / "train.json").write_text(json.dumps({"x.wav": ["dog"]}))
    package = tmp_path / "lib" / "toy_hear_module_for_tests"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("SCALE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    models = tmp_path / "models.toml"
    models.write_text('[[model]]\nname = "m"\nmodule = "toy_hear_module_for_tests"\n')

    def run(*extra: str) -> int:
        return suite_main(["--models", str(models), "--tasks-dir", str(tasks), "--out",
                           str(tmp_path / "w"), "--conditions", "toy", "--quiet", *extra])  # fmt: skip

    return run, tmp_path


def test_a_toy_condition_runs_and_reports_with_no_project_file_edited(toy, tiny):
    run, tmp = tiny
    assert "toy" in conditions.names() and conditions.names()[:2] == ["dry", "nat-binaural"]
    assert run() == 0
    assert sorted(CALLS) == ["m/toy/a", "m/toy/bb"]
    rows = list(csv.DictReader((tmp / "w" / "report" / "results.csv").open()))
    assert [(r["condition"], r["task"], float(r["mean"]), r["status"]) for r in rows] == [
        ("toy", "a", 1.25, "ok"), ("toy", "bb", 2.25, "ok")]  # fmt: skip
    report = (tmp / "w" / "report" / "REPORT.md").read_text()
    assert "## Toy condition" in report
    assert "| m | toy | bb | mono | toy_error | 2.25 (n=1) | ok |" in report  # one fold: no sd
    assert "Units: 2 done, 0 failed, 0 missing" in report
    assert (tmp / "w" / "logs" / "hear_gram-suite.log").is_file()  # the detailed log


def test_a_condition_module_option_registers_a_condition(tiny, tmp_path, monkeypatch):
    run, tmp = tiny
    (tmp / "lib" / "toy_condition_plugin.py").write_text(
        "from hear_gram.suite.condition import register\n"
        "from tests.test_suite_plugins import Toy\n\n"
        "class Plugged(Toy):\n    name = 'plugged'\n    title = 'Plugged in'\n\n"
        "register(Plugged())\n"
    )
    try:
        code = suite_main(["--models", str(tmp / "models.toml"), "--tasks-dir",
                           str(tmp / "tasks"), "--out", str(tmp / "w"), "--condition-module",
                           "toy_condition_plugin", "--conditions", "plugged", "--quiet"])  # fmt: skip
        assert code == 0
        assert "## Plugged in" in (tmp / "w" / "report" / "REPORT.md").read_text()
    finally:
        conditions.unregister("plugged")
        sys.modules.pop("toy_condition_plugin", None)


@pytest.mark.hostile("stale")
def test_one_changed_byte_of_a_tasks_labels_reruns_that_unit_only(toy, tiny):
    run, tmp = tiny
    run()
    run()
    assert sorted(CALLS) == ["m/toy/a", "m/toy/bb"]  # the second run ran nothing
    labels = tmp / "tasks" / "a" / "train.json"
    labels.write_text(labels.read_text().replace("dog", "cat"))  # same path, same size
    run()
    assert CALLS[2:] == ["m/toy/a"]


@pytest.mark.hostile("stale")
def test_one_changed_byte_of_the_modules_code_reruns_its_units(toy, tiny):
    run, tmp = tiny
    run()
    code = tmp / "lib" / "toy_hear_module_for_tests" / "__init__.py"
    code.write_text("SCALE = 2\n")
    run()
    assert sorted(CALLS[2:]) == ["m/toy/a", "m/toy/bb"]


@pytest.mark.hostile("process")
def test_a_held_unit_lock_keeps_a_second_runner_off_that_unit(toy, tiny, capsys):
    run, tmp = tiny
    lock = tmp / "w" / "units" / "m" / "toy" / "a" / "unit.lock"
    with locked(lock):  # another runner is on m/toy/a
        assert run() == 0  # busy is not a failure
        assert CALLS == ["m/toy/bb"]
        assert "1 busy (another run holds them)" in capsys.readouterr().out
    assert not (lock.parent / "failed.json").exists()
    run()
    assert CALLS == ["m/toy/bb", "m/toy/a"]  # free again: run by the next runner


@pytest.mark.hostile("process")
def test_an_interrupted_unit_ends_the_run_with_130_and_is_not_recorded_failed(toy, tiny):
    run, tmp = tiny
    toy.interrupt = True
    assert run("--jobs", "2") == 130
    assert not list((tmp / "w" / "units").rglob("failed.json"))
    toy.interrupt = False
    assert run() == 0 and len(CALLS) == 4  # both ran again


def test_duplicated_task_options_run_once(toy, tiny, capsys):
    run, _ = tiny
    assert run("--task", "a", "--task", "a", "--jobs", "2") == 0
    assert CALLS == ["m/toy/a"]
    assert "suite: 1 units planned" in capsys.readouterr().out


def test_duplicated_spatial_options_plan_each_unit_once(tmp_path):
    from hear_gram.suite.__main__ import build_parser, settings_from
    from hear_gram.suite.config import ModelSpec
    from hear_gram.suite.units import plan

    tasks = tmp_path / "tasks"
    (tasks / "s").mkdir(parents=True)
    (tasks / "s" / "task_metadata.json").write_text("{}")
    args = build_parser().parse_args(
        ["--models", "m.toml", "--tasks-dir", str(tasks), "--out", str(tmp_path / "w"),
         "--conditions", "nat-binaural,localization,localization", "--nat-task", "s",
         "--nat-task", "s", "--localization-source", "s", "--localization-source", "s"]
    )  # fmt: skip
    model = ModelSpec("m", "x", None, {})
    ids = [u.id for u in plan([model], settings_from(args))]
    assert ids == ["m/localization/s-ambisonic", "m/localization/s-binaural",
                   "m/nat-binaural/s"]  # fmt: skip


@pytest.mark.hostile("nonfinite")
def test_a_condition_returning_a_nan_score_fails_its_unit_and_no_cell_shows_it(toy, tiny):
    run, tmp = tiny
    global TOY_SCORE
    saved, TOY_SCORE = TOY_SCORE, float("nan")
    try:
        assert run("--task", "a") == 1
    finally:
        TOY_SCORE = saved
    rows = list(csv.DictReader((tmp / "w" / "report" / "results.csv").open()))
    assert [(r["status"], r["mean"]) for r in rows] == [("failed", "")]
    assert "not a number" in rows[0]["error"]


def test_make_localization_is_a_suite_run_of_the_baselines_chance_and_gram_t(tmp_path):
    """The Makefile target writes its models file and runs the suite on localization and t60:
    the DSP baseline of each format, chance on both, GRAM-T per format only when given (CLS)."""
    from hear_gram.suite.config import load_models
    from tests.conftest import make_recording_python

    work = tmp_path / "work"
    (args,) = make_recording_python(tmp_path, "localization", f"WORK={work}", "TASKS=tasks",
                                    f"GRAM_T_AMBISONIC={tmp_path / 'a.st'}")  # fmt: skip
    assert args[:2] == ["-m", "hear_gram.suite"]
    assert args[args.index("--conditions") + 1] == "localization,t60"
    models = {m.name: m for m in load_models(work / "localization" / "models.toml")}
    assert sorted(models) == ["chance", "dsp", "gram-t-ambisonic"]  # no GRAM_T: no binaural GRAM
    dsp = models["dsp"]
    assert dsp.resolve("localization", "binaural").module == "localization_tasks.baselines.gcc_phat"
    assert dsp.resolve("t60", "ambisonic").module == (
        "localization_tasks.baselines.intensity_vector")  # fmt: skip
    gram = models["gram-t-ambisonic"].resolve("localization", "ambisonic")
    assert (gram.module, gram.weights) == ("hear_gram.gram_t_ambisonic", tmp_path / "a.st")
    assert gram.options["strategy"] == "cls"
    assert models["gram-t-ambisonic"].formats == ("ambisonic",)
    assert models["chance"].module == "chance"


@pytest.mark.parametrize("name", ["mono", "options", "../x", "dry"])
def test_a_condition_whose_name_a_models_file_could_not_tell_apart_is_refused(name):
    class Clash(Toy):
        pass

    Clash.name = name
    with pytest.raises(ValueError):
        conditions.register(Clash())
    assert name not in conditions.names() or type(conditions.get(name)) is not Clash


def test_hear_gram_suite_and_python_m_give_the_same_results(tiny):
    # The acceptance of the one-command convention: the same argv through the `hear-gram`
    # command and through `python -m hear_gram.suite`, in fresh processes, gives the same report
    # files, byte for byte (the toy condition, plugged in by --condition-module).
    import os
    import subprocess
    from pathlib import Path

    _, tmp = tiny
    (tmp / "lib" / "toy_condition_plugin_cli.py").write_text(
        "from hear_gram.suite.condition import register\n"
        "from tests.test_suite_plugins import Toy\n\n"
        "register(Toy())\n"
    )
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp / "lib"), str(repo)]))
    outputs = {}
    for name, head in {"command": ["-m", "hear_gram", "suite"],
                       "module": ["-m", "hear_gram.suite"]}.items():  # fmt: skip
        out = tmp / name
        argv = [sys.executable, *head, "--models", str(tmp / "models.toml"), "--tasks-dir",
                str(tmp / "tasks"), "--out", str(out), "--condition-module",
                "toy_condition_plugin_cli", "--conditions", "toy", "--quiet"]  # fmt: skip
        res = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=repo)
        assert res.returncode == 0, res.stderr[-2000:]
        outputs[name] = {f: (out / "report" / f).read_bytes() for f in ("results.csv", "REPORT.md")}
    assert outputs["command"] == outputs["module"]
    assert b"toy_error" in outputs["command"]["results.csv"]


@pytest.mark.hostile("nonfinite")
@pytest.mark.parametrize(
    "ci", [(0.9, 0.1), (float("nan"), 1.0), (0.1, "x"), (True, 1.0), (0.1, "")]
)
def test_a_condition_returning_a_broken_interval_fails_its_unit(ci):
    """An interval is two finite numbers with low <= high, or none: anything else fails the unit
    (a reversed or NaN interval must never reach a table as a plausible one)."""
    from hear_gram.suite.condition import Unit, UnitError
    from hear_gram.suite.units import check_rows

    unit = Unit("m", "toy", "a", "mono")
    row = {"task": "a", "metric": "acc", "mean": 0.5, "ci_low": ci[0], "ci_high": ci[1]}
    with pytest.raises(UnitError, match="interval of acc"):
        check_rows([row], unit)
    ok = check_rows([{**row, "ci_low": 0.25, "ci_high": 0.75}], unit)
    assert (ok[0]["ci_low"], ok[0]["ci_high"]) == (0.25, 0.75)
    assert (check_rows([{"task": "a", "metric": "acc", "mean": 0.5}], unit)[0]["ci_low"]) == ""
