"""The SELD conditions of hear_gram.suite (`seld-ambisonic`, `seld-binaural`), end to end on a
tiny synthetic SELD task built from a 6-clip HEAR scene task, through the real runner, builds,
`localization_tasks.seld.evaluate` subprocesses and report:

- results.csv holds each unit's scores exactly as its own evaluate/results.json has them, with
  the DCASE metric directions; REPORT.md draws one SELD table for both conditions, '-' for the
  distance errors evaluate.py does not compute; the zero baseline scores the DCASE floor;
- each condition gives the model its format (4-channel FOA, 2-channel binaural audio), and a
  model that opts out of binaural gets no seld-binaural unit;
- an unchanged rerun builds and runs nothing; a source whose audio changed is built again into
  a new folder and its units run again on it.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from hear_gram.suite import condition as conditions
from hear_gram.suite.__main__ import main as suite_main
from hear_gram.suite.condition import Unit, UnitError
from hear_gram.suite.conditions import seld
from hear_gram.suite.config import Settings

SR = 16000
# DCASE Task 3 directions, written out here independently of the module's table; the built
# tasks carry distances, so FOA is scored with the DCASE 2024 metrics, binaural with 2025's
BETTER = {"ER": "lower", "F": "higher", "AngE": "lower", "DistE": "lower", "RelDistE": "lower",
          "LR": "higher", "SELD": "lower"}  # fmt: skip
MODELS = """
[[model]]
name = "stats"
module = "tests.fixtures.frame_stats_module"

