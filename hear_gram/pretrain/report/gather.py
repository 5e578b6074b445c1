"""The whole report's work: train or reuse every run, score every encoder per seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hear_gram.pretrain.diagnostics import encoder_lr_cosine, weights_lr_cosine
from hear_gram.pretrain.report.runs import Plan, encoder_weights, init_encoder, run_config
from hear_gram.pretrain.report.scoring import (
    STRATEGIES,
    build_tasks,
    classification,
    localization,
)
from hear_gram.pretrain.report.stats import MODELS, Score, over_seeds


def gather(plan: Plan, work: Path, n_scenes: int, per_class: int, grid: str,
           with_classification: bool) -> tuple[dict, dict, dict]:  # fmt: skip
    """Train or reuse every run, score every encoder per seed; (results, per-seed numbers,
    runs)."""
    seeds = range(plan.seeds)
    weights, status = {}, {}
    for m in MODELS:
        for s in seeds:
            weights[m, s], status[m, s] = encoder_weights(m, s, plan, work)
    dry, nat, loc_tasks = build_tasks(work, n_scenes, per_class, with_classification)
    raw: dict = {"localization": {}, "classification": {}, "diagnostic": {}}
    for strategy in STRATEGIES:
        raw["localization"][strategy] = {
            m: [localization(f"{m}-seed{s}-{strategy}", "hear_gram.gram_t", str(weights[m, s]),
                             {"strategy": strategy}, loc_tasks, work, grid) for s in seeds]
            for m in MODELS
        }  # fmt: skip
    higher: dict[str, bool] = {}
    if with_classification:
        for m in MODELS:
            per_seed = []
            for s in seeds:
                scores, higher = classification(f"{m}-seed{s}", weights[m, s], dry, nat, work, grid)
                per_seed.append(scores)
            raw["classification"][m] = per_seed
    per_filter = {}
    for m in MODELS:
        before = [
            encoder_lr_cosine(init_encoder(run_config("naturalistic", s, plan))) for s in seeds
        ]
        after = [weights_lr_cosine(weights[m, s]) for s in seeds]
        raw["diagnostic"][m] = [
            {"before": float(np.nanmean(b)), "after": float(np.nanmean(a))}
            for b, a in zip(before, after, strict=True)
        ]
        per_filter[m] = np.concatenate(after)
    baselines = {
        "gcc_phat": localization(
            "gcc_phat", "localization_tasks.baselines.gcc_phat", "", {}, loc_tasks, work, grid
        ),  # fmt: skip
        "chance": localization("chance", "chance", "", {}, loc_tasks, work, grid),
    }
    results = {
        "localization": {
            st: {m: over_seeds(v, False) for m, v in by_model.items()}
            for st, by_model in raw["localization"].items()
        },
        "classification": {
            m: {k: Score(tuple(s[k] for s in v), higher[k]) for k in v[0]}
            for m, v in raw["classification"].items()
        },
        "diagnostic": {m: over_seeds(v, True) for m, v in raw["diagnostic"].items()},
        "per_filter": per_filter,
        "baselines": {k: over_seeds([v], False) for k, v in baselines.items()},
    }
    raw["baselines"] = baselines
    raw["runs"] = {f"{m}-seed{s}": [str(weights[m, s]), status[m, s]] for (m, s) in weights}
    runs = {m: [run_config(m, s, plan) for s in seeds] for m in ("naturalistic", "clean")}
    return results, raw, runs
