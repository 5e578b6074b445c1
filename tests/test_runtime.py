"""The HEAR runtime: shapes, timestamps, chunking and pooling against a direct reference, input
handling, options."""

from __future__ import annotations

import math

import pytest
import torch
from einops import rearrange

import hear_gram
from hear_gram import gram_t, gram_t_ambisonic, gram_t_time
from hear_gram.frontend import LogMelFrontend
from tests.conftest import noise

SR = 48000


@pytest.fixture(scope="module")
def model(gram_t_file):
    return gram_t.load_model(str(gram_t_file))


def reference_raw(model, audio32):
    """The paper's HEAR embedding spelled out on a whole clip at 32 kHz: all N // 320 + 1 centred
    log-mel frames, consecutive 200-frame chunks, last one zero-padded in the log-mel domain,
    encoder, drop CLS, (f t) d -> t (f d), keep the steps that hold real frames."""
    cfg = model.cfg
    feats = LogMelFrontend(cfg.features)(audio32)
    n = audio32.shape[-1] // 320 + 1
    assert feats.shape[-1] == n
    k = math.ceil(n / 200)
    feats = torch.nn.functional.pad(feats, (0, k * 200 - n))
    chunks = rearrange(feats, "b c f (k t) -> (b k) c f t", t=200)
    with torch.no_grad():
        tokens = model.encoder(chunks)[:, 1:]
    steps = rearrange(tokens, "(b k) (f t) d -> b (k t) (f d)", k=k, f=cfg.grid[0])
    return steps[:, : math.ceil(n / cfg.patch_t)], tokens


@pytest.mark.parametrize("seconds", [2.0, 5.0, 0.3])
def test_raw_embeddings_equal_the_reference_semantics(gram_t_file, seconds):
    model = gram_t.load_model(str(gram_t_file), sample_rate=32000)
    audio = noise((2, int(seconds * 32000)), seed=1)
    emb, ts = gram_t.get_timestamp_embeddings(audio, model)
    ref, _ = reference_raw(model, audio.unsqueeze(1).expand(-1, 2, -1))
    assert emb.shape == ref.shape
    torch.testing.assert_close(emb, ref, atol=1e-4, rtol=1e-4)


def test_exactly_200_frames_is_one_chunk_no_phantom(gram_t_file):
    """Upstream padded 200 - frames % 200 frames: a whole all-zero chunk when the frames fill
    whole chunks, averaged into `mean`/`cls` (labhamlet/GRAM-T hear_api/runtime.py)."""
    model = gram_t.load_model(str(gram_t_file), sample_rate=32000, strategy="cls")
    audio = noise((1, 63999), seed=2)  # 63999 // 320 + 1 = 200 frames
    emb, ts = gram_t.get_timestamp_embeddings(audio, model)
    assert emb.shape == (1, 1, 768) and ts.tolist() == [[995.0]]
    feats = LogMelFrontend(model.cfg.features)(audio.unsqueeze(1).expand(-1, 2, -1))
    assert feats.shape[-1] == 200
    with torch.no_grad():
        cls = model.encoder(feats)[:, 0]
    torch.testing.assert_close(gram_t.get_scene_embeddings(audio, model), cls, atol=1e-5, rtol=1e-5)


