"""hear_gram.suite: the models file, the plan and its shards, resuming, the report (on fake units
with hand-set scores), the submitit executor, and one real unit through the HEAR tools."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hear_gram.cli import CLIError
from hear_gram.safeio import UnsafePathError
from hear_gram.suite import units
from hear_gram.suite.__main__ import main as suite_main
from hear_gram.suite.conditions.hear import HearCondition
from hear_gram.suite.conditions.naturalistic import Naturalistic
from hear_gram.suite.conditions.spatial import SpatialCondition
from hear_gram.suite.config import Settings, SuiteConfigError, load_models
from tests.conftest import REPO

MODELS = """
[[model]]
name = "gram"
module = "hear_gram"
weights = "w.bin"
options = { precision = "bf16", strategy = "raw" }

[model.binaural]
module = "hear_gram.gram_t"

[model.ambisonic]
module = "hear_gram.gram_t_ambisonic"
weights = "sub/a.bin"

[model.localization]
options = { strategy = "cls" }

[[model]]
name = "dsp"
module = "localization_tasks.baselines.gcc_phat"
formats = ["binaural"]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------ models file


def test_overrides_apply_base_then_format_then_condition(tmp_path):
    gram, dsp = load_models(write(tmp_path / "cfg" / "models.toml", MODELS))
    dry = gram.resolve("dry", "mono")
    assert (dry.module, dry.weights) == ("hear_gram", tmp_path / "cfg" / "w.bin")
    assert dry.options == {"precision": "bf16", "strategy": "raw"}
    loc = gram.resolve("localization", "ambisonic")
    assert loc.module == "hear_gram.gram_t_ambisonic"
    assert loc.weights == tmp_path / "cfg" / "sub" / "a.bin"
    assert loc.options == {"precision": "bf16", "strategy": "cls"}  # merged key by key
    nat = gram.resolve("nat-binaural", "binaural")
    assert (nat.module, nat.weights, nat.options["strategy"]) == (
        "hear_gram.gram_t", tmp_path / "cfg" / "w.bin", "raw")  # fmt: skip
    assert dsp.weights is None and dsp.formats == ("binaural",)
    assert not dsp.applies("dry", "mono") and dsp.applies("t60", "binaural")


@pytest.mark.parametrize(
    ("text", "error", "needle"),
    [
        ('[[model]]\nname = "m"\nmodule = "x"\nweigths = "w"\n', SuiteConfigError, "weigths"),
        ('[[model]]\nname = "m"\n', SuiteConfigError, "no module"),
        ('[[model]]\nname = "m"\nmodule = "os; rm"\n', SuiteConfigError, "dotted"),
        ('[[model]]\nname = "../m"\nmodule = "x"\n', UnsafePathError, "not a plain"),
        ('[[model]]\nname = "m"\nmodule = "x"\nformats = ["stereo"]\n', SuiteConfigError,
         "stereo"),
        ('[[model]]\nname = "m"\nmodule = "x"\n[[model]]\nname = "m"\nmodule = "y"\n',
         SuiteConfigError, "repeat"),
        ("[model\n", CLIError, "not TOML"),
    ],
)  # fmt: skip
def test_models_file_refusals(tmp_path, text, error, needle):
    with pytest.raises(error, match=needle):
        load_models(write(tmp_path / "m.toml", text))


# ------------------------------------------------------------------ plan and shards


def fake_tasks(root: Path, names: list[str]) -> Path:
    for name in names:
        write(root / name / "task_metadata.json", json.dumps({"task_name": name}))
    return root


def test_plan_follows_conditions_and_formats_and_shards_partition_it(tmp_path):
    models = load_models(write(tmp_path / "models.toml", MODELS))
    tasks = fake_tasks(tmp_path / "tasks", ["a", "b"])
    settings = Settings(work=tmp_path / "w", tasks_dir=tasks,
                        extra={"nat_task": ("b",), "localization_source": ("a",)})  # fmt: skip
    plan = units.plan(models, settings)
    ids = [u.id for u in plan]
    # gram: 2 dry + 1 per Nat-HEAR format + (localization, t60) x 2 formats; dsp: binaural only
    assert len(ids) == 2 + 2 + 4 + (1 + 2) == len(set(ids))
    assert "dsp/dry/a" not in ids and "dsp/nat-ambisonic/b" not in ids
    assert {"gram/localization/a-binaural", "gram/t60/a-ambisonic", "dsp/t60/a-binaural"} <= set(
        ids
    )
    shards = [units.shard(plan, k, 3) for k in range(3)]
    assert sorted(u for s in shards for u in s) == plan  # disjoint, and together the plan
    assert [len(s) for s in shards] == [4, 4, 3]
    assert units.shard(list(reversed(plan)), 1, 3) == shards[1]  # order-independent
    with pytest.raises(ValueError, match="0 <= K < N"):
        units.shard(plan, 3, 3)


