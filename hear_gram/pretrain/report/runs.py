"""The report's training runs: one folder per (lambda, seed), reused when finished with the asked
configuration, refused when it holds another, trained (or resumed) otherwise."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from hear_gram.checkpoints import save_checkpoint
from hear_gram.mae import GramMAE
from hear_gram.pretrain.train import CONFIG_FILE, TrainConfig, get_config, train
from hear_gram.seeding import seeded

log = logging.getLogger(__name__)

# Fields that change where a run lives or how fast it goes, not what it learns (batches are the
# same with any number of loader workers): a finished run is reused whatever they are.
NOT_LEARNED = ("out_dir", "bank_dir", "num_workers", "bank_workers", "ckpt_every")
# Set by the report's own flags (or fixed per model), never through --set.
REPORT_FIELDS = ("seed", "max_steps", "bank_scenes", "clean_ratio", "out_dir", "bank_dir")


class StaleRunError(ValueError):
    """A run folder holds a finished run of another configuration."""


@dataclass(frozen=True)
class Plan:
    """What the report trains and scores; defaults = 3 seeds, 1000 steps, a 1000-scene bank."""

    run_dir: str = "work/pretrain/demo-cpu"
    seeds: int = 3
    steps: int = 1000
    bank_scenes: int = 1000
    overrides: tuple[str, ...] = ()  # further TrainConfig key=value for every run

    def __post_init__(self) -> None:
        if not 1 <= self.seeds <= 100 or not 1 <= self.steps <= 10_000_000:
            raise ValueError(
                f"need 1 <= seeds <= 100 and 1 <= steps, got {self.seeds}, {self.steps}"
            )
        if not 1 <= self.bank_scenes <= 100_000:
            raise ValueError(f"need 1 <= bank_scenes <= 100000, got {self.bank_scenes}")
        for item in self.overrides:
            if item.partition("=")[0] in REPORT_FIELDS:
                raise ValueError(f"--set {item}: {REPORT_FIELDS} are set by the report's flags")


def run_config(model: str, seed: int, plan: Plan) -> TrainConfig:
    """The training run behind (`model`, `seed`): ``demo-cpu`` with the plan's steps and bank, in
    its own folder (naturalistic seed 0 in ``plan.run_dir``, as ``make pretrain-demo`` lays it
    out, the bank beside it)."""
    if model not in ("naturalistic", "clean"):
        raise ValueError(f"no training run for {model!r}")
    cfg = get_config("demo-cpu", list(plan.overrides))
    out = plan.run_dir + ("-clean" if model == "clean" else "") + (f"-seed{seed}" if seed else "")
    return cfg.replace(
        seed=seed,
        max_steps=plan.steps,
        warmup_steps=min(cfg.warmup_steps, plan.steps),
        bank_scenes=plan.bank_scenes,
        clean_ratio=1.0 if model == "clean" else 0.0,
        out_dir=out,
        bank_dir=str(Path(plan.run_dir).parent / "banks"),
    )


def init_encoder(cfg: TrainConfig) -> torch.nn.Module:
    """The encoder of `cfg` as its training run initialises it (same seed, same construction
    order as ``train``), i.e. the ``random`` model of that seed and every run's 'before'."""
    with seeded(cfg.seed):
        return GramMAE(cfg.gram_config(), cfg.decoder).encoder


def finished_run(cfg: TrainConfig) -> Path | None:
    """The encoder of a finished run of `cfg`, None when not finished; `StaleRunError` when the
    folder holds a finished run of another configuration."""
    out = Path(cfg.out_dir)
    weights = out / "model.safetensors"
    if not weights.is_file():
        return None
    try:
        stored = json.loads((out / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        stored = None
    if not isinstance(stored, dict):
        raise StaleRunError(
            f"{out} holds a finished run without a readable {CONFIG_FILE} (trained before runs "
            "recorded their configuration): delete the folder, or pass another --run-dir"
        )
    asked = dataclasses.asdict(cfg)
    diff = [
        f"{k}: {stored.get(k)!r} there, {v!r} asked"
        for k, v in asked.items()
        if k not in NOT_LEARNED and stored.get(k) != v
    ]
    if diff:
        raise StaleRunError(
            f"{out} holds a finished run of another configuration ({'; '.join(diff)}): delete "
            "the folder to train it afresh, or pass another --run-dir"
        )
    return weights


def encoder_weights(model: str, seed: int, plan: Plan, work: Path) -> tuple[Path, str]:
    """(encoder file of `model` at `seed`, "reused" | "trained" | "init"), training when needed."""
    cfg = run_config("naturalistic" if model == "random" else model, seed, plan)
    if model == "random":
        path = work / f"random-init-seed{seed}.safetensors"
        # cheap and deterministic: rewritten each time, so it follows the plan's architecture
        return save_checkpoint(path, init_encoder(cfg), "hear-gram"), "init"
    found = finished_run(cfg)
    if found is not None:
        log.info("reusing %s", found)
        return found, "reused"
    log.info("training %s seed %d (%s) ...", model, seed, cfg.out_dir)
    path = train(cfg)
    if path is None:  # Ctrl-C: the run's state is saved, the same command resumes it
        log.warning("training %s seed %d was interrupted; rerun to resume", model, seed)
        raise KeyboardInterrupt(f"training {model} seed {seed} was interrupted; rerun to resume")
    return path, "trained"
