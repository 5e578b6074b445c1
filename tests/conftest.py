"""Shared fixtures: tiny GRAM checkpoints written once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

# No test reaches the Hugging Face hub: offline, an empty cache of this session's own, no token
# (set before huggingface_hub is first imported: it reads them once). The hub tests run their
# commands with a local stand-in for the hub instead (tests/test_hub.py).
for _key in [k for k in os.environ if k.startswith("HF_")]:
    del os.environ[_key]
os.environ.update(HF_HUB_OFFLINE="1", HF_HOME=tempfile.mkdtemp(prefix="hear-gram-tests-hf-"))

from hear_gram.checkpoints import random_encoder, save_checkpoint  # noqa: E402

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[1]


def run_module(args: list[str], cwd: Path, log: Path, threads: int = 1) -> None:
    """Run `python -m ...` with this interpreter, the repo importable, output to `log`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    # heareval's probes are tiny: one thread is faster, and OpenMP spinning on a shared 2-core
    # machine made the predictions 8x slower (80 s instead of 10 s) when others were busy.
    env["OMP_NUM_THREADS"] = str(threads)
    with log.open("w") as f:
        proc = subprocess.run(
            [sys.executable, "-m", *args], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT
        )
    if proc.returncode != 0:
        tail = log.read_text()[-4000:]
        raise AssertionError(f"{' '.join(args[:2])} exited {proc.returncode}:\n{tail}")


def make_recording_python(tmp_path: Path, target: str, *make_vars: str) -> list[list[str]]:
    """`make -o install TARGET VARS...` from the repository with PY replaced by a script that only
    records its arguments: the command lines (split on spaces) the target would run with Python,
    in order. Skips where `make` is missing."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("no make")
    echo = tmp_path / "echo-args"
    echo.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/args"\n')
    echo.chmod(0o755)
    subprocess.run(["make", "-s", "-o", "install", target, f"PY={echo}", *make_vars], cwd=REPO,
                   check=True, capture_output=True)  # fmt: skip
    return [line.split() for line in (tmp_path / "args").read_text().splitlines()]


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ckpts")


@pytest.fixture(scope="session")
def gram_t_file(ckpt_dir):
    """GRAM-T binaural, released layout, full width, 2 layers."""
    return save_checkpoint(
        ckpt_dir / "gram-t.safetensors", random_encoder("gram-t", depth=2), "released"
    )


@pytest.fixture(scope="session")
def gram_t_time_file(ckpt_dir):
    return save_checkpoint(
        ckpt_dir / "gram-t-time.safetensors", random_encoder("gram-t-time", depth=1), "released"
    )


@pytest.fixture(scope="session")
def gram_t_ambi_file(ckpt_dir):
    return save_checkpoint(
        ckpt_dir / "gram-t-ambi.safetensors",
        random_encoder("gram-t-ambisonic", depth=1),
        "released",
    )


@pytest.fixture(scope="session")
def gram_m_file(ckpt_dir):
    return save_checkpoint(
        ckpt_dir / "gram-m.safetensors", random_encoder("gram-m", depth=2), "released"
    )


def noise(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


# The hostile-input matrix's counts per kind (tests/hostile.py). Each report carries its kind in
# `user_properties`, which pytest-xdist sends from its workers to the controller, so the counting
# in `pytest_runtest_logreport` (called where the reports arrive) sees every case either way.
HOSTILE_COUNTS: dict[str, dict[str, int]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    marker = item.get_closest_marker("hostile")
    if marker is not None:
        from tests.hostile import KINDS

        kind = marker.args[0]
        assert kind in KINDS, f"unknown hostile kind {kind!r}; see tests/hostile.py"
        if ("hostile", kind) not in report.user_properties:  # one list for all phases
            report.user_properties.append(("hostile", kind))


def pytest_runtest_logreport(report):
    kind = dict(report.user_properties).get("hostile")
    if kind is None or not (report.when == "call" or report.outcome != "passed"):
        return
    counts = HOSTILE_COUNTS.setdefault(kind, {"passed": 0, "failed": 0, "skipped": 0})
    counts[report.outcome] += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = HOSTILE_COUNTS
    if not counts:
        return
    parts = [f"{kind} {c['passed']}/{sum(c.values())}" for kind, c in sorted(counts.items())]
    passed = sum(c["passed"] for c in counts.values())
    n = sum(sum(c.values()) for c in counts.values())
    terminalreporter.write_line(
        f"hostile-input matrix: {passed}/{n} cases pass ({', '.join(parts)})"
    )


def stable_scores(value: object) -> object:
    """heareval's scores JSON (parsed) less what two runs of one seed differ in too: timings
    (`time_in_min*`), the task's own path (`embedding_path`) and reprs of functions ("<function f
    at 0x...>")."""
    import re

    if isinstance(value, dict):
        return {k: stable_scores(v) for k, v in value.items()
                if not k.startswith("time_in_min") and k != "embedding_path"}  # fmt: skip
    if isinstance(value, list):
        return [stable_scores(v) for v in value]
    if isinstance(value, str):
        return re.sub(r" at 0x[0-9a-f]+>", ">", value)
    return value
