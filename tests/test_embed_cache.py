"""hear_gram.embed on the one cache key (hear_gram.cache): a task it embedded is recomputed when
its module's code or its content changes, reused otherwise, and nothing it did not make is
destroyed. Runs heareval's real embeddings runner in process on a throwaway HEAR module (two
numbers per clip) so that each run takes well under a second after the first import."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from hear_gram import embed, synthetic_tasks

TOY = "toy_hear_embed"
TOY_CODE = """
import torch

SCALE = 1.0


class Model(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = 2
    timestamp_embedding_size = 2


def load_model(model_file_path="", **options):
    return Model()


def get_scene_embeddings(audio, model):
    return SCALE * torch.stack([audio.mean(1), audio.abs().mean(1)], 1)


def get_timestamp_embeddings(audio, model):
    emb = get_scene_embeddings(audio, model)[:, None, :]
    return emb, torch.zeros(audio.shape[0], 1)
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A tiny scene task, the toy module on sys.path, and a counter of heareval's per-task
    embedding calls."""
    import heareval.embeddings.runner as heareval_runner

    package = tmp_path / "code" / TOY
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(TOY_CODE)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    synthetic_tasks.make_scene_task(tmp_path / "tasks", n_per_class=1, kfold=3, duration_s=0.25,
                                    sample_rates=(16000,))  # fmt: skip
    calls: list[str] = []
    original = heareval_runner.task_embeddings

    def counted(embedding, task_path, embed_task_dir):
        calls.append(Path(task_path).name)
        return original(embedding, task_path, embed_task_dir)

    monkeypatch.setattr(heareval_runner, "task_embeddings", counted)
    yield tmp_path, calls
    sys.modules.pop(TOY, None)


def run_embed(work: Path, capsys, *extra: str) -> tuple[int, str]:
    sys.modules.pop(TOY, None)  # heareval imports the module afresh, as a new process would
    code = embed.main(["--module", TOY, "--tasks-dir", str(work / "tasks"),
                       "--out", str(work / "emb"), "-q", *extra])  # fmt: skip
    return code, capsys.readouterr().err


def task_out(work: Path) -> Path:
    return work / "emb" / "no-weights" / TOY / "hear-gram-demo-scene"


def first_embedding(work: Path) -> np.ndarray:
    return np.load(sorted(task_out(work).glob("*/*.embedding.npy"))[0])


def test_unchanged_is_reused_and_changed_code_is_recomputed(setup, capsys):
    work, calls = setup
    assert run_embed(work, capsys)[0] == 0
    marker = task_out(work) / embed.DONE
    first, inode = first_embedding(work), marker.stat().st_ino
    assert calls == ["hear-gram-demo-scene"]
    assert (work / "emb" / "logs" / "hear_gram-embed.log").is_file()  # hear_gram.cli: under --out
    assert run_embed(work, capsys)[0] == 0
    assert calls == ["hear-gram-demo-scene"] and marker.stat().st_ino == inode  # reused
    code = work / "code" / TOY / "__init__.py"
    code.write_text(TOY_CODE.replace("SCALE = 1.0", "SCALE = 2.0"))  # one byte
    assert run_embed(work, capsys)[0] == 0
    assert calls == ["hear-gram-demo-scene"] * 2
    np.testing.assert_allclose(first_embedding(work), 2 * first, rtol=1e-6)


@pytest.mark.parametrize("what", ["audio", "labels"])
def test_one_changed_byte_of_the_task_is_recomputed(setup, capsys, what):
    work, calls = setup
    assert run_embed(work, capsys)[0] == 0
    task = work / "tasks" / "hear-gram-demo-scene"
    if what == "audio":
        wav = sorted(task.glob("16000/*/*.wav"))[0]
        data = bytearray(wav.read_bytes())
        data[-1] ^= 1  # the last sample's low byte
        wav.write_bytes(bytes(data))
    else:
        split = task / "fold00.json"
        split.write_bytes(split.read_bytes().replace(b"]", b"] ", 1))
    assert run_embed(work, capsys)[0] == 0
    assert calls == ["hear-gram-demo-scene"] * 2
    if what == "labels":  # heareval copies the split JSON: the new one is there
        assert (task_out(work) / "fold00.json").read_bytes() == split.read_bytes()


def test_embeddings_it_did_not_make_are_refused_untouched(setup, capsys):
    work, calls = setup
    out = task_out(work)
    out.mkdir(parents=True)
    (out / embed.DONE).write_text("")
    (out / "theirs.npy").write_text("keep")
    code, err = run_embed(work, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "error:" in err and "no record of making" in err
    assert (out / "theirs.npy").read_text() == "keep" and calls == []


def test_a_corrupt_record_is_one_line_and_removes_nothing(setup, capsys):
    """Choice: a record that cannot be read is refused (exit 2), not recomputed, because the
    tool can then no longer tell which folders it made."""
    work, calls = setup
    assert run_embed(work, capsys)[0] == 0
    record = work / "emb" / "no-weights" / embed.RECORD
    record.write_text("[" * 5000)
    (work / "code" / TOY / "__init__.py").write_text(TOY_CODE + "# changed\n")
    code, err = run_embed(work, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "error:" in err
    assert (task_out(work) / embed.DONE).exists() and calls == ["hear-gram-demo-scene"]


def test_a_stale_task_folder_replaced_by_a_link_is_refused(setup, capsys):
    work, calls = setup
    assert run_embed(work, capsys)[0] == 0
    victim = work / "victim"
    victim.mkdir()
    (victim / embed.DONE).write_text("")
    (victim / "precious").write_text("keep")
    out = task_out(work)
    import shutil

    shutil.rmtree(out)
    out.symlink_to(victim, target_is_directory=True)
    (work / "code" / TOY / "__init__.py").write_text(TOY_CODE + "# changed\n")
    code, err = run_embed(work, capsys)
    assert code == 2 and "symbolic link" in err
    assert (victim / "precious").read_text() == "keep" and (victim / embed.DONE).exists()


def test_the_record_holds_the_cache_key(setup, capsys):
    """The key is `hear_gram.cache.CacheKey` of (module, no weights, options, task digest), so
    a changed code fingerprint changes it (independent reference: the cache module's key)."""
    from hear_gram.cache import CacheKey, task_digest

    work, _ = setup
    assert run_embed(work, capsys)[0] == 0
    record = json.loads((work / "emb" / "no-weights" / embed.RECORD).read_text())
    task = work / "tasks" / "hear-gram-demo-scene"
    expected = CacheKey(TOY, None, {}, task_digest(task)).digest()
    assert record["folders"][TOY]["tasks"] == {"hear-gram-demo-scene": expected}


def test_a_record_of_other_weights_or_options_is_refused(setup, capsys):
    """A keyed folder whose record names other weights (a 12-hex prefix collision, a copied
    folder), or a heareval folder recorded for other options, is refused untouched."""
    from hear_gram.checkpoints import sha256

    work, calls = setup
    weights = work / "w.bin"
    weights.write_bytes(b"any weights the toy module ignores")
    assert run_embed(work, capsys, "--weights", str(weights))[0] == 0
    record_path = work / "emb" / f"w-{sha256(weights)[:12]}" / embed.RECORD
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "weights_sha256": "0" * 64}))
    code, err = run_embed(work, capsys, "--model", str(weights))  # the old option name
    assert code == 2 and "weights " + "0" * 64 in err and len(err.strip().splitlines()) == 1
    record["folders"][TOY]["model_options"] = {"a": "x y"}
    record_path.write_text(json.dumps(record))
    code, err = run_embed(work, capsys, "--model", str(weights))
    assert code == 2 and "with options {'a': 'x y'}" in err
    assert calls == ["hear-gram-demo-scene"]


def test_tasks_finished_before_a_failure_are_recorded(setup, capsys, monkeypatch):
    """heareval fails on the second task: the first, finished, is recorded (a rerun reuses it
    instead of refusing embeddings it has no record of), the second is redone."""
    import heareval.embeddings.runner as heareval_runner

    work, calls = setup
    synthetic_tasks.make_scene_task(work / "tasks", name="zz-second", n_per_class=1, kfold=3,
                                    duration_s=0.25, sample_rates=(16000,))  # fmt: skip
    counted = heareval_runner.task_embeddings

    def fail_on_second(embedding, task_path, embed_task_dir):
        if Path(task_path).name == "zz-second":
            raise ValueError("broken on purpose")
        return counted(embedding, task_path, embed_task_dir)

    monkeypatch.setattr(heareval_runner, "task_embeddings", fail_on_second)
    code, err = run_embed(work, capsys)
    assert code == 2 and "broken on purpose" in err
    monkeypatch.setattr(heareval_runner, "task_embeddings", counted)
    assert run_embed(work, capsys)[0] == 0
    assert calls == ["hear-gram-demo-scene", "zz-second"]
