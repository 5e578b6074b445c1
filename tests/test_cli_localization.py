"""The localization and SELD tools under the one cache and the one command-line convention.

- Both evaluators' embedding caches (`localization_tasks.embeddings.Embedder`, scene
  embeddings; `localization_tasks.seld.features.Features`, timestamp embeddings on the 100 ms
  label grid) recompute when one byte of the module's code or of the task changes, when the
  entry is corrupt or truncated, and only then: counted by calls into a throwaway HEAR module.
- Every entry point ends a hostile input (JSON nested thousands deep, a field of the wrong type)
  in ONE stderr line with "error:" and exit status 2, and a Ctrl-C inside in exit status 130
  (`hear_gram.cli`).
- Direction labels that are not unit vectors are refused, naming the task and the file.
"""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from localization_tasks import embeddings, evaluate, generate, taskdata
from localization_tasks.seld import convert, modes, score, synth, task
from localization_tasks.seld import evaluate as seld_evaluate
from localization_tasks.seld.features import Features
from localization_tasks.seld.labels import Row, polar_to_unit

SR = 16000
SPLITS = ("fold00", "fold01", "fold02")
DEEP = "[" * 5000 + "]" * 5000  # past Python's recursion limit if parsed naively

# A HEAR module that counts its embedding calls: a scene embedding and a 100 ms timestamp
# embedding of simple statistics of the audio (any change of a sample changes them).
FAKE_MODULE = """
import torch

CALLS = {"scene": 0, "timestamp": 0}  # pad


class Model(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = 4
    timestamp_embedding_size = 4


def load_model(model_file_path="", **options):
    return Model()


def _stats(x, dims):
    return torch.stack([x.mean(dims), x.std(dims), x.abs().mean(dims), x.abs().amax(dims)], -1)


def get_scene_embeddings(audio, model):
    CALLS["scene"] += 1
    return _stats(audio, (1, 2))


def get_timestamp_embeddings(audio, model):
    CALLS["timestamp"] += 1
    hop = 1600
    n = audio.shape[1] // hop * hop
    frames = audio[:, :n].reshape(audio.shape[0], -1, hop, audio.shape[2])
    emb = _stats(frames, (2, 3))
    ts = (torch.arange(emb.shape[1]) + 0.5) * 100.0
    return emb, ts.expand(audio.shape[0], -1)
"""


@pytest.fixture
def fake_module(tmp_path, monkeypatch):
    """(name, source file) of a fresh HEAR module package importable in this process and in
    subprocesses."""
    name = f"fakehear_{uuid.uuid4().hex[:8]}"
    pkg = tmp_path / "mods" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    importlib.invalidate_caches()
    yield name, pkg / "__init__.py"
    sys.modules.pop(name, None)


def _calls(name: str, kind: str) -> int:
    return importlib.import_module(name).CALLS[kind]


def _edit_one_byte(path: Path) -> None:
    text = path.read_text()
    assert text.count("# pad") == 1
    path.write_text(text.replace("# pad", "# paD"))


# --------------------------------------------------------------------------- tiny tasks