[[model]]
name = "zero"
module = "zero"
formats = ["ambisonic"]
"""


def write_source(root, tone_hz: float = 440.0):
    """A HEAR scene task `src`: 2 classes x 3 single-label 1 s clips (a tone, noise)."""
    task = root / "src"
    (task / str(SR) / "fold00").mkdir(parents=True, exist_ok=True)
    meta = {"task_name": "src", "embedding_type": "scene", "prediction_type": "multiclass",
            "split_mode": "presplit_kfold", "splits": ["fold00"], "sample_duration": 1.0}  # fmt: skip
    (task / "task_metadata.json").write_text(json.dumps(meta))
    (task / "labelvocabulary.csv").write_text("idx,label\n0,tone\n1,noise\n")
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    labels = {}
    for i in range(3):
        tone = 0.3 * np.sin(2 * np.pi * tone_hz * (1 + 0.1 * i) * t)
        sf.write(task / str(SR) / "fold00" / f"tone{i}.wav", tone, SR)
        sf.write(task / str(SR) / "fold00" / f"noise{i}.wav", 0.1 * rng.standard_normal(SR), SR)
        labels |= {f"tone{i}.wav": ["tone"], f"noise{i}.wav": ["noise"]}
    (task / "fold00.json").write_text(json.dumps(labels))
    return task


@pytest.fixture
def seld_suite(tmp_path):
    tasks = tmp_path / "tasks"
    write_source(tasks)
    models = tmp_path / "models.toml"
    models.write_text(MODELS)
    work = tmp_path / "w"

    def run(conds: str = "seld-ambisonic,seld-binaural") -> int:
        return suite_main(["--models", str(models), "--tasks-dir", str(tasks), "--out", str(work),
                           "--conditions", conds, "--seld-source", "src", "--seld-clips", "2",
                           "--seld-epochs", "1", "--seld-seeds", "2", "--quiet"])  # fmt: skip

    return run, tasks, work


def own_row(unit_folder, method: str) -> dict:
    """The method's summary row (mean and sd over seeds) of a unit's evaluate/results.json, read
    here with json alone."""
    rows = json.loads((unit_folder / "evaluate" / "results.json").read_text())["summary"]
    (row,) = [r for r in rows if r["method"] == method]
    return row


def built(work) -> set[str]:
    return {p.name for p in (work / "build").iterdir() if p.is_dir() and p.name.startswith("seld")}


def test_seld_units_report_their_evaluator_scores_and_rebuild_on_content(seld_suite, capsys):
    run, tasks, work = seld_suite
    assert run() == 0
    units = work / "units"
    assert sorted(p.relative_to(units).as_posix() for p in units.glob("*/*/*")) == [
        "stats/seld-ambisonic/src-ambisonic", "stats/seld-binaural/src-binaural",
        "zero/seld-ambisonic/src-ambisonic"]  # fmt: skip

    # each format's task holds that format's audio (channels of a built test clip)
    channels = {}
    for fmt in ("ambisonic", "binaural"):
        (task,) = (work / "build").glob(f"seld-{fmt}-src-*/src-{fmt}")
        meta = json.loads((task / "task_metadata.json").read_text())
        assert meta["seld"]["sources"]["task"] == "src"  # events drawn from the source task
        test_clips = sorted((task / "24000" / "fold03").glob("*.wav"))
        assert len(test_clips) == 2  # --seld-clips 2 per fold reached the build
        channels[fmt] = sf.info(test_clips[0]).channels
    assert channels == {"ambisonic": 4, "binaural": 2}

    with open(work / "report" / "results.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    expected = []
    for model, cond, task in (("stats", "seld-ambisonic", "src-ambisonic"),
                              ("stats", "seld-binaural", "src-binaural"),
                              ("zero", "seld-ambisonic", "src-ambisonic")):  # fmt: skip
        own = own_row(units / model / cond / task, model)
        assert own["seeds"] == [0, 1]  # --seld-seeds 2 reached the evaluator
        expected += [(model, cond, task, key, own[key], own[f"{key}_sd"], 2, BETTER[key])
                     for key in BETTER if own.get(key) is not None]  # fmt: skip
    got = [(r["model"], r["condition"], r["unit"], r["metric"], float(r["mean"]),
            float(r["std"]), int(r["folds"]), r["better"]) for r in csv_rows]  # fmt: skip
    assert sorted(got) == sorted(expected)
    metrics = {(r["condition"], r["metric"]) for r in csv_rows}
    assert ("seld-binaural", "ER") not in metrics and ("seld-binaural", "F") in metrics
    assert ("seld-ambisonic", "SELD") in metrics and ("seld-binaural", "SELD") not in metrics
    assert all(r["status"] == "ok" for r in csv_rows)
    for log in units.glob("*/*/*/unit.log"):  # --seld-epochs 1 reached each evaluator run
        assert "--epochs 1 " in log.read_text()
    # the jackknife interval of each figure (over the test files) enters results.csv
    own = own_row(units / "zero" / "seld-ambisonic" / "src-ambisonic", "zero")
    (sel,) = [r for r in csv_rows if r["model"] == "zero" and r["metric"] == "SELD"]
    assert [float(sel["ci_low"]), float(sel["ci_high"])] == own["SELD_jackknife"]
    zero = {r["metric"]: float(r["mean"]) for r in csv_rows if r["model"] == "zero"}
    # the DCASE 2024 floor: nothing detected, no pair to measure an angle or distance on
    assert (zero["ER"], zero["F"], zero["SELD"]) == (1.0, 0.0, 1.0) and "AngE" not in zero

    report = (work / "report" / "REPORT.md").read_text()
    assert report.count("## SELD") == 1
    lines = report.splitlines()
    head = lines.index("| model | format | task | ER | F | AngE (deg) | DistE (m) | RelDistE | LR | SELD |")  # fmt: skip
    own = own_row(units / "stats" / "seld-binaural" / "src-binaural", "stats")

    def cell(key: str, digits: int) -> str:
        if own.get(key) is None:
            return "-"
        return f"{own[key]:.{digits}f} ± {own[key + '_sd']:.{digits}f} (n=2)"

    cells = ["-", cell("F", 3), cell("AngE", 1), cell("DistE", 2), cell("RelDistE", 3), "-", "-"]
    assert lines[head + 3] == "| stats | binaural | src-binaural | " + " | ".join(cells) + " |"
    assert lines[head + 4].startswith("| zero | ambisonic | src-ambisonic | 1.000 ± 0.000 (n=2) | 0.000 ± 0.000 (n=2) | - |")  # fmt: skip

    # unchanged rerun: nothing built or run again
    folders = built(work)
    stamps = {p: p.stat().st_mtime_ns for p in units.glob("*/*/*/result.json")}
    capsys.readouterr()
    assert run() == 0
    assert "3 done, 0 failed before, 0 to run" in capsys.readouterr().out
    assert built(work) == folders
    assert {p: p.stat().st_mtime_ns for p in units.glob("*/*/*/result.json")} == stamps

    # the source's audio changes: a new build of it, and its units run again on that build
    write_source(tasks, tone_hz=300.0)
    old = {p: json.loads(p.read_text())["key"] for p in units.glob("*/seld-ambisonic/*/result.json")}  # fmt: skip
    assert run("seld-ambisonic") == 0
    (new,) = built(work) - folders
    assert new.startswith("seld-ambisonic-src-")
    (old_build,) = [d for d in folders if d.startswith("seld-ambisonic-")]
    sha = {d: json.loads((work / "build" / d / "src-ambisonic" / "task_metadata.json").read_text())
           ["seld"]["sources"]["sha256"] for d in (old_build, new)}  # fmt: skip
    assert sha[old_build] != sha[new]  # the new build drew the new sounds
    for path, key in old.items():
        assert json.loads(path.read_text())["key"] != key
        log = (path.parent / "unit.log").read_text()
        assert log.count(f"--tasks-dir {work / 'build' / new}") == 1  # evaluated on the new build


def test_the_evaluators_own_row_is_read_and_other_rows_and_keys_are_tolerated():
    """A summary with baselines' rows, extra keys, DCASE 2022 and 2024 keys: the unit's rows are
    its method's, per column of the table the first key present (2024's before 2022's), SELD
    first, with the sd over seeds and n; a key absent or null is no row ('-')."""
    unit = Unit("m", "seld-ambisonic", "t", "ambisonic", "s")
    results = [
        {"method": "zero", "task": "t", "SELD": 1.0, "ER20": 1.0},
        {"method": "m", "task": "other", "SELD": 0.1},
        {"method": "m", "task": "t", "seeds": [0, 1, 2], "ER20": 0.5, "F20": 0.25, "LE_CD": 30.0,
         "LR_CD": 0.75, "SELD": 0.4, "SELD_sd": 0.05, "DistE": 0.8, "RelDistE": None, "F": 0.3,
         "seed_sd": 0.01, "best_epoch": [3]},
    ]  # fmt: skip
    rows = seld.score_rows(results, "m", unit)
    assert [(r["metric"], r["mean"], r["std"], r["folds"], r["better"]) for r in rows] == [
        ("SELD", 0.4, 0.05, 3, "lower"), ("ER20", 0.5, 0.0, 3, "lower"),
        ("F", 0.3, 0.0, 3, "higher"), ("LE_CD", 30.0, 0.0, 3, "lower"),
        ("DistE", 0.8, 0.0, 3, "lower"), ("LR_CD", 0.75, 0.0, 3, "higher")]  # fmt: skip
    # binaural units lead with F (DCASE 2025 has no combined score)
    rows = seld.score_rows(results, "m", Unit("m", "seld-binaural", "t", "binaural", "s"))
    assert rows[0]["metric"] == "F" and rows[0]["better"] == "higher"
    with pytest.raises(UnitError, match="2 result rows"):  # ambiguous: never a guess
        seld.score_rows([*results, results[-1]], "m", unit)
    with pytest.raises(UnitError, match="no finite SELD"):
        seld.score_rows([{"method": "m", "task": "t", "ER20": 0.5}], "m", unit)


def test_a_failed_or_missing_unit_shows_its_state_in_every_cell():
    """REPORT.md never shows a failed unit's cells as '-' (a metric not computed)."""
    base = {"condition": "seld-ambisonic", "format": "ambisonic", "unit": "t", "task": "t"}
    rows = [{**base, "model": "a", "metric": "SELD", "mean": 0.5, "status": "ok"},
            {**base, "model": "b", "metric": "", "mean": "", "status": "failed"},
            {**base, "model": "c", "metric": "", "mean": "", "status": "missing"}]  # fmt: skip
    group = [conditions.get("seld-ambisonic"), conditions.get("seld-binaural")]
    rows[0] |= {"ci_low": 0.25, "ci_high": 0.75}
    lines = group[0].section(group, rows, ["a", "b", "c"])
    tables = [i for i, ln in enumerate(lines) if ln.startswith("| model |")]
    assert len(tables) == 2  # the scores, then their jackknife intervals
    assert lines[tables[0] + 2 : tables[0] + 5] == [
        "| a | ambisonic | t | - | - | - | - | - | - | 0.500 |",
        "| b | ambisonic | t |" + " failed |" * 7,
        "| c | ambisonic | t |" + " missing |" * 7]  # fmt: skip
    assert lines[tables[1] + 2] == "| a | ambisonic | t | - | - | - | - | - | - | [0.250, 0.750] |"


