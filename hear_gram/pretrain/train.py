"""Pretraining of GRAM with PyTorch Lightning 1.9.5 (arXiv 2506.00934, pretraining setup): the training recipe, the
named run configurations, and the end-of-run artefacts.

    python -m hear_gram.pretrain --config demo-cpu [key=value ...]

A run directory holds ``logs/version_*/metrics.csv`` (CSV logger, one version per start), ``checkpoints/last.ckpt`` (resumed
automatically), and at the end ``model.safetensors`` (the encoder in hear-gram's layout, loads with
``hear_gram.load_model``), ``decoder.safetensors`` (decoder keys, for continuing pretraining
elsewhere), ``loss.png`` and ``config.json`` (the TrainConfig that made them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from hear_gram.checkpoints import LIGHTNING_KEY, OWN_FORMAT, save_checkpoint
from hear_gram.config import DECODERS, DecoderConfig, GramConfig, preset
from hear_gram.formats import SCENE_FORMATS, SpatialFormat
from hear_gram.mae import GramMAE
from hear_gram.plotting import save, subplots
from hear_gram.pretrain.data import (
    AudioClips,
    Featurizer,
    SceneMixer,
    StepSampler,
    TrainItems,
    make_demo_corpus,
    open_audio,
)
from hear_gram.safeio import write_bytes_atomic

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"  # the TrainConfig of a finished run, written beside its encoder


# Bounds of the integer fields (None: the preset's, unchecked here). Far beyond any run of the
# paper (ViT-B: depth 12, width 768; batch 96 clips x 16 crops; 500 k steps), they only stop a
# typo (`width=76800000`) from allocating the machine's memory before failing.
_BIG = 1 << 20
INT_RANGES = {
    "depth": (1, 1024), "width": (1, 65536), "heads": (1, 1024), "mlp_dim": (1, 262144),
    "decoder_width": (1, 65536), "decoder_depth": (1, 1024), "demo_clips": (1, _BIG),
    "bank_scenes": (1, _BIG), "bank_workers": (0, 1024), "batch_clips": (1, 65536),
    "crops": (1, 1024), "num_workers": (0, 1024), "warmup_steps": (1, 1 << 40),
    "max_steps": (1, 1 << 40), "devices": (1, 1 << 16), "seed": (0, 2**63 - 1),
    "log_every": (1, 1 << 40), "ckpt_every": (1, 1 << 40),
}  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """Everything a pretraining run depends on. Defaults = the paper's recipe (arXiv 2506.00934)."""

    model: str = "gram-t"  # a hear_gram.config preset
    depth: int | None = None  # GramConfig overrides (None: the preset's)
    width: int | None = None
    heads: int | None = None
    mlp_dim: int | None = None
    decoder_width: int = DECODERS["gram"].width  # the decoder's heads: DecoderConfig's
    decoder_depth: int = DECODERS["gram"].depth
    mask_ratio: float = 0.8
    fmt: str = "binaural"  # a scene format (hear_gram.formats.SCENE_FORMATS)
    # data
    # a folder of audio (AudioSet, your own); "demo": the offline demo corpus built in the run dir
    data_dir: str = ""
    demo_clips: int = 300
    clean_ratio: float = 0.0  # lambda: probability that a batch stays dry (GRAM-Clean: 1)
    bank_dir: str = "work/pretrain/banks"
    bank_scenes: int = 10000
    bank_workers: int = 0  # processes rendering the bank on first use; 0: auto (see build_mixer)
    noise_dir: str = ""  # empty: naturalistic_hear's builtin noise (stand-in for WHAMR!)
    batch_clips: int = 96
    crops: int = 16
    num_workers: int = 4
    # optimisation
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 10_000
    max_steps: int = 500_000
    grad_clip: float = 5.0
    precision: Literal["32", "bf16"] = "bf16"
    devices: int = 1
    accelerator: str = "auto"
    strategy: str = "auto"
    seed: int = 0
    out_dir: str = "work/pretrain/run"
    log_every: int = 10
    ckpt_every: int = 1000

    def __post_init__(self) -> None:
        SpatialFormat.parse(self.fmt, "fmt", among=SCENE_FORMATS)
        if self.precision not in ("32", "bf16"):
            raise ValueError(f"precision must be '32' or 'bf16', got {self.precision!r}")
        if not 0 < self.warmup_steps <= self.max_steps:
            raise ValueError("need 0 < warmup_steps <= max_steps")
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        bad = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be finite numbers")
        for key, (low, high) in INT_RANGES.items():
            value = values[key]
            if value is not None and not low <= value <= high:  # before any memory is spent
                raise ValueError(f"{key} must be in [{low}, {high}], got {value}")
        if not 0 < self.mask_ratio < 1 or not 0 <= self.clean_ratio <= 1:
            raise ValueError("need 0 < mask_ratio < 1 and 0 <= clean_ratio <= 1")

    def gram_config(self) -> GramConfig:
        over = {k: getattr(self, k) for k in ("depth", "width", "heads", "mlp_dim")}
        return preset(self.model, **{k: v for k, v in over.items() if v is not None})

    @property
    def decoder(self) -> DecoderConfig:
        return DecoderConfig(width=self.decoder_width, depth=self.decoder_depth)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# --- named run configurations (one registry) ---------------------------------------------------
