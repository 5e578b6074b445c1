"""MTEB/MAEB adapter (hear_gram.adapters.mteb): every released checkpoint's ModelMeta loads
through mteb's own `get_model`, encodes a tiny local audio dataset through `mteb.evaluate`, and a
clip's embedding does not depend on the rest of its batch."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import mteb
import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from mteb.mocks import MockAudioClassification
from torch.utils.data import DataLoader

import hear_gram.adapters.mteb as gm
from hear_gram import checkpoints as ck
from hear_gram.checkpoints import random_encoder, save_checkpoint
from hear_gram.resample import resample
from tests.conftest import REPO

RELEASED = {e["repo_id"]: (n, e) for n, e in ck.registry().items() if e["source"] == "huggingface"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mteb-weights")
    return {
        repo: save_checkpoint(
            folder / f"{name}.safetensors", random_encoder(e["preset"], depth=1, seed=7), "released"
        )  # fmt: skip
        for repo, (name, e) in RELEASED.items()
    }


def clip(n: int, channels: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((channels, n)).astype(np.float32) * 0.1
    return x[0] if channels == 1 else x


def loader(items: list[dict], batch_size: int) -> DataLoader:
    """Batches as mteb's default collate gives them: {"audio": [item, ...]}."""
    return DataLoader(items, batch_size=batch_size, collate_fn=lambda b: {"audio": list(b)})


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("repo", sorted(RELEASED))
def test_every_meta_loads_through_mteb_and_its_sizes_are_the_models(monkeypatch, weights, repo):
    monkeypatch.setenv("HEAR_GRAM_WEIGHTS", str(weights[repo]))
    name, entry = RELEASED[repo]
    meta = mteb.get_model_meta(repo)
    assert meta is gm.MODEL_METAS[repo] and meta.modalities == ["audio"]
    assert meta.revision == entry["revision"]
    model = mteb.get_model(repo)  # mteb's own loading path
    assert isinstance(model, gm.GramMtebEncoder) and model.registry_name == name
    full = random_encoder(entry["preset"])  # the full-size architecture, really built
    assert meta.n_parameters == sum(p.numel() for p in full.parameters())
    emb = model.encode(loader([{"array": clip(32000, 1, 0), "sampling_rate": 32000}], 1))
    assert emb.shape == (1, meta.embed_dim) and emb.dtype == np.float32
    # the licence is the card's where one was read (gramt-mono: MIT), else the card's address
    card = entry["card"]["license"]
    assert meta.license == (card or f"https://huggingface.co/{repo}")