def _loc_task(root: Path, name: str = "t", fmt: str = "binaural") -> Path:
    """A direction task by hand: 3 folds of 2 clips of 0.2 s noise, unit-vector labels."""
    rng = np.random.default_rng(0)
    task_dir = root / name
    meta = {"task_name": name, "split_mode": "new_split_kfold", "splits": list(SPLITS),
            "sample_rates": [SR], "embedding_type": "scene",
            "prediction_type": "cartesian-regression",
            "localization": {"target": "direction", "format": fmt, "snr_bin": "clean",
                             "source_task": "src"}}  # fmt: skip
    for s in SPLITS:
        folder = task_dir / str(SR) / s
        folder.mkdir(parents=True)
        labels = {}
        for j in range(2):
            clip = f"{s}-c{j}.wav"
            sf.write(folder / clip, rng.standard_normal((SR // 5, 2)) * 0.1, SR, subtype="FLOAT")
            v = rng.standard_normal(3)
            labels[clip] = (v / np.linalg.norm(v)).tolist()
        (task_dir / f"{s}.json").write_text(json.dumps(labels))
    (task_dir / "task_metadata.json").write_text(json.dumps(meta))
    return task_dir


def _seld_task(root: Path, with_audio: bool = True) -> Path:
    """A SELD task (train fold01, valid fold02, test fold03; one 0.5 s clip each, 5 frames)."""
    task_dir = root / "tasks" / "t"
    rows = [Row(f, 0, 0, polar_to_unit(30, 0), None, (30, 0)) for f in range(5)]
    labels = {s: {"c.wav": rows} for s in ("fold01", "fold02", "fold03")}
    durations = {s: {"c.wav": 0.5} for s in labels}
    folds = {"train": ["fold01"], "valid": ["fold02"], "test": ["fold03"]}
    meta = {"task_name": "t", "sample_rates": [SR], "seld": {"official_folds": folds}}
    task.write_labels(task_dir, meta, ["a"], labels, durations)
    if with_audio:
        rng = np.random.default_rng(1)
        for s in labels:
            audio = (rng.standard_normal((SR // 2, 4)) * 0.1).astype(np.float32)
            task.write_audio(task_dir, s, "c.wav", audio, SR, [SR])
    return task_dir


# --------------------------------------------------------------------------- the caches


def _loc_files(task_dir: Path) -> list[str]:
    return taskdata.read_labels(task_dir, "fold00", "direction")[0]


def test_localization_cache_reuses_and_recomputes_on_code_and_task_changes(fake_module, tmp_path):
    name, source = fake_module
    task_dir = _loc_task(tmp_path / "tasks")
    files = _loc_files(task_dir)
    embed = embeddings.Embedder(name, "", {}, tmp_path / "cache" / "tag", batch_size=8)
    first = embed(task_dir, "fold00", files)
    assert _calls(name, "scene") == 1
    again = embeddings.Embedder(name, "", {}, tmp_path / "cache" / "tag", batch_size=8)
    np.testing.assert_array_equal(again(task_dir, "fold00", files), first)
    assert _calls(name, "scene") == 1  # reused: no model call
    _edit_one_byte(source)  # one byte of the module's code
    embed(task_dir, "fold00", files)
    assert _calls(name, "scene") == 2
    embed(task_dir, "fold00", files)
    assert _calls(name, "scene") == 2
    wav = task_dir / str(SR) / "fold00" / files[0]  # one audio sample
    audio, _ = sf.read(wav, dtype="float32")
    audio[100, 0] += 0.25
    sf.write(wav, audio, SR, subtype="FLOAT")
    changed = embed(task_dir, "fold00", files)
    assert _calls(name, "scene") == 3 and not np.array_equal(changed[0], first[0])
    labels = json.loads((task_dir / "fold00.json").read_text())  # one label
    labels[files[1]] = [0.0, 0.0, 1.0]
    (task_dir / "fold00.json").write_text(json.dumps(labels))
    embed(task_dir, "fold00", files)
    assert _calls(name, "scene") == 4


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_localization_cache_recomputes_a_damaged_entry(fake_module, tmp_path, damage):
    name, _ = fake_module
    task_dir = _loc_task(tmp_path / "tasks")
    files = _loc_files(task_dir)
    embed = embeddings.Embedder(name, "", {}, tmp_path / "cache" / "tag")
    first = embed(task_dir, "fold00", files)
    entry = tmp_path / "cache" / "tag" / "t" / "fold00.npz"
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"PK\x03\x04junk")
    np.testing.assert_array_equal(embed(task_dir, "fold00", files), first)
    assert _calls(name, "scene") == 2
    embed(task_dir, "fold00", files)  # rewritten: read again
    assert _calls(name, "scene") == 2


def _seld_feats(name: str, cache_dir: Path) -> Features:
    return Features("module", name, "", {}, cache_dir)


def test_seld_cache_reuses_and_recomputes_on_code_and_task_changes(fake_module, tmp_path):
    name, source = fake_module
    task_dir = _seld_task(tmp_path)
    first = _seld_feats(name, tmp_path / "emb")(task_dir, "fold01", [5])
    assert _calls(name, "timestamp") == 1 and first[0].shape == (5, 4)
    again = _seld_feats(name, tmp_path / "emb")(task_dir, "fold01", [5])
    np.testing.assert_array_equal(again[0], first[0])
    assert _calls(name, "timestamp") == 1  # reused
    _seld_feats(name, tmp_path / "emb")(task_dir, "fold01", [4])  # another label grid
    assert _calls(name, "timestamp") == 2
    _edit_one_byte(source)
    _seld_feats(name, tmp_path / "emb")(task_dir, "fold01", [5])
    assert _calls(name, "timestamp") == 3
    _seld_feats(name, tmp_path / "emb")(task_dir, "fold01", [5])
    assert _calls(name, "timestamp") == 3
    wav = task_dir / str(SR) / "fold01" / "c.wav"
    audio, _ = sf.read(wav, dtype="float32")
    audio[10, 2] += 0.25
    sf.write(wav, audio, SR, subtype="FLOAT")
    changed = _seld_feats(name, tmp_path / "emb")(task_dir, "fold01", [5])
    assert _calls(name, "timestamp") == 4 and not np.array_equal(changed[0], first[0])
    labels = json.loads((task_dir / "fold01.json").read_text())
    labels["c.wav"][0]["direction"] = [31, 0]  # one label
    (task_dir / "fold01.json").write_text(json.dumps(labels))
    _seld_feats(name, tmp_path / "emb")(task_dir, "fold01", [5])
    assert _calls(name, "timestamp") == 5


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_seld_cache_recomputes_a_damaged_entry(fake_module, tmp_path, damage):
    name, _ = fake_module
    task_dir = _seld_task(tmp_path)
    feats = _seld_feats(name, tmp_path / "emb")
    first = feats(task_dir, "fold01", [5])
    (entry,) = (tmp_path / "emb").rglob("fold01.npz")
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"PK\x03\x04junk")
    np.testing.assert_array_equal(feats(task_dir, "fold01", [5])[0], first[0])
    assert _calls(name, "timestamp") == 2
    feats(task_dir, "fold01", [5])
    assert _calls(name, "timestamp") == 2


# --------------------------------------------------------------------------- unit vectors


@pytest.mark.parametrize("label", [[2.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0]])
def test_direction_labels_must_be_unit_vectors(tmp_path, label):
    task_dir = _loc_task(tmp_path)
    labels = json.loads((task_dir / "fold01.json").read_text())
    bad = sorted(labels)[1]
    labels[bad] = label
    (task_dir / "fold01.json").write_text(json.dumps(labels))
    with pytest.raises(taskdata.TaskDataError, match="not unit vectors") as e:
        taskdata.read_labels(task_dir, "fold01", "direction")
    assert "task t" in str(e.value) and "fold01.json" in str(e.value) and bad in str(e.value)


def test_direction_labels_within_the_tolerance_are_taken(tmp_path):
    task_dir = _loc_task(tmp_path)
    labels = json.loads((task_dir / "fold01.json").read_text())
    labels[sorted(labels)[0]] = [1.0005, 0.0, 0.0]  # float noise of a written unit vector
    (task_dir / "fold01.json").write_text(json.dumps(labels))
    _, y = taskdata.read_labels(task_dir, "fold01", "direction")
    assert y.shape == (2, 3)


# --------------------------------------------------------------------------- the entry points


def _one_line_error(main, argv, capsys) -> str:
    """Run `main(argv)`; assert exit status 2 and exactly one stderr line with "error:"."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "error:" in err[0], (code, err)
    assert "Traceback" not in err[0]
    return err[0]


def _interrupted(main, argv, capsys) -> None:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and err == [err[-1]] and err[-1].endswith(": interrupted"), (code, err)


def _ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt


def _set_json(path: Path, update) -> None:
    value = json.loads(path.read_text())
    update(value)
    path.write_text(json.dumps(value))


# localization_tasks.evaluate


def _eval_argv(tasks: Path, out: Path, *extra) -> list:
    return ["--module", "chance", "--tasks-dir", tasks, "--out", out, "--grid", "tiny",
            "--quiet", "--task", "t", *extra]  # fmt: skip


@pytest.mark.parametrize(
    "file, text, needle",
    [
        ("task_metadata.json", DEEP, "nests deeper"),
        ("fold00.json", '{"a.wav": ' + DEEP + "}", "nests deeper"),
        ("fold00.json", '{"fold00-c0.wav": "abc", "fold00-c1.wav": [1, 0, 0]}', "must be int"),
        ("fold00.json", '{"fold00-c0.wav": [[1], 0, 0], "fold00-c1.wav": [1, 0, 0]}', "must be"),
    ],
)
def test_evaluate_hostile_json_is_one_line(tmp_path, capsys, file, text, needle):
    task_dir = _loc_task(tmp_path / "tasks")
    (task_dir / file).write_text(text)
    err = _one_line_error(evaluate.main, _eval_argv(tmp_path / "tasks", tmp_path / "o"), capsys)
    assert needle in err and file in err


@pytest.mark.parametrize(
    "update, needle",
    [
        (lambda m: m.update(localization=5), "not a localization task"),
        (lambda m: m["localization"].update(format=["binaural"]), "localization.format"),
        (lambda m: m.update(splits="abc"), "splits"),
        (lambda m: m.update(splits=[1, 2, 3]), "split name"),
        (lambda m: m.update(split_mode=7), "split_mode"),
    ],
)
def test_evaluate_wrong_typed_metadata_is_one_line(tmp_path, capsys, update, needle):
    task_dir = _loc_task(tmp_path / "tasks")
    _set_json(task_dir / "task_metadata.json", update)
    err = _one_line_error(evaluate.main, _eval_argv(tmp_path / "tasks", tmp_path / "o"), capsys)
    assert needle in err


def test_evaluate_ctrl_c_exits_130(tmp_path, capsys, monkeypatch):
    _loc_task(tmp_path / "tasks")
    monkeypatch.setattr(evaluate, "evaluate_task", _ctrl_c)
    _interrupted(evaluate.main, _eval_argv(tmp_path / "tasks", tmp_path / "o"), capsys)


def test_evaluate_model_alias_and_log_file(tmp_path, fake_module, capsys):
    """`--model` is `--weights`' old name (the suite passes it); the run leaves its log under
    OUT/logs."""
    name, _ = fake_module
    _loc_task(tmp_path / "tasks")
    argv = ["--module", name, "--model", "", "--model-options", "{}", "--tasks-dir",
            tmp_path / "tasks", "--out", tmp_path / "o", "--grid", "tiny", "--seed", "3",
            "--quiet", "--task", "t"]  # fmt: skip
    assert evaluate.main([str(a) for a in argv]) == 0
    summary = json.loads((tmp_path / "o" / embeddings.module_tag(name, "", {}) / "results.json")
                         .read_text())  # fmt: skip
    assert summary["seed"] == 3 and summary["model"] == "" and len(summary["tasks"]) == 1
    assert (tmp_path / "o" / "logs" / "localization_tasks-evaluate.log").is_file()


# localization_tasks.generate


def _scene_source(root: Path) -> Path:
    """The smallest HEAR scene task folder generate reads before any rendering."""
    src = root / "tasks" / "src"
    (src / str(SR) / "fold00").mkdir(parents=True)
    meta = {"task_name": "src", "split_mode": "new_split_kfold", "splits": ["fold00"],
            "sample_rates": [SR], "embedding_type": "scene", "prediction_type": "multiclass"}  # fmt: skip
    (src / "task_metadata.json").write_text(json.dumps(meta))
    (src / "fold00.json").write_text(json.dumps({"a.wav": ["x"]}))
    (src / "labelvocabulary.csv").write_text("idx,label\n0,x\n")
    sf.write(src / str(SR) / "fold00" / "a.wav", np.zeros((SR // 10, 1)), SR)
    return src


def _gen_argv(root: Path) -> list:
    return ["--tasks-dir", root / "tasks", "--out", root / "out", "--task", "src", "--seed", "0",
            "--n-scenes", "3", "--cache-dir", root / "cache", "--quiet", "--format", "binaural"]  # fmt: skip


@pytest.mark.parametrize(
    "file, text",
    [
        ("task_metadata.json", DEEP),
        ("fold00.json", '{"a.wav": ' + DEEP + "}"),
        ("task_metadata.json", '{"splits": "abc", "sample_rates": "abc"}'),
        ("task_metadata.json", '{"splits": {"a": 1}}'),
    ],
)
def test_generate_hostile_json_is_one_line(tmp_path, capsys, file, text):
    src = _scene_source(tmp_path)
    (src / file).write_text(text)
    _one_line_error(generate.main, _gen_argv(tmp_path), capsys)


def test_generate_ctrl_c_exits_130(tmp_path, capsys, monkeypatch):
    _scene_source(tmp_path)
    monkeypatch.setattr(generate, "generate_task", _ctrl_c)
    _interrupted(generate.main, _gen_argv(tmp_path), capsys)


# localization_tasks.seld.evaluate


def _seld_argv(root: Path) -> list:
    return ["--tasks-dir", root / "tasks", "--out", root / "out", "--baseline", "zero",
            "--quiet"]  # fmt: skip


@pytest.mark.parametrize(
    "file, text_or_update, needle",
    [
        ("task_metadata.json", DEEP, "nests deeper"),
        ("fold01.json", '{"c.wav": ' + DEEP + "}", "nests deeper"),
        ("task_metadata.json", lambda m: m.update(sample_rates="abc"), "sample_rates"),
        ("task_metadata.json", lambda m: m["seld"].update(official_folds={"a": 1}), "train"),
        ("task_metadata.json", lambda m: m.update(seld=5), "seld"),
        ("fold01.json", lambda d: d.update({"c.wav": "abc"}), "list"),
        ("fold01.json", lambda d: d["c.wav"][0].update(label=["a"]), "label"),
    ],
)
def test_seld_evaluate_hostile_json_is_one_line(tmp_path, capsys, file, text_or_update, needle):
    task_dir = _seld_task(tmp_path, with_audio=False)
    if isinstance(text_or_update, str):
        (task_dir / file).write_text(text_or_update)
    else:
        _set_json(task_dir / file, text_or_update)
    err = _one_line_error(seld_evaluate.main, _seld_argv(tmp_path), capsys)
    assert needle in err


def test_seld_evaluate_ctrl_c_exits_130(tmp_path, capsys, monkeypatch):
    _seld_task(tmp_path, with_audio=False)
    monkeypatch.setattr(seld_evaluate, "train_and_test", _ctrl_c)
    _interrupted(seld_evaluate.main, _seld_argv(tmp_path), capsys)


# localization_tasks.seld.modes


def _modes_argv(root: Path) -> list:
    return ["--module", "localization_tasks.baselines.gcc_phat", "--model-options",
            json.dumps({"sample_rate": SR}), "--tasks-dir", root / "tasks", "--out", root / "o",
            "--mode", "cartesian-regression", "--task", "t", "--quiet"]  # fmt: skip


@pytest.mark.parametrize(
    "file, text, needle",
    [
        ("task_metadata.json", DEEP, "nests deeper"),
        ("fold00.json", '{"fold00-c0.wav": "abc", "fold00-c1.wav": [1, 0, 0]}', "must be int"),
        ("task_metadata.json", '{"localization": 5, "splits": ["fold00"]}', "not a localization"),
    ],
)
def test_modes_hostile_json_is_one_line(tmp_path, capsys, file, text, needle):
    task_dir = _loc_task(tmp_path / "tasks")
    (task_dir / file).write_text(text)
    assert needle in _one_line_error(modes.main, _modes_argv(tmp_path), capsys)


def test_modes_ctrl_c_exits_130(tmp_path, capsys, monkeypatch):
    _loc_task(tmp_path / "tasks")
    monkeypatch.setattr(modes, "evaluate_task", _ctrl_c)
    _interrupted(modes.main, _modes_argv(tmp_path), capsys)


# localization_tasks.seld.synth (reads JSON: a HEAR task given as --sources)


def _synth_argv(root: Path, src: Path) -> list:
    return ["--out", root / "out", "--sources", src, "--clips-per-fold", "1",
            "--quiet"]  # fmt: skip


@pytest.mark.parametrize(
    "file, text, needle",
    [
        ("task_metadata.json", DEEP, "nests deeper"),
        ("fold00.json", '{"a.wav": ' + DEEP + "}", "nests deeper"),
        ("task_metadata.json", '{"splits": "abc"}', "splits"),
        ("fold00.json", '{"a.wav": [{"label": ["x"], "start": 0, "end": 10}]}', "label"),
    ],
)
def test_synth_hostile_sources_json_is_one_line(tmp_path, capsys, file, text, needle):
    src = _scene_source(tmp_path)
    (src / file).write_text(text)
    assert needle in _one_line_error(synth.main, _synth_argv(tmp_path, src), capsys)


def test_synth_ctrl_c_exits_130(tmp_path, capsys, monkeypatch):
    src = _scene_source(tmp_path)
    monkeypatch.setattr(synth, "load_bank", _ctrl_c)
    _interrupted(synth.main, _synth_argv(tmp_path, src), capsys)


# localization_tasks.seld.score and .convert read CSV only: a wrong-typed field there


def _score_dirs(root: Path, ref: str) -> list:
    for d in ("ref", "pred"):
        (root / d).mkdir()
    (root / "ref" / "a.csv").write_text(ref)
    (root / "pred" / "a.csv").write_text("0,0,0,0,0\n")
    return ["--ref-dir", root / "ref", "--pred-dir", root / "pred", "--quiet"]


def test_score_wrong_typed_field_is_one_line(tmp_path, capsys):
    err = _one_line_error(score.main, _score_dirs(tmp_path, "0,abc,0,0,0\n"), capsys)
    assert "a.csv" in err


def test_score_ctrl_c_exits_130(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(score, "read_dirs", _ctrl_c)
    _interrupted(score.main, _score_dirs(tmp_path, "0,0,0,0,0\n"), capsys)


def test_convert_missing_dataset_is_one_line_and_ctrl_c_exits_130(tmp_path, capsys, monkeypatch):
    argv = ["--dataset-dir", tmp_path / "none", "--dataset", "tau2019", "--out", tmp_path / "o",
            "--quiet"]  # fmt: skip
    _one_line_error(convert.main, argv, capsys)
    monkeypatch.setattr(convert, "convert", _ctrl_c)
    _interrupted(convert.main, argv, capsys)
