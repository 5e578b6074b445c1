"""Per-source spatial conditions: tasks built by `localization_tasks.generate` from a HEAR scene
task (arXiv 2506.00934, scene simulation), in both spatial formats, scored by `python -m
localization_tasks.evaluate`.

One unit per source task and format (`<source>-<format>`). Its tasks are built once per source
content, condition (its kind of task: direction or T60), format and sample rate (the model's
when the source has it, else the source's highest, which the evaluator resamples;
`hear_gram.suite.build`), so that only what the run's units read is rendered; or taken
ready-made from `--localization-dir`.
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
        rates = build.source_rates(child(settings.tasks_dir, unit.source, "task"))
        if not rates:  # nothing to render from: its run says so
            return []
        rate = build.pick_rate(build.model_rate(resolved, settings), rates)
        params = {**self.params(unit, settings), "sample_rate": rate}
        args = ["--format", unit.fmt, "--target", self.target, "--sample-rate", str(rate)]
        label = f"{self.name} {unit.source} {unit.fmt} {rate} Hz"
        return [build.make(self.name, unit.source, settings, GENERATOR, params, args, label,
                           tags=(unit.fmt, str(rate)))]  # fmt: skip

    def tasks_root(self, unit: Unit, resolved: Resolved, settings: Settings, log_file: Path) -> Path:  # fmt: skip
        given = settings.folder(GIVEN.dest)
        if given is not None:
            return given
        needed = self.builds(unit, resolved, settings)
        if not needed:
            raise UnitError(f"source task {unit.source} has no sample-rate folder of audio")
        return build.run_build(needed[0], settings, log_file)

    def run(self, unit: Unit, resolved: Resolved, settings: Settings, folder: Path) -> list[dict]:
        from localization_tasks.evaluate import module_tag

        log_file = folder / "unit.log"
        root = self.tasks_root(unit, resolved, settings, log_file)
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
        return next((s for s in ("failed", "missing") if s in states), "-")

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
