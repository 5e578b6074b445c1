"""Scoring an encoder through the real tools, as a user would run them: the demo and localization
tasks it is scored on, heareval classification, and ``localization_tasks.evaluate``."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from hear_gram.pretrain.report.stats import DIRECTION, LOC_BINS

NAT_TAG = "nat-binaural"
# Localization embeddings: CLS (the paper's setting) and the mean of the patch tokens.
STRATEGIES = ("cls", "mean")


# --- tasks -------------------------------------------------------------------------------------
def build_tasks(work: Path, n_scenes: int, per_class: int, nat: bool) -> tuple[Path, Path, Path]:
    """Dry demo tasks, their Nat-HEAR binaural rendering (when `nat`) and the binaural
    localization tasks made from the scene task."""
    from hear_gram.demo import run
    from hear_gram.synthetic_tasks import make_event_task, make_scene_task
    from localization_tasks.generate import main as generate_localization

    dry = work / "tasks"
    scene = make_scene_task(dry, n_per_class=per_class, sample_rates=(48000,))
    nat_dir, loc = work / f"tasks-{NAT_TAG}", work / "localization" / "tasks"
    bank = work / "scene-bank"
    if nat:
        make_event_task(dry, n_clips=24, sample_rates=(48000,))
        run([sys.executable, "-m", "naturalistic_hear", "--tasks-dir", str(dry),
             "--out", str(nat_dir), "--format", "binaural", "--task", scene.name,
             "--n-scenes", str(n_scenes), "--cache-dir", str(bank), "--jobs", "2"])  # fmt: skip
    generate_localization(["--tasks-dir", str(dry), "--out", str(loc), "--task", scene.name,
                           "--format", "binaural", "--n-scenes", str(n_scenes),
                           "--cache-dir", str(bank), "--quiet"])  # fmt: skip
    return dry, nat_dir, loc


# --- scoring -----------------------------------------------------------------------------------
def classification(label: str, weights: Path, dry: Path, nat: Path, work: Path, grid: str):
    """({task label: score pooled over test folds}, {label: higher is better}) through heareval:
    the dry tasks with ``hear_gram``, the Nat-HEAR scenes with ``hear_gram.gram_t`` (fp32)."""
    from hear_gram.demo import score

    out, higher = {}, {}
    for tag, module, tasks in (("dry", "hear_gram", dry), (NAT_TAG, "hear_gram.gram_t", nat)):
        for row in score(module, weights, tasks, work / "embeddings" / label / tag, "{}", grid):
            key = f"{row['task']} [{tag}] {row['metric']}"
            out[key], higher[key] = float(row["mean"]), row["better"] == "higher"
    return out, higher


def localization(label: str, module: str, weights: str, options: dict, loc: Path, work: Path,
                 grid: str) -> dict[str, float]:  # fmt: skip
    """{snr bin, or "t60": metric over all test clips} from ``localization_tasks.evaluate``, plus
    the direction error averaged over the SNR bins (`DIRECTION`)."""
    from localization_tasks.evaluate import evaluate

    result = evaluate(module, loc, work / "localization" / "results" / label, weights, options,
                      grid=grid, progress=False)  # fmt: skip
    out = {}
    for entry in json.loads((result / "results.json").read_text())["tasks"]:
        if entry["target"] == "direction":
            out[entry["snr_bin"] or "clean"] = float(entry["mean_angular_error_deg"])
        else:
            out["t60"] = float(entry["median_abs_error_s"])
    bins = [out[b] for b in LOC_BINS if b in out]
    if bins:
        out[DIRECTION] = statistics.fmean(bins)
    return out
