"""Pretraining: patches, masks, the multi-window decoder, the loss, a few optimisation steps, the
saved encoder through the HEAR API, resumable runs and a 2-process DDP run on CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, default_collate

from hear_gram.config import DecoderConfig, preset
from hear_gram.dsp import convolve_rir, measured_snr_db, snr_gain
from hear_gram.encoder import PatchEmbed
from hear_gram.mae import (
    GramMAE,
    MultiWindowAttention,
    WindowHead,
    patchify,
    random_masking,
    unpatchify,
)
from hear_gram.pretrain.data import (
    AudioClips,
    Featurizer,
    SceneMixer,
    StepSampler,
    TrainItems,
    demo_clip,
)
from hear_gram.pretrain.train import get_config, read_losses, train, warmup_cosine
from tests.conftest import REPO
from tests.tiny import TINY_TRAIN

TINY = dict(depth=2, width=64, heads=2, mlp_dim=128)


def tiny_mae(name: str = "gram-t", **kw) -> GramMAE:
    torch.manual_seed(0)
    return GramMAE(preset(name, **TINY), DecoderConfig(width=32, depth=1), **kw)


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
        GramMAE(
            preset("gram-t-time", **TINY), DecoderConfig(32, 1), windows=(2, 5, 10, 25, 50, 8, 0, 0)
        )


def test_paper_sizes():
    mae = GramMAE(preset("gram-t"))
    n_dec = sum(p.numel() for k, p in mae.named_parameters() if not k.startswith("encoder."))
    assert 25e6 < n_dec < 27e6  # arXiv 2506.00934: decoder ~26 M
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
    mae = GramMAE(preset(model, **TINY, **extra), DecoderConfig(width=32, depth=1))
    x = spec(3)
    mask = mae.mask(3, torch.Generator().manual_seed(0))
    latent = mae.forward_encoder(x, mask)
    assert latent.shape == (3, 1 + 200 - 160, 64)
    loss, pred, _ = mae(x, mask)
    assert pred.shape == (3, 200, 16 * 8 * 2) and torch.isfinite(loss)

    def shuffled_patch(token: int) -> torch.Tensor:
        """x with the values inside one 16 x 8 patch of clip 0 permuted: the chunk's layer-norm
        statistics stay the same, only that patch's content changes."""
        f, t = divmod(token, 25)  # frequency-major token order
        y = x.clone()
        patch = y[0, :, f * 16 : (f + 1) * 16, t * 8 : (t + 1) * 8]
        perm = torch.randperm(patch.numel(), generator=torch.Generator().manual_seed(1))
        y[0, :, f * 16 : (f + 1) * 16, t * 8 : (t + 1) * 8] = patch.flatten()[perm].view_as(patch)
        return y

    hidden = int(mask[0].nonzero()[0])
    shown = int((~mask[0]).nonzero()[0])
    # a masked patch is invisible to the encoder; a visible one is not
    torch.testing.assert_close(mae.forward_encoder(shuffled_patch(hidden), mask), latent,
                               rtol=1e-4, atol=1e-4)  # fmt: skip
    assert (mae.forward_encoder(shuffled_patch(shown), mask)[0] - latent[0]).abs().max() > 1e-2


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
class MemoryAudio:
    """An in-memory audio source (the `open_audio` interface): clip i = demo clip i at 32 kHz."""

    def __init__(self, n: int) -> None:
        self.clips = [demo_clip(0, i)[:, None] for i in range(n)]

    def __len__(self) -> int:
        return len(self.clips)

    def read(self, i: int):
        return self.clips[i], 32000


def test_featurizer_crops_and_dry_mixer():
    clips = torch.randn(2, 32000 * 10) * 0.1
    dry = SceneMixer(2)({"clip": clips})
    assert dry.shape == (2, 2, 320000) and torch.equal(dry[:, 0], dry[:, 1])
    feats = Featurizer(preset("gram-t").features, ambisonic=False, crops=3)
    out = feats(dry, torch.Generator().manual_seed(0))
    assert out.shape == (6, 2, 128, 200) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="scene bank"):
        SceneMixer(2).components({"clip": clips})
    with pytest.raises(ValueError, match="noise source"):
        TrainItems(AudioClips(MemoryAudio(1)), 0, 0, 0.5)


