"""Hostile-input matrix: localization_tasks.generate and localization_tasks.evaluate.

Each case feeds one broken or hostile input and asserts the outcome a user needs: exit code 2
with one line naming the problem (no traceback), nothing outside --out changed, no stale result.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from hear_gram.synthetic_tasks import make_scene_task
from localization_tasks import embeddings, evaluate, generate, taskdata
from tests.hostile import Result, assert_clean_failure, run_cli, run_limited, snapshot

SR = 16000


def _main(main, argv, capsys) -> Result:
    """Run a CLI `main` in this process: its exit code and stderr as a `Result`."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv]) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def _tasks_in(out) -> dict:
    """The files under an output folder but its run logs (OUT/logs, which every run appends
    to by the hear_gram.cli convention)."""
    return {k: v for k, v in snapshot(out).items() if not k.startswith("logs/")}


def _source(root):
    """A tiny scene task: 3 folds of one 0.5 s clip each, 16 kHz."""
    return make_scene_task(root / "tasks", name="src", n_per_class=1, classes=("hiss", "clicks",
                           "chirp"), kfold=3, sample_rates=(SR,), duration_s=0.5)  # fmt: skip


def _gen_args(root, *extra):
    return ["--tasks-dir", root / "tasks", "--out", root / "out", "--task", "src", "--format",
            "binaural", "--n-scenes", "3", "--cache-dir", root / "cache", "--quiet", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-loc")
    _source(root)
    generate.main([str(a) for a in _gen_args(root)])
    return root


def _copy(generated, tmp_path):
    shutil.copytree(generated / "tasks", tmp_path / "tasks")
    shutil.copytree(generated / "out", tmp_path / "out")
    shutil.copytree(generated / "cache", tmp_path / "cache")
    return tmp_path


# --- generate -------------------------------------------------------------------------------


@pytest.mark.hostile("stale")
def test_resume_with_another_seed_is_refused(generated, tmp_path, capsys):
    """Regression: a run resumed with another --seed kept the old seed's clips beside new ones."""
    root = _copy(generated, tmp_path)
    before = _tasks_in(root / "out")
    res = _main(generate.main, _gen_args(root, "--seed", "1"), capsys)
    assert_clean_failure(res, "different settings", "seed", "--out")
    assert _tasks_in(root / "out") == before


@pytest.mark.hostile("path")
@pytest.mark.parametrize("name", ["../../victim.wav", "sub/clip0000.wav"])
def test_file_names_leading_elsewhere_are_refused(tmp_path, capsys, name):
    """A split file naming a file outside the task (or in a sub-folder) is neither read nor
    overwritten: the old generator rewrote such a file in place."""
    _source(tmp_path)
    task = tmp_path / "tasks" / "src"
    audio = sf.read(task / str(SR) / "fold00" / "clip0000.wav")[0]
    sf.write(tmp_path / "victim.wav", audio, SR)
    (task / str(SR) / "fold00" / "sub").mkdir()
    sf.write(task / str(SR) / "fold00" / "sub" / "clip0000.wav", audio, SR)
    labels = json.loads((task / "fold00.json").read_text())
    (task / "fold00.json").write_text(json.dumps({name: next(iter(labels.values()))}))
    before = snapshot(tmp_path)
    res = _main(generate.main, _gen_args(tmp_path), capsys)
    assert_clean_failure(res, "error", name.split("/")[0])
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(("out", "cache"))}
    assert after == {k: v for k, v in before.items() if not k.startswith(("out", "cache"))}
    assert not any((tmp_path / "out").rglob("victim.wav"))


