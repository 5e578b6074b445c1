"""The HEAR runtime against a literal, slow transcription of upstream's HEAR path.

Upstream (labhamlet/GRAM-T ``hear_api/runtime.py`` ``RuntimeGRAMT.encode``,
``hear_api/feature_helper_gram_t.py`` ``FeatureExtractor._wav2fbank``,
``hear_api/ambisonic_feature_extractor.py``, ``src/model/GRAMT.py``
``get_audio_representation[_from_layer]``; GRAM-M's ``hear_api/runtime.py`` is the same loop):
torchaudio ``MelSpectrogram(center=True)`` on the whole clip, ``log(mel + float32 eps)`` (the
Ambisonic extractor returns 4 log-mels with eps 1e-6 plus 3 intensity channels), ``pad = 200 -
frames % 200`` zero frames, 200-frame chunks each layer-normed over (C, 128, 200) without affine,
the encoder per chunk, then ``raw``: hstack and trim ``int(steps_per_chunk * pad / 200)`` steps;
``mean``/``cls``: one vector per chunk, stacked.

The runtime must give the same shapes and values except where upstream is documented wrong:
the phantom all-zero chunk when frames % 200 == 0 (absent from our ``mean``/``cls`` lists;
``raw`` is unaffected because upstream's trim removes it), and ``mean`` over the zero-padded
steps of the last chunk (ours averages real steps only; compared against that reference, and
upstream's own value is shown to differ).

Run with ``pytest -s`` to print, per module and clip, the frame/chunk/step counts (ours vs
upstream) and the largest absolute difference per strategy.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
from einops import rearrange
from torch.nn import functional as F

from hear_gram import gram_m, gram_t, gram_t_ambisonic, gram_t_time
from hear_gram.frontend import frame_count
from tests.conftest import noise
from tests.torchaudio_compat import import_torchaudio

ta = import_torchaudio()
SR = 32000
CLIPS = (1.0, 2.0, 2.74, 3.99, 4.0, 5.0)
STRATEGIES = ("raw", "mean", "cls", "layer=1")
# module name -> (HEAR module, checkpoint fixture, input channels fed to it)
MODULES = {
    "gram_t": (gram_t, "gram_t_file", 2),
    "gram_t_time": (gram_t_time, "gram_t_time_file", 1),  # mono: upstream duplicates it
    "gram_t_ambisonic": (gram_t_ambisonic, "gram_t_ambi_file", 4),
    "gram_m": (gram_m, "gram_m_file", 2),
}
ATOL = 2e-5  # observed differences are ~3e-6 (float32 STFT per chunk vs whole clip)


# --- upstream, transcribed ---------------------------------------------------------------------
def upstream_melspec():
    """FeatureExtractor.melspec for 1- and 2-channel models."""
    return ta.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=1024, win_length=1024, hop_length=320, f_min=50, f_max=SR // 2,
        n_mels=128, power=2.0,
    )  # fmt: skip


class UpstreamAmbisonicExtractor:
    """hear_api/ambisonic_feature_extractor.py FeatureExtractor (hop sr // 100, power 2)."""

    def __init__(self) -> None:
        self.eps = 1e-6
        self.spectrogram = ta.transforms.Spectrogram(
            n_fft=1024, win_length=1024, hop_length=SR // 100, power=None
        )
        self.mel_scale = ta.transforms.MelScale(128, SR, 50, SR // 2, 513, None, "htk")

    def intensity(self, spec):
        w, xyz = spec[:, [0], ...], spec[:, 1:, ...]
        i = 2 * torch.real(torch.conj(w) * xyz)
        w_power = torch.squeeze(torch.abs(w) ** 2)
        xyz_power = torch.sum(torch.abs(xyz) ** 2, dim=1)
        e = self.eps + w_power + xyz_power
        return self.mel_scale(i / e.unsqueeze(dim=1))

    def __call__(self, audio):
        spec = self.spectrogram(audio)
        mel_spec = torch.log(self.mel_scale(torch.abs(spec) ** 2.0) + self.eps)
        return torch.cat([mel_spec, self.intensity(spec)], dim=1)


def upstream_features(audio, in_channels):
    """FeatureExtractor._wav2fbank for (B, C, N) audio -> (B, C', T, F), clip by clip."""
    melspec, ambi, eps = upstream_melspec(), UpstreamAmbisonicExtractor(), torch.finfo().eps
    features = []
    for clip in audio:
        if clip.shape[0] == 1 and in_channels == 2:
            log_mel = (melspec(clip).transpose(2, 1) + eps).log()
            log_mel = torch.cat((log_mel, log_mel), dim=0)
        elif clip.shape[0] == 2 and in_channels == 2:
            log_mel = (melspec(clip).transpose(2, 1) + eps).log()
        elif clip.shape[0] == 1 and in_channels == 7:
            log_mel = ambi(torch.cat([clip, clip, clip, clip], dim=0).unsqueeze(0))
            log_mel = log_mel.transpose(3, 2)[0]
        elif clip.shape[0] == 4 and in_channels == 7:
            log_mel = ambi(clip.unsqueeze(0)).transpose(3, 2)[0]
        else:
            raise AssertionError("case not transcribed")
        features.append(log_mel)
    return torch.nn.utils.rnn.pad_sequence(features, batch_first=True)


def upstream_representation(encoder, x, block_num):
    """GRAMT.get_audio_representation(_from_layer) on one chunk (B, C, 200, F), for every
    strategy at once (one encoder pass; the strategy branches are upstream's)."""
    b = x.shape[0]
    x = x.transpose(2, 3)
    x = F.layer_norm(x, x.shape[1:])  # nn.LayerNorm([C, 128, 200], elementwise_affine=False)
    x = encoder.patch_embed.proj(x).flatten(2).transpose(1, 2)
    pos = encoder.positions
    x = x + pos[:, 1:, :]
    cls_token = encoder.cls_token.expand(b, -1, -1) + pos[:, :1, :]
    x = encoder.run_layers(torch.cat((cls_token, x), dim=1), block_num)  # blocks[:n], final norm
    return {
        "mean": x[:, 1:, :].mean(axis=1),
        "cls": x[:, 0, :],
        "raw": rearrange(x[:, 1:, :], "b (f t) d -> b t (f d)", f=encoder.cfg.grid[0]),
    }


@torch.no_grad()
def upstream_encode(encoder, x, until_layer=None):
    """RuntimeGRAMT.encode, line for line (x: (B, C, T, F) log-mels) -> output per strategy."""
    unit_frames = 200
    cur_frames = x.shape[2]
    pad_frames = unit_frames - (cur_frames % unit_frames)
    if pad_frames > 0:
        x = torch.nn.functional.pad(x, (0, 0, 0, pad_frames), mode="constant")
    per_chunk = []
    for i in range(x.shape[2] // unit_frames):
        x_inp = x[:, :, i * unit_frames : (i + 1) * unit_frames, :]
        per_chunk.append(upstream_representation(encoder, x_inp, until_layer))
    out = {}
    for strategy in ("raw", "mean", "cls"):
        embeddings = [e[strategy] for e in per_chunk]
        if strategy == "raw":
            y = torch.hstack(embeddings)
            pad_emb_frames = int(embeddings[0].shape[1] * pad_frames / unit_frames)
            if pad_emb_frames > 0:
                y = y[:, :-pad_emb_frames]  # remove padded tail
        else:
            y = torch.stack(embeddings, dim=1)
        out[strategy] = y
    return out


def mean_over_real_steps(encoder, raw, frames):
    """Upstream's chunks with our documented fix: a chunk's `mean` averages the tokens of the
    time steps that hold real frames (ceil(real frames / patch_t) steps), not padded ones.
    ``raw``: upstream's trimmed raw output (B, S, Fg*D), which holds exactly the real steps."""
    (fg, _), pt = encoder.cfg.grid, encoder.cfg.patch_t
    steps_per_chunk = 200 // pt
    out = []
    for i in range(math.ceil(frames / 200)):
        steps = raw[:, i * steps_per_chunk : (i + 1) * steps_per_chunk]
        assert steps.shape[1] == math.ceil(min(200, frames - i * 200) / pt)
        out.append(rearrange(steps, "b s (f d) -> b (s f) d", f=fg).mean(1))
    return torch.stack(out, dim=1)


# --- the comparison ----------------------------------------------------------------------------
@pytest.fixture(scope="module", params=list(MODULES))
def module_case(request):
    mod, fixture, channels = MODULES[request.param]
    path = str(request.getfixturevalue(fixture))
    runtimes = {s: mod.load_model(path, sample_rate=SR, strategy=s) for s in STRATEGIES}
    return request.param, mod, runtimes, channels


def maxdiff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("seconds", CLIPS)
def test_runtime_equals_upstream_transcription(module_case, seconds):
    name, mod, runtimes, channels = module_case
    n = round(seconds * SR)
    audio = noise((1, channels, n), seed=int(seconds * 100))
    encoder = runtimes["raw"].encoder
    x = upstream_features(audio, encoder.cfg.in_channels)  # (B, C', T, F)
    frames = x.shape[2]
    assert frames == n // 320 + 1
    k_ours, phantom = math.ceil(frames / 200), frames % 200 == 0
    up, up_layer = upstream_encode(encoder, x), upstream_encode(encoder, x, until_layer=1)
    ours = {s: mod.get_timestamp_embeddings(audio, runtimes[s]) for s in STRATEGIES}
    row = {}

    # raw and layer=N: same steps, same values (upstream's trim removes any phantom chunk), so
    # the scene embeddings (mean over steps) are upstream's too
    for strategy, ref in (("raw", up["raw"]), ("layer=1", up_layer["raw"])):
        emb, ts = ours[strategy]
        assert emb.shape == ref.shape, (strategy, emb.shape, ref.shape)
        assert ts.shape == emb.shape[:2]
        torch.testing.assert_close(emb, ref, atol=ATOL, rtol=1e-5)
        row[strategy] = maxdiff(emb, ref)

    # cls: upstream's chunk list minus the phantom chunk
    emb, _ = ours["cls"]
    assert up["cls"].shape[1] == k_ours + phantom and emb.shape[1] == k_ours
    torch.testing.assert_close(emb, up["cls"][:, :k_ours], atol=ATOL, rtol=1e-5)
    if phantom and encoder.cfg.backbone == "transformer":  # upstream averages the all-zero
        # chunk into its scene embedding (GRAM-M's CLS sits first in a causal stack: it sees
        # only itself, so its CLS output does not depend on the chunk)
        assert maxdiff(up["cls"].mean(1), emb.mean(1)) > 100 * ATOL
    row["cls"] = maxdiff(emb, up["cls"][:, :k_ours])

    # mean: the real-steps reference; upstream's own differs exactly where it pools padding
    emb, _ = ours["mean"]
    fixed = mean_over_real_steps(encoder, up["raw"], frames)
    assert emb.shape == fixed.shape and up["mean"].shape[1] == k_ours + phantom
    torch.testing.assert_close(emb, fixed, atol=ATOL, rtol=1e-5)
    full = frames // 200  # chunks without padding: upstream's mean is ours there
    torch.testing.assert_close(emb[:, :full], up["mean"][:, :full], atol=ATOL, rtol=1e-5)
    row["mean"] = maxdiff(emb, fixed)
    row["upstream mean, last chunk"] = maxdiff(emb[:, -1], up["mean"][:, k_ours - 1])
    if frames % 200:
        assert row["upstream mean, last chunk"] > 100 * ATOL
    if phantom:  # and upstream's scene embedding averages the all-zero chunk in
        assert maxdiff(up["mean"].mean(1), emb.mean(1)) > 100 * ATOL

    print(
        f"\n{name:16s} {seconds:4.2f} s: frames {frame_count(n, 320)} (upstream {frames}); chunks "
        f"{k_ours} (upstream {up['cls'].shape[1]}{', phantom' if phantom else ''}); raw steps "
        f"{ours['raw'][0].shape[1]} (upstream {up['raw'].shape[1]}); max |diff| "
        + ", ".join(f"{k} {v:.1e}" for k, v in row.items())
    )


def test_mono_to_the_ambisonic_model_equals_upstream_and_warns_once(gram_t_ambi_file, caplog):
    """Upstream puts a mono clip on all four channels; it carries no direction: say so, once."""
    rt = gram_t_ambisonic.load_model(str(gram_t_ambi_file), sample_rate=SR)
    audio = noise((1, 1, SR), seed=11)
    with caplog.at_level(logging.WARNING, logger="hear_gram.runtime"):
        ours, _ = gram_t_ambisonic.get_timestamp_embeddings(audio, rt)
        gram_t_ambisonic.get_scene_embeddings(audio[:, 0], rt)
    warnings = [r for r in caplog.records if "no direction" in r.getMessage()]
    assert len(warnings) == 1 and "W, Y, Z, X" in warnings[0].getMessage()
    ref = upstream_encode(rt.encoder, upstream_features(audio, 7))["raw"]
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=1e-5)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hear_gram.runtime"):
        gram_t_ambisonic.get_scene_embeddings(noise((1, 4, SR)), rt)
    assert not caplog.records  # FOA input: nothing to warn about
