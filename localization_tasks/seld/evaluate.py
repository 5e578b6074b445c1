"""Evaluate SELD on HEAR-style SELD tasks: HEAR-module embeddings + heads against a chance row, a
classical reference and optional baselines, over several seeds and every fold of the task.

    python -m localization_tasks.seld.evaluate --tasks-dir T --out O
        [--module hear_gram.gram_t_ambisonic --weights W.safetensors] [--model-options '{}']
        [--name NAME] [--head mlp|bigru] [--baseline crnn --baseline zero] [--epochs 40]
        [--seed 0] [--seeds 3] [--target auto|accdoa|multi-accdoa|multi-accddoa]
        [--reference auto|none] [--random-probe] [--scoring auto|3d|stereo] [--metrics dcase2022]

Rows of the table (methods), on every task:
- the module (`--module`): `get_timestamp_embeddings` on the 100 ms label grid, cached under
  O/embeddings (`localization_tasks.seld.features`); head `mlp` (per frame, 2 x 256 hidden) or
  `bigru` (2-layer BiGRU 128) (`localization_tasks.seld.heads`).
- `{name}-random` (`--random-probe`): the same module with its weights re-drawn (seeded by the
  run's seed: `features.randomise_weights`, PyTorch's own initialisation of every layer), what
  the architecture gives without its training.
- chance (always): the true activity with random directions and distances
  (`localization_tasks.seld.chance`): detection perfect, localization chance.
- the classical reference (`--reference auto`, the default), trained with the same head:
  intensity vectors for FOA tasks (`localization_tasks.seld.intensity_module`), GCC-PHAT for
  binaural, stereo and microphone-array tasks (`localization_tasks.seld.gccphat_module`).
- crnn (`--baseline crnn`): the DCASE FOA baseline recipe at small scale: 64-band log-mels +
  intensity-vector channels (binaural: interaural phase difference), 3 conv blocks, a 2-layer
  BiGRU (128). zero (`--baseline zero`): predicts nothing (ER 1, F 0, LE 180, LR 0).

Targets (`--target`, `localization_tasks.seld.targets`): `auto` picks multi-ACCDDOA (3 tracks of
direction and distance, ADPIT, as the DCASE 2024 baseline) when the task's labels carry
distances, multi-ACCDOA (ADPIT, DCASE 2022 baseline) when a class sounds twice in one frame, and
single ACCDOA otherwise; `--multi-accdoa` is `--target multi-accdoa`. Predictions with distances
are written as 7-column `frame,class,track,x,y,z,distance` CSVs (metres), as the DCASE 2024
baseline writes them; others as 6-column cartesian CSVs.

Seeds and folds: every trained method runs with seeds seed .. seed + N - 1 (`--seeds N`, 3 by
default); a task's every cross-validation fold is scored (TAU 2018/2019 list theirs in
`seld.cross_validation_folds`), else its official fold. A run's scores are the mean over its
folds (with their sd, `*_fold_sd`); the table gives the mean +- sd over seeds.

Scoring (`--metrics`, `training.seld_score`): the DCASE 2022/2023 metrics in 3-D, or for binaural
and stereo tasks (`--scoring auto`, or `stereo`) DCASE 2025's stereo scoring, azimuth only and
front-folded.

Training (`localization_tasks.seld.training`): Adam 1e-3, clips in padded batches of 8 (clips may
differ in length), early stopping on the validation fold's score (patience 10).

Outputs: O/{method}/{task}/seed{S}/results.json (one run), .../seed{S}/{test split}/pred/{clip}.csv
and tracks.png (one test clip's true and predicted azimuths); O/results.json ({"runs": [...],
"summary": [...]}), O/results.csv (one row per run), O/summary.csv (mean and sd over seeds); the
log in O/logs/. A later evaluation into the same O merges its runs into these files, keyed by
(task, method, seed), under a lock and with atomic writes: it never drops another's results.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hear_gram import cli
from hear_gram.plotting import save, subplots
from hear_gram.safeio import child, locked, write_bytes_atomic, write_json
from localization_tasks.seld.features import Features
from localization_tasks.seld.labels import FRAME_S, Row, format_rows
from localization_tasks.seld.task import read_metadata, read_vocabulary
from localization_tasks.seld.training import (
    METRIC_CHOICES,
    METRIC_KEYS,
    STOP_KEY,
    TARGET_CHOICES,
    SeldTrainConfig,
    TaskData,
    fit_predict,
    load_roles,
    resolve_metrics,
    resolve_target,
    seld_score,
    stereo_scoring,
    task_fold_sets,
)

log = logging.getLogger(__name__)
PROG = "python -m localization_tasks.seld.evaluate"
INTENSITY = "localization_tasks.seld.intensity_module"
GCC_PHAT = "localization_tasks.seld.gccphat_module"
# seld.audio of a task -> its classical reference: (name, module, load_model options)
REFERENCES = {
    "foa": ("intensity", INTENSITY, {}),
    "ambisonic": ("intensity", INTENSITY, {}),
    "binaural": ("gcc-phat", GCC_PHAT, {}),
    "stereo": ("gcc-phat", GCC_PHAT, {}),  # DCASE 2025: left, right, as binaural
    "mic": ("gcc-phat", GCC_PHAT, {"channels": 4}),
}


def train_and_test(task_dir: Path, method: str, feats: Features | None, cfg: SeldTrainConfig,
                   out: Path, label: str | None = None, source: TaskData | None = None,
                   plot: bool = True) -> dict:  # fmt: skip
    """One run (one seed, `cfg.seed`) of `method` on a task: on every fold, train on its train
    splits, stop early on valid, score on test; write the predictions and the run's results
    under O/{label}/{task}/seed{S}/. `source`: the task's data already read (shared by seeds).
    Returns the run: the metrics averaged over folds, their sd over folds (`*_fold_sd`, with
    several folds), and `folds`, each fold's own scores."""
    vocab = read_vocabulary(task_dir)
    k, stereo, name = len(vocab), stereo_scoring(task_dir, cfg), label or method
    source = source or TaskData(task_dir, method, feats)
    fold_sets = task_fold_sets(task_dir)
    kind = resolve_target(cfg, source, fold_sets)
    cfg = replace(cfg, metrics=resolve_metrics(cfg.metrics, stereo, kind == "multi-accddoa"))
    run_dir = out / child(out, name, "method name").name / task_dir.name / f"seed{cfg.seed}"
    folds = []
    for i, fold in enumerate(fold_sets):
        data = load_roles(source, fold, kind, k)
        what = f"{name} {task_dir.name} seed {cfg.seed} fold {i + 1}/{len(fold_sets)}"
        preds, (names, refs, frames, _, _), best_epoch = fit_predict(data, method, cfg, k, kind,
                                                                     stereo, what)  # fmt: skip
        files = {n: (r, p) for n, r, p in zip(names, refs, preds, strict=True)}
        score = seld_score(files, dict(zip(names, frames, strict=True)), k, stereo, cfg.metrics,
                           jackknife=True)  # fmt: skip
        folds.append({"test": fold["test"], "best_epoch": best_epoch, "test_clips": len(names),
                      **score})  # fmt: skip
        fold_dir = run_dir / child(run_dir, "+".join(fold["test"]), "split name").name
        write_predictions(fold_dir / "pred", names, preds, kind == "multi-accddoa")
        if plot and i == 0:
            plot_tracks(fold_dir / "tracks.png", names[0], refs[0], preds[0], vocab)
    result = {"method": name, "task": task_dir.name, "seed": cfg.seed, "target": kind,
              "multi_accdoa": kind != "accdoa", "stereo": stereo, "metrics": cfg.metrics,
              **fold_means(folds, METRIC_KEYS[cfg.metrics]),
              "best_epoch": [f["best_epoch"] for f in folds],
              "test_clips": sum(f["test_clips"] for f in folds), "folds": folds}  # fmt: skip
    write_json(run_dir / "results.json", result, indent=1)
    return result


