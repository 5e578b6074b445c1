"""hear_gram.suite's run loop: Ctrl-C (during a unit, during a build, between units, in the report
step), failures and their causes (permanent ones not rerun without --retry-failed), builds keyed
by their source's content and made as a step of their own, the ETA from unit times only, and a
real localization build that renders only what the run asks for.

A toy condition (`Sleepy`, registered by the plugin module `toy_sleepy_condition` written into a
temporary folder) runs real subprocess steps through `run_logged`; a file (`control.json`, its
path in $SLEEPY_CONTROL) says how long each unit's and build's step sleeps and which fails, so a
test can catch a run in the middle of one."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hear_gram.cache import task_digest
from hear_gram.suite import build
from hear_gram.suite import condition as conditions
from hear_gram.suite.__main__ import eta
from hear_gram.suite.__main__ import main as suite_main
from hear_gram.suite.condition import Condition, UnitError, failure_cause, run_logged

# Not tests.conftest's: the plugin module imports this file in the suite's subprocess, which
# should not pay for conftest's torch import.
REPO = Path(__file__).resolve().parents[1]

LINE = "interrupted: {} done, {} left; rerun the same command to resume"
# A step: write the started marker (its pid), then sleep; or import a missing module; or die
# by SIGKILL (as the kernel's OOM killer ends a process).
STEP = """
import os, sys, time
marker, action = sys.argv[1], sys.argv[2]
open(marker, "w").write(str(os.getpid()))
if action == "import":
    import no_such_module_for_suite_tests
elif action == "kill":
    import signal; os.kill(os.getpid(), signal.SIGKILL)
time.sleep(float(action))
"""
# A build: the source's labels copied into the build folder, after `sleep` seconds.
COPY = """
import os, shutil, sys, time
source, root, marker, sleep = sys.argv[1:]
open(marker, "w").write(str(os.getpid()))
time.sleep(float(sleep))
os.makedirs(root, exist_ok=True)
shutil.copy(os.path.join(source, "train.json"), os.path.join(root, "train.json"))
"""


def control() -> dict:
    return json.loads(Path(os.environ["SLEEPY_CONTROL"]).read_text())


class Sleepy(Condition):
    """One unit per task; with control "builds", each unit reads a copy of its task's labels
    made by a build; its score: the number of "cat" labels it read."""

    name = "sleepy"
    formats = ("mono",)
    title = "Sleepy"

    def plan(self, settings):
        names = settings.tasks or sorted(p.name for p in settings.tasks_dir.iterdir())
        return [(t, "mono", "") for t in names]

    def task_key(self, unit, settings):
        return task_digest(settings.tasks_dir / unit.task)

    def builds(self, unit, resolved, settings):
        if not control().get("builds"):
            return []
        # "rate": a build setting outside the task key (as a localization build's sample rate)
        params = {"seed": settings.seed, "rate": control().get("rate", 16000)}
        key = build.build_key("copy", unit.task, settings, (), params)
        root = build.build_root("copy", unit.task, settings, (), params)
        marker = Path(os.environ["SLEEPY_CONTROL"]).parent / f"build-{unit.task}.started"
        cmd = (sys.executable, "-c", COPY, str(settings.tasks_dir / unit.task), str(root),
               str(marker), str(control().get("build_sleep", 0)))  # fmt: skip
        return [build.Build(key, root, cmd, f"copy {unit.task}")]

    def run(self, unit, resolved, settings, folder):
        c = control()
        source = settings.tasks_dir / unit.task
        for b in self.builds(unit, resolved, settings):
            source = build.run_build(b, settings, folder / "unit.log")
        marker = Path(os.environ["SLEEPY_CONTROL"]).parent / f"{unit.task}.started"
        action = str(c.get("actions", {}).get(unit.task, 0))
        with (Path(os.environ["SLEEPY_CONTROL"]).parent / "calls.txt").open("a") as f:
            f.write(unit.id + "\n")
        run_logged([sys.executable, "-c", STEP, str(marker), action], folder / "unit.log", "step")
        if unit.task == c.get("signal_self"):  # Ctrl-C reaches the runner while no step runs
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
        cats = (source / "train.json").read_text().count("cat")
        return [{"task": unit.task, "format": "mono", "snr_bin": "", "metric": "cats",
                 "mean": float(cats), "std": 0.0, "folds": 1, "better": "higher"}]  # fmt: skip


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Tasks a, b, c; the plugin module; `run(*extra)` in this process, `spawn(*extra)` as a
    subprocess; `set(**control)`; `calls()`: the units run so far."""
    for name in ("a", "b", "c"):
        (tmp_path / "tasks" / name).mkdir(parents=True)
        (tmp_path / "tasks" / name / "task_metadata.json").write_text("{}")
        (tmp_path / "tasks" / name / "train.json").write_text('{"x.wav": ["dog"]}')
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "toy_sleepy_condition.py").write_text(
        "from hear_gram.suite.condition import register\n"
        "from tests.test_suite_runs import Sleepy\n\nregister(Sleepy())\n"
    )
    (tmp_path / "models.toml").write_text('[[model]]\nname = "m"\nmodule = "json"\n')
    ctl = tmp_path / "control.json"
    monkeypatch.setenv("SLEEPY_CONTROL", str(ctl))
    monkeypatch.syspath_prepend(str(lib))
    argv = ["--models", str(tmp_path / "models.toml"), "--tasks-dir", str(tmp_path / "tasks"),
            "--out", str(tmp_path / "w"), "--condition-module", "toy_sleepy_condition",
            "--conditions", "sleepy"]  # fmt: skip

    class Toy:
        work = tmp_path / "w"
        root = tmp_path

        @staticmethod
        def set(**values):
            ctl.write_text(json.dumps(values))

        @staticmethod
        def run(*extra):
            return suite_main([*argv, *extra])

        @staticmethod
        def spawn(*extra, group=False):
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(lib), str(REPO)]))
            return subprocess.Popen([sys.executable, "-m", "hear_gram.suite", *argv, *extra],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env, cwd=tmp_path, start_new_session=group)  # fmt: skip

        @staticmethod
        def calls():
            path = tmp_path / "calls.txt"
            return path.read_text().splitlines() if path.exists() else []

    Toy.set()
    yield Toy
    conditions.unregister("sleepy")
    sys.modules.pop("toy_sleepy_condition", None)