def test_embeddings_are_the_hear_modules_scene_embeddings(monkeypatch, weights):
    repo = "labhamlet/gramt-binaural"
    monkeypatch.setenv("HEAR_GRAM_WEIGHTS", str(weights[repo]))
    model = mteb.get_model(repo)
    stereo = clip(48000, 2, 1)  # channels first, as mteb stores multi-channel arrays
    got = model.encode(loader([{"array": stereo, "sampling_rate": 48000}], 1))[0]
    hear = importlib.import_module("hear_gram.gram_t")
    m = hear.load_model(str(weights[repo]), sample_rate=48000)
    want = hear.get_scene_embeddings(torch.from_numpy(stereo)[None], m)[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_clips_embedding_does_not_depend_on_its_batch(monkeypatch, weights):
    repo = "labhamlet/gramt-binaural"
    monkeypatch.setenv("HEAR_GRAM_WEIGHTS", str(weights[repo]))
    model = mteb.get_model(repo)
    target = {"array": clip(40000, 2, 2), "sampling_rate": 16000}
    others = [{"array": clip(n, 2, 10 + i), "sampling_rate": 16000}
              for i, n in enumerate([8000, 70000, 23456])]  # fmt: skip
    alone = model.encode(loader([target], 1))[0]
    batched = model.encode(loader([others[0], target, *others[1:]], 4))
    assert cosine(alone, batched[1]) >= 0.9999
    np.testing.assert_allclose(batched[1], alone, rtol=1e-5, atol=1e-6)
    # and the others are not all the same vector (a batch-mean bug would make them so)
    assert cosine(batched[0], batched[2]) < 0.9999


def test_mteb_evaluate_encodes_a_tiny_local_dataset(monkeypatch, weights):
    """mteb's own evaluation path, offline, on a dataset made here (mixed rates and lengths)."""
    repo = "labhamlet/gramt-binaural"
    monkeypatch.setenv("HEAR_GRAM_WEIGHTS", str(weights[repo]))
    seen = []
    real = gm.GramMtebEncoder.embed_clip
    monkeypatch.setattr(gm.GramMtebEncoder, "embed_clip", lambda self, item: seen.append(
        (np.shape(item["array"]), item["sampling_rate"])) or real(self, item))  # fmt: skip

    def items(n: int, seed: int) -> list[dict]:
        return [{"array": clip(8000 * (1 + i % 3), 2, seed + i).tolist(),
                 "sampling_rate": [16000, 32000][i % 2]} for i in range(n)]  # fmt: skip

    class LocalAudio(MockAudioClassification):
        def load_data(self, **kwargs):
            self.dataset = DatasetDict({
                "train": Dataset.from_dict({"audio": items(8, 0), "label": [0, 1] * 4}),
                "test": Dataset.from_dict({"audio": items(4, 100), "label": [0, 1] * 2}),
            })  # fmt: skip
            self.data_loaded = True

    result = mteb.evaluate(gm.MODEL_METAS[repo], LocalAudio(), cache=None,
                           show_progress_bar=False, encode_kwargs={"batch_size": 3})  # fmt: skip
    score = result.task_results[0].scores["test"][0]["main_score"]
    assert 0.0 <= score <= 1.0
    # every clip reached the model with both channels and its own rate
    assert (
        len(seen) >= 12
        and {s[0][0] for s in seen} == {2}
        and {r for _, r in seen} == {16000, 32000}
    )


def test_resampling_is_hear_grams_own_and_bad_clips_are_refused(monkeypatch, weights):
    repo = "labhamlet/gramt-binaural"
    monkeypatch.setenv("HEAR_GRAM_WEIGHTS", str(weights[repo]))
    model = mteb.get_model(repo)
    x = clip(22050, 2, 3)
    got = model.encode(loader([{"array": x, "sampling_rate": 22050}], 1))[0]
    at32k = resample(torch.from_numpy(x), 22050, 32000).numpy()
    np.testing.assert_allclose(got, model.encode(loader([{"array": at32k, "sampling_rate": 32000}], 1))[0],
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    for bad, needle in [
        ({"array": np.zeros((3, 100), np.float32), "sampling_rate": 16000}, "C in 1, 2, 4"),
        ({"array": np.zeros(0, np.float32), "sampling_rate": 16000}, "N > 0"),
        ({"array": np.full(100, np.nan, np.float32), "sampling_rate": 16000}, "NaN or Inf"),
        ({"array": np.zeros(100, np.float32), "sampling_rate": 0}, "sampling_rate must be between"),
        ({"array": np.zeros(100, np.float32)}, "must hold 'array' and 'sampling_rate'"),
    ]:
        with pytest.raises(ValueError, match=needle):
            model.encode(loader([bad], 1))


def test_without_mteb_the_import_error_names_the_extra(tmp_path):
    """Where mteb is missing (here: a stand-in package that fails to import, first on the path),
    importing the adapter says which extra installs it."""
    (tmp_path / "mteb").mkdir()
    (tmp_path / "mteb" / "__init__.py").write_text("raise ImportError('no mteb here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    proc = subprocess.run([sys.executable, "-c", "import hear_gram.adapters.mteb"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "ImportError: hear_gram.adapters.mteb needs mteb 2.x (no mteb here): "
        "pip install 'hear-gram[mteb]'"
    )
