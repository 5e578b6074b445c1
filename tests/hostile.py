"""Harness of the hostile-input matrix (tests/test_hostile_*.py).

Each case is a test marked ``@pytest.mark.hostile(KIND)`` with KIND one of `KINDS`; conftest.py
prints, at the end of a run, how many cases of each kind passed. Helpers here make the usual
assertions cheap: nothing outside the output folder changed (`snapshot`), a CLI failed with one
clear line and exit 2 (`run_cli`), and a bomb stays within memory and time (`run_limited`).
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

KINDS = {
    "path": "names from data escaping their folder; writes through planted links",
    "bomb": "sizes or rates that would cost unbounded memory or time",
    "nonfinite": "NaN/Inf or degenerate values that must not become plausible numbers",
    "stale": "caches and resumed runs that must not reuse results of other inputs/settings",
    "code": "files that could run code when loaded",
    "crash": "broken inputs that must fail with a clear message, not a traceback",
    "process": "workers and concurrent runs",
}


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (links recorded by target, not followed)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else ""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def run_limited(
    args: list[str], cwd: Path | None = None, mem_mb: int | None = None, timeout: float = 120
) -> Result:
    """`python -m ARGS` in a subprocess, its address space capped at `mem_mb` MB (RLIMIT_AS) and
    its wall time at `timeout` s (subprocess.TimeoutExpired propagates: a hang fails the case)."""

    def limit() -> None:
        if mem_mb is not None:
            cap = mem_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_cli(args: list[str], cwd: Path | None = None, timeout: float = 120) -> Result:
    """`python -m ARGS`; the caller asserts the exit code and `last_line`."""
    return run_limited(args, cwd=cwd, timeout=timeout)


def assert_clean_failure(res: Result, *needles: str) -> None:
    """Exit 2, no traceback, and the last stderr line names every needle (case-insensitive)."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    line = res.last_line.lower()
    for n in needles:
        assert n.lower() in line, (n, res.last_line)
