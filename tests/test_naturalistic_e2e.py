"""Nat-HEAR end to end: `python -m naturalistic_hear` renders a HEAR task binaurally and in
Ambisonics, and heareval's embeddings runner embeds the results with hear_gram.gram_t and
hear_gram.gram_t_ambisonic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from hear_gram import synthetic_tasks
from hear_gram.checkpoints import random_encoder, save_checkpoint
from tests.conftest import run_module


def assert_spatial_render(rendered, dry, wavs) -> None:
    """What only a spatial render gives: the two ears differ from each other and from the dry
    clip; interaural level differences (dB) are non-zero and vary across clips (each clip has
    its own scene, i.e. source direction); the interaural lag of the cross-correlation peak
    (within +-1 ms, the head's range) varies across clips. Copying the dry clip (or any one
    signal) to both ears gives ILD 0, lag 0 and a correlation of 1 and fails every part."""
    ilds, lags = [], []
    for w in wavs:
        x, sr = sf.read(str(w), always_2d=True)
        d, _ = sf.read(str(dry / w.relative_to(rendered)), always_2d=True)
        left, right, d = x[:, 0], x[:, 1], d[:, 0]
        assert abs(np.corrcoef(left, right)[0, 1]) < 0.99, w.name
        assert max(abs(np.corrcoef(ear, d)[0, 1]) for ear in (left, right)) < 0.95, w.name
        ilds.append(10 * np.log10(np.sum(left**2) / np.sum(right**2)))
        m = int(0.001 * sr)
        cc = [np.dot(left[m:-m], np.roll(right, k)[m:-m]) for k in range(-m, m + 1)]
        lags.append(int(np.argmax(cc)) - m)
    assert max(abs(v) for v in ilds) > 1.0 and np.ptp(ilds) > 1.0, ilds
    assert len(set(lags)) > 1, lags


CASES = [
    ("binaural", "hear_gram.gram_t", "gram-t", 2),
    ("ambisonic", "hear_gram.gram_t_ambisonic", "gram-t-ambisonic", 4),
]


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "module", "preset", "channels"), CASES)
def test_rendered_tasks_embed_with_heareval(tmp_path, fmt, module, preset, channels):
    dry = tmp_path / "tasks"
    task = synthetic_tasks.make_scene_task(dry, n_per_class=2, kfold=3, sample_rates=(16000,))
    out = tmp_path / f"nat-{fmt}"
    run_module(
        ["naturalistic_hear", "--tasks-dir", str(dry), "--out", str(out), "--format", fmt,
         "--task", task.name, "--n-scenes", "3", "--cache-dir", str(tmp_path / "bank"), "--quiet"],
        cwd=tmp_path, log=tmp_path / "render.log", threads=2,
    )  # fmt: skip
    rendered = out / task.name
    wavs = sorted((rendered / "16000").rglob("*.wav"))
    assert wavs and all(sf.info(str(w)).channels == channels for w in wavs)
    for w in wavs:
        dry_wav = task / w.relative_to(rendered)
        assert sf.info(str(w)).frames == sf.info(str(dry_wav)).frames
    assert (rendered / "fold00.json").read_bytes() == (task / "fold00.json").read_bytes()
    if fmt == "binaural":
        assert_spatial_render(rendered, task, wavs)
    else:  # first-order Ambisonics: W and the three dipoles are not one signal
        for w in wavs:
            x, _ = sf.read(str(w), always_2d=True)
            corr = np.corrcoef(x.T)
            assert np.all(np.abs(corr[np.triu_indices(4, 1)]) < 0.99), w.name
    meta = json.loads((rendered / "task_metadata.json").read_text())
    assert meta["naturalistic"]["format"] == fmt

    weights = save_checkpoint(
        tmp_path / "w.safetensors", random_encoder(preset, depth=1), "released"
    )
    emb = tmp_path / "embeddings"
    run_module(
        ["heareval.embeddings.runner", module, "--model", str(weights), "--tasks-dir", str(out),
         "--embeddings-dir", str(emb), "--model-options", '{"sample_rate": 16000}'],
        cwd=tmp_path, log=tmp_path / "embed.log", threads=2,
    )  # fmt: skip
    (module_dir,) = [d for d in emb.iterdir() if d.name.startswith(module)]
    n, dim = json.loads((module_dir / task.name / "fold00.embedding-dimensions.json").read_text())
    assert dim == 6144 and n == len(json.loads((task / "fold00.json").read_text()))
    x = np.memmap(module_dir / task.name / "fold00.embeddings.npy", dtype=np.float32, mode="r")
    assert np.isfinite(x).all()