# ------------------------------------------------------------------ fake units: resume, report

# Scores set by hand: dry a 0.8, b 0.6; binaural a 0.5, b 0.7 -> HEAR avg 70.0, Nat-HEAR
# binaural avg 60.0 (sd over the 2 tasks: 20 / sqrt(2) = 14.1), drop ((0.8 - 0.5) + (0.6 - 0.7))
# / 2 = 10.0 points (sd of 30 and -10: 40 / sqrt(2) = 28.3; 2 tasks: too few for a t-test).
SCORES = {("dry", "a"): 0.8, ("dry", "b"): 0.6, ("nat-binaural", "a"): 0.5,
          ("nat-binaural", "b"): 0.7}  # fmt: skip
ERRORS = {"snr05-10": 40.0, "snr10-20": 30.0, "snr20-40": 20.0, "clean": 10.0}
FAKE_MODELS = """
[[model]]
name = "m"
module = "tests.fixtures.spectral_module"

[[model]]
name = "broken"
module = "tests.fixtures.spectral_module"
conditions = ["dry"]
"""


def _fake_hear(self, unit, resolved, settings, folder):
    calls = folder.parent.parent.parent.parent / "calls.txt"
    with calls.open("a") as f:
        f.write(unit.id + "\n")
    if unit.model == "broken":
        raise units.UnitError("hear_gram.embed exited 2: broken on purpose")
    mean = SCORES[(unit.condition, unit.task)]
    return [{"task": unit.task, "format": unit.fmt, "snr_bin": "", "metric": "top1_acc",
             "mean": mean, "std": 0.1, "folds": 5, "better": "higher"}]  # fmt: skip


def _fake_spatial(self, unit, resolved, settings, folder):
    with (folder.parent.parent.parent.parent / "calls.txt").open("a") as f:
        f.write(unit.id + "\n")
    if unit.condition == "t60":
        return [{"task": f"{unit.source}-t60-{unit.fmt}", "format": unit.fmt, "snr_bin": "clean",
                 "metric": "median_abs_error_s", "mean": 0.5, "std": 0.0, "folds": 3,
                 "better": "lower"}]  # fmt: skip
    return [{"task": f"{unit.source}-loc-{unit.fmt}-{b}", "format": unit.fmt, "snr_bin": b,
             "metric": "mean_angular_error_deg", "mean": e, "std": 1.0, "folds": 3,
             "better": "lower"} for b, e in ERRORS.items()]  # fmt: skip


def fake_run_unit(unit, model, settings):
    """run_unit with the subprocess steps replaced (module level: submitit pickles it by name)."""
    HearCondition.run, SpatialCondition.run = _fake_hear, _fake_spatial
    return units.run_unit(unit, model, settings)


@pytest.fixture
def fake_suite(tmp_path, monkeypatch):
    monkeypatch.setattr("hear_gram.suite.__main__.run_unit", fake_run_unit)
    monkeypatch.setattr(HearCondition, "run", _fake_hear)
    monkeypatch.setattr(SpatialCondition, "run", _fake_spatial)
    monkeypatch.setattr(Naturalistic, "builds", lambda *args: [])  # the fake runs read none
    models = write(tmp_path / "models.toml", FAKE_MODELS)
    tasks = fake_tasks(tmp_path / "tasks", ["a", "b"])

    def run(work: str, *extra: str) -> int:
        return suite_main(
            ["--models", str(models), "--tasks-dir", str(tasks), "--work", str(tmp_path / work),
             "--conditions", "dry,nat-binaural,localization,t60", "--localization-source", "a",
             "--no-probe", *extra]  # the units are faked: no module is called
        )  # fmt: skip

    return run, tmp_path