@pytest.mark.hostile("path")
def test_a_split_name_leading_outside_is_refused(tmp_path, capsys):
    _source(tmp_path)
    task = tmp_path / "tasks" / "src"
    meta = json.loads((task / "task_metadata.json").read_text())
    meta["splits"] = ["fold00", "fold01", "../../evil"]
    (task / "task_metadata.json").write_text(json.dumps(meta))
    (tmp_path / "evil.json").write_text(json.dumps({"clip0000.wav": ["hiss"]}))
    (tmp_path / str(SR)).mkdir()  # so that the split's audio folder "exists" outside the task
    before = snapshot(tmp_path)
    res = _main(generate.main, _gen_args(tmp_path), capsys)
    assert_clean_failure(res, "error", "evil")
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(("out", "cache"))} == {
        k: v for k, v in before.items() if not k.startswith(("out", "cache"))
    }
    assert not (tmp_path / "evil").exists()


@pytest.mark.hostile("nonfinite")
def test_nan_source_audio_is_refused(tmp_path, capsys):
    _source(tmp_path)
    wav = tmp_path / "tasks" / "src" / str(SR) / "fold01" / "clip0001.wav"
    sf.write(wav, np.full(SR // 2, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    res = _main(generate.main, _gen_args(tmp_path), capsys)
    assert_clean_failure(res, "clip0001.wav", "nan")


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--n-scenes", "0"], ["--n-scenes", "must be >= 1"]),
        (["--n-scenes", "nan"], ["--n-scenes", "not an integer"]),
        (["--task", "missing"], ["no task folder", "missing"]),
        (["--task", "../tasks"], ["--task", "not a plain"]),
        (["--rirs", "sofa:"], ["--rirs"]),
        (["--snr-db", "nan", "nan"], ["unrecognized arguments"]),  # fixed bins: no such flag
    ],
)
def test_generate_bad_arguments_fail_in_one_line(tmp_path, capsys, extra, needles):
    _source(tmp_path)
    args = _gen_args(tmp_path, *extra)
    if "--task" in extra:  # replace the default --task src
        i = args.index("--task")
        del args[i : i + 2]
    res = _main(generate.main, args, capsys)
    assert_clean_failure(res, *needles)
    out = tmp_path / "out"  # nothing but the run log (OUT/logs, hear_gram.cli)
    assert not out.exists() or {p.name for p in out.iterdir()} <= {"logs"}


@pytest.mark.hostile("crash")
def test_too_few_scenes_for_the_folds_fail_in_one_line(tmp_path):
    """Through a real process: 2 scenes cannot give 3 folds their own rooms."""
    _source(tmp_path)
    args = _gen_args(tmp_path)
    args[args.index("--n-scenes") + 1] = "2"
    res = run_cli(["localization_tasks.generate", *map(str, args)], timeout=300)
    assert_clean_failure(res, "3 splits", "--n-scenes")


# --- evaluate -------------------------------------------------------------------------------


def _eval_args(tasks_dir, out, *extra):
    return ["--module", "chance", "--tasks-dir", tasks_dir, "--out", out, "--grid", "tiny",
            "--quiet", *extra]  # fmt: skip


@pytest.mark.hostile("crash")
def test_evaluate_batch_size_zero_fails_in_one_line(generated, tmp_path, capsys):
    res = _main(evaluate.main, _eval_args(generated / "out", tmp_path, "--batch-size", "0"), capsys)
    assert_clean_failure(res, "--batch-size", "must be >= 1")


@pytest.mark.hostile("crash")
def test_evaluate_a_task_that_is_not_a_localization_task(generated, tmp_path, capsys):
    """The source scene task itself, named with --task: a clear refusal, not a KeyError."""
    res = _main(evaluate.main, _eval_args(generated / "tasks", tmp_path, "--task", "src"), capsys)
    assert_clean_failure(res, "src", "not a localization task")
    res = _main(evaluate.main, _eval_args(generated / "tasks", tmp_path), capsys)
    assert_clean_failure(res, "no localization tasks")


