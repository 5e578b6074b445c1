"""The suite's warm workers (`hear_gram.suite.worker`): a step run in a worker, after other steps
in the same process, gives the bytes a fresh process gives; its failures, deaths and interrupts
read as a fresh process's would."""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from hear_gram.suite import condition, worker
from hear_gram.suite.condition import UnitError, UnitInterrupted, run_logged
from tests.conftest import stable_scores

MODELS = """
[[model]]
name = "gram"
module = "hear_gram.gram_t"
weights = {weights}

[[model]]
name = "spectral"
module = "tests.fixtures.spectral_module"
"""


def _outputs(run: Path) -> dict[str, object]:
    """Every embedding array (bytes) and heareval score file (parsed, less what differs between
    two fresh runs too: its timings, the run's folder and the reprs of functions, "<function f
    at 0x...>") of a run, by path under the run's embeddings folder (the folder names hold the
    task's content digest and the weights' sha256, the same in both runs)."""
    root = run / "embeddings"
    out: dict[str, object] = {}
    for p in root.rglob("*"):
        if p.is_file() and p.suffix == ".npy":
            out[str(p.relative_to(root))] = p.read_bytes()
        elif p.is_file() and p.name.endswith("predicted-scores.json"):
            out[str(p.relative_to(root))] = stable_scores(json.loads(p.read_text()))
    return out


@pytest.mark.slow
def test_steps_in_one_warm_worker_give_the_bytes_of_fresh_processes(tmp_path):
    """Two models x two tasks, `--jobs 1`: one worker runs all eight steps in turn (GRAM-T's
    after the other module's, the event task's after the scene task's). Every embedding array
    and every heareval score file is byte-identical to a run with `--fresh-processes`."""
    from hear_gram import synthetic_tasks
    from hear_gram.checkpoints.saving import random_encoder, save_checkpoint
    from tests.conftest import run_module

    tasks = tmp_path / "tasks"
    synthetic_tasks.make_scene_task(tasks, sample_rates=(16000,), n_per_class=3,
                                    classes=synthetic_tasks.SCENE_CLASSES[:3], kfold=3)  # fmt: skip
    synthetic_tasks.make_event_task(tasks, sample_rates=(16000,), n_clips=6)
    weights = save_checkpoint(tmp_path / "w.safetensors", random_encoder("gram-t", depth=1, seed=5),
                              "released")  # fmt: skip
    models = tmp_path / "models.toml"
    models.write_text(MODELS.format(weights=json.dumps(str(weights))))
    runs = {}
    for name, extra in (("warm", []), ("fresh", ["--fresh-processes"])):
        out = tmp_path / name
        run_module(["hear_gram.suite", "--models", str(models), "--tasks-dir", str(tasks),
                    "--out", str(out), "--conditions", "dry", "--grid", "fast",
                    "--grid-points", "1", "--jobs", "1", "--no-probe", *extra], cwd=tmp_path,
                   log=tmp_path / f"{name}.log")  # fmt: skip
        runs[name] = out
    logs = sorted((runs["warm"] / "units").rglob("unit.log"))
    assert len(logs) == 4
    pids = [m for log in logs for m in re.findall(r"\(in warm worker pid (\d+)\)", log.read_text())]
    assert len(pids) == 8 and len(set(pids)) == 1  # embed + predict per unit, one process
    for log in (runs["fresh"] / "units").rglob("unit.log"):
        assert "warm worker" not in log.read_text()
    warm, fresh = _outputs(runs["warm"]), _outputs(runs["fresh"])
    assert sum(k.endswith("test.predicted-scores.json") for k in warm) == 4
    assert sum(k.endswith(".embeddings.npy") for k in warm) >= 4 * 2
    assert sorted(warm) == sorted(fresh)
    assert [k for k in warm if warm[k] != fresh[k]] == []
    # the report's rows (results.json: a list), less the units' wall times
    rows = [[{k: v for k, v in r.items() if k != "seconds"}
             for r in json.loads((run / "report" / "results.json").read_text())]
            for run in runs.values()]  # fmt: skip
    assert len(rows[0]) > 8 and rows[0] == rows[1]


# ------------------------------------------------------------------ failures, deaths, interrupts


@pytest.fixture
def pool(tmp_path):
    """A pool with no preloads (its steps import what they need), used for run_logged."""
    p = worker.Pool(condition.step_env(), tmp_path / "workers.log", [])
    condition.allow_steps()
    condition.use_workers(p)
    yield p
    condition.use_workers(None)
    p.close()
    condition.allow_steps()


def _embed_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hear_gram.embed", *args]


def _slow_step(tmp_path: Path) -> list[str]:
    """An embed step on a real task: it imports heareval's runner (TensorFlow, seconds) first."""
    from hear_gram import synthetic_tasks

    tasks = tmp_path / "tasks"
    synthetic_tasks.make_scene_task(tasks, sample_rates=(16000,), n_per_class=1,
                                    classes=synthetic_tasks.SCENE_CLASSES[:3], kfold=3)  # fmt: skip
    return _embed_cmd("tests.fixtures.spectral_module", "--tasks-dir", str(tasks),
                      "--out", str(tmp_path / "o"))  # fmt: skip


