"""Hostile inputs to the HEAR tool wrappers: hear_gram.predict (planted label pickles, broken task
dirs), hear_gram.embed (stale or mixed embeddings), hear_gram.scores and hear_gram.bench."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from hear_gram import heareval_compat
from tests.hostile import assert_clean_failure, run_cli, snapshot


class Payload:
    """A pickle that creates `marker` when loaded (what an attacker would plant)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def planted_pickle(marker: Path) -> bytes:
    return pickle.dumps([["a"], Payload(marker)])


def fake_embeddings_task(root: Path, train_labels: bytes) -> Path:
    """A trainvaltest scene task as heareval's embeddings runner lays it out (4 clips x 3 dims
    per split), with the given bytes as train.target-labels.pkl."""
    task = root / "planted-task"
    task.mkdir(parents=True)
    metadata = {"task_name": "planted-task", "embedding_type": "scene",
                "prediction_type": "multiclass", "split_mode": "trainvaltest",
                "splits": ["train", "valid", "test"], "evaluation": ["top1_acc"]}  # fmt: skip
    (task / "task_metadata.json").write_text(json.dumps(metadata))
    (task / "labelvocabulary.csv").write_text("idx,label\n0,a\n1,b\n")
    for split in metadata["splits"]:
        (task / f"{split}.embedding-dimensions.json").write_text("[4, 3]")
        np.arange(12, dtype=np.float32).tofile(task / f"{split}.embeddings.npy")
        labels = pickle.dumps([["a"], ["b"], ["a"], ["b"]])
        (task / f"{split}.target-labels.pkl").write_bytes(labels)
    (task / "train.target-labels.pkl").write_bytes(train_labels)
    return task


# ------------------------------------------------------------------ label pickles, in process


def test_heareval_label_layout_loads(tmp_path):
    """What heareval's embeddings runner pickles: lists of label strings (scene) or numbers."""
    labels = [["dog"], [], ["cat", "dog"], [3, 4.5]]
    assert heareval_compat.load_labels(io.BytesIO(pickle.dumps(labels))) == labels


@pytest.mark.hostile("code")
def test_planted_label_pickle_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    f = io.BytesIO(planted_pickle(marker))
    f.name = "x/train.target-labels.pkl"
    with pytest.raises(heareval_compat.UnsafePickleError, match=r"train.target-labels.pkl.*posix"):
        heareval_compat.load_labels(f)
    assert not marker.exists()


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    "data", [b"", b"not a pickle", pickle.dumps({"a": 1}), pickle.dumps([[["nested"]]])]
)
def test_foreign_label_pickles_are_refused(data):
    with pytest.raises(heareval_compat.UnsafePickleError, match="refusing to load"):
        heareval_compat.load_labels(io.BytesIO(data))


def test_patch_reaches_heareval_and_keeps_dump():
    from heareval.predictions import task_predictions as tp

    heareval_compat.patch_label_unpickling()
    heareval_compat.patch_label_unpickling()  # idempotent
    assert tp.pickle.load is heareval_compat.load_labels
    assert tp.pickle.dump is pickle.dump  # heareval's predictions files are written as before


# ------------------------------------------------------------------ the CLI


@pytest.mark.slow
@pytest.mark.hostile("code")
def test_predict_refuses_a_planted_pickle(tmp_path):
    """The whole predictions runner on a task dir with a planted train label pickle: one clear
    line, exit 2, no marker, and nothing outside the task dir changed."""
    marker = tmp_path / "pwned"
    task = fake_embeddings_task(tmp_path / "emb", planted_pickle(marker))
    (tmp_path / "neighbour.txt").write_text("untouched")
    before = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("emb/")}
    res = run_cli(["hear_gram.predict", str(task), "--grid", "faster", "--grid-points", "1"],
                  cwd=tmp_path, timeout=300)  # fmt: skip
    assert_clean_failure(res, "hear_gram.predict: error", "train.target-labels.pkl", "refusing")
    assert not marker.exists()
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("emb/")}
    assert after == before


@pytest.mark.hostile("crash")
def test_predict_on_a_file_is_one_line(tmp_path):
    f = tmp_path / "not-a-dir"
    f.write_text("")
    res = run_cli(["hear_gram.predict", str(f)], cwd=tmp_path, timeout=300)
    assert_clean_failure(res, "hear_gram.predict: error", "should be a directory")


# ------------------------------------------------------------------ checkpoints: destroy nothing


def fake_runner(monkeypatch, fail: bool, calls: list):
    """heareval's runner replaced by what matters here: Lightning writes a new checkpoint
    version under the task, then the run succeeds or fails."""
    from heareval.predictions.runner import runner

    def callback(task_dirs, **options):
        task = Path(task_dirs[0])
        calls.append(task)
        new = task / "lightning_logs" / "version_9" / "checkpoints" / "epoch=1.ckpt"
        new.parent.mkdir(parents=True)
        new.write_bytes(b"new")
        if fail:
            raise ValueError("heareval failed")

    monkeypatch.setattr(runner, "callback", callback)


