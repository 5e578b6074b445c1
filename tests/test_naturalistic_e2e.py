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