def calls(work: Path) -> list[str]:
    path = work / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_report_tables_from_unit_scores(fake_suite, capsys):
    run, tmp = fake_suite
    assert run("w", "--jobs", "2") == 1  # the broken model's units failed, the rest ran
    report = (tmp / "w" / "report" / "REPORT.md").read_text()
    # task | m dry | m nat-binaural | broken dry; the fake units' sd 0.1 over 5 folds
    assert "| a | 80.0 ± 10.0 (n=5) | 50.0 ± 10.0 (n=5) | failed |" in report
    assert "| b | 60.0 ± 10.0 (n=5) | 70.0 ± 10.0 (n=5) | failed |" in report
    assert (
        "| m | 70.0 ± 14.1 (n=2) | 60.0 ± 14.1 (n=2) | 10.0 ± 28.3 (n=2) (n too small) |" in report
    )
    # binaural and Ambisonic rows; bins in the order clean, 20-40, 10-20, 5-10 dB
    loc = " | ".join(f"{e:.1f} ± 1.0 (n=3)" for e in (10, 20, 30, 40))
    assert f"| m | binaural | a | {loc} | 0.500 ± 0.000 (n=3) |" in report
    assert f"| m | ambisonic | a | {loc} | 0.500 ± 0.000 (n=3) |" in report
    assert "- broken/dry/a: UnitError: hear_gram.embed exited 2: broken on purpose" in report
    assert "Units: 8 done, 2 failed, 0 missing" in report
    rows = list(csv.DictReader((tmp / "w" / "report" / "results.csv").open()))
    assert len(rows) == 4 + 2 * (4 + 1) + 2  # HEAR rows, localization bins + T60, failed units
    failed = [r for r in rows if r["status"] == "failed"]
    assert [(r["model"], r["task"], r["mean"]) for r in failed] == [("broken", "a", ""),
                                                                   ("broken", "b", "")]  # fmt: skip
    as_json = json.loads((tmp / "w" / "report" / "results.json").read_text())
    assert [{k: str(v) for k, v in r.items()} for r in as_json] == rows
    assert {"dry_vs_naturalistic.png", "error_vs_snr.png"} <= {
        p.name for p in (tmp / "w" / "report").iterdir()}  # fmt: skip
    out = capsys.readouterr().out
    assert "10 units planned, 10 in shard 0/1: 0 done, 0 failed before, 10 to run" in out
    assert "ran 10 units" in out and "8 done, 2 failed" in out


def test_rerun_runs_only_missing_units_and_shards_merge_to_the_same_table(fake_suite, capsys):
    run, tmp = fake_suite
    assert run("w", "--shard", "1/3", "--no-report") == 1  # an interrupted run: a third done
    # sorted plan: broken/dry/{a,b}, m/dry/{a,b}, m/localization/{a-ambisonic,a-binaural},
    # m/nat-binaural/{a,b}, m/t60/{a-ambisonic,a-binaural}; shard 1/3 = items 1, 4, 7
    first = calls(tmp / "w")
    assert first == ["broken/dry/b", "m/localization/a-ambisonic", "m/nat-binaural/b"]
    capsys.readouterr()
    assert run("w") == 1
    assert "10 units planned, 10 in shard 0/1: 2 done, 1 failed before, 8 to run" in (
        capsys.readouterr().out)  # fmt: skip
    second = calls(tmp / "w")[len(first) :]
    assert len(second) == 8 and not set(second) & set(first[1:])  # done units are not rerun
    # only the failed units run again
    n = len(calls(tmp / "w"))
    assert run("w") == 1
    assert sorted(calls(tmp / "w")[n:]) == ["broken/dry/a", "broken/dry/b"]
    # shards of a fresh run, merged, give the single run's files, all but the wall times
    for k in range(2):
        run("s", "--shard", f"{k}/2", "--no-report")
    assert run("s", "--report-only") == 0

    def timeless(work: str) -> list[dict]:
        rows = json.loads((tmp / work / "report" / "results.json").read_text())
        assert all(r["seconds"] != "" for r in rows if r["status"] != "missing")
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert timeless("s") == timeless("w")
    csv_s, csv_w = ((tmp / w / "report" / "results.csv").read_text().splitlines() for w in "sw")
    assert csv_s[0] == csv_w[0] and len(csv_s) == len(csv_w)


@pytest.mark.hostile("stale")
def test_a_changed_weights_file_reruns_its_units(fake_suite, tmp_path):
    run, tmp = fake_suite
    weights = write(tmp / "w.bin", "one")
    write(tmp / "models.toml", '[[model]]\nname = "m"\nmodule = "x"\nweights = "w.bin"\n'
          'conditions = ["dry"]\n')  # fmt: skip
    run("w")
    assert sorted(calls(tmp / "w")) == ["m/dry/a", "m/dry/b"]
    run("w")
    assert len(calls(tmp / "w")) == 2
    weights.write_text("two")  # retrained in place: same path, new content
    run("w")
    assert sorted(calls(tmp / "w")[2:]) == ["m/dry/a", "m/dry/b"]


def test_submitit_local_executor_runs_the_units(fake_suite, monkeypatch):
    pytest.importorskip("submitit")  # an install_requires dependency; skipped only without it
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the jobs import this module by name
    run, tmp = fake_suite
    write(tmp / "models.toml", '[[model]]\nname = "m"\nmodule = "x"\nconditions = ["dry"]\n')
    assert run("w", "--executor", "submitit-local", "--slurm", "timeout_min=5") == 0
    assert sorted(calls(tmp / "w")) == ["m/dry/a", "m/dry/b"]
    assert "| a | 80.0 ± 10.0 (n=5) |" in (tmp / "w" / "report" / "REPORT.md").read_text()
    assert any((tmp / "w" / "submitit").rglob("*_log.out"))  # submitit's own job logs