def _defined(values: Sequence) -> np.ndarray:
    """The numbers among `values` (None: a figure undefined there, e.g. AngE without pairs)."""
    return np.array([v for v in values if v is not None], dtype=np.float64)


def _mean(values: Sequence) -> float | None:
    v = _defined(values)
    return float(v.mean()) if len(v) else None


def _sd(values: Sequence) -> float | None:
    v = _defined(values)
    return float(v.std(ddof=1)) if len(v) > 1 else None


def fold_means(folds: list[dict], keys: Sequence[str]) -> dict:
    """The mean over folds of each metric, with several folds its sd (`{key}_fold_sd`), and the
    mean over folds of the test files' jackknife 95 % interval (`{key}_jackknife`, [low, high];
    `localization_tasks.seld.jackknife`). A figure undefined on a fold is left out of its mean."""
    out: dict = {}
    for key in keys:
        out[key] = _mean([f.get(key) for f in folds])
        if len(folds) > 1:
            out[f"{key}_fold_sd"] = _sd([f.get(key) for f in folds])
        ivs = [((f.get("jackknife") or {}).get(key) or {}).get("interval") for f in folds]
        ivs = [iv for iv in ivs if isinstance(iv, list) and None not in iv]
        if ivs:
            out[f"{key}_jackknife"] = [float(np.mean([iv[0] for iv in ivs])),
                                       float(np.mean([iv[1] for iv in ivs]))]  # fmt: skip
    return out


