"""HEAR-style conditions: heareval's embeddings runner and probes on HEAR-format tasks, scored
as HEAR 2021 does (primary metric: the first of the task's `evaluation` list).

A unit runs the project's command-line tools as subprocesses, exactly as a user would: `python
-m hear_gram.embed` (heareval's embeddings runner, in a folder per weights sha256) on one task,
then `python -m hear_gram.predict` on its embeddings, and the scores read back with
`hear_gram.scores`: per metric the mean and sd over the test folds, then one row per test fold
(`fold_rows`). A task that lacks the module's sample rate (read from its probe record,
`hear_gram.suite.probe`) is resampled once into a build folder under OUT first
(`hear_gram.suite.rates`): heareval's runner reads only the folder at the module's rate. Models
whose module is `chance` or `majority` are scored from the labels alone
(`hear_gram.suite.hear_baselines`). heareval seeds every probe with 42 and has no option for
it; `--seeds N` runs `hear_gram.predict` N times on the unit's embeddings, seed k with `--seed
42 + k` (that one seeding call seeds with 42 + k, nothing else changes: k = 0 is heareval's own
run), keeping each seed's scores as `test.predicted-scores.seed{S}.json`; the unit's rows are
then per metric the mean over seeds x folds with its sd (n = seeds x folds) and one row per seed
and test fold. The conditions of the `hear` group share
REPORT.md's HEAR / Nat-HEAR table (tasks x model and condition, primary metric x 100, mean ± sd
over folds), its averages and the drop from a condition's `reference` (dry), each marked where it
is noise by a paired t-test over tasks, and the figure dry_vs_naturalistic.png (sd error bars).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hear_gram.safeio import child, subdir
from hear_gram.suite import condition as conditions
from hear_gram.suite import stats
from hear_gram.suite.condition import SEEDS, Condition, Unit, UnitError, aggregate, run_logged
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
    steps = ("hear_gram.embed", "hear_gram.predict")
    reference = ""  # the condition this one's drop is measured from ("" = none)
    label = ""  # its name in the averages table, e.g. "HEAR", "Nat-HEAR binaural"

    options = (SEEDS,)

    def task_names(self, settings: Settings) -> list[str]:
        return hear_tasks(settings)

    def grid(self, settings: Settings) -> Any:
        n = SEEDS.value(settings.extra)
        # One seed keeps the key units had before --seeds reached heareval: they stay done.
        return [settings.grid, settings.grid_points] + ([n] if n > 1 else [])

    def seeds(self, settings: Settings) -> list[int]:
        """`hear_gram.predict --seed` of each of the unit's `--seeds` runs: heareval's 42, 43, ..."""
        from hear_gram.predict import HEAREVAL_SEED

        return [HEAREVAL_SEED + k for k in range(SEEDS.value(settings.extra))]

    def plan(self, settings: Settings) -> list[tuple[str, str, str]]:
        return [(task, self.formats[0], "") for task in self.task_names(settings)]

    def tasks_root(self, unit: Unit, resolved: Resolved, settings: Settings, log_file: Path) -> Path:  # fmt: skip
        """The folder holding the unit's task for model ``resolved`` (built first when it is
        made by a build step)."""
        return settings.tasks_dir

    def run(self, unit: Unit, resolved: Resolved, settings: Settings, folder: Path) -> list[dict]:
        from hear_gram.embed import heareval_folder, weights_key
        from hear_gram.scores import collect_scores
        from hear_gram.suite import hear_baselines, probe, rates

        log_file = folder / "unit.log"
        root = self.tasks_root(unit, resolved, settings, log_file)
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
        predict = [py, "-m", "hear_gram.predict", str(emb), "--grid", settings.grid,
                   "--grid-points", str(settings.grid_points)]  # fmt: skip
        seeds = self.seeds(settings)
        if len(seeds) > 1:
            rows = seeded_rows(emb, seeds, predict, unit.fmt, log_file)
            drop_per_clip_embeddings(emb)
            return rows
        run_logged(predict, log_file, "hear_gram.predict")  # heareval's own run: seed 42
        rows = collect_scores(emb)
        if not rows:
            raise UnitError(f"hear_gram.predict left no scores in {emb}")
        drop_per_clip_embeddings(emb)
        return [
            {"task": r["task"], "format": unit.fmt, "snr_bin": "", "metric": r["metric"],
             "mean": r["mean"], "std": r["std"], "folds": r["n_folds"], "better": r["better"]}
            for r in rows
        ] + fold_rows(emb, unit.fmt)  # fmt: skip

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
        out = ["## HEAR and Nat-HEAR (primary metric x 100; dry = HEAR, nat-* = Nat-HEAR)", "",
               "Each cell: mean ± sd over the task's test folds (n = folds: heareval trains one "
               "probe per test fold of a k-fold task, one for a train/valid/test task), or over "
               "seeds x folds with `--seeds N`: heareval seeds every probe with 42 "
               "(`seed_everything(42)` in `heareval.predictions.task_predictions`, no option); "
               "seed k of `--seeds` makes that call seed with 42 + k (`hear_gram.predict --seed`), "
               "so k = 0 is heareval's own run.", "",
               "| task | " + " | ".join(f"{m} {c}" for m, c in columns) + " |",
               "|---|" + "---:|" * len(columns)]  # fmt: skip
        for task in tasks:
            cells = []
            for m, c in columns:
                row = scores.get((m, c, task))
                cells.append(_cell(row) if row is not None else failed.get((m, c, task), "-"))
            out.append(f"| {task} | " + " | ".join(cells) + " |")
        return out + self.averages(present, scores, [m for m in models if any(m == mm for mm, _ in columns)])  # fmt: skip

    def averages(self, present: Sequence[Condition], scores: dict, models: Sequence[str]) -> list[str]:  # fmt: skip
        """The averages table: per model and condition the mean over tasks, and the drop from the
        condition's reference; differences that are noise marked (`_mark`)."""
        # A reference (dry) keeps its column when only the conditions measured from it ran.
        registered = [c for c in map(conditions.get, conditions.names())
                      if isinstance(c, HearCondition)]  # fmt: skip
        wanted = {c.name for c in present} | {c.reference for c in present if c.reference}
        averaged = [c for c in registered if c.name in wanted]
        value = {k: float(r["mean"]) for k, r in scores.items()}
        per = {(m, c.name): {t: v for (mm, cc, t), v in value.items() if mm == m and cc == c.name}
               for m in models for c in averaged}  # fmt: skip
        head, columns = ["model"], []
        for c in averaged:
            label = c.label or c.name
            head.append(f"{label} avg")
            columns.append(("avg", c))
            if c.reference:
                head.append(f"drop {c.reference} -> {label.split()[-1]}")
                columns.append(("drop", c))
        out = ["", "## Averages", "", "| " + " | ".join(head) + " |",
               "|---|" + "---:|" * (len(head) - 1)]  # fmt: skip
        for m in models:
            cells = [m]
            for kind, c in columns:
                mine = per[(m, c.name)]
                if kind == "avg":
                    cells.append(_average(m, c.name, per))
                else:
                    ref = per.get((m, c.reference), {})
                    both = sorted(set(ref) & set(mine))
                    test = stats.paired([ref[t] for t in both], [mine[t] for t in both])
                    diffs = [ref[t] - mine[t] for t in both]
                    cells.append(_summary(diffs) + _mark(test))
            out.append("| " + " | ".join(cells) + " |")
        refs = " / ".join(dict.fromkeys(c.reference for c in registered if c.reference))
        out += ["", "avg: mean ± sd over tasks (n = tasks); drop: the same of "
                f"({refs or 'reference'} - naturalistic) x 100 over the tasks scored in both. "
                f"≈: the difference is noise (p >= {stats.ALPHA}) by a {stats.TEST} over the "
                "tasks both scored: an avg's from the column's best model's, a drop's from zero; "
                f"'n too small': fewer than {stats.MIN_N} such tasks, not tested.", ""]  # fmt: skip
        return out

    def figures(self, group: Sequence[Condition], rows: list[dict], models: Sequence[str], out: Path) -> list[str]:  # fmt: skip
        from hear_gram.plotting import save

        fig = hear_figure(rows, [c.name for c in group], models)
        if fig is None:
            return []
        save(fig, out / "dry_vs_naturalistic.png", dpi=110)
        return ["dry_vs_naturalistic.png"]