def wait_for(path: Path, timeout: float = 60.0) -> int:
    """The pid a step wrote into its started marker, once it is there."""
    end = time.time() + timeout
    while time.time() < end:
        if path.is_file() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path.name} never appeared")


def gone(pid: int, timeout: float = 10.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def states(work: Path) -> dict[str, str]:
    rows = csv.DictReader((work / "report" / "results.csv").open())
    return {r["task"]: r["status"] for r in rows}


# ------------------------------------------------------------------ Ctrl-C


@pytest.mark.hostile("process")
@pytest.mark.parametrize("where", ["unit", "build", "terminal"])
def test_ctrl_c_stops_the_run_in_one_line_and_the_rerun_finishes_it(toy, where):
    """SIGINT to the suite's process only (as `kill -INT` or a scheduler sends it), or to its
    whole process group (Ctrl-C at a terminal: the step gets it twice, from the terminal and
    passed on): the step running ends, the run ends in 130 with the one line last on stderr,
    nothing is recorded failed, the report holds what is done, the rerun the rest."""
    if where in ("unit", "terminal"):  # a done, b caught sleeping, c never started
        toy.set(actions={"b": 60})
        marker, expect = toy.root / "b.started", LINE.format(1, 2)
    else:  # caught in the build of a, before any unit
        toy.set(builds=True, build_sleep=60)
        marker, expect = toy.root / "build-a.started", LINE.format(0, 3)
    proc = toy.spawn("--jobs", "1", group=where == "terminal")
    pid = wait_for(marker)
    time.sleep(0.2)  # the runner is waiting on the step
    if where == "terminal":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    finally:  # a run that did not stop is not left behind, nor its step
        proc.kill()
        proc.wait()
        if not gone(pid, timeout=5):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == expect
    assert "Traceback" not in err and "Traceback" not in out
    assert gone(pid), "the step was left running"
    assert not list(toy.work.rglob("failed.json"))
    assert not list((toy.work / "build").glob("*.done"))  # no build marked made
    done = {} if where == "build" else {"a": "ok"}
    assert states(toy.work) == {"a": "missing", "b": "missing", "c": "missing", **done}
    assert f"Units: {len(done)} done, 0 failed, {3 - len(done)} missing" in (
        toy.work / "report" / "REPORT.md").read_text()  # fmt: skip
    before = list(toy.calls())
    toy.set(builds=where == "build")
    assert toy.run("--quiet") == 0
    ran = toy.calls()[len(before) :]
    assert sorted(ran) == ["m/sleepy/a", "m/sleepy/b", "m/sleepy/c"][len(done) :]
    assert set(states(toy.work).values()) == {"ok"}


@pytest.mark.hostile("process")
def test_ctrl_c_while_no_step_runs_stops_before_the_next_unit(toy, capsys):
    # The signal comes while unit a is in Python code (no subprocess to pass it to).
    toy.set(signal_self="a")
    assert toy.run("--jobs", "1") == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == LINE.format(1, 2)
    assert toy.calls() == ["m/sleepy/a"]  # b and c never started
    assert states(toy.work) == {"a": "ok", "b": "missing", "c": "missing"}


@pytest.mark.hostile("process")
def test_ctrl_c_in_the_report_step_still_writes_the_whole_report(toy, capsys, monkeypatch):
    from hear_gram.suite import report

    write = report.write_report

    def interrupted_write(*args):
        os.kill(os.getpid(), signal.SIGINT)  # held back until the report is written
        time.sleep(0.2)
        return write(*args)

    monkeypatch.setattr(report, "write_report", interrupted_write)
    assert toy.run() == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == LINE.format(3, 0)
    assert states(toy.work) == {"a": "ok", "b": "ok", "c": "ok"}
    assert (toy.work / "report" / "REPORT.md").is_file()


# ------------------------------------------------------------------ failures and their causes


@pytest.mark.parametrize(
    ("message", "cause"),
    [  # the last lines the project's tools print, as run_logged quotes them
        ("hear_gram.embed exited 2: python -m hear_gram.embed: error: No module named 'gram2'",
         "module import"),
        ("step exited 1: ImportError: cannot import name 'load_model' from 'x'", "module import"),
        ("hear_gram.embed exited 2: python -m hear_gram.embed: error: gcc_phat (binaural: left, "
         "right) needs 2-channel audio (B, N, C) or (B, C, N), got (3, 32000)",
         "unsupported format"),
        ("localization_tasks.evaluate exited 2: ...: error: x takes none of the tasks: t "
         "(ambisonic: takes binaural audio only)", "unsupported format"),
        ("hear_gram.embed exited 2: ...: error: /t/a/task_metadata.json: task metadata is not "
         "valid JSON: Expecting value", "unreadable task"),
        ("build localization s binaural 16000 Hz exited 2: ...: error: s/binaural: no T60 task "
         "can be made (the bank's T60 is unknown)", "unreadable task"),
        ("hear_gram.embed exited -9: ", ""),
        ("hear_gram.predict exited 1: ...: internal error: OutOfMemoryError: CUDA out of memory",
         ""),
        ("step exited 2: ...: error: [Errno 28] No space left on device", ""),
    ],
)  # fmt: skip
def test_failure_causes_of_the_tools_messages(message, cause):
    assert failure_cause(message) == cause
    assert UnitError(message).cause == cause


def test_a_permanent_failure_is_not_rerun_unless_asked_and_a_transient_one_is(toy, capsys):
    toy.set(actions={"a": "import", "b": "kill"})
    assert toy.run("--quiet") == 1
    failed = {u: json.loads((toy.work / "units" / "m" / "sleepy" / u / "failed.json").read_text())
              for u in ("a", "b")}  # fmt: skip
    assert failed["a"]["cause"] == "module import" and failed["a"]["permanent"] is True
    assert "No module named 'no_such_module_for_suite_tests'" in failed["a"]["error"]
    assert failed["b"]["cause"] == "" and failed["b"]["permanent"] is False
    assert "exited -9" in failed["b"]["error"]
    assert states(toy.work) == {"a": "failed", "b": "failed", "c": "ok"}
    capsys.readouterr()
    toy.set()  # both would pass now; only the transient one is tried again
    n = len(toy.calls())
    assert toy.run("--quiet") == 0
    out = capsys.readouterr().out
    assert (
        "1 units failed before for a reason that cannot change; --retry-failed reruns them" in out
    )
    assert "2 failed before, 1 to run" in out
    assert toy.calls()[n:] == ["m/sleepy/b"]
    assert states(toy.work) == {"a": "failed", "b": "ok", "c": "ok"}
    assert toy.run("--quiet", "--retry-failed") == 0
    assert toy.calls()[n + 1 :] == ["m/sleepy/a"]
    assert set(states(toy.work).values()) == {"ok"}


# ------------------------------------------------------------------ builds


def test_a_changed_label_rebuilds_and_reruns_exactly_what_reads_it(toy, capsys):
    toy.set(builds=True)
    assert toy.run() == 0
    err = capsys.readouterr().err
    # each a step of its own, timed (a and c: one content, one key, two builds)
    assert sorted(re.findall(r"^build: (.*) \(\d+ s\)$", err, re.M)) == ["copy a", "copy b",
                                                                         "copy c"]  # fmt: skip
    markers = {p.name: p.stat().st_mtime_ns for p in (toy.work / "build").glob("*.done")}
    results = {u: (toy.work / "units" / "m" / "sleepy" / u / "result.json").stat().st_mtime_ns
               for u in ("a", "b", "c")}  # fmt: skip
    assert len(markers) == 3 and toy.calls() == ["m/sleepy/a", "m/sleepy/b", "m/sleepy/c"]
    assert toy.run() == 0  # nothing changed: nothing built or run
    assert "build:" not in capsys.readouterr().err and len(toy.calls()) == 3
    labels = toy.root / "tasks" / "b" / "train.json"
    labels.write_text(labels.read_text().replace("dog", "cat"))  # same path, same size
    assert toy.run() == 0
    err = capsys.readouterr().err
    assert re.findall(r"^build: (.*) \(\d+ s\)$", err, re.M) == ["copy b"]
    assert toy.calls()[3:] == ["m/sleepy/b"]
    now = {p.name: p.stat().st_mtime_ns for p in (toy.work / "build").glob("*.done")}
    assert {k: v for k, v in now.items() if k in markers} == markers  # a, c and old b untouched
    (new,) = set(now) - set(markers)
    assert new.startswith("copy-b-")
    for u in ("a", "c"):
        assert (toy.work / "units" / "m" / "sleepy" / u / "result.json").stat().st_mtime_ns == (
            results[u])  # fmt: skip
    rows = {r["task"]: float(r["mean"]) for r in csv.DictReader(
        (toy.work / "report" / "results.csv").open())}  # fmt: skip
    assert rows == {"a": 0.0, "b": 1.0, "c": 0.0}  # b's unit read the new build
    toy.set(builds=True, rate=32000)  # a setting of the builds only: every unit reads anew
    assert toy.run() == 0
    assert len(re.findall(r"^build: copy \w \(\d+ s\)$", capsys.readouterr().err, re.M)) == 3
    assert sorted(toy.calls()[4:]) == ["m/sleepy/a", "m/sleepy/b", "m/sleepy/c"]


def test_the_eta_counts_unit_times_only(toy, capsys):
    toy.set(builds=True, build_sleep=2)
    assert toy.run("--task", "a", "--task", "b", "--jobs", "2") == 0
    err = capsys.readouterr().err
    build_s = max(int(s) for s in re.findall(r"^build: copy \w \((\d+) s\)$", err, re.M))
    assert build_s >= 2
    first = re.search(r"m/sleepy/\w \((\d+) s\) \[1/2, ETA (\d+) s\]", err)
    assert first and int(first.group(2)) < build_s  # a build-inclusive guess would be >= 2 s
    assert eta([], 5, 2) is None
    assert eta([1.0, 3.0], 5, 2) == 2.0 * 3  # 5 units two at a time: three rounds of 2 s
    assert eta([4.0], 0, 1) == 0.0


def two_rate_source(tmp_path: Path, more_models: str = "") -> tuple[Path, Path]:
    """A tiny 3-fold scene task "src" at 16000 and 22050 Hz, and a models file with a mono
    module given binaural scenes through channels = "mean" (its rate: 16 kHz), then `more_models`."""
    from hear_gram import synthetic_tasks

    tasks = tmp_path / "tasks"
    synthetic_tasks.make_scene_task(tasks, name="src", n_per_class=2, duration_s=0.5, kfold=3,
                                    classes=synthetic_tasks.SCENE_CLASSES[2:4],
                                    sample_rates=(16000, 22050))  # fmt: skip
    models = tmp_path / "models.toml"
    models.write_text('[[model]]\nname = "m"\nmodule = "tests.fixtures.spectral_module"\n'
                      'formats = ["binaural"]\nchannels = "mean"\n' + more_models)  # fmt: skip
    return tasks, models


@pytest.mark.slow
def test_only_binaural_localization_renders_only_binaural_direction_tasks_at_the_models_rate(
    tmp_path, monkeypatch
):
    """A real `localization_tasks.generate` build through the suite's build step (the unit's
    evaluation faked): a run of binaural localization for a 16 kHz module renders no Ambisonic
    task, no T60 task and no 22050 Hz folder of a source that has both rates."""
    from hear_gram.suite.conditions.spatial import SpatialCondition

    tasks, models = two_rate_source(tmp_path)
    read = []

    def fake_evaluate(self, unit, resolved, settings, folder):
        root = self.tasks_root(unit, resolved, settings, folder / "unit.log")
        read.extend(self._names(root, unit))
        return [{"task": read[0], "format": unit.fmt, "snr_bin": "clean",
                 "metric": self.metric, "mean": 1.0, "std": 0.0, "folds": 3}]  # fmt: skip

    monkeypatch.setattr(SpatialCondition, "run", fake_evaluate)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the rate probe imports the fixture module
    work = tmp_path / "w"
    assert suite_main(["--models", str(models), "--tasks-dir", str(tasks), "--out", str(work),
                       "--conditions", "localization", "--localization-source", "src",
                       "--n-scenes", "3", "--quiet"]) == 0  # fmt: skip
    built = sorted(p.parent.relative_to(work / "build").as_posix()
                   for p in (work / "build").glob("*/*/task_metadata.json"))  # fmt: skip
    (root,) = {b.split("/")[0] for b in built}
    assert root.startswith("localization-src-binaural-16000-")
    assert [b.split("/")[1] for b in built] == [f"src-loc-binaural-{b}" for b in
                                                ("clean", "snr05-10", "snr10-20", "snr20-40")]  # fmt: skip
    assert sorted(read) == [b.split("/")[1] for b in built]
    rates = {p.name for p in (work / "build" / root).glob("*/*") if p.is_dir()}
    assert rates == {"16000"}
    (probe,) = (work / "probe").glob("*.json")  # the module's one load, shared with the probe
    assert json.loads(probe.read_text())["sample_rate"] == 16000


@pytest.mark.slow
def test_nat_hear_renders_only_the_models_rate_and_nothing_for_chance(tmp_path, monkeypatch):
    """A real `naturalistic_hear` build through the suite's build step (the units' HEAR runs
    faked): a 16 kHz module's nat-binaural unit renders only the 16000 Hz folder of a source
    that has 16000 and 22050, whose audio is byte-identical to the same folder rendered beside
    the other rate; the chance unit renders nothing and reads the source's labels."""
    from hear_gram.suite.conditions.hear import HearCondition

    tasks, models = two_rate_source(tmp_path, '[[model]]\nname = "chance"\nmodule = "chance"\n')
    roots = {}

    def fake_run(self, unit, resolved, settings, folder):
        roots[resolved.module] = self.tasks_root(unit, resolved, settings, folder / "unit.log")
        return [{"task": unit.task, "metric": "top1_acc", "mean": 0.5, "std": 0.0, "folds": 3}]

    monkeypatch.setattr(HearCondition, "run", fake_run)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the rate probe imports the fixture module
    work = tmp_path / "w"
    assert suite_main(["--models", str(models), "--tasks-dir", str(tasks), "--out", str(work),
                       "--conditions", "nat-binaural", "--task", "src", "--n-scenes", "3",
                       "--quiet"]) == 0  # fmt: skip
    (built,) = [
        p
        for p in (work / "build").iterdir()
        if p.is_dir() and p.name.startswith("nat-binaural-src-")
    ]
    assert built.name.startswith("nat-binaural-src-16000-")
    # the mono module runs through its channels wrapper (channels = "mean")
    assert roots == {"hear_gram.suite.channels_module": built, "chance": tasks}
    assert sorted(p.name for p in (built / "src").iterdir() if p.is_dir()) == ["16000"]
    # the same rate rendered beside the other one: every audio file byte for byte the same
    both = tmp_path / "both"
    subprocess.run([sys.executable, "-m", "naturalistic_hear", "--tasks-dir", str(tasks),
                    "--out", str(both), "--task", "src", "--format", "binaural", "--seed", "0",
                    "--n-scenes", "3", "--cache-dir", str(work / "build" / "scene-bank"),
                    "--quiet"], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert sorted(p.name for p in (both / "src").iterdir() if p.is_dir()) == ["16000", "22050"]
    alone = sorted((built / "src" / "16000").rglob("*.wav"))
    source = sorted((tasks / "src" / "16000").rglob("*.wav"))
    assert [f.relative_to(built / "src") for f in alone] == [
        f.relative_to(tasks / "src") for f in source
    ]
    for f in alone:
        assert f.read_bytes() == (both / "src" / f.relative_to(built / "src")).read_bytes(), f