def test_mean_strategy_ignores_padded_steps(gram_t_file):
    model = gram_t.load_model(str(gram_t_file), sample_rate=32000, strategy="mean")
    audio = noise((1, 3 * 32000), seed=3)  # 301 frames: chunk 2 holds 101 real frames = 13 steps
    emb, _ = gram_t.get_timestamp_embeddings(audio, model)
    _, tokens = reference_raw(model, audio.unsqueeze(1).expand(-1, 2, -1))
    t2 = rearrange(tokens[1], "(f t) d -> t f d", f=8)[:13]
    torch.testing.assert_close(emb[0, 1], t2.mean(dim=(0, 1)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("strategy", "size"), [("raw", 6144), ("mean", 768), ("cls", 768), ("layer=1", 6144)]
)
def test_declared_sizes_are_ints_matching_outputs(gram_t_file, strategy, size):
    model = gram_t.load_model(str(gram_t_file), strategy=strategy)
    audio = noise((3, int(2.5 * SR)))
    emb, ts = gram_t.get_timestamp_embeddings(audio, model)
    scene = gram_t.get_scene_embeddings(audio, model)
    assert type(model.scene_embedding_size) is int and type(model.timestamp_embedding_size) is int
    assert emb.shape[2] == model.timestamp_embedding_size == size
    assert scene.shape == (3, model.scene_embedding_size)
    assert emb.dtype == scene.dtype == ts.dtype == torch.float32
    torch.testing.assert_close(scene, emb.mean(1))


def test_timestamps_are_step_centres_evenly_spaced(model, gram_t_time_file):
    _, ts = gram_t.get_timestamp_embeddings(noise((2, 5 * SR)), model)
    assert ts.shape == (2, math.ceil(501 / 8))  # 5 s at 32 kHz: 501 frames
    assert torch.allclose(ts[0, :3], torch.tensor([35.0, 115.0, 195.0]))
    assert torch.allclose(ts.diff(dim=1), torch.tensor(80.0))
    tmodel = gram_t_time.load_model(str(gram_t_time_file))
    emb, ts = gram_t_time.get_timestamp_embeddings(noise((1, SR)), tmodel)
    assert (
        emb.shape == (1, 51, 768)  # 101 frames, 2 per step
        and ts[0, 0] == 5.0
        and torch.allclose(ts.diff(), torch.tensor(20.0))
    )


def test_batched_equals_one_by_one_and_chunk_cap_changes_nothing(gram_t_file, model):
    audio = noise((3, int(4.5 * SR)), seed=4)
    whole = gram_t.get_scene_embeddings(audio, model)
    single = torch.cat([gram_t.get_scene_embeddings(a[None], model) for a in audio])
    torch.testing.assert_close(whole, single, atol=1e-5, rtol=1e-5)
    capped = gram_t.load_model(str(gram_t_file), max_chunks=1)
    torch.testing.assert_close(
        gram_t.get_scene_embeddings(audio, capped), whole, atol=1e-5, rtol=1e-5
    )


def test_reproducible_across_loads(gram_t_file, model):
    audio = noise((1, SR))
    again = gram_t.load_model(str(gram_t_file))
    assert torch.equal(
        gram_t.get_scene_embeddings(audio, model), gram_t.get_scene_embeddings(audio, again)
    )


def test_channel_layouts(model):
    st = noise((2, 2, SR), seed=5)
    a = gram_t.get_scene_embeddings(st, model)  # (B, C, N)
    b = gram_t.get_scene_embeddings(st.transpose(1, 2), model)  # (B, N, C) as heareval passes
    torch.testing.assert_close(a, b)
    mono = st[:, 0]
    dup = gram_t.get_scene_embeddings(torch.stack([mono, mono], 1), model)
    torch.testing.assert_close(gram_t.get_scene_embeddings(mono, model), dup, atol=1e-5, rtol=1e-5)
    foa = torch.cat([mono[:, None], noise((2, 3, SR), seed=6)], 1)  # W then X, Y, Z
    torch.testing.assert_close(gram_t.get_scene_embeddings(foa, model), dup, atol=1e-5, rtol=1e-5)


def test_ambisonic_model_takes_foa_and_refuses_stereo(gram_t_ambi_file):
    m = gram_t_ambisonic.load_model(str(gram_t_ambi_file))
    assert gram_t_ambisonic.get_scene_embeddings(noise((2, 4, SR)), m).shape == (2, 6144)
    with pytest.raises(
        ValueError, match="needs 4-channel first-order Ambisonics in ACN order W, Y, Z, X"
    ):
        gram_t_ambisonic.get_scene_embeddings(noise((2, 2, SR)), m)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (torch.zeros(0, 48000), "empty batch"),
        (torch.zeros(2, 0), "0 samples"),
        (torch.zeros(48000), "got 1 dims"),
        (torch.zeros(1, 1, 1, 48000), "got 4 dims"),
        (torch.full((1, 48000), float("nan")), "NaN or Inf"),
        (torch.zeros(1, 3, 48000), "takes 1, 2 or 4 channels"),
    ],
)
def test_bad_input_is_a_clear_value_error(model, audio, message):
    with pytest.raises(ValueError, match=message):
        gram_t.get_scene_embeddings(audio, model)