def test_seld_is_opt_in_and_needs_a_source(tmp_path):
    """A run without --conditions has no SELD units; a SELD run with neither a source nor
    --seld-dir is refused naming both options."""
    settings = Settings(work=tmp_path / "w", tasks_dir=tmp_path)
    assert "seld-ambisonic" in conditions.names()
    assert not any(c.startswith("seld") for c in settings.conditions)
    with pytest.raises(LookupError, match="--seld-source.*--seld-dir"):
        conditions.get("seld-binaural").plan(settings)


def test_make_seld_is_a_suite_run_of_both_conditions(tmp_path):
    """`make seld` (PY replaced by a script recording its arguments): the synthetic tasks of
    SELD_CLIPS clips per fold, both formats, then the suite on them with zero, CRNN and GRAM-T
    (the given ambisonic weights; random binaural weights when GRAM_T is not given)."""
    from hear_gram.suite.config import load_models
    from tests.conftest import make_recording_python

    work = tmp_path / "work"
    calls = make_recording_python(tmp_path, "seld", f"WORK={work}", "SELD_CLIPS=7",
                                  f"GRAM_T_AMBISONIC={tmp_path / 'a.st'}")  # fmt: skip
    synth = [c for c in calls if c[:2] == ["-m", "localization_tasks.seld.synth"]]
    assert sorted(c[c.index("--format") + 1] for c in synth) == ["ambisonic", "binaural"]
    assert all(c[c.index("--clips-per-fold") + 1] == "7" for c in synth)
    (suite,) = [c for c in calls if c[:2] == ["-m", "hear_gram.suite"]]
    assert suite[suite.index("--conditions") + 1] == "seld-ambisonic,seld-binaural"
    assert suite[suite.index("--seld-dir") + 1] == synth[0][synth[0].index("--out") + 1]
    models = {m.name: m for m in load_models(work / "seld" / "models.toml")}
    assert sorted(models) == ["chance", "crnn", "gram-t", "gram-t-ambisonic", "reference", "zero"]
    assert suite[suite.index("--seld-seeds") + 1] == "3"
    assert models["gram-t-ambisonic"].weights == tmp_path / "a.st"
    assert models["gram-t"].formats == ("binaural",)
    random = [c for c in calls if c[:3] == ["-m", "hear_gram.checkpoints", "random"]]
    assert [c[c.index("--preset") + 1] for c in random] == ["gram-t"]
    assert models["gram-t"].weights == work.resolve() / "seld" / "gram-t-random.safetensors"


def test_given_tasks_are_taken_by_their_audio_format(tmp_path):
    """--seld-dir: FOA tasks go to seld-ambisonic; binaural and two-channel stereo ones (the
    DCASE 2025 set) to seld-binaural; a task of another audio (mic) or without seld block to
    neither."""
    for name, audio in (
        ("a", "foa"),
        ("b", "binaural"),
        ("s", "stereo"),
        ("m", "mic"),
        ("x", None),
    ):
        (tmp_path / name).mkdir()
        meta = {"task_name": name} | ({"seld": {"audio": audio}} if audio else {})
        (tmp_path / name / "task_metadata.json").write_text(json.dumps(meta))
    assert seld.given_tasks(tmp_path, "ambisonic") == ["a"]
    assert seld.given_tasks(tmp_path, "binaural") == ["b", "s"]
