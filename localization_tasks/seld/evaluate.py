"""Evaluate SELD on HEAR-style SELD tasks: HEAR-module embeddings + heads, a SELDnet-style CRNN,
and a zero predictor, all scored with the DCASE metrics on the task's official test fold.

    python -m localization_tasks.seld.evaluate --tasks-dir T --out O
        [--module hear_gram.gram_t_ambisonic --weights W.safetensors] [--model-options '{}']
        [--head mlp|bigru] [--baseline crnn --baseline zero] [--epochs 40] [--seed 0]
        [--multi-accdoa] [--scoring auto|3d|stereo]

Targets (`localization_tasks.seld.targets`): single ACCDOA, or with `--multi-accdoa`
multi-ACCDOA with the ADPIT loss (3 tracks), as the DCASE 2022 baseline.

Scoring: the DCASE metrics in 3-D, or for binaural tasks (`--scoring auto`, or `stereo`) DCASE
2025's stereo scoring, azimuth only and front-folded (`metrics.stereo_rows`).

- module: `get_timestamp_embeddings` of the HEAR module on the 100 ms label grid, cached under
  O/embeddings (`localization_tasks.seld.features`); head `mlp` (per frame, 2 x 256 hidden) or
  `bigru` (2-layer BiGRU 128) (`localization_tasks.seld.heads`).
- crnn: the DCASE FOA baseline recipe at small scale: 64-band log-mels + intensity-vector
  channels (binaural: interaural phase difference), 3 conv blocks (64 filters, frequency pooling
  4-4-2, time pooling 5-2-1 to 100 ms), a 2-layer BiGRU (128), tanh -> ACCDOA.
- zero: predicts nothing (the floor every method must beat: ER 1, F 0, LE 180, LR 0).

Training (`localization_tasks.seld.training`): Adam 1e-3, full clips as batches of 8, seeded;
early stopping on the validation fold's SELD score (patience 10); the best epoch's weights
predict the test fold. Outputs under O/{method}/{task}/: pred/{clip}.csv (DCASE cartesian),
results.json, tracks.png (one test clip's true and predicted azimuths over time); O/results.csv
and O/results.json (all methods); the log in O/logs/.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from hear_gram import cli
from hear_gram.plotting import save, subplots
from hear_gram.safeio import child, write_bytes_atomic
from localization_tasks.seld.features import Features
from localization_tasks.seld.labels import FRAME_S, Row, format_rows
from localization_tasks.seld.targets import decode
from localization_tasks.seld.task import read_vocabulary
from localization_tasks.seld.training import (
    SeldTrainConfig,
    fit_predict,
    load_roles,
    seld_score,
    stereo_scoring,
)

log = logging.getLogger(__name__)
PROG = "python -m localization_tasks.seld.evaluate"


def train_and_test(task_dir: Path, method: str, feats: Features | None, cfg: SeldTrainConfig,
                   out: Path, label: str | None = None) -> dict:  # fmt: skip
    """Train on the official train fold(s), stop early on valid, score on test; write outputs."""
    vocab = read_vocabulary(task_dir)
    k, multi, stereo = len(vocab), cfg.multi_accdoa, stereo_scoring(task_dir, cfg)
    data = load_roles(task_dir, method, feats, k, multi)
    what = f"{label or method} {task_dir.name}"
    preds, (names, refs, frames, _, _), best_epoch = fit_predict(data, method, cfg, k, stereo, what)
    result = seld_score(preds, refs, names, frames, k, multi, stereo)
    result.update({"method": label or method, "task": task_dir.name, "best_epoch": best_epoch,
                   "test_clips": len(names), "multi_accdoa": multi})  # fmt: skip
    run_dir = out / child(out, label or method, "method name").name / task_dir.name
    (run_dir / "pred").mkdir(parents=True, exist_ok=True)
    for n, p in zip(names, preds, strict=True):
        path = child(run_dir / "pred", Path(n).stem + ".csv", "clip name")
        write_bytes_atomic(path, format_rows(decode(p, multi), "cartesian").encode())
    write_bytes_atomic(run_dir / "results.json", json.dumps(result, indent=1).encode())
    plot_tracks(run_dir / "tracks.png", names[0], refs[0], decode(preds[0], multi), vocab)
    return result


def plot_tracks(path: Path, name: str, ref: list[Row], pred: list[Row], vocab: list[str]) -> None:
    """Azimuth over time of one clip: reference (lines of dots) vs prediction (crosses)."""
    fig, ax = subplots(figsize=(7, 3))
    for rows, marker, what in ((ref, "o", "true"), (pred, "x", "predicted")):
        for c in sorted({r.cls for r in rows}):
            pts = [(r.frame * FRAME_S, r.azimuth_elevation[0]) for r in rows if r.cls == c]
            ax.plot(*zip(*pts, strict=True), marker, ms=3, label=f"{vocab[c]} ({what})")
    ax.set(xlabel="time (s)", ylabel="azimuth (deg)", ylim=(-180, 180), title=name)
    ax.legend(fontsize=6, loc="upper right")
    save(fig, path, dpi=100)


COLUMNS = ("method", "task", "ER20", "F20", "LE_CD", "LR_CD", "SELD", "best_epoch")


def format_table(results: list[dict]) -> str:
    lines = [
        "| method | task | ER20 | F20 | LE_CD | LR_CD | SELD |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['method']} | {r['task']} | {r['ER20']:.3f} | {r['F20']:.3f} | "
                     f"{r['LE_CD']:.1f} | {r['LR_CD']:.3f} | {r['SELD']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    cli.add_tasks_dir(p)
    cli.add_out(p)
    p.add_argument("--task", action="append", default=None, metavar="NAME")
    cli.add_module(p, required=False, help="HEAR module whose embeddings a head is trained on")
    cli.add_weights(p)
    cli.add_model_options(p)
    p.add_argument("--name", default=None, help="method name of the module in the table")
    p.add_argument("--head", choices=("mlp", "bigru"), default="bigru")
    p.add_argument("--baseline", action="append", choices=("crnn", "zero"), default=[])
    p.add_argument("--epochs", type=cli.positive_int, default=40)
    p.add_argument("--patience", type=cli.positive_int, default=10)
    cli.add_seed(p)
    p.add_argument("--batch", type=cli.positive_int, default=8, help="clips per training batch")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--multi-accdoa", action="store_true", help="multi-ACCDOA targets, ADPIT loss")
    p.add_argument("--scoring", choices=("auto", "3d", "stereo"), default="auto",
                   help="auto: DCASE 2025 stereo scoring for binaural tasks, 3-D otherwise")  # fmt: skip
    return p


def evaluate(args: argparse.Namespace) -> list[dict]:
    """Every method on every task (see the module docstring); writes O/results.{json,csv}."""
    cfg = SeldTrainConfig(head=args.head, epochs=args.epochs, patience=args.patience,
                          seed=args.seed, multi_accdoa=args.multi_accdoa, scoring=args.scoring,
                          batch=args.batch, lr=args.lr)  # fmt: skip
    if not args.tasks_dir.is_dir():
        raise FileNotFoundError(f"--tasks-dir {args.tasks_dir} is not a directory")
    tasks = [child(args.tasks_dir, t, "task") for t in args.task] if args.task else sorted(
        p for p in args.tasks_dir.iterdir() if (p / "task_metadata.json").is_file())  # fmt: skip
    if not tasks:
        raise FileNotFoundError(f"no SELD tasks (task_metadata.json) under {args.tasks_dir}")
    if not args.baseline and not args.module:
        raise cli.CLIError("nothing to evaluate: give --module and/or --baseline")
    methods = [(b, b, Features(b)) for b in args.baseline]
    if args.module:
        feats = Features("module", args.module, args.weights, args.model_options,
                         args.out / "embeddings")  # fmt: skip
        methods.append((args.name or f"{args.module}+{args.head}", "module", feats))
    for name, _, _ in methods:  # refuse a bad --name before any work
        child(args.out, name, "method name")
    results = []
    units = [(task, m) for task in tasks for m in methods]
    for task, (name, method, feats) in tqdm(units, desc="seld", disable=args.quiet):
        results.append(train_and_test(task, method, feats, cfg, args.out, name))
    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out / "results.json", json.dumps(results, indent=1).encode())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows([[r[c] for c in COLUMNS] for r in results])
    write_bytes_atomic(args.out / "results.csv", buf.getvalue().encode())
    return results


def run(args: argparse.Namespace) -> None:
    print(format_table(evaluate(args)))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (`hear_gram.cli` convention): expected failures end in one line
    `PROG: error: ...` and exit status 2, Ctrl-C in 130."""
    return cli.main(PROG, build_parser, run, argv, log_dir=lambda a: a.out)


if __name__ == "__main__":
    sys.exit(main())