def test_clip_shorter_than_one_hop_is_defined(model):
    emb, ts = gram_t.get_timestamp_embeddings(noise((2, 100)), model)
    assert emb.shape == (2, 1, 6144) and torch.isfinite(emb).all() and ts[0, 0] == 35.0


def test_options_parse_json_strings_and_list_valid_ones(gram_t_file):
    m = gram_t.load_model(str(gram_t_file), allow_pickle="true", layer="1", precision="BF16")
    assert m.options.allow_pickle is True and m.options.layer == 1 and m.options.precision == "bf16"
    with pytest.raises(
        ValueError, match=r"unknown model option\(s\) \['strat'\]; valid options: \['strategy'"
    ):
        gram_t.load_model(str(gram_t_file), strat="raw")
    with pytest.raises(ValueError, match="layer must be in 1..2"):
        gram_t.load_model(str(gram_t_file), layer=5)
    with pytest.raises(ValueError, match="sample_rate must be one of"):
        gram_t.load_model(str(gram_t_file), sample_rate=8000)


def test_bf16_is_close_to_fp32(gram_t_file, model):
    audio = noise((2, 3 * SR), seed=7)
    ref = gram_t.get_scene_embeddings(audio, model)
    fast = gram_t.load_model(str(gram_t_file), precision="bf16")
    out = gram_t.get_scene_embeddings(audio, fast)
    assert out.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(out, ref).min() > 0.999


def test_fp16_on_cpu_is_refused(gram_t_file):
    m = gram_t.load_model(str(gram_t_file), precision="fp16")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        gram_t.get_scene_embeddings(noise((1, SR)), m)


def test_input_rate_is_resampled(gram_t_file):
    """The same sound, synthesised analytically at 48 kHz and at 32 kHz (no resampler involved),
    gives nearly the same embedding; the 48 kHz samples declared as 32 kHz (a 1.5x pitch shift)
    do not."""

    def tones(rate: int) -> torch.Tensor:
        t = torch.arange(2 * rate, dtype=torch.float64) / rate
        freqs = (440.0, 1234.5, 5000.0, 11000.0)  # all below the 16 kHz band edge
        return (sum(torch.sin(2 * torch.pi * f * t) for f in freqs) / 8).float()[None]

    m48 = gram_t.load_model(str(gram_t_file))
    m32 = gram_t.load_model(str(gram_t_file), sample_rate=32000)
    a = gram_t.get_scene_embeddings(tones(48000), m48)
    b = gram_t.get_scene_embeddings(tones(32000), m32)
    wrong = gram_t.get_scene_embeddings(tones(48000)[:, : 2 * 32000], m32)
    cos = torch.nn.functional.cosine_similarity
    assert cos(a, b).item() > 0.999
    assert cos(a, wrong).item() < cos(a, b).item() - 0.01


def test_module_refuses_the_wrong_family(gram_t_ambi_file, gram_t_time_file):
    with pytest.raises(ValueError, match="Use hear_gram.gram_t_ambisonic instead"):
        gram_t.load_model(str(gram_t_ambi_file))
    with pytest.raises(ValueError, match="Use hear_gram.gram_t_time instead"):
        hear_gram.load_model(str(gram_t_time_file))


def test_no_path_and_nothing_cached_is_a_clear_error():
    # offline, with an empty Hugging Face cache (conftest.py)
    with pytest.raises(ValueError, match="checkpoints fetch gramt-binaural"):
        hear_gram.load_model()


def test_gram_m_module(gram_m_file, gram_t_file):
    from hear_gram import gram_m

    m = gram_m.load_model(str(gram_m_file))
    audio = noise((2, 2, int(2.5 * SR)), seed=9)
    emb, ts = gram_m.get_timestamp_embeddings(audio, m)
    assert emb.shape == (2, math.ceil(251 / 8), 6144) and torch.isfinite(emb).all()
    fast = gram_m.load_model(str(gram_m_file), precision="bf16")
    cos = torch.nn.functional.cosine_similarity(
        gram_m.get_scene_embeddings(audio, fast), emb.mean(1)
    )
    assert cos.min() > 0.999
    with pytest.raises(ValueError, match="Use hear_gram.gram_t instead"):
        gram_m.load_model(str(gram_t_file))
    with pytest.raises(ValueError, match="no released default weights"):
        gram_m.load_model()
