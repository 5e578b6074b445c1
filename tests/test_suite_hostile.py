"""hear_gram.suite on hostile inputs: a models file nested 10000 deep or with wrong-typed fields,
model names that would break REPORT.md, links planted at OUT/report and OUT/units. Each ends in
one line `python -m hear_gram.suite: error: ...`, exit 2, nothing written outside OUT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hear_gram.suite.__main__ import main as suite_main
from tests.hostile import snapshot

PREFIX = "python -m hear_gram.suite: error:"


def tasks_dir(root: Path) -> Path:
    (root / "a").mkdir(parents=True)
    (root / "a" / "task_metadata.json").write_text(json.dumps({"task_name": "a"}))
    return root


def run(tmp_path: Path, models_text: str, capsys, *extra: str) -> tuple[int, list[str]]:
    models = tmp_path / "models.toml"
    models.write_text(models_text)
    code = suite_main(["--models", str(models), "--tasks-dir", str(tasks_dir(tmp_path / "tasks")),
                       "--out", str(tmp_path / "w"), "--conditions", "dry", "--quiet", *extra])  # fmt: skip
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    return code, err


BASE = '[[model]]\nname = "m"\nmodule = "x"\n'


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (BASE + "options = " + "[" * 10000 + "]" * 10000 + "\n", "nests deeper"),
        (BASE + "options = { a = " + "{ b = " * 5000 + "1" + " }" * 5001 + "\n", "nests deeper"),
        ('[[model]]\nname = 5\nmodule = "x"\n', "model name must be str"),
        (BASE + 'options = "x"\n', "options must be dict"),
        (BASE + "conditions = [1]\n", "conditions[0] must be str"),
        (BASE + "weights = true\n", "weights must be str"),
        (BASE + 'formats = "mono"\n', "formats must be list"),
        ('[[model]]\nname = "m"\nmodule = 3\n', "module must be str"),
        (BASE + "options = { x = nan }\n", "must be finite"),
        (BASE + "options = { d = 1979-05-27 }\n", "not a JSON value"),
        (BASE + '[model.binaural]\nmodule = ["x"]\n', "binaural.module must be str"),
        (BASE + "[model.wet]\nmodule = 'y'\n", "unknown keys ['wet']"),
        ('model = "x"\n', "no [[model]] entries"),
    ],
)  # fmt: skip
def test_a_broken_models_file_is_one_line_exit_2(tmp_path, capsys, text, needle):
    code, err = run(tmp_path, text, capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(PREFIX) and needle in err[0], err[0]
    assert not (tmp_path / "w" / "units").exists()  # refused before any unit


@pytest.mark.hostile("crash")
@pytest.mark.parametrize("name", ["a|b", "a\\nb", "a`b`", "x[1]"])
def test_a_model_name_that_would_break_the_markdown_is_refused(tmp_path, capsys, name):
    code, err = run(tmp_path, f'[[model]]\nname = "{name}"\nmodule = "x"\n', capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(PREFIX)
    assert "model name" in err[0]


@pytest.mark.hostile("path")
@pytest.mark.parametrize("folder", ["report", "units"])
def test_a_link_planted_at_a_run_folder_is_refused_and_nothing_is_written_outside(tmp_path, capsys, folder):  # fmt: skip
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    before = snapshot(outside)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / folder).symlink_to(outside)
    code, err = run(tmp_path, BASE, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(PREFIX)
    assert folder in err[0] and "outside" in err[0]
    assert snapshot(outside) == before


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(("module", "needle"), [("no_such_module_of_conditions", "No module"),
                                                ("os; rm -rf", "dotted Python name")])  # fmt: skip
def test_a_bad_condition_module_is_one_line_exit_2(tmp_path, capsys, module, needle):
    code, err = run(tmp_path, BASE, capsys, "--condition-module", module)
    assert code == 2 and len(err) == 1 and err[0].startswith(PREFIX) and needle in err[0]