def write_predictions(folder: Path, names: list[str], preds: list[list[Row]], distance: bool) -> None:  # fmt: skip
    """One DCASE CSV per clip: 7 columns (cartesian + distance in m, the DCASE 2024 baseline's
    output files) when the method predicts distances, else 6 (cartesian)."""
    folder.mkdir(parents=True, exist_ok=True)
    fmt = "cartesian-distance" if distance else "cartesian"
    for n, p in zip(names, preds, strict=True):
        path = child(folder, Path(n).stem + ".csv", "clip name")
        write_bytes_atomic(path, format_rows(p, fmt).encode())


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


# ------------------------------------------------------------------ results of several runs


def _key(run: dict) -> tuple[str, str, int]:
    return (str(run["task"]), str(run["method"]), int(run.get("seed", 0)))


def read_runs(path: Path) -> list[dict]:
    """The runs of an O/results.json ({"runs": [...]}, or the older bare list), [] when there is
    none; anything else is refused rather than overwritten."""
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not JSON ({e}); move it away to start afresh") from None
    runs = data.get("runs") if isinstance(data, dict) else data
    if not isinstance(runs, list) or not all(
        isinstance(r, dict) and {"task", "method"} <= set(r) for r in runs
    ):
        raise ValueError(f"{path} is not a results file of this evaluator; move it away")
    return runs


