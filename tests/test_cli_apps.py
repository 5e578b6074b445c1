"""The applications under the one CLI convention (hear_gram.cli): bench, gpu_check, pretrain and
pretrain.report. A hostile or wrong-typed input ends in exactly one `prog: error:` line on stderr
and exit 2 before anything is written; Ctrl-C inside ends in `prog: interrupted` and exit 130,
with the log in the output folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hear_gram import bench, gpu_check
from hear_gram.pretrain import __main__ as pretrain
from hear_gram.pretrain import report

REPO = Path(__file__).resolve().parents[1]
DEEP = "[" * 5000 + "]" * 5000  # past Python's recursion limit if anything recursed on it


def status(main, argv: list[str]) -> int:
    """`main(argv)`'s exit status, returned or raised (argparse's own errors exit)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def error_line(capsys, prog: str) -> str:
    """The one stderr line of a refused input (no other line at all)."""
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith(f"{prog}: error: ")
    return lines[0]


# --- refused inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--repeats", "x"], "--repeats"), (["--repeats", DEEP], "--repeats"),
     (["--long-minutes", "inf"], "--long-minutes"), (["--precisions", "fp64"], "--precisions"),
     (["--device", "nonsense"], "--device"), (["--modules", "gram_x"], "--modules")],
)  # fmt: skip
def test_bench_refuses(args, needle, capsys, tmp_path):
    out = tmp_path / "b" / "bench.json"
    assert status(bench.main, [*args, "--out", str(out)]) == 2
    assert needle in error_line(capsys, bench.PROG)
    assert not (tmp_path / "b").exists()  # not even the log folder


@pytest.mark.parametrize(("args", "needle"), [(["--device", "nonsense"], "--device"),
                                              (["--device", DEEP], "--device"),
                                              (["--dry-run", "--nope"], "--nope")])  # fmt: skip
def test_gpu_check_refuses(args, needle, capsys, tmp_path):
    assert status(gpu_check.main, [*args, "--out", str(tmp_path / "g" / "g.json")]) == 2
    assert needle in error_line(capsys, gpu_check.PROG)
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize(
    ("item", "needle"),
    [(f"depth={DEEP}", "depth takes int | None"), ("width=wide", "width takes int | None"),
     ("nope=1", "bad override"), ("batch_clips=1000000000", "batch_clips must be in"),
     ("lr=nan", "lr must be finite"), ("mask_ratio=1.0", "mask_ratio"),
     ("fmt=mono7", "fmt")],
)  # fmt: skip
def test_pretrain_refuses_overrides(item, needle, capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert status(pretrain.main, ["--config", "demo-cpu", item, f"out_dir={run_dir}"]) == 2
    assert needle in error_line(capsys, pretrain.PROG)
    assert not run_dir.exists()


def test_pretrain_refuses_an_unknown_config(capsys):
    assert status(pretrain.main, ["--config", "nope"]) == 2
    assert "--config" in error_line(capsys, pretrain.PROG)


@pytest.mark.parametrize(
    "args", [["--set", f"depth={DEEP}"], ["--seeds", "two"], ["--seeds", "0"], ["--steps", DEEP]]
)
def test_pretrain_report_refuses(args, capsys, tmp_path):
    work = tmp_path / "w"
    code = status(
        report.main, ["--work", str(work), "--run-dir", str(tmp_path / "r" / "demo"), *args]
    )
    assert code == 2
    error_line(capsys, report.PROG)
    assert not work.exists() and not (tmp_path / "r").exists()


# --- Ctrl-C ------------------------------------------------------------------------------------
def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def assert_interrupted(capsys, prog: str, log: object) -> None:
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"{prog}: interrupted"
    assert log.is_file()  # the run's log, in its output folder


def test_bench_ctrl_c(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(bench, "run", interrupt)
    assert bench.main(["--out", str(tmp_path / "b.json"), "--device", "cpu"]) == 130
    assert_interrupted(capsys, bench.PROG, tmp_path / "logs" / "hear_gram-bench.log")


def test_gpu_check_ctrl_c(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(gpu_check, "run", interrupt)
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path / "g.json")]) == 130
    assert_interrupted(capsys, gpu_check.PROG, tmp_path / "logs" / "hear_gram-gpu_check.log")


@pytest.mark.parametrize("how", ["raised", "lightning"])
def test_pretrain_ctrl_c(how, monkeypatch, capsys, tmp_path):
    """Ctrl-C raised, or caught by Lightning (train saves the state and returns None)."""
    monkeypatch.setattr(pretrain, "train", interrupt if how == "raised" else lambda cfg: None)
    assert pretrain.main(["--config", "demo-cpu", f"out_dir={tmp_path}"]) == 130
    assert_interrupted(capsys, pretrain.PROG, tmp_path / "logs" / "hear_gram-pretrain.log")


def test_pretrain_report_ctrl_c(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(report, "gather", interrupt)
    args = ["--work", str(tmp_path / "w"), "--run-dir", str(tmp_path / "r" / "demo")]
    assert report.main(args) == 130
    log = tmp_path / "w" / "logs" / "hear_gram-pretrain-report.log"
    assert_interrupted(capsys, report.PROG, log)


# --- as the user runs them -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("module", "args", "needle"),
    [("hear_gram.pretrain", ["--config", "demo-cpu", "depth=" + "[" * 3000], "depth takes"),
     ("hear_gram.pretrain.report", ["--seeds", "1000000"], "seeds")],
)  # fmt: skip
def test_python_m_refuses_in_one_line(module, args, needle, tmp_path):
    """`python -m` of the package entry points (their __main__ modules): exit 2, the last
    stderr line is the error (import-time warnings of third-party packages may come before)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in lines if "error:" in line] == [lines[-1]]
    assert lines[-1].startswith(f"python -m {module}: error: ") and needle in lines[-1]
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a log