CONFIGS: dict[str, TrainConfig] = {
    # The paper does not state lambda for the spatial models; 0 = every batch is a scene mix.
    "paper-binaural": TrainConfig(),
    "paper-ambisonic": TrainConfig(model="gram-t-ambisonic", fmt="ambisonic"),
    "paper-clean": TrainConfig(clean_ratio=1.0),
    "gram-m": TrainConfig(model="gram-m"),
    # ~13 min on 2 CPU cores (of which ~4 min render the 1000-scene bank, once): a small GRAM-T
    # and decoder, higher lr to move in few steps; every batch a scene mix (lambda 0), as
    # paper-binaural. 1000 train-pool scenes, so 4000 scene draws rarely repeat a scene.
    "demo-cpu": TrainConfig(
        depth=4,
        width=192,
        heads=3,
        mlp_dim=768,
        decoder_width=DECODERS["demo"].width,
        decoder_depth=DECODERS["demo"].depth,
        data_dir="demo",
        clean_ratio=0.0,
        bank_scenes=1000,
        batch_clips=4,
        crops=8,
        num_workers=1,
        lr=1e-3,
        warmup_steps=50,
        max_steps=1000,
        precision="32",
        accelerator="cpu",
        out_dir="work/pretrain/demo-cpu",
        log_every=1,
        ckpt_every=200,
    ),
}