def predict_main(task: Path, capfd) -> tuple[int, str]:
    from hear_gram import predict

    code = predict.main([str(task), "--grid", "faster", "--grid-points", "1"])
    return code, capfd.readouterr().err


def victim_with_checkpoint(root: Path) -> tuple[Path, dict]:
    victim = root / "victim"
    ckpt = victim / "version_0" / "checkpoints" / "precious.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"keep")
    return victim, snapshot(victim)


@pytest.mark.hostile("path")
@pytest.mark.parametrize("fail", [False, True])
def test_predict_refuses_a_planted_lightning_logs_link(tmp_path, monkeypatch, capfd, fail):
    task = fake_embeddings_task(tmp_path / "emb", pickle.dumps([["a"], ["b"], ["a"], ["b"]]))
    victim, before = victim_with_checkpoint(tmp_path)
    (task / "lightning_logs").symlink_to(victim, target_is_directory=True)
    calls: list = []
    fake_runner(monkeypatch, fail, calls)
    code, err = predict_main(task, capfd)
    assert code == 2 and calls == []  # refused before heareval runs
    assert err.strip().splitlines()[-1].startswith("python -m hear_gram.predict: error:")
    assert "symbolic link" in err and snapshot(victim) == before


@pytest.mark.hostile("path")
@pytest.mark.parametrize("fail", [False, True])
def test_predict_deletes_only_checkpoints_it_made(tmp_path, monkeypatch, capfd, fail):
    """A checkpoint that was there before the run and a link planted at a version folder stay
    (on success and on failure); the run's own checkpoint goes."""
    task = fake_embeddings_task(tmp_path / "emb", pickle.dumps([["a"], ["b"], ["a"], ["b"]]))
    victim, before = victim_with_checkpoint(tmp_path)
    old = task / "lightning_logs" / "version_0" / "checkpoints" / "epoch=0.ckpt"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    (task / "lightning_logs" / "version_1").symlink_to(victim, target_is_directory=True)
    calls: list = []
    fake_runner(monkeypatch, fail, calls)
    code, err = predict_main(task, capfd)
    assert calls == [task.resolve()] and code == (2 if fail else 0), err
    assert old.read_bytes() == b"old" and snapshot(victim) == before
    assert not (task / "lightning_logs" / "version_9" / "checkpoints").exists()
    assert (task / "logs" / "hear_gram-predict.log").is_file()  # under the (first) task folder


# ------------------------------------------------------------------ hear_gram.embed


@pytest.fixture
def embed_setup(tmp_path):
    """A 5-clip 16 kHz scene task and two depth-1 GRAM-T weights files, made afresh for each
    test (no test depends on what another left in the folder)."""
    from hear_gram import synthetic_tasks
    from hear_gram.checkpoints import random_encoder, save_checkpoint

    work = tmp_path
    synthetic_tasks.make_scene_task(
        work / "tasks", n_per_class=1, kfold=3, duration_s=1.0, sample_rates=(16000,)
    )
    a, b = (
        save_checkpoint(work / f"{n}.safetensors", random_encoder("gram-t", depth=1, seed=s),
                        "released")
        for n, s in (("a", 0), ("b", 1))
    )  # fmt: skip
    return work, a, b


def embed(work: Path, weights: Path, timeout: float = 300):
    return run_cli(
        ["hear_gram.embed", "hear_gram", "--model", str(weights), "--tasks-dir",
         str(work / "tasks"), "--embeddings-dir", str(work / "emb"),
         "--model-options", '{"sample_rate": 16000}'],
        cwd=work, timeout=timeout,
    )  # fmt: skip


def clip_embedding(folder: Path) -> tuple[str, np.ndarray]:
    """(split, embedding) of clip0000 in heareval's layout `{task}/{split}/{file}.embedding.npy`."""
    path = next((folder / "hear-gram-demo-scene").glob("*/clip0000.wav.embedding.npy"))
    return path.parent.name, np.load(path)


