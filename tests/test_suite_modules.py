"""Any HEAR module in hear_gram.suite, checked before it runs (issue 19):

- the probe loads each module once (in a subprocess), tries it on each format the run gives it,
  prints one line per model and leaves out (as `unsupported`, not failed) the units whose format
  the module refuses, with a hint naming `channels`; its records are reused until the module's
  code changes;
- `channels = "mean" | "per-channel"` wraps a mono module for spatial units (the adapter's
  embeddings are those of the module on the averaged, or each, channel);
- a task lacking the module's rate is resampled once into OUT/build, never in the tasks folder;
- chance and majority rows, scored as heareval scores, checked against values worked out by hand;
- end to end (slow): a mono-only 44.1 kHz module written here and a tiny GRAM-T over dry,
  nat-binaural and binaural localization on synthetic tasks, every unit done.

The module under test is written by this file (`TINY`): nothing in the project knows it.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hear_gram.suite import hear_baselines, probe, rates
from hear_gram.suite.__main__ import main as suite_main
from hear_gram.suite.conditions.hear import HearCondition
from hear_gram.suite.conditions.naturalistic import Naturalistic
from hear_gram.suite.conditions.spatial import SpatialCondition
from hear_gram.suite.config import ADAPTER, Settings, load_models
from tests.conftest import REPO

# A mono-only HEAR module at 44.1 kHz: log energies of 4 frequency bands every 50 ms; the scene
# embedding is their mean and (biased) sd over frames. Every load appends a line to $TINY_LOADS.
TINY = """
import os
import torch

HOP = 2205  # 50 ms at 44.1 kHz


class Tiny(torch.nn.Module):
    sample_rate = 44100
    timestamp_embedding_size = 4
    scene_embedding_size = 8

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(1))


def load_model(model_file_path=""):
    if os.environ.get("TINY_LOADS"):
        with open(os.environ["TINY_LOADS"], "a") as f:
            f.write("load\\n")
    return Tiny()


def get_timestamp_embeddings(audio, model):
    if audio.ndim != 2:
        raise ValueError(f"mono audio only: (n_sounds, n_samples), got {tuple(audio.shape)}")
    n = audio.shape[1] // HOP + 1
    x = torch.nn.functional.pad(audio.float(), (0, n * HOP - audio.shape[1]))
    power = torch.fft.rfft(x.reshape(audio.shape[0], n, HOP)).abs() ** 2  # (B, T, F)
    bands = power[..., :1100].reshape(audio.shape[0], n, 4, 275).mean(-1)
    emb = torch.log10(bands + 1e-8) * model.gain
    return emb, (torch.arange(n, dtype=torch.float32) * 50.0).expand(audio.shape[0], n)


def get_scene_embeddings(audio, model):
    emb, _ = get_timestamp_embeddings(audio, model)
    return torch.cat([emb.mean(1), emb.std(1, unbiased=False)], dim=-1)
