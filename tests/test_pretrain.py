"""Pretraining: patches, masks, the multi-window decoder, the loss, a few optimisation steps, the
saved encoder through the HEAR API, resumable runs and a 2-process DDP run on CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hear_gram.config import preset
from hear_gram.dsp import measured_snr_db
from hear_gram.encoder import PatchEmbed
from hear_gram.pretrain.data import Featurizer, SceneMixer, demo_clip
from hear_gram.pretrain.model import (
    GramMAE,
    MultiWindowAttention,
    WindowHead,
    patchify,
    random_masking,
    unpatchify,
)
from hear_gram.pretrain.train import get_config, read_losses, train, warmup_cosine
from tests.conftest import REPO

TINY = dict(depth=2, width=64, heads=2, mlp_dim=128)


def tiny_mae(name: str = "gram-t", **kw) -> GramMAE:
    torch.manual_seed(0)
    return GramMAE(preset(name, **TINY), decoder_width=32, decoder_depth=1, **kw)


def spec(batch: int, channels: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, 128, 200, generator=g)


# --- patches and masks -------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["gram-t", "gram-t-time"])
def test_patchify_round_trip_and_token_order(model):
    cfg = preset(model, **TINY)
    x = spec(2)
    patches = patchify(x, cfg.patch_f, cfg.patch_t)
    assert patches.shape == (2, cfg.num_patches, cfg.patch_f * cfg.patch_t * 2)
    assert torch.equal(unpatchify(patches, cfg.patch_f, cfg.patch_t, cfg.grid), x)
    # A PatchEmbed whose conv is a linear map of the patch values gives the same tokens as a
    # matmul on patchify's rows: the orders of tokens (f*Tg + t) agree.
    embed = PatchEmbed(cfg)
    w = embed.proj.weight  # (D, C, pf, pt)
    flat = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)  # (D, pf*pt*C), patchify's order
    expected = patches @ flat.T + embed.proj.bias
    torch.testing.assert_close(embed(x), expected, atol=1e-4, rtol=1e-4)


def test_masking_count_exact_and_seeded():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    m1, m2 = random_masking(16, 200, 0.8, g1), random_masking(16, 200, 0.8, g2)
    assert m1.dtype == torch.bool and m1.shape == (16, 200)
    assert (m1.sum(1) == 160).all()
    assert torch.equal(m1, m2)
    assert not torch.equal(m1[0], m1[1])  # independent per crop
    assert (random_masking(4, 100, 0.75).sum(1) == 75).all()
    with pytest.raises(ValueError):
        random_masking(1, 10, 1.0)


# --- decoder -----------------------------------------------------------------------------------
@pytest.mark.parametrize("window", [2, 5, 25])
def test_window_head_attends_only_within_its_window(window):
    head = WindowHead(window)
    n, e = 50, 8
    q, k, v = (torch.randn(1, n, e, requires_grad=True) for _ in range(3))
    out = head(q, k, v)
    for i in (0, n // 2 + 1, n - 1):
        (gk, gv) = torch.autograd.grad(out[0, i].sum(), (k, v), retain_graph=True)
        touched = ((gk.abs().sum(-1) + gv.abs().sum(-1)) > 0)[0].nonzero().flatten()
        lo = (i // window) * window
        assert touched.tolist() == list(range(lo, lo + window))


def test_global_head_sees_everything_and_mwa_shapes():
    head = WindowHead(0)
    q, k, v = (torch.randn(1, 20, 4, requires_grad=True) for _ in range(3))
    gv = torch.autograd.grad(head(q, k, v)[0, 0].sum(), v)[0]
    assert (gv.abs().sum(-1) > 0).all()
    mwa = MultiWindowAttention(32, (2, 5, 10, 0))
    assert mwa(torch.randn(3, 20, 32)).shape == (3, 20, 32)
    with pytest.raises(ValueError):
        GramMAE(preset("gram-t-time", **TINY), 32, 1, windows=(2, 5, 10, 25, 50, 8, 0, 0))


def test_paper_sizes():
    mae = GramMAE(preset("gram-t"))
    n_dec = sum(p.numel() for k, p in mae.named_parameters() if not k.startswith("encoder."))
    assert 25e6 < n_dec < 27e6  # REFERENCE §3: decoder ~26 M
    assert mae.spec_pred.out_features == 16 * 8 * 2


# --- loss --------------------------------------------------------------------------------------
def test_loss_is_channel_weighted_mse_on_masked_patches():
    mae = tiny_mae().eval()
    x = spec(2)
    mask = mae.mask(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss, pred, _ = mae(x, mask)
    per_patch = (pred - patchify(mae.encoder.normalize(x), 16, 8)).square().mean(-1)
    torch.testing.assert_close(loss, per_patch[mask].mean() * 2)


def test_forward_loss_ignores_visible_targets():
    mae = tiny_mae()
    x = spec(1)
    mask = mae.mask(1, torch.Generator().manual_seed(1))
    pred = torch.zeros(1, mae.cfg.num_patches, 16 * 8 * 2)
    base = mae.forward_loss(x, pred, mask)
    # pred == target on visible patches or far from it: same loss
    pred2 = pred.clone()
    pred2[~mask] = 100.0
    assert torch.equal(mae.forward_loss(x, pred2, mask), base)
    pred2[mask] = 100.0
    assert mae.forward_loss(x, pred2, mask) > base


@pytest.mark.parametrize("model", ["gram-t", "gram-m"])
def test_encoder_sees_only_visible_tokens(model):
    extra = dict(headdim=16, d_state=16) if model == "gram-m" else {}
    torch.manual_seed(0)
    mae = GramMAE(preset(model, **TINY, **extra), decoder_width=32, decoder_depth=1)
    x = spec(3)
    mask = mae.mask(3, torch.Generator().manual_seed(0))
    latent = mae.forward_encoder(x, mask)
    assert latent.shape == (3, 1 + 200 - 160, 64)
    loss, pred, _ = mae(x, mask)
    assert pred.shape == (3, 200, 16 * 8 * 2) and torch.isfinite(loss)


def test_few_steps_reduce_loss_on_fixed_batch():
    mae = tiny_mae()
    x = spec(8)
    mask = mae.mask(8, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(mae.parameters(), lr=1e-3, betas=(0.9, 0.95))
    losses = []
    for _ in range(15):
        loss, _, _ = mae(x, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


# --- data --------------------------------------------------------------------------------------
def test_featurizer_crops_and_dry_mixer():
    clips = torch.randn(2, 32000 * 10) * 0.1
    dry = SceneMixer(2, 1.0)(clips, np.random.default_rng(0))
    assert dry.shape == (2, 2, 320000) and torch.equal(dry[:, 0], dry[:, 1])
    feats = Featurizer(preset("gram-t").features, ambisonic=False, crops=3)
    out = feats(dry, torch.Generator().manual_seed(0))
    assert out.shape == (6, 2, 128, 200) and torch.isfinite(out).all()
    with pytest.raises(ValueError):
        SceneMixer(2, 0.5)


@pytest.mark.parametrize(("fmt", "channels", "features"), [("binaural", 2, 2), ("ambisonic", 4, 7)])
def test_scene_mixer_snr_and_formats(fmt, channels, features):
    from naturalistic_hear.noise import BuiltinNoise
    from tests.fake_bank import FakeSceneBank

    bank = FakeSceneBank(".", fmt, 32000, n_scenes=3, length_s=0.3).build()
    mixer = SceneMixer(channels, 0.0, bank, BuiltinNoise(32000))
    clip = torch.from_numpy(demo_clip(0, 1)).float()
    target, noise, active, snr = mixer.components(clip, np.random.default_rng(5))
    mix = mixer.mix_one(clip, np.random.default_rng(5))
    assert mix.shape == (channels, 320000) and 5.0 <= snr <= 40.0
    assert measured_snr_db(target, mix - target, active) == pytest.approx(snr, abs=1e-2)
    batch = mixer(clip[None].expand(2, -1), np.random.default_rng(0))
    feats = Featurizer(preset("gram-t").features, ambisonic=fmt == "ambisonic", crops=2)
    assert feats(batch, torch.Generator().manual_seed(0)).shape == (4, features, 128, 200)


def test_demo_clip_is_reproducible():
    a, b = demo_clip(0, 3), demo_clip(0, 3)
    assert a.shape == (320000,) and np.array_equal(a, b)
    assert not np.array_equal(a, demo_clip(0, 4))


def test_schedule_and_overrides():
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0, abs=1e-12)
    cfg = get_config("demo-cpu", ["depth=2", "lr=0.5", "fmt=ambisonic", "data_dir=x"])
    assert (cfg.depth, cfg.lr, cfg.fmt, cfg.data_dir) == (2, 0.5, "ambisonic", "x")
    assert get_config("paper-binaural").gram_config() == preset("gram-t")
    with pytest.raises(ValueError):
        get_config("demo-cpu", ["nope=1"])
    with pytest.raises(ValueError):
        get_config("no-such-config")


# --- end to end --------------------------------------------------------------------------------
TINY_RUN = [
    "depth=1",
    "width=64",
    "heads=2",
    "mlp_dim=128",
    "decoder_width=32",
    "decoder_depth=1",
    "demo_clips=4",
    "batch_clips=2",
    "crops=2",
    "num_workers=0",
    "warmup_steps=1",
    "log_every=1",
    "ckpt_every=2",
]


def test_train_saves_loadable_encoder_and_resumes(tmp_path):
    from hear_gram import gram_t

    overrides = [*TINY_RUN, f"out_dir={tmp_path}", f"bank_dir={tmp_path / 'bank'}"]
    cfg = get_config("demo-cpu", [*overrides, "bank_scenes=2", "max_steps=2"])
    path = train(cfg)
    model = gram_t.load_model(str(path))
    audio = torch.randn(2, 32000) * 0.1
    emb, ts = gram_t.get_timestamp_embeddings(audio, model)
    assert emb.shape[0] == 2 and torch.isfinite(emb).all()
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert (tmp_path / "decoder.safetensors").exists()
    # resume from last.ckpt to 4 steps: the log continues at steps 2, 3
    train(cfg.replace(max_steps=4))
    steps, losses = read_losses(tmp_path / "logs")
    assert steps.tolist() == [0, 1, 2, 3] and np.isfinite(losses).all()


def test_ddp_two_processes_gloo(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PL_DISABLE_FORK="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    args = [*TINY_RUN, "clean_ratio=1.0", "max_steps=3", "devices=2", "strategy=ddp"]
    args += [f"out_dir={tmp_path}"]
    proc = subprocess.run(
        [sys.executable, "-m", "hear_gram.pretrain", "--config", "demo-cpu", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "model.safetensors").exists()
    steps, _ = read_losses(tmp_path / "logs")
    assert steps.max() == 2


def test_paper_configs_refuse_to_train_without_audio():
    """No silent fallback to the toy corpus for a paper-scale run."""
    from hear_gram.pretrain.train import build_loader

    with pytest.raises(ValueError, match="data_dir=demo"):
        build_loader(get_config("paper-binaural"))
