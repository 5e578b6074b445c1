"""make demo's choice of weights: released if fetched, else the demo-pretrained GRAM-T (binaural
sets only), else random full-depth weights."""

from __future__ import annotations

import json

import huggingface_hub.constants

from hear_gram import checkpoints as ck
from hear_gram.checkpoints import random_encoder, save_checkpoint
from hear_gram.config import preset
from hear_gram.demo import pick_weights
from hear_gram.encoder import build_encoder
from tests.hub_stand_in import prefill_cache


def test_pick_weights_prefers_released_then_demo_then_random(tmp_path, monkeypatch):
    # the real registry's entries, with the repository root and the download cache in tmp_path
    (tmp_path / "repo").mkdir()
    registry = tmp_path / "repo" / "checkpoints.json"
    registry.write_text(json.dumps({"schema": 1, "checkpoints": ck.registry()}))
    monkeypatch.setattr(ck, "REGISTRY_PATH", registry)
    hub_cache = tmp_path / "hf" / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    work = tmp_path / "work"
    # made beforehand, so that pick_weights reuses them instead of building full-depth ones
    random_t = save_checkpoint(
        work / "random-gram-t.safetensors", random_encoder("gram-t", depth=1), "released"
    )
    random_a = save_checkpoint(
        work / "random-gram-t-ambisonic.safetensors",
        random_encoder("gram-t-ambisonic", depth=1),
        "released",
    )

    path, which = pick_weights(work, "gramt-binaural", "gram-t")
    assert path == random_t and which.startswith("RANDOM full-depth gram-t")
    assert "make pretrain-demo gives a trained demo model" in which

    small = preset("gram-t", depth=4, width=192, heads=3, mlp_dim=768)
    demo = save_checkpoint(ck.local_path("gram-demo-cpu"), build_encoder(small), "hear-gram")
    assert demo == tmp_path / "repo" / "work" / "pretrain" / "demo-cpu" / "model.safetensors"
    path, which = pick_weights(work, "gramt-binaural", "gram-t")
    assert path == demo
    assert which == (
        f"demo-scale GRAM-T pretrained by make pretrain-demo ({demo}): 4 layers, width 192, "
        "trained for minutes on synthetic audio; expect far below the paper's numbers"
    )
    # the demo model is binaural: the Ambisonic set stays released-or-random, with no hint
    path, which = pick_weights(work, "gramt-ambisonics", "gram-t-ambisonic")
    assert path == random_a and "pretrain-demo" not in which

    # released weights in the Hugging Face cache (as copied from a connected machine), offline
    weights = save_checkpoint(tmp_path / "w.st", random_encoder("gram-t", depth=1), "released")
    released = prefill_cache(hub_cache, "labhamlet/gramt-binaural", "model.safetensors",
                             weights.read_bytes())  # fmt: skip
    assert pick_weights(work, "gramt-binaural", "gram-t") == (
        released,
        f"released gramt-binaural weights ({released})",
    )


def test_embeddings_folder_follows_the_weights_content(tmp_path):
    """Regression: heareval's runner skips tasks already marked done, so a checkpoint retrained
    in place (same path, same size) was scored on the old weights' embeddings."""
    from hear_gram.demo import weights_dir

    path = tmp_path / "model.safetensors"
    save_checkpoint(path, random_encoder("gram-t", depth=1, seed=0), "hear-gram")
    before = weights_dir(tmp_path / "emb", path)
    size = path.stat().st_size
    save_checkpoint(path, random_encoder("gram-t", depth=1, seed=1), "hear-gram")
    assert path.stat().st_size == size and weights_dir(tmp_path / "emb", path) != before
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(path.read_bytes())
    assert weights_dir(tmp_path / "emb", copy) == weights_dir(tmp_path / "emb", path)


def test_demo_cli_refuses_bad_options_in_one_line(capsys):
    import pytest

    from hear_gram.demo import main

    for argv in (["--jobs", "0"], ["--model-options", "[1]"], ["--grid", "slow"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("python -m hear_gram.demo: error:")