@pytest.mark.parametrize(("fmt", "channels", "features"), [("binaural", 2, 2), ("ambisonic", 4, 7)])
def test_scene_mixer_snr_and_formats(fmt, channels, features):
    """The batched mix equals the per-clip mix of `hear_gram.dsp` (convolution with the source
    RIR and the summed noise RIRs, one gain) and reaches each clip's drawn SNR."""
    from naturalistic_hear.noise import BuiltinNoise
    from tests.fake_bank import FakeSceneBank

    bank = FakeSceneBank(".", fmt, 32000, n_scenes=3, length_s=0.3).build()
    items = TrainItems(AudioClips(MemoryAudio(2)), 0, 0, 0.0, BuiltinNoise(32000), len(bank))
    batch = default_collate([items[(5, slot, slot)] for slot in range(2)])
    mixer = SceneMixer(channels, bank)
    mix = mixer(batch)
    assert mix.shape == (2, channels, 320000)
    for b in range(2):
        _, src_rir, noise_rirs = bank.get(int(batch["scene"][b]))
        target = convolve_rir(batch["clip"][b], torch.from_numpy(src_rir))
        noise = convolve_rir(batch["noise"][b], torch.from_numpy(noise_rirs)).sum(0)
        active = batch["active"][b]
        snr = float(batch["snr"][b])
        assert 5.0 <= snr <= 40.0
        expected = target + snr_gain(target, noise, snr, active) * noise
        torch.testing.assert_close(mix[b], expected, rtol=1e-4, atol=1e-5)
        assert measured_snr_db(target, mix[b] - target, active) == pytest.approx(snr, abs=1e-2)
    feats = Featurizer(preset("gram-t").features, ambisonic=fmt == "ambisonic", crops=2)
    assert feats(mix, torch.Generator().manual_seed(0)).shape == (4, features, 128, 200)


