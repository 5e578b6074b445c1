"""Hostile-input matrix: audio the HEAR runtime must refuse before it does any work or moves the
model (a refused call must leave the model usable for the next one)."""

from __future__ import annotations

import pytest
import torch

from hear_gram import gram_t
from tests.conftest import noise


@pytest.fixture(scope="module")
def model(gram_t_file):
    return gram_t.load_model(str(gram_t_file), sample_rate=32000, strategy="cls")


@pytest.fixture(scope="module")
def clip():
    return noise((1, 2, 8000), seed=21)


@pytest.fixture(scope="module")
def reference(model, clip):
    return gram_t.get_scene_embeddings(clip, model)


def assert_still_works(model, clip, reference):
    assert model.encoder.cls_token.device.type == "cpu"
    assert model.frontend.fb.device.type == "cpu"
    assert torch.equal(gram_t.get_scene_embeddings(clip, model), reference)


@pytest.mark.hostile("crash")
def test_meta_audio_is_refused_and_does_not_move_the_model(model, clip, reference):
    with pytest.raises(ValueError, match="'meta' tensor"):
        gram_t.get_scene_embeddings(torch.empty(1, 2, 8000, device="meta"), model)
    with pytest.raises(ValueError, match="'meta' tensor"):
        gram_t.get_timestamp_embeddings(torch.empty(1, 8000, device="meta"), model)
    assert_still_works(model, clip, reference)


@pytest.mark.hostile("crash")
def test_a_device_the_model_cannot_reach_is_a_clear_error_and_the_model_stays(
    model, clip, reference
):
    """A CUDA ordinal that does not exist (every CUDA device on a CPU-only build)."""
    missing = torch.device("cuda", torch.cuda.device_count() if torch.cuda.is_available() else 0)
    with pytest.raises(ValueError, match="cannot run the model on the audio's device cuda"):
        model.follow(missing)
    assert_still_works(model, clip, reference)


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    ("dtype", "hint"),
    [
        (torch.int16, r"audio.float\(\) / 32768 for signed 16-bit PCM"),
        (torch.int32, r"audio.float\(\) / 2147483648 for signed 32-bit PCM"),
        (torch.int64, "signed 64-bit PCM"),
        (torch.uint8, r"\(audio.float\(\) - 128\) / 128 for unsigned 8-bit PCM"),
        (torch.bool, "dtype torch.bool: pass float samples"),
        (torch.complex64, "complex dtype torch.complex64: pass the real waveform"),
    ],
)
def test_non_float_audio_is_refused_with_how_to_convert(model, clip, reference, dtype, hint):
    audio = (clip * 1000).to(dtype) if dtype != torch.bool else clip > 0
    with pytest.raises(ValueError, match=hint):
        gram_t.get_scene_embeddings(audio, model)
    assert_still_works(model, clip, reference)


@pytest.mark.hostile("nonfinite")
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_audio_is_refused(model, clip, reference, bad):
    audio = clip.clone()
    audio[0, 1, 4000] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        gram_t.get_timestamp_embeddings(audio, model)
    assert_still_works(model, clip, reference)


def test_other_float_dtypes_are_converted_to_float32(model, clip, reference):
    """The documented rule: any real floating dtype is read as float32 samples."""
    out = gram_t.get_scene_embeddings(clip.double(), model)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference)
