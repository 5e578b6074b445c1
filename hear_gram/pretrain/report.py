"""``make pretrain-report``: what demo-scale pretraining buys, measured (issue 5, item 4).

    python -m hear_gram.pretrain.report [--work work/pretrain-report] [--grid fast]

Three encoders of one architecture (the ``demo-cpu`` GRAM-T: 4 layers, width 192, binaural):

- ``naturalistic``: the ``demo-cpu`` run (``make pretrain-demo``; trained here when missing),
  batches mixed into simulated binaural scenes with probability 1 - lambda;
- ``clean``: the same run with lambda = 1 (every batch dry, GRAM-Clean at demo scale), trained
  into ``work/pretrain/demo-cpu-clean`` when missing;
- ``random``: the same architecture at its initialisation (no training).

Each is scored through the real HEAR tools, as a user would: ``heareval.embeddings.runner`` +
``hear_gram.predict`` on the demo scene and event tasks (dry, mono) and on the Nat-HEAR binaural
rendering of the scene task (``hear_gram.gram_t``); ``localization_tasks.evaluate`` (CLS token,
the paper's localization setting) on the binaural direction tasks per SNR bin and the T60 task,
with the GCC-PHAT baseline and chance for scale. Writes ``REPORT.md`` with the tables and three
figures (loss curves, classification scores, localization error vs SNR) under ``--work``.

The outcome sentences are computed from the numbers: a difference counts only when it exceeds
twice its standard error (from the fold-to-fold spread); everything else is reported as within
noise. Nothing here is tuned to make one model win.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hear_gram.checkpoints import save_checkpoint
from hear_gram.pretrain.model import GramMAE
from hear_gram.pretrain.train import TrainConfig, get_config, read_losses, running_mean, train

log = logging.getLogger(__name__)

MODELS = ("naturalistic", "clean", "random")
LOC_BINS = ("clean", "snr20-40", "snr10-20", "snr05-10")
NAT_TAG = "nat-binaural"
# Localization embeddings: CLS (the paper's setting) and the mean of the patch tokens.
STRATEGIES = ("cls", "mean")


@dataclass(frozen=True)
class Score:
    """One number of the report: mean over folds, its fold standard deviation and fold count."""

    mean: float
    std: float
    n: int
    higher_is_better: bool

    def se(self) -> float:
        return self.std / math.sqrt(self.n) if self.n > 0 else float("nan")

    def cell(self, digits: int) -> str:
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


# --- the three encoders ------------------------------------------------------------------------
def run_config(model: str, run_dir: str = "") -> TrainConfig:
    """The training run behind `model` ("naturalistic" or "clean"): ``demo-cpu`` in `run_dir`
    (default: its own), the clean run beside it with the suffix ``-clean``."""
    cfg = get_config("demo-cpu")
    if run_dir:  # as make pretrain-demo lays it out: the bank beside the run
        cfg = cfg.replace(out_dir=run_dir, bank_dir=str(Path(run_dir).parent / "banks"))
    if model == "clean":
        return cfg.replace(clean_ratio=1.0, out_dir=cfg.out_dir + "-clean")
    return cfg


def encoder_weights(model: str, work: Path, run_dir: str = "") -> Path:
    """The encoder file of `model`, training or initialising it when missing."""
    cfg = run_config("naturalistic" if model == "random" else model, run_dir)
    if model == "random":
        path = work / "random-init.safetensors"
        if not path.is_file():
            torch.manual_seed(cfg.seed)
            mae = GramMAE(cfg.gram_config(), cfg.decoder_width, cfg.decoder_depth)
            save_checkpoint(path, mae.encoder, "hear-gram")
        return path
    path = Path(cfg.out_dir) / "model.safetensors"
    if not path.is_file():
        log.info("training %s (%s) ...", model, cfg.out_dir)
        if train(cfg) is None:
            raise KeyboardInterrupt(f"training {model} was interrupted; rerun to resume")
    return path


# --- tasks -------------------------------------------------------------------------------------
def build_tasks(work: Path, n_scenes: int) -> tuple[Path, Path, Path, str]:
    """Dry demo tasks, their Nat-HEAR binaural rendering and the binaural localization tasks."""
    from hear_gram.demo import run
    from hear_gram.synthetic_tasks import make_event_task, make_scene_task
    from localization_tasks.generate import main as generate_localization

    dry = work / "tasks"
    # 16 clips per class (80 in all, 16 per fold): twice the demo's, for steadier fold scores.
    scene = make_scene_task(dry, n_per_class=16, sample_rates=(48000,))
    make_event_task(dry, n_clips=24, sample_rates=(48000,))
    nat, loc = work / f"tasks-{NAT_TAG}", work / "localization" / "tasks"
    bank = work / "scene-bank"
    run([sys.executable, "-m", "naturalistic_hear", "--tasks-dir", str(dry), "--out", str(nat),
         "--format", "binaural", "--task", scene.name, "--n-scenes", str(n_scenes),
         "--cache-dir", str(bank), "--workers", "2"])  # fmt: skip
    generate_localization(["--tasks-dir", str(dry), "--out", str(loc), "--task", scene.name,
                           "--format", "binaural", "--n-scenes", str(n_scenes),
                           "--cache-dir", str(bank), "--quiet"])  # fmt: skip
    return dry, nat, loc, scene.name


# --- scoring -----------------------------------------------------------------------------------
def classification(model: str, weights: Path, dry: Path, nat: Path, work: Path, grid: str):
    """{task label: Score} through heareval: the dry tasks with ``hear_gram``, the Nat-HEAR
    scenes with ``hear_gram.gram_t`` (fp32, the modules' defaults)."""
    from hear_gram.demo import score

    out = {}
    for tag, module, tasks in (("dry", "hear_gram", dry), (NAT_TAG, "hear_gram.gram_t", nat)):
        for row in score(module, weights, tasks, work / "embeddings" / model / tag, "{}", grid):
            out[f"{row['task']} [{tag}] {row['metric']}"] = Score(
                row["mean"], row["std"], row["n_folds"], row["better"] == "higher"
            )
    return out


def localization(label: str, module: str, weights: str, options: dict, loc: Path, work: Path,
                 grid: str) -> dict[str, Score]:  # fmt: skip
    """{snr bin or "t60": Score} from ``localization_tasks.evaluate`` (fold means and spread)."""
    from localization_tasks.evaluate import evaluate

    result = evaluate(module, loc, work / "localization" / "results" / label, weights, options,
                      grid=grid, progress=False)  # fmt: skip
    out = {}
    for entry in json.loads((result / "results.json").read_text())["tasks"]:
        key = "mean_angular_error_deg" if entry["target"] == "direction" else "median_abs_error_s"
        folds = [float(f[key]) for f in entry["folds"]]
        bin_ = entry["snr_bin"] if entry["target"] == "direction" else "t60"
        spread = statistics.stdev(folds) if len(folds) > 1 else 0.0
        out[bin_ or "clean"] = Score(float(entry[key]), spread, len(folds), False)
    return out


# --- the comparison, in words ------------------------------------------------------------------
def compare(a_name: str, a: Score, b_name: str, b: Score, what: str, unit: str = "") -> str:
    """One sentence: which of a, b is better on `what`, or that they are within noise (|diff| <=
    2 standard errors of the difference, from the fold spreads). A score from a single test
    split has no spread to judge by: it is stated, not compared."""
    diff = a.mean - b.mean
    if min(a.n, b.n) < 2:
        return (
            f"{what}: {a_name} {a.mean:.3g}{unit}, {b_name} {b.mean:.3g}{unit} on a single test "
            "split: no fold spread to judge the difference by."
        )
    se = math.sqrt(a.se() ** 2 + b.se() ** 2)
    size = f"{abs(diff):.3g}{unit} (standard error {se:.2g}{unit})"
    if not abs(diff) > 2 * se:
        return f"{what}: {a_name} and {b_name} are within noise, difference {size}."
    a_better = (diff > 0) == a.higher_is_better
    better, worse = (a_name, b_name) if a_better else (b_name, a_name)
    return f"{what}: {better} is better than {worse} by {size}."


def outcome(
    cls: dict[str, dict[str, Score]], loc: dict[str, dict[str, dict[str, Score]]]
) -> list[str]:
    """The comparison sentences: each trained model against random init, and naturalistic against
    clean, on every classification score, and on every localization bin per pooling strategy
    (`loc`: {strategy: {model: {bin: Score}}})."""
    pairs = [("naturalistic", "random"), ("clean", "random"), ("naturalistic", "clean")]
    lines = []
    for task in cls[MODELS[0]]:
        lines += [compare(a, cls[a][task], b, cls[b][task], task) for a, b in pairs]
    for strategy, by_model in loc.items():
        for bin_ in by_model[MODELS[0]]:
            what = "T60 median abs error" if bin_ == "t60" else f"direction error, {bin_}"
            what += f" ({strategy} pooling)"
            unit = " s" if bin_ == "t60" else " deg"
            lines += [
                compare(a, by_model[a][bin_], b, by_model[b][bin_], what, unit) for a, b in pairs
            ]
    return lines


# --- figures -----------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, png: Path) -> Path:
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    _pyplot().close(fig)
    return png


def plot_losses(runs: dict[str, Path], png: Path) -> Path:
    """Masked-patch loss (mean of 50 steps) of each training run: {label: run dir}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, run_dir in runs.items():
        steps, losses = read_losses(run_dir / "logs")
        if len(losses):
            ax.plot(*running_mean(steps, losses, min(50, len(losses))), label=label)
    ax.set(xlabel="step", ylabel="masked-patch MSE x channels (mean of 50)", yscale="log")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, png)


def plot_classification(cls: dict[str, dict[str, Score]], png: Path) -> Path:
    """Grouped bars: one group per task score, one bar per model, fold std as error bars."""
    plt = _pyplot()
    tasks = list(cls[MODELS[0]])
    fig, ax = plt.subplots(figsize=(1.2 + 2.2 * len(tasks), 3.6))
    width = 0.8 / len(cls)
    for i, (model, scores) in enumerate(cls.items()):
        x = np.arange(len(tasks)) + (i - (len(cls) - 1) / 2) * width
        ax.bar(x, [scores[t].mean for t in tasks], width, yerr=[scores[t].std for t in tasks],
               capsize=3, label=model)  # fmt: skip
    ax.set_xticks(np.arange(len(tasks)), [t.replace(" [", "\n[") for t in tasks], fontsize=7)
    ax.set_ylabel("test score (mean ± fold std)")
    ax.legend(fontsize=8)
    return _save(fig, png)


def plot_localization(loc: dict[str, dict[str, Score]], png: Path) -> Path:
    """Mean angular error (deg) per SNR bin, one line per model or baseline, fold std bars."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for label, scores in loc.items():
        bins = [b for b in LOC_BINS if b in scores]
        ax.errorbar(bins, [scores[b].mean for b in bins], yerr=[scores[b].std for b in bins],
                    marker="o", capsize=3, label=label)  # fmt: skip
    ax.set(xlabel="SNR bin (dB)", ylabel="mean angular error (deg)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return _save(fig, png)


# --- the markdown ------------------------------------------------------------------------------
def table(rows: dict[str, dict[str, Score]], columns: Sequence[str], digits: int) -> list[str]:
    head = "| model | " + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for label, scores in rows.items():
        cells = [scores[c].cell(digits) if c in scores else "-" for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def write_report(work: Path, cls: dict, loc: dict, baselines: dict, runs: dict[str, TrainConfig],
                 meta: dict) -> Path:  # fmt: skip
    """REPORT.md under `work` from the scores (figures written next to it). `loc`: {strategy:
    {model: {bin: Score}}}; `baselines`: {label: {bin: Score}}, shown but not compared."""
    rows = {
        f"{m} ({strategy})": v for strategy, by_model in loc.items() for m, v in by_model.items()
    }
    loc_rows = {**rows, **baselines}
    figures = {
        "loss": plot_losses({k: Path(c.out_dir) for k, c in runs.items()}, work / "loss.png"),
        "classification": plot_classification(cls, work / "classification.png"),
        "localization": plot_localization(loc_rows, work / "localization.png"),
    }
    cfg = runs["naturalistic"]
    lines = [
        "# Pretraining at demo scale: naturalistic vs clean vs random initialisation",
        "",
        f"Written by `make pretrain-report` on {meta['date']} ({meta['seconds']:.0f} s).",
        "",
        f"Encoder: GRAM-T, {cfg.depth} layers, width {cfg.width}, binaural; "
        f"{cfg.max_steps} steps of {cfg.batch_clips} clips x {cfg.crops} crops, "
        f"lr {cfg.lr:g}, mask ratio {cfg.mask_ratio}, on {cfg.demo_clips} synthetic 10 s clips "
        "(the classes of the demo tasks, so the evaluation is in-domain). "
        f"naturalistic: lambda = {cfg.clean_ratio}; clean: lambda = 1; random: the same "
        "architecture untrained. One training seed each: differences below reflect this seed. "
        "At this scale (minutes of CPU training on synthetic audio) the numbers test the recipe "
        "and the tooling, not the paper's claims, which rest on 500 k steps on AudioSet.",
        "",
        "## Classification (heareval, mean ± std over test folds)",
        "",
        *table(cls, list(cls[MODELS[0]]), 3),
        "",
        f"![classification]({figures['classification'].name})",
        "",
        "## Localization (binaural; mean angular error in degrees, T60 median abs error in s; "
        "mean ± std over folds; lower is better)",
        "",
        "Embeddings: the CLS token per chunk, averaged (the paper's localization setting), and "
        "the mean of the patch tokens (`mean`). The MAE loss never reads the CLS output (the "
        "decoder drops it, as upstream), so what it carries after short training is not trained "
        "for.",
        "",
        *table(loc_rows, [*LOC_BINS, "t60"], 2),
        "",
        f"![localization]({figures['localization'].name})",
        "",
        "## Training loss",
        "",
        f"![loss]({figures['loss'].name})",
        "",
        "## Outcome",
        "",
        "A difference counts when it exceeds twice its standard error (fold spread); "
        "otherwise it is reported as within noise.",
        "",
        *[f"- {line}" for line in outcome(cls, loc)],
        "",
    ]
    path = work / "REPORT.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hear_gram.pretrain.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--work", type=Path, default=Path("work/pretrain-report"))
    p.add_argument("--grid", default="fast", help="probe grid: default, fast (heareval and loc.)")
    p.add_argument("--n-scenes", type=int, default=24, help="held-out scenes for the test tasks")
    p.add_argument("--run-dir", default="work/pretrain/demo-cpu",
                   help="the demo-cpu run (make pretrain-demo); the clean run goes to DIR-clean")  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("localization_tasks").setLevel(logging.WARNING)
    t0, work = time.time(), args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    weights = {m: encoder_weights(m, work, args.run_dir) for m in MODELS}
    dry, nat, loc_tasks, _ = build_tasks(work, args.n_scenes)
    cls = {m: classification(m, weights[m], dry, nat, work, args.grid) for m in MODELS}
    loc = {
        strategy: {
            m: localization(
                f"{m}-{strategy}",
                "hear_gram.gram_t",
                str(weights[m]),
                {"strategy": strategy},
                loc_tasks,
                work,
                args.grid,
            )  # fmt: skip
            for m in MODELS
        }
        for strategy in STRATEGIES
    }
    baselines = {
        "gcc_phat": localization(
            "gcc_phat", "localization_tasks.baselines.gcc_phat", "", {}, loc_tasks, work, args.grid
        ),  # fmt: skip
        "chance": localization("chance", "chance", "", {}, loc_tasks, work, args.grid),
    }
    runs = {m: run_config(m, args.run_dir) for m in ("naturalistic", "clean")}
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": time.time() - t0}
    path = write_report(work, cls, loc, baselines, runs, meta)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