@pytest.mark.slow
@pytest.mark.hostile("stale")
def test_new_weights_never_reuse_old_embeddings(embed_setup):
    """Weights A, then weights B into the same base folder: B's embeddings are B's (checked
    against the HEAR API in this process), in their own folder; heareval's runner alone would
    have skipped the task (marked done) and kept A's."""
    import soundfile as sf
    import torch

    from hear_gram import get_scene_embeddings, load_model
    from hear_gram.checkpoints import sha256

    work, a, b = embed_setup
    res_a, res_b = embed(work, a), embed(work, b)
    assert res_a.returncode == 0, res_a.stderr[-2000:]
    assert res_b.returncode == 0, res_b.stderr[-2000:]
    folder_a, folder_b = (
        work / "emb" / f"w-{sha256(w)[:12]}" / "hear_gram-sample-rate=16000" for w in (a, b)
    )
    assert res_b.stdout.strip().splitlines()[-1] == f"embeddings: {folder_b}"
    (_, emb_a), (split, emb_b) = clip_embedding(folder_a), clip_embedding(folder_b)
    wav = work / "tasks" / "hear-gram-demo-scene" / "16000" / split / "clip0000.wav"
    audio, _ = sf.read(wav, dtype="float32")
    ref = get_scene_embeddings(torch.from_numpy(audio)[None], load_model(str(b), sample_rate=16000))
    np.testing.assert_allclose(emb_b, ref[0].numpy(), rtol=1e-3, atol=2e-4)  # batching, threads
    assert not np.allclose(emb_a, emb_b, atol=1e-3)
    record = json.loads((folder_b.parent / "hear-gram-embed.json").read_text())
    assert record["weights_sha256"] == sha256(b)
    assert list(record["folders"]["hear_gram-sample-rate=16000"]["tasks"]) == [
        "hear-gram-demo-scene"
    ]


# ------------------------------------------------------------------ one clear line, exit 2


@pytest.mark.hostile("crash")
def test_scores_cli_failures_are_one_line(tmp_path):
    res = run_cli(["hear_gram.scores", str(tmp_path / "missing")], cwd=tmp_path)
    assert_clean_failure(res, "hear_gram.scores: error", "missing", "not a directory")
    res = run_cli(["hear_gram.scores", str(tmp_path)], cwd=tmp_path)
    assert_clean_failure(res, "hear_gram.scores: error", "no test.predicted-scores.json")
    task = tmp_path / "m" / "t"
    task.mkdir(parents=True)
    (task / "test.predicted-scores.json").write_text('{"test": {"test_score": 1.0}')
    res = run_cli(["hear_gram.scores", str(tmp_path)], cwd=tmp_path)
    assert_clean_failure(res, "hear_gram.scores: error", "not valid json")
    (task / "test.predicted-scores.json").write_text('{"test": {"test_score": 1.0}}')
    (task / "task_metadata.json").write_text('{"evaluation": ["top1_acc"]}')
    res = run_cli(["hear_gram.scores", str(tmp_path)], cwd=tmp_path)
    assert_clean_failure(res, "hear_gram.scores: error", "test_top1_acc")


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--repeats", "0"], "--repeats"), (["--long-minutes", "nan"], "--long-minutes"),
     (["--long-minutes", "1e9"], "--long-minutes"), (["--device", "cuda:0"], "--device")],
)  # fmt: skip
def test_bench_cli_refuses_absurd_arguments(tmp_path, args, needle):
    if "cuda:0" in args:
        import torch

        if torch.cuda.is_available():
            args = ["--device", "nonsense"]
    res = run_cli(["hear_gram.bench", *args, "--out", str(tmp_path / "b.json")], cwd=tmp_path)
    assert_clean_failure(res, "hear_gram.bench: error", needle)
    assert not (tmp_path / "b.json").exists()


@pytest.mark.hostile("path")
def test_embed_cli_refuses_a_task_name_outside_the_tasks_dir(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "elsewhere").mkdir()
    res = run_cli(["hear_gram.embed", "hear_gram", "--tasks-dir", str(tmp_path / "tasks"),
                   "--task", "../elsewhere", "--embeddings-dir", str(tmp_path / "emb")],
                  cwd=tmp_path)  # fmt: skip
    assert_clean_failure(res, "hear_gram.embed: error", "--task", "../elsewhere")
    # only the tool's log (the CLI convention: under the output folder), no embeddings
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == ["logs"]


@pytest.mark.hostile("crash")
def test_embed_cli_refuses_missing_weights(tmp_path):
    (tmp_path / "tasks").mkdir()
    res = run_cli(["hear_gram.embed", "hear_gram", "--model", str(tmp_path / "w.safetensors"),
                   "--tasks-dir", str(tmp_path / "tasks")], cwd=tmp_path)  # fmt: skip
    assert_clean_failure(res, "hear_gram.embed: error", "w.safetensors", "not a file")


@pytest.mark.hostile("crash")
def test_label_unpickler_refuses_garbage_whatever_pickle_unpickler_is(monkeypatch):
    # regression: in the full suite a library had swapped in the pure-Python unpickler, whose
    # unknown-opcode error is a KeyError, and the garbage file escaped as a raw KeyError
    monkeypatch.setattr(pickle, "Unpickler", pickle._Unpickler)
    for data in (b"not a pickle", b"\xff\x00"):
        with pytest.raises(heareval_compat.UnsafePickleError, match="not a valid pickle"):
            heareval_compat.load_labels(io.BytesIO(data))
