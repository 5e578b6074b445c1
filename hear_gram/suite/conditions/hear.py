"""HEAR-style conditions: heareval's embeddings runner and probes on HEAR-format tasks, scored
as HEAR 2021 does (primary metric: the first of the task's `evaluation` list).

A unit runs the project's command-line tools as subprocesses, exactly as a user would: `python
-m hear_gram.embed` (heareval's embeddings runner, in a folder per weights sha256) on one task,
then `python -m hear_gram.predict` on its embeddings, and the scores read back with
`hear_gram.scores`. A task that lacks the module's sample rate (read from its probe record,
`hear_gram.suite.probe`) is resampled once into a build folder under OUT first
(`hear_gram.suite.rates`): heareval's runner reads only the folder at the module's rate. Models
whose module is `chance` or `majority` are scored from the labels alone
(`hear_gram.suite.hear_baselines`). The conditions of the `hear` group share REPORT.md's HEAR / Nat-HEAR table
(tasks x model and condition, primary metric x 100), its averages and the drop from a
condition's `reference` (dry), and the figure dry_vs_naturalistic.png.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hear_gram.safeio import child, subdir
from hear_gram.suite import condition as conditions
from hear_gram.suite.condition import Condition, Unit, UnitError, run_logged
from hear_gram.suite.hear_baselines import BASELINES

if TYPE_CHECKING:
    from hear_gram.suite.config import Resolved, Settings


def hear_tasks(settings: Settings, names: Sequence[str] = ()) -> list[str]:
    """The HEAR task folders to run on: `names`, or `--task`, or every task under tasks_dir."""
    root = settings.tasks_dir
    names = tuple(names) or settings.tasks
    if names:
        for name in names:
            if not (child(root, name, "task") / "task_metadata.json").is_file():
                raise FileNotFoundError(f"task {name!r} has no task_metadata.json under {root}")
        return list(names)
    if not root.is_dir():
        raise FileNotFoundError(f"tasks directory {root} does not exist")
    return sorted(p.name for p in root.iterdir() if (p / "task_metadata.json").is_file())


class HearCondition(Condition):
    """A condition scored with heareval on HEAR-format tasks, one unit per task."""

    group = "hear"
    title = "HEAR and Nat-HEAR"
    hear_module = True
    baselines = BASELINES
    reference = ""  # the condition this one's drop is measured from ("" = none)
    label = ""  # its name in the averages table, e.g. "HEAR", "Nat-HEAR binaural"

    def task_names(self, settings: Settings) -> list[str]:
        return hear_tasks(settings)

    def plan(self, settings: Settings) -> list[tuple[str, str, str]]:
        return [(task, self.formats[0], "") for task in self.task_names(settings)]

    def tasks_root(self, unit: Unit, settings: Settings, log_file: Path) -> Path:
        """The folder holding the unit's task (built first when it is made by a build step)."""
        return settings.tasks_dir

    def run(self, unit: Unit, resolved: Resolved, settings: Settings, folder: Path) -> list[dict]:
        from hear_gram.embed import heareval_folder, weights_key
        from hear_gram.scores import collect_scores
        from hear_gram.suite import hear_baselines, probe, rates

        log_file = folder / "unit.log"
        root = self.tasks_root(unit, settings, log_file)
        if not (child(root, unit.task, "task") / "task_metadata.json").is_file():
            raise UnitError(f"no task {unit.task} under {root}")
        if resolved.module in BASELINES:
            if resolved.options or resolved.weights is not None:
                raise UnitError(f"{resolved.module} takes no weights and no options")
            return hear_baselines.rows(child(root, unit.task, "task"), resolved.module, unit.fmt)
        root = rates.ensure_rate(root, unit.task, probe.sample_rate(resolved, settings), settings,
                                 log_file)  # fmt: skip
        # One embeddings folder per task content: hear_gram.embed refuses a task whose files
        # changed since it was embedded, so a changed task gets a fresh folder.
        content = self.task_key(unit, settings)[:12]
        base = subdir(settings.work, "embeddings", unit.condition, unit.task, f"t-{content}")
        py = sys.executable
        cmd = [py, "-m", "hear_gram.embed", resolved.module, "--tasks-dir", str(root),
               "--task", unit.task, "--out", str(base),
               "--model-options", resolved.options_json()]  # fmt: skip
        if resolved.weights is not None:
            cmd += ["--weights", str(resolved.weights)]
        run_logged(cmd, log_file, "hear_gram.embed")
        key, _ = weights_key(resolved.weights)
        # heareval names the folder from the options in the order the JSON it is given lists them
        # (sorted by options_json), not in the models file's order
        options = json.loads(resolved.options_json())
        emb = base / key / heareval_folder(resolved.module, options) / unit.task
        run_logged([py, "-m", "hear_gram.predict", str(emb), "--grid", settings.grid,
                    "--grid-points", str(settings.grid_points)], log_file, "hear_gram.predict")  # fmt: skip
        rows = collect_scores(emb)
        if not rows:
            raise UnitError(f"hear_gram.predict left no scores in {emb}")
        return [
            {"task": r["task"], "format": unit.fmt, "snr_bin": "", "metric": r["metric"],
             "mean": r["mean"], "std": r["std"], "folds": r["n_folds"], "better": r["better"]}
            for r in rows
        ]  # fmt: skip

    # ---------------------------------------------------------------- REPORT.md

    def section(self, group: Sequence[Condition], rows: list[dict], models: Sequence[str]) -> list[str]:  # fmt: skip
        names = [c.name for c in group]
        scores = primary_scores(rows, names)
        failed = {(r["model"], r["condition"], r["unit"]): r["status"] for r in rows
                  if r["status"] != "ok"}  # fmt: skip
        present = [c for c in group if isinstance(c, HearCondition)
                   and any(r["condition"] == c.name for r in rows)]  # fmt: skip
        tasks = sorted({r["unit"] for r in rows if r["condition"] in names})
        if not tasks:
            return []
        columns = [(m, c.name) for m in models for c in present
                   if any(r["model"] == m and r["condition"] == c.name for r in rows)]  # fmt: skip
        out = ["## HEAR and Nat-HEAR (primary metric x 100; dry = HEAR, nat-* = Nat-HEAR)", ""]
        out.append("| task | " + " | ".join(f"{m} {c}" for m, c in columns) + " |")
        out.append("|---|" + "---:|" * len(columns))
        for task in tasks:
            cells = []
            for m, c in columns:
                value = scores.get((m, c, task))
                cells.append(_fmt(value) if value is not None else failed.get((m, c, task), "-"))
            out.append(f"| {task} | " + " | ".join(cells) + " |")
        out += ["", "## Averages", ""]
        # A reference (dry) keeps its column when only the conditions measured from it ran.
        registered = [c for c in map(conditions.get, conditions.names())
                      if isinstance(c, HearCondition)]  # fmt: skip
        wanted = {c.name for c in present} | {c.reference for c in present if c.reference}
        averaged = [c for c in registered if c.name in wanted]
        head = ["model"]
        for c in averaged:
            label = c.label or c.name
            head.append(f"{label} avg (tasks)")
            if c.reference:
                head.append(f"drop {c.reference} -> {label.split()[-1]} (paired tasks)")
        out.append("| " + " | ".join(head) + " |")
        out.append("|---|" + "---:|" * (len(head) - 1))
        for m in models:
            if not any(m == mm for mm, _ in columns):
                continue
            cells = [m]
            for c in averaged:
                mine = {t: s for (mm, cc, t), s in scores.items() if mm == m and cc == c.name}
                cells.append(_avg(mine.values()))
                reference = c.reference
                if reference:
                    ref = {t: s for (mm, cc, t), s in scores.items()
                           if mm == m and cc == reference}  # fmt: skip
                    cells.append(_avg([ref[t] - mine[t] for t in sorted(set(ref) & set(mine))]))
            out.append("| " + " | ".join(cells) + " |")
        refs = " / ".join(dict.fromkeys(c.reference for c in registered if c.reference))
        out += ["", "drop = mean over the tasks scored in both conditions of "
                f"({refs or 'reference'} - naturalistic) x 100.", ""]  # fmt: skip
        return out

    def figures(self, group: Sequence[Condition], rows: list[dict], models: Sequence[str], out: Path) -> list[str]:  # fmt: skip
        from hear_gram.plotting import save, subplots

        names = [c.name for c in group]
        scores = primary_scores(rows, names)
        with_scores = [m for m in models if any(k[0] == m for k in scores)]
        if not with_scores:
            return []
        tasks = sorted({k[2] for k in scores})
        fig, axes = subplots(len(with_scores), 1, figsize=(max(6, 1.6 * len(tasks)), 3 * len(with_scores)), squeeze=False)  # fmt: skip
        width = 0.8 / len(names)
        for ax, m in zip(axes[:, 0], with_scores, strict=True):
            for i, c in enumerate(names):
                xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(tasks))]
                ys = [100 * scores.get((m, c, t), math.nan) for t in tasks]
                ax.bar(xs, ys, width, label=c)
            ax.set_xticks(range(len(tasks)), tasks, fontsize=7)
            ax.set_ylabel("score x 100")
            ax.set_title(f"{m}: dry vs naturalistic")
            ax.legend(fontsize=7)
        save(fig, out / "dry_vs_naturalistic.png", dpi=110)
        return ["dry_vs_naturalistic.png"]


def primary_scores(rows: list[dict], conditions: Sequence[str]) -> dict[tuple[str, str, str], float]:  # fmt: skip
    """(model, condition, task) -> primary metric (the first row of the task, heareval's order)."""
    out: dict[tuple[str, str, str], float] = {}
    for r in rows:
        key = (r["model"], r["condition"], r["unit"])
        if r["status"] == "ok" and r["condition"] in conditions and key not in out:
            out[key] = float(r["mean"])
    return out


def _fmt(value: float) -> str:
    return f"{value * 100:.1f}"


def _avg(values) -> str:
    values = list(values)
    return f"{100 * statistics.fmean(values):.1f} ({len(values)})" if values else "-"