def get_config(name: str, overrides: list[str] | None = None) -> TrainConfig:
    """A named configuration with ``key=value`` overrides, each parsed to the field's type."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; valid: {sorted(CONFIGS)}")
    cfg, hints = CONFIGS[name], typing.get_type_hints(TrainConfig)
    changes = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or key not in hints:
            raise ValueError(f"bad override {item!r:.80}; keys: {sorted(hints)}")
        try:
            changes[key] = _parse(value, hints[key])
        except ValueError:
            raise ValueError(f"bad override {item!r:.80}: {key} takes {hints[key]}") from None
    return cfg.replace(**changes)


def _parse(value: str, hint) -> object:
    types = typing.get_args(hint) or (hint,)
    if value.lower() in ("none", "null") and type(None) in types:
        return None
    for t in (int, float):
        if t in types:
            return t(value)
    return value


# --- learning-rate schedule --------------------------------------------------------------------
def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Multiplier of the peak lr: linear warm-up over `warmup` steps, then cosine to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _seed(*parts: int) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


# --- the Lightning module ----------------------------------------------------------------------
class PretrainModule(pl.LightningModule):
    """GramMAE + in-batch scene mixing and features; AdamW, warm-up + cosine (arXiv 2506.00934)."""

    def __init__(self, cfg: TrainConfig, mixer: SceneMixer) -> None:
        super().__init__()
        self.cfg, self.mixer = cfg, mixer
        gcfg = cfg.gram_config()
        self.mae = GramMAE(gcfg, cfg.decoder, mask_ratio=cfg.mask_ratio)
        self.featurizer = Featurizer(gcfg.features, ambisonic=gcfg.is_ambisonic, crops=cfg.crops)

    def crops(self, batch: dict) -> tuple[torch.Tensor, torch.Generator]:
        """A `TrainItems` batch of B clips -> (B*R, C', F, T) crops; the crop and mask draws
        depend on (seed, step, rank) only."""
        seed = _seed(self.cfg.seed, self.global_step, self.global_rank)
        gen = torch.Generator().manual_seed(seed % 2**63)
        with torch.autocast(self.device.type, enabled=False):  # DSP in float32
            return self.featurizer(self.mixer(batch), gen), gen

    def train_dataloader(self) -> DataLoader:
        # Built here, after a resumed run has restored its step: the loader starts at that step.
        return build_loader(
            self.cfg,
            rank=self.global_rank,
            world=self.trainer.world_size,
            start_step=self.global_step,
            n_scenes=len(self.mixer.bank) if self.mixer.bank is not None else 0,
        )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        crops, gen = self.crops(batch)
        loss, _, _ = self.mae(crops, generator=gen)
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        # The logger's own step is off by one after resuming from an end-of-epoch checkpoint
        # (Lightning 1.9 restores its batch counter late); log the optimiser step explicitly.
        self.log("global_step", float(self.global_step))
        return loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # What hear_gram.load_model needs to read the encoder straight from a .ckpt.
        checkpoint[LIGHTNING_KEY] = {
            "format": OWN_FORMAT,
            "config": self.mae.encoder.cfg.to_json(),
            "encoder_prefix": "mae.encoder.",
        }

    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            self.mae.parameters(),
            lr=self.cfg.lr,
            betas=(0.9, 0.95),
            weight_decay=self.cfg.weight_decay,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, self.cfg.warmup_steps, self.cfg.max_steps)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# --- building a run ----------------------------------------------------------------------------
def build_mixer(cfg: TrainConfig) -> SceneMixer:
    """The scene mixer for `cfg`, rendering the train-pool bank on first use (none for lambda 1)."""
    channels = SpatialFormat(cfg.fmt).channels
    if cfg.clean_ratio >= 1.0:
        return SceneMixer(channels)
    from naturalistic_hear.bank import SceneBank

    sr = cfg.gram_config().features.sample_rate
    bank = SceneBank(cfg.bank_dir, cfg.fmt, sr, pool="train", n_scenes=cfg.bank_scenes)
    # auto: one process per core, but no more than one per 64 scenes to render: a spawned process
    # costs seconds of imports, more than a few scenes take to render
    auto = min(os.cpu_count() or 1, max(1, len(bank.missing()) // 64))
    bank.build(workers=cfg.bank_workers or auto)
    return SceneMixer(channels, bank)


def data_dir(cfg: TrainConfig) -> str:
    """The training audio of `cfg` (the demo corpus is written on first use)."""
    if not cfg.data_dir:
        raise ValueError(
            "no training audio: pass data_dir=/path/to/audio (a folder, or WebDataset .tar "
            "shards as for AudioSet), or data_dir=demo for the small offline demo corpus"
        )
    if cfg.data_dir == "demo":
        return str(make_demo_corpus(Path(cfg.out_dir) / "corpus", cfg.demo_clips, cfg.seed).root)
    return cfg.data_dir


def build_loader(
    cfg: TrainConfig, rank: int = 0, world: int = 1, start_step: int = 0, n_scenes: int = 0
) -> DataLoader:
    """Batches of `TrainItems` for this rank from `start_step` on (the worker processes read the
    audio and draw the scenes and noise)."""
    sr = cfg.gram_config().features.sample_rate
    clips = AudioClips(open_audio(data_dir(cfg)), sr)
    noise = None
    if cfg.clean_ratio < 1.0:
        from naturalistic_hear.noise import BuiltinNoise, NoiseDir

        noise = NoiseDir(cfg.noise_dir).at_rate(sr) if cfg.noise_dir else BuiltinNoise(sr)
    items = TrainItems(clips, cfg.seed, rank, cfg.clean_ratio, noise, n_scenes)
    sampler = StepSampler(len(clips), cfg.batch_clips, cfg.seed, rank, world, start_step)
    return DataLoader(
        items,
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
    )


def train(cfg: TrainConfig, callbacks: Sequence[pl.Callback] = ()) -> Path | None:
    """Run (or resume) `cfg`; returns the path of the saved encoder, or None when the run was
    interrupted (Ctrl-C): then ``checkpoints/last.ckpt`` holds its state and the same command
    resumes it."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    module = PretrainModule(cfg, build_mixer(cfg))
    data_dir(cfg)  # before DDP starts the other ranks: they would all write the demo corpus
    ckpt_cb = pl.callbacks.ModelCheckpoint(
        dirpath=str(out / "checkpoints"), save_last=True, every_n_train_steps=cfg.ckpt_every
    )
    accelerator = (
        cfg.accelerator
        if cfg.accelerator != "auto"
        else ("gpu" if torch.cuda.is_available() else "cpu")
    )
    trainer = pl.Trainer(
        max_steps=cfg.max_steps,
        accelerator=accelerator,
        devices=cfg.devices,
        strategy=None if cfg.strategy == "auto" else cfg.strategy,
        precision="bf16" if cfg.precision == "bf16" else 32,
        gradient_clip_val=cfg.grad_clip,
        # A new version per (re)start: CSVLogger rewrites its file, so resuming into one would
        # lose the earlier steps; read_losses merges the versions.
        logger=pl.loggers.CSVLogger(str(out), name="logs"),
        callbacks=[ckpt_cb, *callbacks],
        log_every_n_steps=cfg.log_every,
        enable_model_summary=False,
        replace_sampler_ddp=False,  # StepSampler splits the data over the ranks itself
    )
    last = out / "checkpoints" / "last.ckpt"
    trainer.fit(module, ckpt_path=str(last) if last.exists() else None)
    # The final state too (the step-wise callback saves only at multiples of ckpt_every), so a
    # finished run can be continued to a larger max_steps.
    trainer.save_checkpoint(str(last))
    if trainer.interrupted:
        log.warning("interrupted at step %d; state saved in %s: run the same command to resume",
                    trainer.global_step, last)  # fmt: skip
        return None
    if trainer.global_rank != 0:
        return out / "model.safetensors"
    # What made the weights, written first: the encoder file marks a finished run, and the
    # report reuses a finished run only when this matches what it asks for.
    config = json.dumps(dataclasses.asdict(cfg), indent=2) + "\n"
    write_bytes_atomic(out / CONFIG_FILE, config.encode())  # never through a planted link
    path = save_checkpoint(out / "model.safetensors", module.mae.encoder, "hear-gram")
    save_decoder(out / "decoder.safetensors", module.mae)
    plot_loss(out / "logs", out / "loss.png")
    log.info("saved %s", path)
    return path


def save_decoder(path: Path, mae: GramMAE) -> None:
    """The decoder's tensors (every GramMAE key outside ``encoder.``), with the run's sizes."""
    state = {
        k: v.detach().float().contiguous().cpu()
        for k, v in mae.state_dict().items()
        if not k.startswith("encoder.")
    }
    meta = {"config": mae.cfg.to_json(), "mask_ratio": str(mae.mask_ratio)}
    save_file(state, str(path), metadata=meta)


def read_losses(log_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, losses) of ``train/loss`` over every ``version_*/metrics.csv`` under `log_root`
    (one per start of a resumed run), a later version overriding an earlier one's steps."""
    import csv

    by_step: dict[int, float] = {}
    versions = sorted(Path(log_root).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    for version in versions:
        if not (version / "metrics.csv").exists():
            continue
        with open(version / "metrics.csv") as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    step = row.get("global_step") or row["step"]
                    by_step[int(float(step))] = float(row["train/loss"])
    steps = np.array(sorted(by_step), dtype=int)
    return steps, np.array([by_step[s] for s in steps])


def running_mean(steps: np.ndarray, losses: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each `k` consecutive losses, at the step that ends the window."""
    return steps[k - 1 :], np.convolve(losses, np.ones(k) / k, mode="valid")


def plot_loss(log_root: Path, png: Path) -> None:
    steps, losses = read_losses(log_root)
    fig, ax = subplots(figsize=(6, 4))
    ax.plot(steps, losses, lw=0.6, alpha=0.35, label="per step")
    if len(losses) >= 50:  # the per-step loss is noisy (random crops, masks and scenes)
        ax.plot(*running_mean(steps, losses, 50), lw=1.5, label="mean of 50 steps")
    ax.legend()
    ax.set(xlabel="step", ylabel="masked-patch MSE x channels", yscale="log")
    ax.grid(alpha=0.3)
    save(fig, png, dpi=100)
