"""Per-source spatial conditions: tasks built by `localization_tasks.generate` from a HEAR scene
task (arXiv 2506.00934, scene simulation), in both spatial formats, scored by `python -m
localization_tasks.evaluate`.

One unit per source task and format (`<source>-<format>`). Its tasks are built once per source
content, condition (its kind of task: direction or T60), format and sample rate (the model's
when the source has it, else the source's highest, which the evaluator resamples;
`hear_gram.suite.build`), so that only what the run's units read is rendered; or taken
ready-made from `--localization-dir`.
Sources: `--localization-source`, else those found in `--localization-dir`, else the paper's two
when present under the tasks folder. `--seeds N` runs the evaluator N times (its `--seed`:
`seeds`), sharing its embeddings; a unit's rows are per task the aggregate (mean over seeds, sd
over seeds x folds) and one row per seed and test fold. The conditions of the `spatial` group
share one REPORT.md table: per model, format and source, each condition's columns (`columns`),
"mean ± sd (n=N)"; and each its figure (`figure`, sd error bars).
"""

from __future__ import annotations

import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hear_gram.cache import task_digest
from hear_gram.safeio import child
from hear_gram.suite import build, stats
from hear_gram.suite.condition import (
    SEEDS,
    SPATIAL_FORMATS,
    Condition,
    Option,
    Unit,
    UnitError,
    aggregate,
    read_json,
    run_logged,
)

if TYPE_CHECKING:
    from hear_gram.suite.config import Resolved, Settings

PAPER_SOURCES = ("esc50-v2.0.0-full", "speech_commands-v0.0.2-5h")
GENERATOR = ("localization_tasks.generate", "naturalistic_hear")
SOURCE = Option("--localization-source", "names", "source scene task of the localization and T60 tasks")  # fmt: skip
GIVEN = Option("--localization-dir", "dir", "ready-made localization/T60 tasks")
# Seed k of `--seeds` is --seed + SEED_STRIDE * k: the evaluator seeds the probe of fold i with
# seed + i (`localization_tasks.evaluate.evaluate_task`), so seeds 1 apart would hand fold i + 1
# of one run the generator seed of fold i of the next.
SEED_STRIDE = 1000


def spatial_tasks(root: Path) -> list[tuple[str, dict]]:
    """(folder name, metadata) of every task under `root` with a `localization` block."""
    out = []
    for meta_path in sorted(root.glob("*/task_metadata.json")):
        meta = read_json(meta_path)
        if meta and isinstance(meta.get("localization"), dict):
            out.append((meta_path.parent.name, meta))
    return out


def sources(settings: Settings) -> list[str]:
    named = settings.names(SOURCE.dest)
    if named:
        return list(named)
    given = settings.folder(GIVEN.dest)
    if given is not None:
        return sorted({str(meta["localization"].get("source_task", ""))
                       for _, meta in spatial_tasks(given)})  # fmt: skip
    return [t for t in PAPER_SOURCES if (settings.tasks_dir / t).is_dir()]


