"""X-ARES encoders (hear_gram.adapters.xares): X-ARES's own `check_audio_encoder`, the frame hop
read from the embeddings' timestamps, the HEAR module's embeddings, mono input to spatial models,
and the weights chosen with no constructor arguments."""

from __future__ import annotations

import importlib
import logging
import math

import huggingface_hub.constants
import pytest
import torch
from xares.audio_encoder_checker import check_audio_encoder

import hear_gram.adapters.xares as xa
from hear_gram import checkpoints as ck
from hear_gram.checkpoints import random_encoder, save_checkpoint
from tests.hub_stand_in import prefill_cache

# module, class, registry name, architecture preset, input channels of a spatial clip
ENCODERS = [
    ("gramt_binaural", "GramtBinauralEncoder", "gramt-binaural", "gram-t", 2),
    ("gramt_binaural_time", "GramtBinauralTimeEncoder", "gramt-binaural-time", "gram-t-time", 2),
    ("gramt_ambisonics", "GramtAmbisonicsEncoder", "gramt-ambisonics", "gram-t-ambisonic", 4),
    ("gramt_mono", "GramtMonoEncoder", "gramt-mono", "gram-t-mono", 1),
]
IDS = [e[0] for e in ENCODERS]


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """Depth-1 random weights of each preset, in upstream's released layout."""
    folder = tmp_path_factory.mktemp("xares-weights")
    return {
        preset: save_checkpoint(
            folder / f"{preset}.safetensors", random_encoder(preset, depth=1, seed=3), "released"
        )  # fmt: skip
        for _, _, _, preset, _ in ENCODERS
    }


def encoder_class(module: str, cls: str):
    mod = importlib.import_module(f"hear_gram.adapters.xares.{module}")
    # X-ARES takes the one attribute of the module whose name ends in "Encoder" (xares/utils.py)
    assert [n for n in dir(mod) if n.endswith("Encoder")] == [cls]
    return getattr(mod, cls)


@pytest.mark.parametrize("module, cls, name, preset, channels", ENCODERS, ids=IDS)
def test_each_encoder_passes_xares_check_and_its_hop_is_the_timestamps(
    monkeypatch, random_weights, module, cls, name, preset, channels
):
    monkeypatch.setenv("HEAR_GRAM_WEIGHTS", str(random_weights[preset]))
    enc = encoder_class(module, cls)()  # no arguments, as xares.run builds it
    assert check_audio_encoder(enc) is True
    assert enc.sampling_rate == 32000 and not enc.training

    audio = torch.randn(2, 3 * 32000 + 123, generator=torch.Generator().manual_seed(1)) * 0.1
    frames = enc(audio)
    emb, ts = enc.runtime.timestamp_embeddings(audio)
    # the hop X-ARES is told is the one between the embeddings' own timestamps
    steps = torch.diff(ts, dim=1)
    assert torch.allclose(steps, torch.full_like(steps, enc.hop_size_in_ms))
    assert enc.hop_size_in_ms == {"gram-t-time": 20.0}.get(preset, 80.0)
    # and it matches the number of frames for the audio's duration (10 ms mel frames)
    n_frames = audio.shape[1] // 320 + 1
    assert frames.shape == (2, math.ceil(n_frames * 10 / enc.hop_size_in_ms), enc.output_dim)
    assert frames.dtype == torch.float32
    # the frames are the HEAR module's timestamp embeddings, at the model's own rate
    hear = importlib.import_module(ck.registry()[name]["module"])
    model = hear.load_model(str(random_weights[preset]), sample_rate=32000)
    torch.testing.assert_close(frames, hear.get_timestamp_embeddings(audio, model)[0])
    torch.testing.assert_close(frames, emb)


def test_the_wrong_weights_for_a_class_are_refused_in_one_line(monkeypatch, random_weights):
    monkeypatch.setenv("HEAR_GRAM_WEIGHTS", str(random_weights["gram-t-ambisonic"]))
    with pytest.raises(ValueError, match="Use hear_gram.gram_t_ambisonic instead"):
        encoder_class("gramt_binaural", "GramtBinauralEncoder")()


def test_with_no_weights_variable_the_registry_name_comes_from_the_hf_cache(
    tmp_path, monkeypatch, random_weights
):
    monkeypatch.delenv("HEAR_GRAM_WEIGHTS", raising=False)
    hub_cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    data = random_weights["gram-t"].read_bytes()
    snapshot = prefill_cache(hub_cache, "labhamlet/gramt-binaural", "model.safetensors", data)
    enc = encoder_class("gramt_binaural", "GramtBinauralEncoder")()
    assert enc.runtime.source == str(snapshot)


def test_mono_to_a_spatial_model_warns_once_and_equals_the_hear_modules_handling(
    monkeypatch, random_weights, caplog
):
    monkeypatch.setenv("HEAR_GRAM_WEIGHTS", str(random_weights["gram-t"]))
    enc = encoder_class("gramt_binaural", "GramtBinauralEncoder")()
    mono = torch.randn(1, 32000, generator=torch.Generator().manual_seed(2)) * 0.1
    with caplog.at_level(logging.WARNING, logger="hear_gram.adapters.xares"):
        out = enc(mono)
        enc(mono)
    warned = [r.message for r in caplog.records if "X-ARES hands over mono audio" in r.message]
    assert len(warned) == 1 and "given to both ears" in warned[0]
    # the documented handling: the same signal at both ears
    both = torch.stack([mono, mono], dim=1)
    torch.testing.assert_close(out, enc(both))


def test_long_batches_go_clip_by_clip_with_the_same_frames(monkeypatch, random_weights):
    monkeypatch.setenv("HEAR_GRAM_WEIGHTS", str(random_weights["gram-t"]))
    enc = encoder_class("gramt_binaural", "GramtBinauralEncoder")()
    audio = torch.randn(3, 5 * 32000, generator=torch.Generator().manual_seed(4)) * 0.1
    audio[1, 2 * 32000 :] = 0  # X-ARES zero-pads shorter clips to the batch's longest
    whole = enc(audio)
    calls = []
    real = enc.runtime.timestamp_embeddings
    monkeypatch.setattr(
        enc.runtime, "timestamp_embeddings", lambda a: calls.append(a.shape) or real(a)
    )
    monkeypatch.setattr(xa, "BATCH_SAMPLES", 32000)
    torch.testing.assert_close(enc(audio), whole)
    assert calls == [(1, 5 * 32000)] * 3
