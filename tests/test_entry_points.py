"""Every command-line entry point follows hear_gram.cli's convention.

One table of every entry point (the README's), driven three ways: a Ctrl-C anywhere inside ends
with exit 130 and one line; a `--model-options` (or models file) nested 100000 deep and one of the
wrong type end with one line and exit 2, never a RecursionError or TypeError traceback. The
per-tool tests (tests/test_cli_*.py, test_suite_hostile.py, test_scores.py) drive each tool's own
JSON and TOML inputs (task metadata, split files, registries) the same way.
"""

from __future__ import annotations

import importlib

import pytest

from hear_gram import cli

# module -> argv that parses (paths need not exist: nothing runs past the interrupt below)
ENTRY_POINTS = {
    "hear_gram.suite.__main__": ["--models", "m.toml", "--tasks-dir", "t"],
    "hear_gram.embed": ["hear_gram", "--tasks-dir", "t", "--out", "o"],
    "hear_gram.predict": ["t"],
    "hear_gram.scores": ["o"],
    "hear_gram.checkpoints.cli": ["list"],
    "naturalistic_hear.__main__": ["--tasks-dir", "t", "--out", "o", "--format", "binaural"],
    "naturalistic_hear.bench": ["--work", "o"],
    "localization_tasks.generate": ["--tasks-dir", "t", "--out", "o"],
    "localization_tasks.evaluate": ["--module", "chance", "--tasks-dir", "t", "--out", "o"],
    "localization_tasks.seld.modes": [
        "--module",
        "m",
        "--tasks-dir",
        "t",
        "--out",
        "o",
        "--mode",
        "cartesian-regression",
    ],  # fmt: skip
    "localization_tasks.seld.synth": ["--out", "o"],
    "localization_tasks.seld.convert": [
        "--dataset-dir",
        "d",
        "--dataset",
        "starss23",
        "--out",
        "o",
    ],
    "localization_tasks.seld.evaluate": ["--tasks-dir", "t", "--out", "o", "--baseline", "zero"],
    "localization_tasks.seld.score": ["--ref-dir", "r", "--pred-dir", "p"],
    "hear_gram.demo": ["--out", "o"],
    "hear_gram.bench": ["--out", "o/bench.json"],
    "hear_gram.bench_suite": ["--out", "o/suite.json"],
    "hear_gram.gpu_check": ["--out", "o/gpu.json", "--dry-run"],
    "hear_gram.pretrain.__main__": ["--config", "demo-cpu"],
    "hear_gram.pretrain.report": ["--out", "o"],
    "hear_gram.synthetic_tasks": ["--out", "o"],
}
WITH_MODEL_OPTIONS = ["hear_gram.embed", "localization_tasks.evaluate",
                      "localization_tasks.seld.modes", "localization_tasks.seld.evaluate",
                      "hear_gram.demo"]  # fmt: skip


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_the_table_covers_every_subcommand_of_the_hear_gram_command():
    from hear_gram.__main__ import COMMANDS

    def modules(table):
        for entry in table.values():
            yield from modules(entry) if isinstance(entry, dict) else [entry.module]

    ours = {m for m in modules(COMMANDS) if m != "hearvalidator.validate"}  # not our code
    assert ours <= set(ENTRY_POINTS), sorted(ours - set(ENTRY_POINTS))


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_ctrl_c_inside_any_entry_point_is_exit_130_and_one_line(module, tmp_path, monkeypatch, capsys):  # fmt: skip
    # Interrupt at the first step every entry point takes inside hear_gram.cli.main (its logging
    # set-up): an entry point that does not run through the convention would not return 130.
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "setup_logging", interrupt)
    main = importlib.import_module(module).main
    assert main(ENTRY_POINTS[module]) == 130
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].endswith(": interrupted"), err


@pytest.mark.hostile("crash")
@pytest.mark.parametrize("module", WITH_MODEL_OPTIONS)
@pytest.mark.parametrize(
    "options, needle",
    [
        ("[" * 100_000 + "]" * 100_000, "nests deeper"),
        ('["not", "an", "object"]', "JSON object"),
        ('{"precision": NaN}', "not JSON"),
    ],  # fmt: skip
)
def test_model_options_nested_or_wrong_typed_are_one_line_exit_2(module, options, needle, tmp_path,
                                                                  monkeypatch, capsys):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as e:
        main([*ENTRY_POINTS[module], "--model-options", options])
    assert e.value.code == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and ": error: " in err[0] and needle in err[0], err
    assert "Traceback" not in err[0] and len(err[0]) < 400
    assert not (tmp_path / "o").exists()  # refused before anything is written


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    "text, needle",
    [
        ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "deeper"),
        ('[[model]]\nname = "m"\nmodule = ["not", "a", "name"]\n', "module"),
        ('[[model]]\nname = 5\nmodule = "m"\n', "name"),
    ],  # fmt: skip
)
def test_suite_models_file_nested_or_wrong_typed_is_one_line_exit_2(text, needle, tmp_path, monkeypatch, capsys):  # fmt: skip
    from hear_gram.suite.__main__ import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "t").mkdir()
    (tmp_path / "m.toml").write_text(text)
    assert main(ENTRY_POINTS["hear_gram.suite.__main__"]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and ": error: " in err[0] and needle in err[0], err