@pytest.mark.hostile("crash")
def test_cli_errors_are_one_line(tmp_path, capsys):
    models = write(tmp_path / "m.toml", '[[model]]\nname = "m"\nmodule = "x"\n')
    tasks = fake_tasks(tmp_path / "tasks", ["a"])
    base = ["--models", str(models), "--tasks-dir", str(tasks), "--work", str(tmp_path / "w"),
            "--conditions", "dry"]  # fmt: skip
    with pytest.raises(SystemExit) as stop:  # argparse's own error, on the convention's line
        suite_main([*base, "--shard", "2/2"])
    assert stop.value.code == 2
    assert suite_main([*base, "--conditions", "dry,wet"]) == 2
    assert suite_main([*base, "--task", "../a"]) == 2
    assert suite_main([*base, "--conditions", "localization"]) == 2  # no source task present
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(ln.startswith("python -m hear_gram.suite: error:") for ln in err)
    assert "0 <= K < N" in err[0] and "wet" in err[1] and "not a plain" in err[2]
    assert "--localization-source" in err[3]


# ------------------------------------------------------------------ one real unit


@pytest.mark.slow
def test_real_units_through_the_hear_tools(tmp_path):
    """A spectral module on a tiny 3-fold task through hear_gram.embed and hear_gram.predict, and
    a binaural-only module failing on the same mono task: reported, not fatal; nothing written
    to the working directory."""
    from hear_gram import synthetic_tasks
    from tests.conftest import run_module

    tasks = tmp_path / "tasks"
    synthetic_tasks.make_scene_task(tasks, sample_rates=(16000,), n_per_class=3,
                                    classes=synthetic_tasks.SCENE_CLASSES[:3], kfold=3)  # fmt: skip
    models = write(tmp_path / "models.toml", FAKE_MODELS.replace(
        'name = "broken"\nmodule = "tests.fixtures.spectral_module"',
        'name = "broken"\nmodule = "localization_tasks.baselines.gcc_phat"\n'
        "options = { sample_rate = 16000 }"))  # fmt: skip
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args = ["hear_gram.suite", "--models", str(models), "--tasks-dir", str(tasks), "--work",
            str(tmp_path / "w"), "--conditions", "dry", "--grid", "fast", "--grid-points", "1",
            "--no-probe"]  # the binaural-only module's unit is run, to fail  # fmt: skip
    with pytest.raises(AssertionError, match="exited 1"):  # one failed unit: exit code 1
        run_module(args, cwd=cwd, log=tmp_path / "run1.log")
    assert list(cwd.iterdir()) == []
    log = (tmp_path / "run1.log").read_text()
    assert "1 done, 1 failed" in log
    unit = tmp_path / "w" / "units" / "m" / "dry" / "hear-gram-demo-scene"
    scores_file = next((tmp_path / "w" / "embeddings").rglob("test.predicted-scores.json"))
    scores = json.loads(scores_file.read_text())
    expected = scores["aggregated_scores"]["test_top1_acc_mean"]
    sd = scores["aggregated_scores"]["test_top1_acc_std"]
    rows = json.loads((unit / "result.json").read_text())["rows"]
    assert rows[0]["mean"] == pytest.approx(expected) and rows[0]["folds"] == 3
    # then heareval's per-fold test scores, one row per fold
    assert [(r["fold"], r["mean"]) for r in rows if r["fold"] and r["metric"] == "top1_acc"] == [
        (f, scores[f]["test_top1_acc"]) for f in ("fold00", "fold01", "fold02")]  # fmt: skip
    assert f"| hear-gram-demo-scene | {100 * expected:.1f} ± {100 * sd:.1f} (n=3) | failed |" in (
        tmp_path / "w" / "report" / "REPORT.md").read_text()  # fmt: skip
    assert not list((tmp_path / "w").rglob("*.ckpt"))  # deleted once scored
    # heareval's per-clip embedding copies are deleted once scored; the split files it reads stay
    task_emb = scores_file.parent
    assert sorted(p.name for p in task_emb.glob("*.embeddings.npy")) == [
        f"fold0{i}.embeddings.npy" for i in range(3)]  # fmt: skip
    assert not list(task_emb.rglob("*.embedding.npy"))
    clips = list((tasks / "hear-gram-demo-scene" / "16000").rglob("*.wav"))
    assert len(list(task_emb.glob("fold0*/*.target-labels.json"))) == len(clips) == 9
    failed = json.loads((tmp_path / "w" / "units" / "broken" / "dry" / "hear-gram-demo-scene" /
                         "failed.json").read_text())  # fmt: skip
    assert "hear_gram.embed exited" in failed["error"] and "2-channel audio" in failed["error"]