def test_a_failing_step_reads_as_a_fresh_process_failure_and_its_worker_is_retired(tmp_path, pool):  # fmt: skip
    """An exit-2 refusal: the same one-line UnitError in a worker as in a fresh process, and the
    worker that ran it is not reused."""
    cmd = _embed_cmd("no.such.module", "--tasks-dir", str(tmp_path / "none"), "--out",
                     str(tmp_path / "o"))  # fmt: skip
    with pytest.raises(UnitError) as warm:
        run_logged(cmd, tmp_path / "warm.log", "hear_gram.embed")
    first = re.search(r"pid (\d+)", (tmp_path / "warm.log").read_text()).group(1)
    condition.use_workers(None)
    with pytest.raises(UnitError) as fresh:
        run_logged(cmd, tmp_path / "fresh.log", "hear_gram.embed")
    assert str(warm.value) == str(fresh.value)
    assert str(warm.value).startswith(
        "hear_gram.embed exited 2: python -m hear_gram.embed: error: "
    )
    condition.use_workers(pool)
    with pytest.raises(UnitError):
        run_logged(cmd, tmp_path / "again.log", "hear_gram.embed")
    second = re.search(r"pid (\d+)", (tmp_path / "again.log").read_text()).group(1)
    assert first != second


def test_a_successful_step_keeps_its_worker_and_a_dead_idle_one_is_replaced(tmp_path, pool):
    cmd = [sys.executable, "-m", "hear_gram.embed", "--help"]
    run_logged(cmd, tmp_path / "a.log", "hear_gram.embed")
    run_logged(cmd, tmp_path / "b.log", "hear_gram.embed")
    pid = [re.search(r"pid (\d+)", (tmp_path / n).read_text()).group(1) for n in ("a.log", "b.log")]
    assert pid[0] == pid[1]
    assert (
        "usage: python -m hear_gram.embed" in (tmp_path / "a.log").read_text()
    )  # its output, in the log
    (idle,) = pool._idle
    idle.proc.kill()
    idle.proc.wait()
    run_logged(cmd, tmp_path / "c.log", "hear_gram.embed")
    assert re.search(r"pid (\d+)", (tmp_path / "c.log").read_text()).group(1) != pid[0]


def test_a_worker_is_replaced_after_its_max_steps(tmp_path):
    pool = worker.Pool(condition.step_env(), tmp_path / "workers.log", [], max_steps=2)
    condition.allow_steps()
    condition.use_workers(pool)
    try:
        for name in "abc":
            run_logged([sys.executable, "-m", "hear_gram.embed", "--help"], tmp_path / name, "x")
    finally:
        condition.use_workers(None)
        pool.close()
    pid = [re.search(r"pid (\d+)", (tmp_path / n).read_text()).group(1) for n in "abc"]
    assert pid[0] == pid[1] != pid[2]


def _kill_when_running(pool: worker.Pool, sig: int, after_s: float) -> threading.Thread:
    def kill():
        end = time.monotonic() + 60
        while time.monotonic() < end and not condition.running_steps():
            time.sleep(0.02)
        time.sleep(after_s)
        with condition._RUNNING_LOCK:
            procs = list(condition._RUNNING)
        for proc in procs:
            proc.send_signal(sig)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_in_a_step_fails_the_step_with_the_signal(tmp_path, pool):
    """SIGKILL (the kernel's out-of-memory killer) while the step imports heareval: a UnitError
    naming the signal, not a hang, and the next step gets a new worker."""
    cmd = _slow_step(tmp_path)
    thread = _kill_when_running(pool, signal.SIGKILL, 0.3)
    with pytest.raises(UnitError, match="the worker process killed by SIGKILL before the step ended"):  # fmt: skip
        run_logged(cmd, tmp_path / "k.log", "hear_gram.embed")
    thread.join()
    assert not pool._idle
    run_logged([sys.executable, "-m", "hear_gram.embed", "--help"], tmp_path / "n.log", "x")


def test_stopping_the_run_interrupts_a_step_in_a_worker(tmp_path, pool):
    """`stop_steps` (Ctrl-C reaching the runner only) sends the busy worker SIGINT: the step ends
    as interrupted, not failed, the worker is retired and nothing more starts."""
    cmd = _slow_step(tmp_path)

    def stop():
        end = time.monotonic() + 60
        while time.monotonic() < end and not condition.running_steps():
            time.sleep(0.02)
        time.sleep(0.3)
        condition.stop_steps(grace_s=0.0)

    thread = threading.Thread(target=stop, daemon=True)
    thread.start()
    with pytest.raises(UnitInterrupted):
        run_logged(cmd, tmp_path / "i.log", "hear_gram.embed")
    assert "python -m hear_gram.embed: interrupted" in (tmp_path / "i.log").read_text()
    thread.join()
    assert not pool._idle
    with pytest.raises(UnitInterrupted, match="not started"):
        run_logged([sys.executable, "-m", "hear_gram.embed", "--help"], tmp_path / "n.log", "x")


def test_the_worker_runs_only_its_tools_and_refuses_a_malformed_request():
    import subprocess

    assert worker.main(["os"]) == 2
    with pytest.raises(ValueError, match="not a tool"):
        worker.run_step("os", ["-c", "print(1)"], "/dev/null")
    for line in (b'{"tool": "os", "argv": [], "log": "/dev/null"}\n',
                 b'{"tool": "hear_gram.embed", "argv": [1], "log": "/dev/null"}\n',
                 b'[1, 2]\n', b'{"tool": \n'):  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "hear_gram.suite.worker"], input=line,
                              capture_output=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2 and proc.stdout == b""
        assert b"worker: refused a request" in proc.stderr
