"""The `hear-gram` command (hear_gram/__main__.py): every subcommand listed and runnable, and a
subcommand behaves exactly as the module it dispatches to."""

from __future__ import annotations

import configparser
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hear_gram import __main__ as command

REPO = Path(__file__).resolve().parents[1]
FLAT = command._flat(command.COMMANDS, "")


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_help_lists_every_subcommand_with_its_description():
    proc = run("-m", "hear_gram", "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    listed = {}
    for line in proc.stdout.splitlines():
        for name, cmd in FLAT.items():
            if line.strip().startswith(name + " ") and line.strip().endswith(cmd.help):
                listed[name] = line
    assert sorted(listed) == sorted(FLAT)
    # groups: each runnable leaf under "localization" and "seld" is listed with its group
    assert {"localization generate", "localization evaluate", "localization modes", "seld synth",
            "seld convert", "seld evaluate", "seld score"} <= set(FLAT)  # fmt: skip


def test_help_imports_no_torch():
    code = "import sys; from hear_gram.__main__ import main; main(['--help']); print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'naturalistic_hear', 'localization_tasks')))"  # noqa: E501
    proc = run("-c", code)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("argv", [["nope"], ["localization", "nope"], ["seld", "--nope"]])
def test_unknown_subcommand_is_one_line_and_exit_2(argv, capsys):
    assert command.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "error: unknown subcommand" in err


@pytest.mark.parametrize("argv", [[], ["localization"], ["seld"]])
def test_missing_subcommand_prints_usage_and_exits_2(argv, capsys):
    assert command.main(argv) == 2
    assert "subcommands:" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(FLAT))
def test_every_target_has_a_main_and_its_help_exits_0(name, capsys):
    module = importlib.import_module(FLAT[name].module)
    assert callable(module.main)
    assert command.main([*name.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage" in out.lower()


def test_suite_subcommand_behaves_as_python_m_hear_gram_suite(tmp_path):
    """Same argv, an error case (the models file is missing): same status, same stderr."""
    args = ["--models", str(tmp_path / "missing.toml"), "--tasks-dir", str(tmp_path),
            "--work", str(tmp_path / "work")]  # fmt: skip
    direct = run("-m", "hear_gram.suite", *args, cwd=tmp_path)
    via = run("-m", "hear_gram", "suite", *args, cwd=tmp_path)
    assert direct.returncode == via.returncode == 2
    assert via.stderr == direct.stderr and "missing.toml" in via.stderr
    assert via.stdout == direct.stdout


def test_a_usage_error_is_the_modules_own(tmp_path):
    """argparse's own error (an unknown option) names the module's prog, as `python -m` does."""
    direct = run("-m", "naturalistic_hear", "--no-such-option", cwd=tmp_path)
    via = run("-m", "hear_gram", "naturalistic", "--no-such-option", cwd=tmp_path)
    assert direct.returncode == via.returncode == 2 and via.stderr == direct.stderr


def interrupt(argv):
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [(lambda argv: None, 0), (lambda argv: 3, 3), (lambda argv: sys.exit(4), 4),
     (lambda argv: sys.exit(None), 0), (lambda argv: sys.exit("bad"), 1),
     (lambda argv: sys.exit(True), 1), (interrupt, 130)],
)  # fmt: skip
def test_call_returns_the_status_whether_returned_or_raised(behaviour, status):
    assert command.call(behaviour, [], "prog") == status


def test_call_gives_a_parameterless_main_its_arguments_in_sys_argv():
    seen = []
    before = list(sys.argv)
    assert command.call(lambda: seen.append(list(sys.argv)), ["-m", "w"], "tool") == 0
    assert seen == [["tool", "-m", "w"]] and sys.argv == before


def test_console_scripts_resolve_to_callables():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    scripts = dict(
        line.split(" = ")
        for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    assert scripts["hear-gram"] == "hear_gram.__main__:main"
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target
    installed = Path(sys.executable).parent / "hear-gram"
    if installed.exists():  # an environment installed from this checkout
        assert run(str(installed), "--help").returncode == 0
