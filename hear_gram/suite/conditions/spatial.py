"""Per-source spatial conditions: tasks built by `localization_tasks.generate` from a HEAR scene
task (arXiv 2506.00934, scene simulation), in both spatial formats, scored by `python -m
localization_tasks.evaluate`.

One unit per source task and format (`<source>-<format>`). The tasks are built once per source
(`hear_gram.suite.build`, shared by every condition of this module: one generate run makes the
direction and the T60 tasks of both formats), or taken ready-made from `--localization-dir`.
Sources: `--localization-source`, else those found in `--localization-dir`, else the paper's two
when present under the tasks folder. The conditions of the `spatial` group share one REPORT.md
table: per model, format and source, each condition's columns (`columns`).
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hear_gram.cache import task_digest
from hear_gram.safeio import child
from hear_gram.suite import build
from hear_gram.suite.condition import (
    SPATIAL_FORMATS,
    Condition,
    Option,
    Unit,
    UnitError,
    read_json,
    run_logged,
)

if TYPE_CHECKING:
    from hear_gram.suite.config import Resolved, Settings

PAPER_SOURCES = ("esc50-v2.0.0-full", "speech_commands-v0.0.2-5h")
GENERATOR = ("localization_tasks.generate", "naturalistic_hear")
KIND = "localization"  # the build folder of both conditions
SOURCE = Option("--localization-source", "names", "source scene task of the localization and T60 tasks")  # fmt: skip
GIVEN = Option("--localization-dir", "dir", "ready-made localization/T60 tasks")


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
    options = (SOURCE, GIVEN)
    hear_module = True
    baselines = ("chance",)  # localization_tasks.evaluate --module chance
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
        return [settings.localization_grid, settings.seed]

    def _names(self, root: Path, unit: Unit) -> list[str]:
        return [
            name
            for name, meta in spatial_tasks(root)
            if meta["localization"].get("source_task") == unit.source
            and meta["localization"].get("format") == unit.fmt
            and meta["localization"].get("target") == self.target
        ]

    def task_key(self, unit: Unit, settings: Settings) -> str:
        given = settings.folder(GIVEN.dest)
        if given is None:
            return build.build_key(KIND, unit.source, settings, GENERATOR)
        names = self._names(given, unit)
        return build.digest([[n, task_digest(child(given, n, "task"))] for n in names])

    def tasks_root(self, unit: Unit, settings: Settings, log_file: Path) -> Path:
        given = settings.folder(GIVEN.dest)
        if given is not None:
            return given
        args = ["--format", *SPATIAL_FORMATS]
        return build.ensure_built(KIND, unit.source, settings, GENERATOR, args, log_file)

    def run(self, unit: Unit, resolved: Resolved, settings: Settings, folder: Path) -> list[dict]:
        from localization_tasks.evaluate import module_tag

        log_file = folder / "unit.log"
        root = self.tasks_root(unit, settings, log_file)
        names = self._names(root, unit)
        if not names:
            raise UnitError(f"no {self.target} tasks of {unit.source} ({unit.fmt}) under {root}")
        out = folder / "evaluate"
        cmd = [sys.executable, "-m", "localization_tasks.evaluate", "--module", resolved.module,
               "--model-options", resolved.options_json(), "--tasks-dir", str(root),
               "--out", str(out), "--grid", settings.localization_grid,
               "--seed", str(settings.seed), "--quiet"]  # fmt: skip
        if resolved.weights is not None:
            cmd += ["--weights", str(resolved.weights)]
        for name in names:
            cmd += ["--task", name]
        run_logged(cmd, log_file, "localization_tasks.evaluate")
        tag = module_tag(resolved.module, str(resolved.weights or ""), resolved.options)
        results = read_json(out / tag / "results.json")
        if results is None:
            raise UnitError(f"localization_tasks.evaluate left no results.json in {out / tag}")
        rows = []
        for e in results.get("tasks", []):
            per_fold = [float(f[self.metric]) for f in e.get("folds", []) if self.metric in f]
            rows.append(
                {
                    "task": e["task"],
                    "format": unit.fmt,
                    "snr_bin": e.get("snr_bin", ""),
                    "metric": self.metric,
                    "mean": float(e[self.metric]),
                    "std": statistics.stdev(per_fold) if len(per_fold) > 1 else 0.0,
                    "folds": len(per_fold),
                    "better": self.better,
                }  # fmt: skip
            )
        return rows

    # ---------------------------------------------------------------- REPORT.md

    def section(self, group: Sequence[Condition], rows: list[dict], models: Sequence[str]) -> list[str]:  # fmt: skip
        group = [c for c in group if isinstance(c, SpatialCondition)]
        names = {c.name for c in group}
        mine = [r for r in rows if r["condition"] in names]
        if not mine:
            return []
        heads = [h for c in group for h, _ in c.columns]
        out = [f"## {' and '.join(c.title for c in group)}", "",
               "; ".join(c.caption for c in group) + ".", "",
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
            out.append(f"{float(hit[0]['mean']):.{self.digits}f}" if hit else self.state(rows))
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


def plot_vs_bins(rows: list[dict], condition: str, bins: Sequence[tuple[str, str]], ylabel: str, path: Path) -> bool:  # fmt: skip
    """One line per (model, format, source): the condition's error per bin. False: no data."""
    from hear_gram.plotting import save, subplots

    ok = [r for r in rows if r["condition"] == condition and r["status"] == "ok"]
    if not ok:
        return False
    fig, ax = subplots(figsize=(6, 4))
    for key in sorted({(r["model"], r["format"], _source(r)) for r in ok}):
        by_bin = {r["snr_bin"]: float(r["mean"]) for r in ok
                  if (r["model"], r["format"], _source(r)) == key}  # fmt: skip
        ax.plot(range(len(bins)), [by_bin.get(b, math.nan) for b, _ in bins], "o-",
                label=" / ".join(key))  # fmt: skip
    ax.set_xticks(range(len(bins)), [label for _, label in bins])
    ax.set_xlabel("SNR bin")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    save(fig, path, dpi=110)
    return True