def seeded_rows(emb: Path, seeds: Sequence[int], predict: list[str], fmt: str,
                log_file: Path) -> list[dict]:  # fmt: skip
    """`predict` (a `hear_gram.predict` command on `emb`) once per seed, each seed's scores kept
    as `test.predicted-scores.seed{S}.json` (a rerun skips the seeds kept); the rows: per metric
    the mean and sd over seeds x test folds (n = seeds x folds), then one row per seed and fold."""
    from hear_gram import scores

    folds: list[dict] = []
    for seed in seeds:
        kept = emb / f"test.predicted-scores.seed{seed}.json"
        if not (kept.is_file() and not kept.is_symlink()):
            # heareval's own outputs of an earlier seed, or of a run that stopped: never this
            # seed's (hear_gram.predict skips a task with prediction-done.json)
            for name in ("prediction-done.json", scores.SCORES_FILE):
                path = emb / name
                if path.is_symlink() or path.is_file():
                    path.unlink()
            run_logged([*predict, "--seed", str(seed)], log_file, "hear_gram.predict")
            if not (emb / scores.SCORES_FILE).is_file():
                raise UnitError(f"hear_gram.predict --seed {seed} left no scores in {emb}")
            (emb / scores.SCORES_FILE).replace(kept)
        folds += fold_rows(emb, fmt, kept, seed)
    rows = []
    for metric in dict.fromkeys(r["metric"] for r in folds):
        values = [float(r["mean"]) for r in folds if r["metric"] == metric]
        first = next(r for r in folds if r["metric"] == metric)
        rows.append({"task": first["task"], "format": fmt, "snr_bin": "", "metric": metric,
                     "mean": statistics.fmean(values),
                     "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "folds": len(values), "better": first["better"]})  # fmt: skip
    return rows + folds


def fold_rows(task_dir: Path, fmt: str, path: Path | None = None, seed: int | str = "") -> list[dict]:  # fmt: skip
    """One row per test fold and metric of heareval's `test.predicted-scores.json` in
    `task_dir` (or `path`, one seed's copy; per-fold rows, `hear_gram.suite.condition.ROW_KEYS`),
    read by the checks of `hear_gram.scores`. heareval 2021.1.3's `task_predictions` keys each
    entry by its test split ("fold00", ...; "test" for a train/valid/test task) and seeds every
    probe with 42: a row's seed is left empty for that run, or is `seed` (`--seeds`)."""
    from hear_gram import scores

    path = task_dir / scores.SCORES_FILE if path is None else path
    name, metrics = scores._metadata(task_dir / "task_metadata.json")
    folds = scores._fold_entries(scores._read_json(path))
    return [
        {"task": name if name is not None else task_dir.name, "format": fmt, "snr_bin": "",
         "metric": metric, "fold": fold, "seed": seed,
         "mean": scores._number(folds[fold].get(f"test_{metric}"), path, f"{fold}.test_{metric}"),
         "std": "", "folds": 1,
         "better": "lower" if metric in scores.LOWER_IS_BETTER else "higher"}
        for metric in metrics for fold in sorted(folds)
    ]  # fmt: skip


def primary_scores(rows: list[dict], conditions: Sequence[str]) -> dict[tuple[str, str, str], dict]:  # fmt: skip
    """(model, condition, task) -> the aggregate row of its primary metric (the first aggregate
    row of the task, heareval's order)."""
    out: dict[tuple[str, str, str], dict] = {}
    for r in aggregate(rows):
        key = (r["model"], r["condition"], r["unit"])
        if r["status"] == "ok" and r["condition"] in conditions and key not in out:
            out[key] = r
    return out


def hear_figure(rows: list[dict], names: Sequence[str], models: Sequence[str]) -> Any:
    """Per model that ran, a panel of bars (primary metric x 100, sd error bars) per task and
    condition, y axes shared; a failed unit an 'x' labelled failed; legend outside the panels.
    None when nothing ran."""
    from hear_gram.plotting import legend_outside, mark_failed, subplots

    scores = primary_scores(rows, names)
    ran = [r for r in rows if r["condition"] in names and r["status"] in ("ok", "failed")]
    shown = [m for m in models if any(r["model"] == m for r in ran)]
    if not shown:
        return None
    tasks = sorted({r["unit"] for r in ran})
    conds = [c for c in names if any(r["condition"] == c for r in ran)]
    failed = {(r["model"], r["condition"], r["unit"]) for r in ran if r["status"] == "failed"}
    fig, axes = subplots(len(shown), 1, figsize=(max(6, 1.6 * len(tasks)) + 1.5, 3 * len(shown)),
                         squeeze=False, sharey=True)  # fmt: skip
    width = 0.8 / len(conds)
    for ax, m in zip(axes[:, 0], shown, strict=True):
        for i, c in enumerate(conds):
            xs = [j + (i - (len(conds) - 1) / 2) * width for j in range(len(tasks))]
            got = [scores.get((m, c, t)) for t in tasks]
            if any(got):  # a condition the model has no score in gets no bars, no legend entry
                ys = [100 * float(r["mean"]) if r else math.nan for r in got]
                sds = [100 * (stats.number(r["std"]) or 0.0) if r else math.nan for r in got]
                ax.bar(xs, ys, width, yerr=sds, capsize=2, label=c, color=f"C{i}")
            for x, t in zip(xs, tasks, strict=True):
                if (m, c, t) in failed:
                    mark_failed(ax, x)
        ax.set_xticks(range(len(tasks)), tasks, fontsize=7)
        ax.set_xlim(-0.5, len(tasks) - 0.5)  # the same task slots in every panel
        ax.set_ylabel("score x 100 (± sd)")
        ax.set_title(f"{m}: dry vs naturalistic")
        legend_outside(ax)
    return fig


def _cell(row: dict) -> str:
    mean = float(row["mean"])
    return stats.cell(mean, stats.number(row.get("std")), stats.count(row.get("folds")), 1, 100)


def _summary(values: Sequence[float]) -> str:
    """mean ± sd (n=N) of scores x 100, '-' for none."""
    if not values:
        return "-"
    mean, sd = stats.mean_sd(values)
    return stats.cell(mean, sd, len(values), 1, 100)


def _mark(test: stats.Paired) -> str:
    if test.n == 0:
        return ""
    return " (n too small)" if not test.tested else (" ≈" if test.noise else "")


def _average(model: str, condition: str, per: dict[tuple[str, str], dict[str, float]]) -> str:
    """A model's average cell in one condition, marked against the column's best model (the
    highest average; the first listed on a tie) on the tasks both scored."""
    mine = per[(model, condition)]
    if not mine:
        return "-"
    means = {m: statistics.fmean(v.values()) for (m, c), v in per.items() if c == condition and v}
    best = max(means, key=means.__getitem__)  # dicts keep the models' order: the first wins a tie
    if best == model:
        return _summary(list(mine.values()))
    theirs = per[(best, condition)]
    both = sorted(set(mine) & set(theirs))
    test = stats.paired([mine[t] for t in both], [theirs[t] for t in both])
    return _summary(list(mine.values())) + _mark(test)


def drop_per_clip_embeddings(emb: Path) -> None:
    """Delete heareval's per-clip copies of a scored task's embeddings.

    heareval's embeddings runner writes each clip's embedding twice: ``<split>/<file>.embedding.npy``,
    then all of a split in ``<split>.embeddings.npy``, the only copy its predictions read
    (`heareval/embeddings/task_embeddings.py`, `heareval/predictions/task_predictions.py`). Once
    the unit's scores are in, the per-clip copies go, in a split whose combined file is there;
    the per-clip labels and timestamps JSON stay. Only regular files inside the suite's own
    embeddings folder are removed, never through a link."""
    for split in sorted(emb.iterdir()):
        if split.is_symlink() or not split.is_dir():
            continue
        combined = emb / f"{split.name}.embeddings.npy"
        if combined.is_symlink() or not combined.is_file():
            continue
        for f in split.glob("*.embedding.npy"):
            if f.is_file() and not f.is_symlink():
                f.unlink()
