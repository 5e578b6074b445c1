"""The GCC-PHAT reference module (localization_tasks.seld.gccphat_module): the correlation peaks
at the interaural delay with the sign of the leading ear, and the HEAR contract (shapes,
timestamps every 100 ms, batched == one by one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from localization_tasks.seld import gccphat_module as gp

SR = gp.SAMPLE_RATE


def _binaural(delay: int, seed: int = 0, seconds: float = 1.0) -> np.ndarray:
    """(N, 2) white noise, the right ear `delay` samples after the left (negative: before)."""
    n = int(seconds * SR)
    s = np.random.default_rng(seed).standard_normal(n + 64).astype(np.float32)
    left = s[32 : 32 + n]
    right = s[32 - delay : 32 - delay + n]
    return np.stack([left, right], 1)


def _lags(emb: torch.Tensor) -> np.ndarray:
    """The lag (samples) of the largest GCC-PHAT value in each frame of (S, D) embeddings."""
    gcc = emb[:, 2 * gp.N_MELS :].numpy()
    return gcc.argmax(axis=1) - gp.MAX_LAG


@pytest.mark.parametrize("delay", [5, -9, 0])
def test_gcc_phat_peaks_at_the_delay_of_the_lagging_ear(delay):
    """Right ear `delay` samples late: the peak at lag +delay (the left leads: a source on the
    left) in every 100 ms frame; early: a negative lag."""
    model = gp.load_model()
    emb, ts = gp.get_timestamp_embeddings(torch.from_numpy(_binaural(delay))[None], model)
    assert emb.shape == (1, 10, model.timestamp_embedding_size) and emb.shape[-1] == 81
    np.testing.assert_allclose(ts[0].numpy(), np.arange(10) * 100 + 50)
    assert (_lags(emb[0]) == delay).all(), _lags(emb[0])


def test_batched_equals_one_by_one_and_channels_first_is_accepted():
    model = gp.load_model()
    audio = torch.from_numpy(np.stack([_binaural(3, seed=1), _binaural(-4, seed=2)]))
    both, _ = gp.get_timestamp_embeddings(audio, model)
    first, _ = gp.get_timestamp_embeddings(audio[:1].transpose(1, 2), model)
    torch.testing.assert_close(both[:1], first, rtol=1e-4, atol=1e-4)
    assert gp.get_scene_embeddings(audio, model).shape == (2, 81)
    four = gp.load_model(channels=4)  # microphone arrays: every one of the 6 pairs
    assert four.timestamp_embedding_size == 4 * gp.N_MELS + 6 * (2 * gp.MAX_LAG + 1)
    with pytest.raises(ValueError, match="no weights"):
        gp.load_model("w.safetensors")
