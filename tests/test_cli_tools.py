"""The CLI convention (hear_gram.cli) at each of the HEAR tools' and Nat-HEAR's entry points:
a JSON input nested thousands deep and a wrong-typed field end in exactly one stderr line
`<prog>: error: ...` and exit status 2 (never a RecursionError or TypeError traceback); Ctrl-C
inside the work ends with exit status 130."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hear_gram import embed, predict, synthetic_tasks
from hear_gram.checkpoints import cli as checkpoints_cli
from naturalistic_hear import __main__ as nat_hear
from naturalistic_hear import bench

DEEP = "[" * 5000 + "]" * 5000  # past Python's recursion limit for json.loads


def exit_and_err(main, argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


def assert_one_error_line(code: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "error:" in lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    synthetic_tasks.make_scene_task(root, n_per_class=1, kfold=3, duration_s=0.25,
                                    sample_rates=(16000,))  # fmt: skip
    return root / "hear-gram-demo-scene"


@pytest.fixture
def task(tmp_path, pristine) -> Path:
    import shutil

    return Path(shutil.copytree(pristine, tmp_path / "tasks" / pristine.name))


def edit_metadata(task: Path, **fields) -> None:
    path = task / "task_metadata.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


# (file to spoil, text or edit, what the one line names)
HOSTILE_TASKS = [
    ("task_metadata.json", DEEP, "nests"),
    ("fold00.json", DEEP, "nests"),
    ("task_metadata.json", {"sample_rate": "x"}, "sample_rate"),
    ("task_metadata.json", {"split_mode": 3}, "split_mode"),
    ("task_metadata.json", {"sample_duration": "x"}, "sample_duration"),
    ("task_metadata.json", {"splits": "fold00"}, "splits"),
    ("fold00.json", {"clip.wav": [{"a": 1}]}, "label"),
    ("fold00.json", [1, 2], "expected an object"),
]


def spoil(task: Path, name: str, change) -> None:
    if isinstance(change, str):
        (task / name).write_text(change)
    elif name == "task_metadata.json":
        edit_metadata(task, **change)
    else:
        (task / name).write_text(json.dumps(change))


@pytest.mark.parametrize(("name", "change", "needle"), HOSTILE_TASKS)
def test_embed_refuses_hostile_task_json_in_one_line(task, tmp_path, capsys, name, change, needle):
    spoil(task, name, change)
    code, err = exit_and_err(embed.main, ["hear_gram", "--tasks-dir", task.parent,
                                          "--out", tmp_path / "emb"], capsys)  # fmt: skip
    assert_one_error_line(code, err, "python -m hear_gram.embed: error:", needle)
    assert not (tmp_path / "emb" / "no-weights").exists()  # nothing embedded, only the log


@pytest.mark.parametrize(("name", "change", "needle"), HOSTILE_TASKS)
def test_nat_hear_refuses_hostile_task_json_in_one_line(task, tmp_path, capsys, name, change,
                                                        needle):  # fmt: skip
    spoil(task, name, change)
    code, err = exit_and_err(nat_hear.main, ["--tasks-dir", task.parent, "--out", tmp_path / "o",
                                             "--format", "binaural", "--task", task.name,
                                             "--cache-dir", tmp_path / "c", "-q"], capsys)  # fmt: skip
    assert_one_error_line(code, err, "python -m naturalistic_hear: error:", needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("change", "needle"), [(DEEP, "nests"), ({"split_mode": 3}, "split_mode")])
def test_predict_refuses_hostile_task_metadata_in_one_line(task, capsys, change, needle):
    spoil(task, "task_metadata.json", change)
    code, err = exit_and_err(predict.main, [task, "--grid", "faster"], capsys)
    assert_one_error_line(code, err, "python -m hear_gram.predict: error:", needle)


@pytest.mark.parametrize(
    ("main", "argv", "needle"),
    [(embed.main, ["hear_gram", "--model-options", DEEP], "--model-options"),
     (embed.main, ["hear_gram", "--model-options", "[1]"], "JSON object"),
     (embed.main, ["hear_gram", "--module", "other"], "MODULE or --module"),
     (predict.main, ["t", "--grid-points", "x"], "--grid-points"),
     (predict.main, ["t", "--in-memory", "maybe"], "--in-memory"),
     (predict.main, ["t", "--gpus", DEEP], "--gpus"),
     (checkpoints_cli.main, ["random", "--preset", "gram-t", "--depth", "x", "--out", "w"],
      "--depth"),
     (checkpoints_cli.main, ["random", "--model", "nope", "--out", "w"], "--preset/--model"),
     (synthetic_tasks.main, ["--out", "o", "--channels", "x"], "--channels"),
     (synthetic_tasks.main, ["--out", "o", "--channels", "1000"], "--channels"),
     (synthetic_tasks.main, ["--out", "o", "--seed", "-1"], "--seed"),
     (nat_hear.main, ["--tasks-dir", "t", "--out", "o", "--format", "binaural", "--shard", "x"],
      "--shard"),
     (nat_hear.main, ["--tasks-dir", "t", "--out", "o", "--format", "binaural", "--jobs", "0"],
      "--jobs"),
     (bench.main, ["--clips", "nan"], "--clips"),
     (bench.main, ["--duration-s", "inf"], "--duration-s"),
     (bench.main, ["--sample-rate", "1e12"], "--sample-rate")],
)  # fmt: skip
def test_wrong_typed_options_are_one_line(tmp_path, monkeypatch, capsys, main, argv, needle):
    monkeypatch.chdir(tmp_path)
    code, err = exit_and_err(main, argv, capsys)
    assert_one_error_line(code, err, needle)


def test_checkpoints_registry_nested_deep_is_one_line(tmp_path, monkeypatch, capsys):
    import hear_gram.checkpoints as ck

    (tmp_path / "checkpoints.json").write_text('{"checkpoints": ' + DEEP + "}")
    monkeypatch.setattr(ck, "REGISTRY_PATH", tmp_path / "checkpoints.json")
    code, err = exit_and_err(checkpoints_cli.main, ["list"], capsys)
    assert_one_error_line(code, err, "python -m hear_gram.checkpoints: error:", "nests")


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_is_exit_130_everywhere(task, tmp_path, monkeypatch, capsys):
    import hear_gram.checkpoints.cli as ck_cli

    cases = [
        (embed, "check_task", embed.main, ["hear_gram", "--tasks-dir", task.parent,
                                           "--out", tmp_path / "e"]),
        (predict, "predict", predict.main, [task]),
        (ck_cli, "random_encoder", ck_cli.main, ["random", "--preset", "gram-t",
                                                 "--out", tmp_path / "w.safetensors"]),
        (synthetic_tasks, "make_scene_task", synthetic_tasks.main, ["--out", tmp_path / "s"]),
        (nat_hear, "process_task", nat_hear.main,
         ["--tasks-dir", task.parent, "--task", task.name, "--out", tmp_path / "o",
          "--format", "binaural", "--cache-dir", tmp_path / "c"]),
        (bench, "run_bench", bench.main, ["--work", tmp_path / "b"]),
    ]  # fmt: skip
    monkeypatch.setattr(nat_hear, "bank_factory", lambda args: None)
    for module, name, main, argv in cases:
        monkeypatch.setattr(module, name, interrupt)
        code, err = exit_and_err(main, argv, capsys)
        assert code == 130 and err.strip().endswith("interrupted"), (module.__name__, err)