class SpatialCondition(Condition):
    """Tasks with `localization.target == target`, one unit per source and format."""

    formats = SPATIAL_FORMATS
    better = "lower"
    group = "spatial"
    options = (SOURCE, GIVEN, SEEDS)
    hear_module = True
    baselines = ("chance",)  # localization_tasks.evaluate --module chance
    steps = ("localization_tasks.evaluate",)
    target = ""  # the tasks' localization.target
    metric = ""  # the evaluator's metric of this target (lower is better)
    caption = ""  # what the columns show, one sentence
    columns: tuple[tuple[str, str | None], ...] = ()  # (header, snr_bin or None: any)
    digits = 1

    def plan(self, settings: Settings) -> list[tuple[str, str, str]]:
        found = sources(settings)
        if not found:
            raise LookupError(
                f"condition {self.name} needs source scene tasks: none of {list(PAPER_SOURCES)} "
                f"is under {settings.tasks_dir}; name them with {SOURCE.flag}"
            )
        return [(f"{s}-{fmt}", fmt, s) for s in found for fmt in self.formats]

    def grid(self, settings: Settings) -> Any:
        n = SEEDS.value(settings.extra)
        # One seed keeps the key units had before --seeds existed: their results stay done.
        return [settings.localization_grid, settings.seed] + ([n] if n > 1 else [])

    def seeds(self, settings: Settings) -> list[int]:
        """The evaluator's --seed of each of the unit's `--seeds` runs."""
        return [settings.seed + SEED_STRIDE * k for k in range(SEEDS.value(settings.extra))]

    def _names(self, root: Path, unit: Unit) -> list[str]:
        return [
            name
            for name, meta in spatial_tasks(root)
            if meta["localization"].get("source_task") == unit.source
            and meta["localization"].get("format") == unit.fmt
            and meta["localization"].get("target") == self.target
        ]

    def params(self, unit: Unit, settings: Settings) -> dict[str, Any]:
        """The settings a built task depends on, besides its source's content, the code and
        the sample rate."""
        return {"seed": settings.seed, "n_scenes": settings.n_scenes, "format": unit.fmt,
                "target": self.target}  # fmt: skip

    def task_key(self, unit: Unit, settings: Settings) -> str:
        given = settings.folder(GIVEN.dest)
        if given is None:  # the rate's build enters the unit's key through `builds`
            return build.build_key(self.name, unit.source, settings, GENERATOR,
                                   self.params(unit, settings))  # fmt: skip
        names = self._names(given, unit)
        return build.digest([[n, task_digest(child(given, n, "task"))] for n in names])

    def builds(self, unit: Unit, resolved: Resolved, settings: Settings) -> list[build.Build]:
        if settings.folder(GIVEN.dest) is not None:
            return []
        rate = build.rate_to_build(resolved, settings, unit.source)
        if rate is None:
            return []
        params = {**self.params(unit, settings), "sample_rate": rate}
        args = ["--format", unit.fmt, "--target", self.target, "--sample-rate", str(rate)]
        label = f"{self.name} {unit.source} {unit.fmt} {rate} Hz"
        return [build.make(self.name, unit.source, settings, GENERATOR, params, args, label,
                           tags=(unit.fmt, str(rate)))]  # fmt: skip

    def tasks_root(self, unit: Unit, resolved: Resolved, settings: Settings, log_file: Path) -> Path:  # fmt: skip
        given = settings.folder(GIVEN.dest)
        if given is not None:
            return given
        return build.run_first(self.builds(unit, resolved, settings), unit.source, settings,
                               log_file)  # fmt: skip

    def run(self, unit: Unit, resolved: Resolved, settings: Settings, folder: Path) -> list[dict]:
        from localization_tasks.evaluate import module_tag

        log_file = folder / "unit.log"
        root = self.tasks_root(unit, resolved, settings, log_file)
        names = self._names(root, unit)
        if not names:
            raise UnitError(f"no {self.target} tasks of {unit.source} ({unit.fmt}) under {root}")
        out = folder / "evaluate"
        tag = module_tag(resolved.module, str(resolved.weights or ""), resolved.options)
        runs = []
        seeds = self.seeds(settings)
        for seed in seeds:  # one --out: the seeds share the evaluator's embeddings cache
            cmd = [sys.executable, "-m", "localization_tasks.evaluate", "--module", resolved.module,
                   "--model-options", resolved.options_json(), "--tasks-dir", str(root),
                   "--out", str(out), "--grid", settings.localization_grid,
                   "--seed", str(seed), "--quiet"]  # fmt: skip
            if resolved.weights is not None:
                cmd += ["--weights", str(resolved.weights)]
            for name in names:
                cmd += ["--task", name]
            run_logged(cmd, log_file, "localization_tasks.evaluate")
            results = read_json(out / tag / "results.json")
            if results is None:
                raise UnitError(f"localization_tasks.evaluate left no results.json in {out / tag}")
            if len(seeds) > 1:  # the next seed's run writes results.json again
                (out / tag / "results.json").replace(out / tag / f"results-seed{seed}.json")
            runs.append((seed, results))
        return self.score_rows(runs, unit.fmt)

    def score_rows(self, runs: list[tuple[int, dict]], fmt: str) -> list[dict]:
        """The rows of the evaluator's results.json of each seed: per task the aggregate (its
        figure pooled over the test clips of every fold, mean over seeds; sd over the per-fold
        figures of every seed, n = seeds x folds), then one row per seed and test fold."""
        entries: dict[str, list[dict]] = defaultdict(list)
        folds = []
        for seed, results in runs:
            for e in results.get("tasks", []):
                entries[e["task"]].append(e)
                for f in e.get("folds", []):
                    if self.metric in f:
                        folds.append({"task": e["task"], "format": fmt,
                                      "snr_bin": e.get("snr_bin", ""), "metric": self.metric,
                                      "fold": _split_name(f["test"]), "seed": seed,
                                      "mean": float(f[self.metric]), "std": "", "folds": 1,
                                      "better": self.better})  # fmt: skip
        rows = []
        for task, mine in entries.items():
            values = [r["mean"] for r in folds if r["task"] == task]
            rows.append({"task": task, "format": fmt, "snr_bin": mine[0].get("snr_bin", ""),
                         "metric": self.metric,
                         "mean": statistics.fmean(float(e[self.metric]) for e in mine),
                         "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                         "folds": len(values), "better": self.better})  # fmt: skip
        return rows + folds

    # ---------------------------------------------------------------- REPORT.md

    def section(self, group: Sequence[Condition], rows: list[dict], models: Sequence[str]) -> list[str]:  # fmt: skip
        group = [c for c in group if isinstance(c, SpatialCondition)]
        names = {c.name for c in group}
        mine = [r for r in aggregate(rows) if r["condition"] in names]
        if not mine:
            return []
        heads = [h for c in group for h, _ in c.columns]
        out = [f"## {' and '.join(c.title for c in group)}", "",
               "; ".join(c.caption for c in group) + ". Each cell: the evaluator's figure over "
               "the test clips of every fold (mean over training seeds) ± sd over the per-fold "
               "figures of every seed (n = seeds x folds; `--seeds`, seed k is --seed + "
               f"{SEED_STRIDE} k).", "",
               "| model | format | source | " + " | ".join(heads) + " |",
               "|---|---|---|" + "---:|" * len(heads)]  # fmt: skip
        keys = sorted({(r["model"], r["format"], _source(r)) for r in mine},
                      key=lambda g: (list(models).index(g[0]), g[1], g[2]))  # fmt: skip
        for m, fmt, source in keys:
            these = [r for r in mine if (r["model"], r["format"], _source(r)) == (m, fmt, source)]
            cells = [cell for c in group for cell in c.cells(these)]
            out.append(f"| {m} | {fmt} | {source} | " + " | ".join(cells) + " |")
        return [*out, ""]

    def cells(self, rows: list[dict]) -> list[str]:
        """This condition's cells of one (model, format, source) row of the table."""
        out = []
        for _, snr_bin in self.columns:
            hit = [r for r in rows if r["condition"] == self.name and r["status"] == "ok"
                   and (snr_bin is None or r["snr_bin"] == snr_bin)]  # fmt: skip
            if not hit:
                out.append(self.state(rows))
                continue
            row = hit[0]
            mean, sd, n = float(row["mean"]), stats.number(row["std"]), stats.count(row["folds"])
            out.append(stats.cell(mean, sd, n, self.digits))
        return out

    def state(self, rows: list[dict]) -> str:
        states = {r["status"] for r in rows if r["condition"] == self.name}
        return next((s for s in ("failed", "missing", "unsupported") if s in states), "-")

    def figures(self, group: Sequence[Condition], rows: list[dict], models: Sequence[str], out: Path) -> list[str]:  # fmt: skip
        return [name for c in group if isinstance(c, SpatialCondition)
                for name in c.figure(rows, out)]  # fmt: skip

    def figure(self, rows: list[dict], out: Path) -> list[str]:
        """This condition's own figure (default: none)."""
        return []


def _source(row: dict) -> str:
    return row["unit"].rsplit("-", 1)[0]


def _split_name(test: object) -> str:
    """A test split's name as heareval names it (`task_predictions`: its folds joined by '|')."""
    return test if isinstance(test, str) else "|".join(map(str, test))  # type: ignore[call-overload]


def _runs(rows: list[dict], condition: str) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """The condition's aggregate ok rows, and the (model, format, source) of its failed units."""
    ok = [r for r in aggregate(rows) if r["condition"] == condition and r["status"] == "ok"]
    failed = sorted({(r["model"], r["format"], _source(r)) for r in rows
                     if r["condition"] == condition and r["status"] == "failed"})  # fmt: skip
    return ok, failed


def error_vs_bins(rows: list[dict], condition: str, bins: Sequence[tuple[str, str]], ylabel: str) -> Any:  # fmt: skip
    """One line per (model, format, source) that ran: the condition's error per bin with sd
    error bars; a failed one listed in the legend with a red 'x'. None when nothing ran."""
    from hear_gram.plotting import FAILED_COLOR, legend_outside, subplots

    ok, failed = _runs(rows, condition)
    if not ok and not failed:
        return None
    fig, ax = subplots(figsize=(7.5, 4))
    xs = range(len(bins))
    for key in sorted({(r["model"], r["format"], _source(r)) for r in ok}):
        by_bin = {r["snr_bin"]: r for r in ok if (r["model"], r["format"], _source(r)) == key}
        ys = [float(by_bin[b]["mean"]) if b in by_bin else math.nan for b, _ in bins]
        sds = [
            (stats.number(by_bin[b]["std"]) or 0.0) if b in by_bin else math.nan for b, _ in bins
        ]
        ax.errorbar(xs, ys, yerr=sds, fmt="o-", capsize=3, label=" / ".join(key))
    for key in failed:
        ax.plot([], [], marker="x", color=FAILED_COLOR, linestyle="none",
                label=" / ".join(key) + ": failed")  # fmt: skip
    ax.set_xticks(xs, [label for _, label in bins])
    ax.set_xlabel("SNR bin")
    ax.set_ylabel(f"{ylabel} (± sd)")
    legend_outside(ax)
    return fig


def error_bars(rows: list[dict], condition: str, ylabel: str) -> Any:
    """One bar per (model, format, source) that ran, sd error bars, coloured by format; a failed
    one a red 'x' labelled failed. None when nothing ran."""
    from hear_gram.plotting import legend_outside, mark_failed, subplots

    ok, failed = _runs(rows, condition)
    keys = sorted({(r["model"], r["format"], _source(r)) for r in ok} | set(failed))
    if not keys:
        return None
    fig, ax = subplots(figsize=(max(5.0, 0.8 * len(keys)) + 1.5, 4))
    colors = {fmt: f"C{i}" for i, fmt in enumerate(SPATIAL_FORMATS)}
    for x, key in enumerate(keys):
        hit = [r for r in ok if (r["model"], r["format"], _source(r)) == key]
        if not hit:
            mark_failed(ax, x)
            continue
        sd = stats.number(hit[0]["std"]) or 0.0
        label = key[1] if key[1] not in ax.get_legend_handles_labels()[1] else None
        ax.bar([x], [float(hit[0]["mean"])], 0.6, yerr=[sd], capsize=3, color=colors.get(key[1]),
               label=label)  # fmt: skip
    ax.set_xticks(range(len(keys)), [f"{m}\n{source}" for m, _, source in keys], fontsize=7)
    ax.set_ylabel(f"{ylabel} (± sd)")
    legend_outside(ax, title="format")
    return fig