def summarise(runs: list[dict]) -> list[dict]:
    """Per (task, method): the mean over seeds of each metric (`{key}`), its sd over seeds
    (`{key}_sd`, None with one seed) and, with several folds, the sd over folds of the seeds'
    mean per fold (`{key}_fold_sd`)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in sorted(runs, key=_key):
        groups.setdefault(_key(r)[:2], []).append(r)
    out = []
    for (task, method), rs in groups.items():
        keys = METRIC_KEYS.get(rs[0].get("metrics", "dcase2022"), METRIC_KEYS["dcase2022"])
        entry = {"method": method, "task": task, "seeds": [int(r.get("seed", 0)) for r in rs],
                 "metrics": rs[0].get("metrics", "dcase2022"),
                 "target": rs[0].get("target"), "folds": len(rs[0].get("folds", [None]))}  # fmt: skip
        for key in keys:
            entry[key] = _mean([r.get(key) for r in rs])
            entry[f"{key}_sd"] = _sd([r.get(key) for r in rs])
            ivs = [r.get(f"{key}_jackknife") for r in rs]
            if all(isinstance(iv, list) for iv in ivs):  # mean over seeds of each run's interval
                entry[f"{key}_jackknife"] = [float(np.mean([iv[0] for iv in ivs])),
                                             float(np.mean([iv[1] for iv in ivs]))]  # fmt: skip
            per_fold = [[f.get(key) for f in r.get("folds", [])] for r in rs]
            if entry["folds"] > 1 and len({len(p) for p in per_fold}) == 1:
                if all(v is not None for p in per_fold for v in p):
                    entry[f"{key}_fold_sd"] = float(np.mean(per_fold, axis=0).std(ddof=1))
        out.append(entry)
    return out


def _csv(rows: list[list]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def _metric_keys(entries: list[dict]) -> list[str]:
    keys = dict.fromkeys(k for m in METRIC_KEYS.values() for k in m)
    return [k for k in keys if any(k in e for e in entries)]


def _epochs(run: dict) -> str:
    """The best epoch of each fold, `;`-separated (runs of the older layout hold one int)."""
    e = run.get("best_epoch")
    return ";".join("" if x is None else str(x) for x in (e if isinstance(e, list) else [e]))


def merge_results(out: Path, new: list[dict]) -> list[dict]:
    """Merge `new` runs into O/results.json, O/results.csv and O/summary.csv, keyed by (task,
    method, seed): a run of the same key is replaced, every other kept. Under a lock
    (O/.results.lock), with atomic writes, so that two evaluations into one O keep both.
    Returns every run now in the file."""
    out.mkdir(parents=True, exist_ok=True)
    with locked(out / ".results.lock"):
        merged = {_key(r): r for r in read_runs(out / "results.json")}
        merged.update({_key(r): r for r in new})
        runs = [merged[k] for k in sorted(merged)]
        summary = summarise(runs)
        write_json(out / "results.json", {"runs": runs, "summary": summary}, indent=1)
        keys = _metric_keys(runs)
        rows = [["method", "task", "seed", "target", *keys, "best_epoch", "folds"]]
        rows += [[r["method"], r["task"], r.get("seed", 0), r.get("target", ""),
                  *[r.get(k, "") for k in keys], _epochs(r), len(r.get("folds", [None]))]
                 for r in runs]  # fmt: skip
        write_bytes_atomic(out / "results.csv", _csv(rows))
        cols = [c for k in keys for c in (k, f"{k}_sd", f"{k}_fold_sd")]
        ivs = [k for k in keys if any(f"{k}_jackknife" in s for s in summary)]
        srows = [
            [
                "method",
                "task",
                "metrics",
                "seeds",
                "folds",
                *cols,
                *[f"{k}_jackknife_{end}" for k in ivs for end in ("low", "high")],
            ]
        ]
        srows += [[s["method"], s["task"], s.get("metrics", ""), len(s["seeds"]), s["folds"],
                   *["" if s.get(c) is None else s[c] for c in cols],
                   *[("" if s.get(f"{k}_jackknife") is None else s[f"{k}_jackknife"][i])
                     for k in ivs for i in (0, 1)]] for s in summary]  # fmt: skip
        write_bytes_atomic(out / "summary.csv", _csv(srows))
    return runs


def format_table(summary: list[dict]) -> str:
    """Markdown table: mean +- sd over seeds of each metric ('-': undefined, e.g. AngE without
    pairs), the sd over folds of the early-stopping figure, and its jackknife 95 % interval over
    test files (mean over seeds and folds)."""
    keys = _metric_keys(summary)

    def fmt(k: str, v: float) -> str:
        return ("{:.1f}" if k.startswith(("LE", "AngE", "DOA")) else "{:.3f}").format(v)

    def cell(s: dict, k: str) -> str:
        if s.get(k) is None:
            return "-"
        sd = s.get(f"{k}_sd")
        return fmt(k, s[k]) + (f" ± {fmt(k, sd)}" if sd is not None else "")

    def stop(s: dict) -> tuple[str, str]:
        key = STOP_KEY.get(s.get("metrics", "dcase2022"), "SELD")
        fold_sd, iv = s.get(f"{key}_fold_sd"), s.get(f"{key}_jackknife")
        return (
            "-" if fold_sd is None else f"{key} {fmt(key, fold_sd)}",
            "-" if iv is None else f"{key} [{fmt(key, iv[0])}, {fmt(key, iv[1])}]",
        )

    lines = ["| method | task | seeds | folds | " + " | ".join(keys)
             + " | sd over folds | jackknife 95 % |", "|---" * (len(keys) + 6) + "|"]  # fmt: skip
    for s in summary:
        fold_sd, iv = stop(s)
        lines.append(f"| {s['method']} | {s['task']} | {len(s['seeds'])} | {s['folds']} | "
                     + " | ".join(cell(s, k) for k in keys) + f" | {fold_sd} | {iv} |")  # fmt: skip
    return "\n".join(lines)


# ------------------------------------------------------------------ methods and the command line


@dataclass(frozen=True)
class Method:
    """One row of the table: `kind` module (a head on `module`'s embeddings), crnn, zero or
    chance; `random`: the module with re-drawn weights (seeded per run)."""

    name: str
    kind: str
    module: str = ""
    weights: Path | None = None
    options: dict = field(default_factory=dict)
    random: bool = False

    def features(self, cache_dir: Path, seed: int) -> Features | None:
        if self.kind in ("zero", "chance"):
            return None
        if self.kind == "crnn":
            return Features("crnn")
        return Features("module", self.module, self.weights, self.options, cache_dir,
                        random_init=seed if self.random else None)  # fmt: skip


def reference_method(task_dir: Path, head: str) -> Method | None:
    """The classical reference of a task by its audio format (seld.audio); None (with a
    warning) for a format without one."""
    audio = read_metadata(task_dir).get("seld", {}).get("audio")
    if audio not in REFERENCES:
        log.warning("%s: no classical reference for audio %r", task_dir.name, audio)
        return None
    name, module, options = REFERENCES[audio]
    return Method(f"{name}+{head}", "module", module, None, options)


def task_methods(task_dir: Path, args: argparse.Namespace) -> list[Method]:
    """The rows on one task, chance first (it reads labels only, so a bad task fails fast)."""
    methods = [Method("chance", "chance")]
    methods += [Method(b, b) for b in args.baseline]
    if getattr(args, "reference", "auto") == "auto":
        ref = reference_method(task_dir, args.head)
        methods += [ref] if ref is not None else []
    if args.module:
        name = args.name or f"{args.module}+{args.head}"
        module = Method(name, "module", args.module, args.weights, args.model_options)
        methods.append(module)
        if getattr(args, "random_probe", False):
            methods.append(Method(f"{name}-random", "module", args.module, args.weights,
                                  args.model_options, random=True))  # fmt: skip
    return methods


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
    p.add_argument("--seeds", type=cli.positive_int, default=3,
                   help="runs per trained method, seeds --seed .. --seed + N - 1")  # fmt: skip
    p.add_argument("--batch", type=cli.positive_int, default=8, help="clips per training batch")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--target", choices=TARGET_CHOICES, default="auto",
                   help="auto: multi-ACCDDOA with distances, multi-ACCDOA with same-class "
                        "polyphony, ACCDOA otherwise")  # fmt: skip
    p.add_argument("--multi-accdoa", dest="target", action="store_const", const="multi-accdoa",
                   help="the same as --target multi-accdoa")  # fmt: skip
    p.add_argument("--reference", choices=("auto", "none"), default="auto",
                   help="auto: the classical reference of each task's audio (intensity vectors "
                        "for FOA, GCC-PHAT for binaural, stereo and microphones)")  # fmt: skip
    p.add_argument("--random-probe", action="store_true",
                   help="add the module with randomly re-drawn weights (needs --module)")  # fmt: skip
    p.add_argument("--scoring", choices=("auto", "3d", "stereo"), default="auto",
                   help="auto: DCASE 2025 stereo scoring for binaural and stereo tasks, 3-D "
                        "otherwise")  # fmt: skip
    p.add_argument("--metrics", choices=METRIC_CHOICES, default="auto",
                   help="metric family: auto = dcase2024 for 3-D tasks with distances, dcase2025 "
                        "for binaural and stereo ones, dcase2022 without distances")  # fmt: skip
    return p


def _config(args: argparse.Namespace) -> SeldTrainConfig:
    """The training settings of `args`; options added after the first release are read with
    their defaults when a caller's Namespace lacks them."""
    target = getattr(args, "target", None) or "auto"
    if getattr(args, "multi_accdoa", False) and target == "auto":
        target = "multi-accdoa"
    return SeldTrainConfig(head=args.head, epochs=args.epochs, patience=args.patience,
                           seed=args.seed, scoring=args.scoring, batch=args.batch, lr=args.lr,
                           target=target, metrics=getattr(args, "metrics", "auto"))  # fmt: skip


def evaluate(args: argparse.Namespace) -> list[dict]:
    """Every method on every task over the seeds (see the module docstring); merges the runs
    into O/results.{json,csv} and O/summary.csv; returns the summary (mean and sd over seeds)
    of this evaluation's (task, method) pairs, over every run of them now in O."""
    cfg = _config(args)
    if not args.tasks_dir.is_dir():
        raise FileNotFoundError(f"--tasks-dir {args.tasks_dir} is not a directory")
    tasks = [child(args.tasks_dir, t, "task") for t in args.task] if args.task else sorted(
        p for p in args.tasks_dir.iterdir() if (p / "task_metadata.json").is_file())  # fmt: skip
    if not tasks:
        raise FileNotFoundError(f"no SELD tasks (task_metadata.json) under {args.tasks_dir}")
    reference = getattr(args, "reference", "auto")
    if not args.baseline and not args.module and reference == "none":
        raise cli.CLIError("nothing to evaluate: give --module, --baseline or --reference auto")
    if getattr(args, "random_probe", False) and not args.module:
        raise cli.CLIError("--random-probe needs --module")
    seeds = range(cfg.seed, cfg.seed + getattr(args, "seeds", 3))
    plan = [(task, m) for task in tasks for m in task_methods(task, args)]
    for _, m in plan:  # refuse a bad --name before any work
        child(args.out, m.name, "method name")
    cache_dir = args.out / "embeddings"
    done: set[tuple[str, str]] = set()
    units = [(task, m, s) for task, m in plan for s in seeds]
    sources: dict[tuple, TaskData] = {}
    for task, m, seed in tqdm(units, desc="seld", disable=args.quiet):
        # one TaskData per (task, method) shares its inputs across seeds; a random-weights
        # probe has other weights, so other inputs, per seed
        sid = (task, m.name, seed if m.random else None)
        if sid not in sources:
            sources = {sid: TaskData(task, m.kind, m.features(cache_dir, seed))}
        run = train_and_test(task, m.kind, None, replace(cfg, seed=seed), args.out, m.name,
                             sources[sid],
                             plot=seed == cfg.seed)  # fmt: skip
        merge_results(args.out, [run])
        done.add((task.name, m.name))
    summary = summarise(read_runs(args.out / "results.json"))
    return [s for s in summary if (s["task"], s["method"]) in done]


def run(args: argparse.Namespace) -> None:
    print(format_table(evaluate(args)))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (`hear_gram.cli` convention): expected failures end in one line
    `PROG: error: ...` and exit status 2, Ctrl-C in 130."""
    return cli.main(PROG, build_parser, run, argv, log_dir=lambda a: a.out)


if __name__ == "__main__":
    sys.exit(main())