@pytest.mark.hostile("path")
def test_evaluate_refuses_names_from_data_that_lead_outside(generated, tmp_path, capsys):
    tasks = tmp_path / "tasks"
    shutil.copytree(generated / "out" / "src-loc-binaural-clean", tasks / "t")
    meta = json.loads((tasks / "t" / "task_metadata.json").read_text())
    meta["splits"] = ["fold00", "fold01", "../../../escape"]
    (tasks / "t" / "task_metadata.json").write_text(json.dumps(meta))
    res = _main(evaluate.main, _eval_args(tasks, tmp_path / "res", "--task", "t"), capsys)
    assert_clean_failure(res, "split name", "escape")
    meta["splits"] = ["fold00", "fold01", "fold02"]
    (tasks / "t" / "task_metadata.json").write_text(json.dumps(meta))
    labels = json.loads((tasks / "t" / "fold00.json").read_text())
    (tasks / "t" / "fold00.json").write_text(json.dumps({"sub/x.wav": next(iter(labels.values()))}))
    res = _main(evaluate.main, _eval_args(tasks, tmp_path / "res", "--task", "t"), capsys)
    assert_clean_failure(res, "file name", "sub-folder")


@pytest.mark.hostile("nonfinite")
def test_evaluate_refuses_nan_targets(generated, tmp_path, capsys):
    """NaN labels used to flow into the metrics as plausible numbers."""
    tasks = tmp_path / "tasks"
    shutil.copytree(generated / "out" / "src-t60-binaural", tasks / "t")
    labels = json.loads((tasks / "t" / "fold01.json").read_text())
    (tasks / "t" / "fold01.json").write_text(json.dumps({f: [float("nan")] for f in labels}))
    res = _main(evaluate.main, _eval_args(tasks, tmp_path / "res"), capsys)
    assert_clean_failure(res, "fold01.json", "NaN")


@pytest.mark.hostile("stale")
def test_evaluate_cache_of_other_content_or_corrupt_is_recomputed(generated, tmp_path):
    """Regression: the cache was keyed by module, weights and options only, so a regenerated
    task was scored on the old task's embeddings; a corrupt file crashed the run."""
    task = tmp_path / "t"
    shutil.copytree(generated / "out" / "src-loc-binaural-clean", task)
    embed = embeddings.Embedder(
        "localization_tasks.baselines.gcc_phat", "", {"sample_rate": SR}, tmp_path / "c" / "tag"
    )
    files, _ = taskdata.read_labels(task, "fold00", "direction")
    first = embed(task, "fold00", files)
    wav = task / str(SR) / "fold00" / files[0]
    audio = sf.read(wav, dtype="float32")[0]
    sf.write(wav, audio[:, ::-1].copy(), SR)  # left and right swapped: the source moved
    second = embed(task, "fold00", files)
    assert second[0, -1] == pytest.approx(-first[0, -1], abs=1e-6)  # the ITD changed sign
    (tmp_path / "c" / "tag" / "t" / "fold00.npz").write_bytes(b"\x93NUMPY garbage")
    np.testing.assert_allclose(embed(task, "fold00", files), second, rtol=1e-6)


@pytest.mark.hostile("bomb")
def test_evaluate_refuses_an_absurd_rate_folder_before_resampling(generated, tmp_path):
    """A task whose only audio folder is "1" (and whose files claim 1 Hz, 40 000 samples each):
    resampled to the model's 16 kHz each clip would be 6.4e8 samples per channel (5 GB). The
    folder's rate is refused by name in a process capped at 2 GB."""
    task = tmp_path / "tasks" / "t"
    shutil.copytree(generated / "out" / "src-loc-binaural-clean", task)
    (task / str(SR)).rename(task / "1")
    for wav in (task / "1").rglob("*.wav"):
        sf.write(wav, np.full((40_000, 2), 0.1), 1, subtype="PCM_16")
    args = ["localization_tasks.evaluate", "--module", "localization_tasks.baselines.gcc_phat",
            "--model-options", json.dumps({"sample_rate": SR}), "--tasks-dir", tmp_path / "tasks",
            "--out", tmp_path / "res", "--grid", "tiny", "--quiet"]  # fmt: skip
    res = run_limited([str(a) for a in args], mem_mb=2048, timeout=300)
    assert_clean_failure(res, "audio folder", "1 Hz")