def test_step_sampler_covers_each_epoch_and_resumes_mid_epoch():
    n, batch, world = 12, 2, 2
    ranks = [StepSampler(n, batch, seed=3, rank=r, world=world) for r in range(world)]
    streams = [iter(r) for r in ranks]
    epoch0 = [key[2] for _ in range(n // (batch * world)) for it in streams for key in next(it)]
    assert sorted(epoch0) == list(range(n))  # every clip once per epoch over all ranks
    epoch1 = [key[2] for _ in range(n // (batch * world)) for it in streams for key in next(it)]
    assert sorted(epoch1) == list(range(n)) and epoch1 != epoch0  # a new order each epoch
    full = iter(StepSampler(n, batch, seed=3, rank=1, world=world))
    batches = [next(full) for _ in range(7)]
    resumed = iter(StepSampler(n, batch, seed=3, rank=1, world=world, start_step=4))
    assert [next(resumed) for _ in range(3)] == batches[4:]
    assert all(
        key[:2] == (step, slot) for step, b in enumerate(batches) for slot, key in enumerate(b)
    )


def test_train_items_lambda_and_worker_independence():
    from naturalistic_hear.noise import BuiltinNoise

    clips = AudioClips(MemoryAudio(4))
    half = TrainItems(clips, 0, 0, 0.5, BuiltinNoise(32000), n_scenes=3)
    dry = [half.is_dry(step) for step in range(400)]
    assert 0.4 < np.mean(dry) < 0.6
    assert not any(
        TrainItems(clips, 0, 0, 0.0, BuiltinNoise(32000), 3).is_dry(s) for s in range(50)
    )
    assert all(TrainItems(clips, 0, 0, 1.0).is_dry(s) for s in range(50))
    wet = next(s for s in range(400) if not dry[s])
    sampler = StepSampler(len(clips), 2, seed=0, start_step=wet)

    def first_batch(workers: int) -> dict:
        loader = DataLoader(half, batch_sampler=sampler, num_workers=workers)
        return next(iter(loader))

    a, b = first_batch(0), first_batch(2)
    assert set(a) == {"clip", "noise", "active", "scene", "snr"}
    for key in a:
        assert torch.equal(a[key], b[key]), key


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
TINY_RUN = [*TINY_TRAIN, "warmup_steps=1", "ckpt_every=2"]


class InterruptAt(pl.Callback):
    """Ctrl-C before step `step` (after `step` optimiser steps)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def test_train_saves_loadable_encoder_and_resumes(tmp_path):
    """A run interrupted at step 2 and resumed gives the losses of an uninterrupted run (same
    data, crops, masks and optimiser state), and its encoder loads through the HEAR module."""
    from hear_gram import gram_t

    def config(out):
        overrides = [*TINY_RUN, f"out_dir={out}", f"bank_dir={tmp_path / 'bank'}"]
        return get_config(
            "demo-cpu", [*overrides, "bank_scenes=2", "max_steps=4", "clean_ratio=0.5"]
        )

    straight = train(config(tmp_path / "a"))
    assert train(config(tmp_path / "b"), callbacks=[InterruptAt(2)]) is None
    assert not (tmp_path / "b" / "model.safetensors").exists()
    steps_cut, _ = read_losses(tmp_path / "b" / "logs")
    assert steps_cut.tolist() == [0, 1]
    resumed = train(config(tmp_path / "b"))
    steps_a, losses_a = read_losses(tmp_path / "a" / "logs")
    steps_b, losses_b = read_losses(tmp_path / "b" / "logs")
    assert steps_a.tolist() == steps_b.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(losses_b, losses_a, rtol=1e-5)
    model = gram_t.load_model(str(resumed))
    audio = torch.randn(2, 32000) * 0.1
    emb, _ = gram_t.get_timestamp_embeddings(audio, model)
    assert emb.shape[0] == 2 and torch.isfinite(emb).all()
    torch.testing.assert_close(
        emb, gram_t.get_timestamp_embeddings(audio, gram_t.load_model(str(straight)))[0]
    )
    assert (tmp_path / "b" / "loss.png").stat().st_size > 0
    assert (tmp_path / "b" / "decoder.safetensors").exists()
    # the Lightning checkpoint itself loads through the HEAR module too (same encoder)
    from_ckpt = gram_t.load_model(str(tmp_path / "b" / "checkpoints" / "last.ckpt"))
    torch.testing.assert_close(gram_t.get_timestamp_embeddings(audio, from_ckpt)[0], emb)


@pytest.mark.parametrize(
    ("model", "fmt", "module"),
    [
        ("gram-t-ambisonic", "ambisonic", "gram_t_ambisonic"),
        ("gram-t-time", "binaural", "gram_t_time"),
        ("gram-m", "binaural", "gram_m"),
    ],
)
def test_every_variant_trains_on_scenes_and_loads_in_its_module(tmp_path, model, fmt, module):
    """One scene-mixed step per variant (Ambisonic intensity features, time patches, Mamba),
    and the saved encoder loads in the matching HEAR module."""
    import importlib

    overrides = [*TINY_RUN, f"out_dir={tmp_path}", f"bank_dir={tmp_path / 'bank'}", "bank_scenes=2"]
    cfg = get_config("demo-cpu", [*overrides, f"model={model}", f"fmt={fmt}", "clean_ratio=0",
                                  "max_steps=1", "demo_clips=2"])  # fmt: skip
    path = train(cfg)
    _, losses = read_losses(tmp_path / "logs")
    assert len(losses) == 1 and np.isfinite(losses).all()
    hear = importlib.import_module(f"hear_gram.{module}")
    loaded = hear.load_model(str(path))
    assert loaded.encoder.cfg == cfg.gram_config()
    audio = torch.randn(1, 4 if fmt == "ambisonic" else 2, 32000) * 0.1
    emb = hear.get_scene_embeddings(audio, loaded)
    assert emb.shape[0] == 1 and torch.isfinite(emb).all()


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