"""


def write_module(lib: Path, name: str, text: str = TINY) -> str:
    lib.mkdir(parents=True, exist_ok=True)
    (lib / f"{name}.py").write_text(textwrap.dedent(text))
    importlib.invalidate_caches()
    sys.modules.pop(name, None)
    return name


@pytest.fixture
def lib(tmp_path, monkeypatch):
    """A folder of throwaway HEAR modules importable here and in every subprocess; loads of
    TINY counted in loads.txt."""
    folder = tmp_path / "lib"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", f"{folder}:{REPO}")
    monkeypatch.setenv("TINY_LOADS", str(tmp_path / "loads.txt"))
    return folder


def loads(tmp_path: Path) -> int:
    path = tmp_path / "loads.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def models_file(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------ models file: channels


def test_channels_wraps_the_module_for_spatial_units_only(tmp_path, lib):
    write_module(lib, "tiny_mono_a")
    (m,) = load_models(models_file(tmp_path / "m.toml", """
        [[model]]
        name = "m"
        module = "tiny_mono_a"
        options = { b = 1, a = "x" }
        channels = "mean"
        [model.localization]
        channels = "per-channel"
        [model.ambisonic]
        channels = ""
    """))  # fmt: skip
    assert m.resolve("dry", "mono").module == "tiny_mono_a"  # mono audio needs no adapter
    nat = m.resolve("nat-binaural", "binaural")
    assert nat.module == ADAPTER == "hear_gram.suite.channels_module"
    assert nat.options["module"] == "tiny_mono_a" and nat.options["channels"] == "mean"
    assert nat.options["format"] == "binaural" and nat.options["options"] == {"b": 1, "a": "x"}
    assert list(nat.options) == sorted(nat.options)  # heareval's folder name follows this order
    loc = m.resolve("localization", "binaural")
    assert (loc.module, loc.options["channels"]) == (ADAPTER, "per-channel")  # condition wins
    assert m.resolve("nat-ambisonic", "ambisonic").module == "tiny_mono_a"  # turned off
    # the wrapped module's code is in the adapter's options, so every cache sees it change
    before = nat.options["code"]
    (lib / "tiny_mono_a.py").write_text(TINY + "\n# edited\n")
    assert m.resolve("nat-binaural", "binaural").options["code"] != before


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(("line", "needle"), [
    ('channels = "avg"', "channels must be one of ['mean', 'per-channel']"),
    ("channels = 2", "channels must be str"),
    ('[model.binaural]\nchannels = "sum"', "binaural.channels must be one of"),
])  # fmt: skip
def test_a_bad_channels_value_is_one_line_exit_2(tmp_path, capsys, line, needle):
    (tmp_path / "tasks" / "a").mkdir(parents=True)
    (tmp_path / "tasks" / "a" / "task_metadata.json").write_text('{"task_name": "a"}')
    models = models_file(tmp_path / "m.toml", f'[[model]]\nname = "m"\nmodule = "x"\n{line}\n')
    code = suite_main(["--models", str(models), "--tasks-dir", str(tmp_path / "tasks"),
                       "--out", str(tmp_path / "w"), "--conditions", "dry", "--quiet"])  # fmt: skip
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert err[0].startswith("python -m hear_gram.suite: error:")


# ------------------------------------------------------------------ the channel adapter


def test_the_adapter_embeds_the_channel_mean_or_each_channel(lib):
    from hear_gram.suite import channels_module

    tiny = importlib.import_module(write_module(lib, "tiny_mono_b"))
    inner = tiny.load_model()
    x = torch.randn(3, 22050, 2, generator=torch.Generator().manual_seed(1))
    left, right = x[..., 0].contiguous(), x[..., 1].contiguous()
    mean = channels_module.load_model(module="tiny_mono_b", channels="mean", format="binaural")
    assert (mean.sample_rate, mean.scene_embedding_size, mean.timestamp_embedding_size) == (
        44100,
        8,
        4,
    )
    want = tiny.get_scene_embeddings((left + right) / 2, inner)
    assert torch.allclose(channels_module.get_scene_embeddings(x, mean), want, atol=1e-5)
    per = channels_module.load_model(module="tiny_mono_b", channels="per-channel",
                                     format="binaural", options={})  # fmt: skip
    assert (per.scene_embedding_size, per.timestamp_embedding_size) == (16, 8)
    emb, ts = channels_module.get_timestamp_embeddings(x, per)
    (el, tl), (er, _) = (tiny.get_timestamp_embeddings(c, inner) for c in (left, right))
    assert torch.equal(emb, torch.cat([el, er], dim=-1)) and torch.equal(ts, tl)  # left first
    with pytest.raises(ValueError, match=r"\(n_sounds, n_samples, 2\)"):
        channels_module.get_scene_embeddings(x.transpose(1, 2), per)  # (B, C, N): refused
    with pytest.raises(ValueError, match="channels must be one of"):
        channels_module.load_model(module="tiny_mono_b", channels="sum", format="binaural")


# ------------------------------------------------------------------ the probe


BROKEN = {
    "nan": TINY.replace("return emb, (", "return emb * float('nan'), ("),
    "shape": TINY.replace("    scene_embedding_size = 8", "    scene_embedding_size = 9"),
}


@pytest.mark.hostile("nonfinite")
@pytest.mark.parametrize(("kind", "needle"), [
    ("nan", "get_scene_embeddings returned NaN or Inf"),
    ("shape", "get_scene_embeddings returned (2, 8), expected (2, 9)"),
])  # fmt: skip
def test_a_module_giving_nan_or_wrong_shapes_does_not_take_the_format(lib, kind, needle):
    name = write_module(lib, f"tiny_{kind}", BROKEN[kind])
    record = probe.probe_module(name, "", {}, ["mono"])
    assert record["loaded"] and record["sample_rate"] == 44100
    assert record["formats"]["mono"] == needle


def test_a_module_that_does_not_import_or_load_is_not_loaded(lib):
    record = probe.probe_module("no_such_module_anywhere", "", {}, ["mono"])
    assert not record["loaded"] and "ModuleNotFoundError" in record["error"]
    write_module(lib, "tiny_exits", "import sys\nsys.exit(3)\n")
    record = probe.probe_module("tiny_exits", "", {}, ["mono"])  # a SystemExit is a cause too
    assert not record["loaded"] and record["error"].startswith("SystemExit")


def _fake_hear(self, unit, resolved, settings, folder):
    return [{"task": unit.task, "format": unit.fmt, "snr_bin": "", "metric": "top1_acc",
             "mean": 0.5, "std": 0.0, "folds": 3, "better": "higher"}]  # fmt: skip


def _tasks(root: Path) -> Path:
    (root / "a").mkdir(parents=True)
    (root / "a" / "task_metadata.json").write_text('{"task_name": "a"}')
    return root


def test_a_mono_module_given_binaural_is_unsupported_with_a_hint_and_probed_once(tmp_path, lib, monkeypatch, capsys):  # fmt: skip
    """Units faked (the probe is what is tested): the mono module's nat-binaural unit is not run,
    REPORT.md and results.csv say unsupported with the cause; the exit code is 0; a rerun loads
    nothing; an edited module is probed again; channels = "mean" makes the unit run."""
    calls = []
    monkeypatch.setattr(HearCondition, "run", lambda *a: calls.append(a[1].id) or _fake_hear(*a))
    monkeypatch.setattr(Naturalistic, "builds", lambda *args: [])  # the fake runs read none
    write_module(lib, "tiny_mono_c")
    models = models_file(tmp_path / "m.toml", '[[model]]\nname = "tiny"\nmodule = "tiny_mono_c"\n')
    argv = ["--models", str(models), "--tasks-dir", str(_tasks(tmp_path / "tasks")), "--out",
            str(tmp_path / "w"), "--conditions", "dry,nat-binaural", "--quiet"]  # fmt: skip
    assert suite_main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    line = next(ln for ln in out if ln.startswith("probe: tiny:"))
    assert line.startswith("probe: tiny: ok (rate 44100; mono); cannot take binaural: "
                           "get_scene_embeddings: ValueError: mono audio only: (n_sounds, "
                           "n_samples), got (2, 22050, 2) (if the module takes mono audio only, "
                           'set channels = "mean" or "per-channel"')  # fmt: skip
    assert calls == ["tiny/dry/a"] and loads(tmp_path) == 1  # one load for both formats
    rows = list(csv.DictReader((tmp_path / "w" / "report" / "results.csv").open()))
    state = {(r["condition"], r["status"]) for r in rows}
    assert state == {("dry", "ok"), ("nat-binaural", "unsupported")}
    why = next(r["error"] for r in rows if r["status"] == "unsupported")
    assert why.startswith("cannot take binaural: get_scene_embeddings: ValueError: mono audio")
    report = (tmp_path / "w" / "report" / "REPORT.md").read_text()
    assert "1 done, 0 failed, 0 missing, 1 unsupported" in report
    assert "| a | 50.0 ± 0.0 (n=3) | unsupported |" in report and "## Unsupported units" in report
    assert suite_main(argv) == 0 and loads(tmp_path) == 1  # the record is reused
    (lib / "tiny_mono_c.py").write_text(TINY + "\n# an edit\n")
    assert suite_main(argv) == 0 and loads(tmp_path) == 2  # new code: probed again
    capsys.readouterr()
    models.write_text(models.read_text() + 'channels = "mean"\n')
    assert suite_main(argv) == 0
    assert (
        "probe: tiny: ok (rate 44100; mono, binaural via channels=mean)" in capsys.readouterr().out
    )
    assert calls[-1] == "tiny/nat-binaural/a"


def test_baselines_are_not_loaded_and_a_baseline_of_another_condition_is_unsupported(tmp_path, monkeypatch, capsys):  # fmt: skip
    monkeypatch.setattr(HearCondition, "run", _fake_hear)
    monkeypatch.setattr(SpatialCondition, "run", lambda *a: _fake_hear(*a))
    models = models_file(tmp_path / "m.toml", """
        [[model]]
        name = "majority"
        module = "majority"
        formats = ["mono", "binaural"]
    """)  # fmt: skip
    tasks = _tasks(tmp_path / "tasks")
    assert suite_main(["--models", str(models), "--tasks-dir", str(tasks), "--out",
                       str(tmp_path / "w"), "--conditions", "dry,localization",
                       "--localization-source", "a", "--quiet"]) == 0  # fmt: skip
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("probe:"))
    assert line == ("probe: majority: baseline majority, no module loaded (dry); majority is a "
                    "baseline of dry, nat-binaural, nat-ambisonic, not of localization (its "
                    "baselines: chance)")  # fmt: skip
    assert not (tmp_path / "w" / "probe").exists()  # nothing loaded, nothing kept


@pytest.mark.hostile("stale")
def test_a_tampered_probe_record_is_not_trusted(tmp_path, lib):
    write_module(lib, "tiny_mono_d")
    settings = Settings(work=tmp_path / "w", tasks_dir=tmp_path)
    (m,) = load_models(models_file(tmp_path / "m.toml", '[[model]]\nname = "t"\nmodule = "tiny_mono_d"\n'))  # fmt: skip
    resolved = m.resolve("dry", "mono")
    assert probe.sample_rate(resolved, settings) == 44100 and loads(tmp_path) == 1
    (record_file,) = (tmp_path / "w" / "probe").glob("*.json")
    record = json.loads(record_file.read_text())
    record["sample_rate"] = "44100"  # a string where the probe writes an int
    record_file.write_text(json.dumps(record))
    assert probe.sample_rate(resolved, settings) == 44100 and loads(tmp_path) == 2


@pytest.mark.hostile("path")
def test_a_link_planted_at_the_probe_folder_is_refused(tmp_path, lib, capsys):
    from tests.hostile import snapshot

    write_module(lib, "tiny_mono_f")
    outside = tmp_path / "outside"
    outside.mkdir()
    before = snapshot(outside)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "probe").symlink_to(outside)
    models = models_file(tmp_path / "m.toml", '[[model]]\nname = "t"\nmodule = "tiny_mono_f"\n')
    code = suite_main(["--models", str(models), "--tasks-dir", str(_tasks(tmp_path / "tasks")),
                       "--out", str(tmp_path / "w"), "--conditions", "dry", "--quiet"])  # fmt: skip
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and "probe" in err[0] and "outside" in err[0], err
    assert snapshot(outside) == before and loads(tmp_path) == 0


# ------------------------------------------------------------------ a missing sample rate


def _tone_task(root: Path, rate: int = 16000) -> Path:
    """A 3-fold scene task `t` of 1 s tones (440 Hz, or 1000 Hz for the second class) at `rate`."""
    task = root / "t"
    meta = {"task_name": "t", "embedding_type": "scene", "prediction_type": "multiclass",
            "split_mode": "new_split_kfold", "splits": ["fold00", "fold01", "fold02"],
            "evaluation": ["top1_acc"]}  # fmt: skip
    (task / str(rate)).mkdir(parents=True)
    (task / "task_metadata.json").write_text(json.dumps(meta))
    (task / "labelvocabulary.csv").write_text("idx,label\n0,low\n1,high\n")
    t = np.arange(rate) / rate
    for i, fold in enumerate(meta["splits"]):
        (task / str(rate) / fold).mkdir()
        labels = {}
        for j, (label, hz) in enumerate((("low", 440.0), ("high", 1000.0))):
            name = f"c{i}{j}.wav"
            sf.write(task / str(rate) / fold / name, 0.5 * np.sin(2 * np.pi * hz * t), rate)
            labels[name] = [label]
        (task / f"{fold}.json").write_text(json.dumps(labels))
    return task


def test_a_missing_rate_is_resampled_once_into_the_build_folder(tmp_path):
    from tests.hostile import snapshot

    tasks = tmp_path / "tasks"
    _tone_task(tasks)
    before = snapshot(tasks)
    settings = Settings(work=tmp_path / "w", tasks_dir=tasks)
    log = tmp_path / "unit.log"
    assert rates.ensure_rate(tasks, "t", 16000, settings, log) == tasks  # has it: as it is
    root = rates.ensure_rate(tasks, "t", 44100, settings, log)
    assert root.parent == tmp_path / "w" / "build" and root.name.startswith("rate44100-t-")
    assert snapshot(tasks) == before  # the user's task is never written
    made = root / "t" / "44100" / "fold01" / "c11.wav"  # the 1000 Hz tone of fold01
    y, sr = sf.read(made)
    assert sr == 44100 and len(y) == 44100  # ceil(16000 * 44100 / 16000)
    spectrum = np.abs(np.fft.rfft(y[4410:-4410]))  # away from the clip's edges
    assert abs(np.argmax(spectrum) * 44100 / len(y[4410:-4410]) - 1000.0) < 2.0  # same pitch
    assert (root / "t" / "fold01.json").read_bytes() == (tasks / "t" / "fold01.json").read_bytes()
    stamp = made.stat().st_mtime_ns
    assert rates.ensure_rate(tasks, "t", 44100, settings, log) == root  # built once
    assert made.stat().st_mtime_ns == stamp and log.read_text().count("hear_gram.suite.rates") == 1
    (tasks / "t" / "fold00.json").write_text(json.dumps({"c00.wav": ["high"], "c01.wav": ["low"]}))
    assert rates.ensure_rate(tasks, "t", 44100, settings, log) != root  # new labels: new build


@pytest.mark.hostile("crash")
def test_a_file_whose_header_disagrees_with_its_folder_is_refused(tmp_path):
    task = _tone_task(tmp_path / "tasks")
    sf.write(task / "16000" / "fold00" / "c00.wav", np.zeros(8000), 8000)
    with pytest.raises(ValueError, match="is at 8000 Hz, but lies in the 16000 folder"):
        rates.write_at_rate(task, tmp_path / "out", 44100)


# ------------------------------------------------------------------ chance and majority


def _label_task(root: Path, folds: dict[str, list[str]], classes=("a", "b", "c"),
                multilabel: bool = False) -> Path:  # fmt: skip
    """A k-fold scene task of labels only (the baselines read no audio)."""
    task = root / "lab"
    task.mkdir(parents=True)
    meta = {"task_name": "lab", "embedding_type": "scene", "split_mode": "new_split_kfold",
            "prediction_type": "multilabel" if multilabel else "multiclass",
            "splits": list(folds), "evaluation": ["mAP"] if multilabel else ["top1_acc"]}  # fmt: skip
    (task / "task_metadata.json").write_text(json.dumps(meta))
    (task / "labelvocabulary.csv").write_text(
        "idx,label\n" + "".join(f"{i},{c}\n" for i, c in enumerate(classes)))  # fmt: skip
    for fold, labels in folds.items():
        items = {f"{fold}-{i}.wav": (list(y) if multilabel else [y]) for i, y in enumerate(labels)}
        (task / f"{fold}.json").write_text(json.dumps(items))
    return task


# heareval (task_predictions.data_splits_from_folds): test fold i, validation fold i+1, train the
# rest. Here each test fold trains on one fold: fold00 on fold02, fold01 on fold00, fold02 on
# fold01. Majority: fold02's a for fold00 (a, a, b: 2/3 right); fold00's a for fold01 (b, c, c:
# 0); fold01's c for fold02 (a, a, a: 0). Mean 2/9; sample sd of (2/3, 0, 0): deviations 4/9,
# -2/9, -2/9, so sqrt((16 + 4 + 4) / 81 / 2) = 0.385. Wrong splits are caught: training on the
# validation fold too gives fold02 a 3-way tie -> a, 3/3 right; the test fold's own majority
# gives fold01 c, 2/3 right.
FOLDS = {"fold00": ["a", "a", "b"], "fold01": ["b", "c", "c"], "fold02": ["a", "a", "a"]}


def test_majority_predicts_the_train_folds_most_frequent_class(tmp_path):
    task = _label_task(tmp_path, FOLDS)
    (row,) = hear_baselines.rows(task, "majority", "mono")
    assert row["metric"] == "top1_acc" and row["folds"] == 3 and row["better"] == "higher"
    assert row["mean"] == pytest.approx(2 / 9)
    assert row["std"] == pytest.approx(math.sqrt(((4 / 9) ** 2 + 2 * (2 / 9) ** 2) / 2))


def test_heareval_splits_are_followed():
    meta = {"split_mode": "new_split_kfold", "splits": ["fold03", "fold01", "fold00", "fold02"]}
    assert hear_baselines.data_splits(meta) == [  # heareval's docstring, for 4 folds
        {"train": ["fold02", "fold03"], "valid": ["fold01"], "test": ["fold00"]},
        {"train": ["fold00", "fold03"], "valid": ["fold02"], "test": ["fold01"]},
        {"train": ["fold00", "fold01"], "valid": ["fold03"], "test": ["fold02"]},
        {"train": ["fold01", "fold02"], "valid": ["fold00"], "test": ["fold03"]},
    ]
    assert hear_baselines.data_splits({"split_mode": "trainvaltest", "splits": []}) == [
        {"train": ["train"], "valid": ["valid"], "test": ["test"]}]  # fmt: skip


def test_chance_draws_from_the_train_prior(tmp_path):
    """Train prior (0.8, 0.2, 0) against a test fold (0.5, 0.25, 0.25): the expected accuracy of
    drawing from the train prior is 0.8 * 0.5 + 0.2 * 0.25 = 0.45 (a uniform draw: 1/3; the
    majority: 0.5). 2000 test clips: sd of the estimate about 0.011."""
    n = 2000
    test = ["a"] * (n // 2) + ["b"] * (n // 4) + ["c"] * (n // 4)
    train = ["a"] * 80 + ["b"] * 20
    task = _label_task(tmp_path, {"fold00": test, "fold01": train[:5], "fold02": train})
    _, folds = hear_baselines.fold_scores(task, "chance")
    assert folds[0]["top1_acc"] == pytest.approx(0.45, abs=0.04)
    _, again = hear_baselines.fold_scores(task, "chance")
    assert again == folds  # seeded: the same draws every time


def test_multilabel_majority_scores_each_class_prevalence(tmp_path):
    """A constant score per class: its average precision is the class's test prevalence; mAP
    is their mean (classes a: 2/4 and b: 1/4 in fold00)."""
    folds = {"fold00": [["a"], ["a", "b"], [], ["c"]], "fold01": [["a"], ["b"], ["c"]],
             "fold02": [["a", "b", "c"], ["b"]]}  # fmt: skip
    task = _label_task(tmp_path, folds, multilabel=True)
    _, scores = hear_baselines.fold_scores(task, "majority")
    assert scores[0]["mAP"] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)


def test_event_baselines_predict_no_event(tmp_path):
    """No predicted event: onset F-measure 0 (TP = 0 with reference events), segment error rate
    1 (every reference segment a deletion, no insertion)."""
    from hear_gram import synthetic_tasks

    task = synthetic_tasks.make_event_task(tmp_path, n_clips=5, sample_rates=(16000,))
    for baseline in ("chance", "majority"):
        rows = hear_baselines.rows(task, baseline, "mono")
        assert [(r["metric"], r["mean"], r["folds"], r["better"]) for r in rows] == [
            ("event_onset_200ms_fms", 0.0, 1, "higher"), ("segment_1s_er", pytest.approx(1.0), 1, "lower")]  # fmt: skip


# ------------------------------------------------------------------ end to end


def _relabel(task: Path, folds: dict[str, list[str]]) -> None:
    """Give each fold's clips (sorted by name) the labels `folds` lists for it."""
    for fold, labels in folds.items():
        items = json.loads((task / f"{fold}.json").read_text())
        (task / f"{fold}.json").write_text(
            json.dumps({name: [y] for name, y in zip(sorted(items), labels, strict=True)}))  # fmt: skip


@pytest.mark.slow
def test_a_mono_44k_module_and_gram_t_run_every_condition(tmp_path, lib, capsys):
    from hear_gram import synthetic_tasks
    from hear_gram.checkpoints import random_encoder, save_checkpoint

    write_module(lib, "tiny_mono_e2e")
    tasks = tmp_path / "tasks"
    classes = synthetic_tasks.SCENE_CLASSES[:3]
    task = synthetic_tasks.make_scene_task(tasks, name="scene", n_per_class=3, classes=classes,
                                           duration_s=1.0, sample_rates=(16000,), kfold=3)  # fmt: skip
    a, b, c = classes
    _relabel(task, {f: [{"a": a, "b": b, "c": c}[y] for y in ys] for f, ys in FOLDS.items()})
    weights = save_checkpoint(tmp_path / "gram-t.safetensors", random_encoder("gram-t", depth=1),
                              "released")  # fmt: skip
    models = models_file(tmp_path / "models.toml", f"""
        [[model]]
        name = "tiny"
        module = "tiny_mono_e2e"
        formats = ["mono", "binaural"]
        channels = "mean"

        [[model]]
        name = "gram"
        module = "hear_gram"
        weights = "{weights}"
        options = {{ sample_rate = 16000 }}
        formats = ["mono", "binaural"]
        [model.binaural]
        module = "hear_gram.gram_t"

        [[model]]
        name = "majority"
        module = "majority"
        conditions = ["dry", "nat-binaural"]

        [[model]]
        name = "chance"
        module = "chance"
        conditions = ["dry", "nat-binaural"]
    """)  # fmt: skip
    code = suite_main(["--models", str(models), "--tasks-dir", str(tasks), "--out",
                       str(tmp_path / "w"), "--conditions", "dry,nat-binaural,localization",
                       "--nat-task", "scene", "--localization-source", "scene",
                       "--grid", "faster", "--grid-points", "1", "--localization-grid", "tiny",
                       "--n-scenes", "4", "--jobs", "2", "--quiet"])  # fmt: skip
    out = capsys.readouterr().out
    assert "probe: tiny: ok (rate 44100; mono, binaural via channels=mean)" in out
    assert "probe: gram: ok (rate 16000; mono, binaural)" in out
    assert code == 0, out
    rows = list(csv.DictReader((tmp_path / "w" / "report" / "results.csv").open()))
    units = {(r["model"], r["condition"], r["unit"]): r["status"] for r in rows}
    assert set(units.values()) == {"ok"} and len(units) == 2 * 3 + 2 * 2
    # the 16 kHz task was resampled for the 44.1 kHz module, in OUT/build, for dry and nat
    built = sorted(p.name.split("-")[0] for p in (tmp_path / "w" / "build").glob("rate*") if p.is_dir())  # fmt: skip
    assert built == ["rate44100", "rate44100"] and not (task / "44100").exists()
    primary = {(r["model"], r["condition"]): r for r in rows if r["metric"] == "top1_acc"}
    for cond in ("dry", "nat-binaural"):
        assert float(primary["majority", cond]["mean"]) == pytest.approx(2 / 9)
        # chance: fold00 trains on all-a fold02 (2/3 right), fold02 on b, c (0 right), fold01
        # on a, a, b against b, c, c: 0 or 1 of 3 right
        assert float(primary["chance", cond]["mean"]) in (
            pytest.approx(2 / 9),
            pytest.approx(1 / 3),
        )
    report = (tmp_path / "w" / "report" / "REPORT.md").read_text()
    assert "| tiny | binaural | scene |" in report and "| gram | binaural | scene |" in report
