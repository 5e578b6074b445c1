"""`seld-ambisonic` and `seld-binaural`: sound event localization and detection on SELD tasks,
first-order Ambisonic or binaural, scored with the DCASE Task 3 metrics by `python -m
localization_tasks.seld.evaluate` (a BiGRU head trained on the module's timestamp embeddings,
as SELD with GRAM, arXiv 2602.03307).

One unit per task and format. Its task is
- built: a synthetic SELD task whose event sounds are those of a HEAR scene/event task
  (`--seld-source`; default: ESC-50 when it is under the tasks folder), made by `python -m
  localization_tasks.seld.synth --sources` once per source content, format, seed, clip count and
  generator code (`hear_gram.suite.build`), unit `<source>-<format>`; or
- given: a SELD task under `--seld-dir` in the condition's format (its metadata's `seld.audio`:
  `foa` for seld-ambisonic, `binaural` or `stereo` (the DCASE 2025 set) for seld-binaural),
  such as a DCASE dataset converted by `localization_tasks.seld.convert` or a task of
  `seld.synth`; unit = its folder name.

A model whose module is one of the evaluator's rows (`BASELINES`: crnn, zero, chance, and
`reference`, the classical reference of the format) runs that row instead of a HEAR module; every
trained row runs over `--seld-seeds` seeds (3), and the table shows mean ± sd over them (the
evaluator's `--metrics auto`: DCASE 2024 on FOA tasks with distances, 2025 stereo on binaural). Both conditions are opt-in (`default = False`: each unit trains a
model for minutes), and share REPORT.md's SELD table: per model, format and task, one column
per metric of `METRICS`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hear_gram.cache import code_fingerprint, task_digest
from hear_gram.safeio import child
from hear_gram.suite import build, stats
from hear_gram.suite.condition import (
    Condition,
    Option,
    Unit,
    UnitError,
    read_json,
    register,
    run_logged,
)

if TYPE_CHECKING:
    from hear_gram.suite.config import Resolved, Settings

EVALUATOR = "localization_tasks.seld.evaluate"
GENERATOR = ("localization_tasks.seld.synth", "naturalistic_hear")  # code a build depends on
DEFAULT_SOURCE = "esc50-v2.0.0-full"  # single-label environmental sounds, 40 per class
# task_metadata.json's seld.audio of the tasks a condition takes: two-channel stereo (the DCASE
# 2025 set, mid-side from FOA) goes to binaural models as binaural audio does, scored alike
AUDIO = {"ambisonic": ("foa",), "binaural": ("binaural", "stereo")}
EXTRA_RATE = 32000  # built tasks also hold GRAM's rate, so its units read it without resampling
# Models whose module is one of these run the evaluator's own rows instead of a HEAR module:
# its `--baseline` choices, `chance` (the true activity, random directions and distances) and
# `reference` (the classical reference of the task's format trained with the same head:
# intensity vectors on FOA, GCC-PHAT on binaural; `localization_tasks.seld.evaluate`).
BASELINES = ("crnn", "zero", "chance", "reference")
REFERENCE_ROWS = {"foa": "intensity+bigru", "binaural": "gcc-phat+bigru"}
# The REPORT.md table, one column per metric: (header, the key of the evaluator's results, the
# direction, decimals). The evaluator's `--metrics auto` scores a FOA task with distances with
# the DCASE 2024 metrics (ER, F, AngE, DistE, RelDistE, LR, SELD = mean(1 - F, AngE / 180,
# RelDistE)) and a binaural one with DCASE 2025's stereo metrics (F, AngE, DistE, RelDistE; no
# combined score), and a task without distances with the DCASE 2022 ones (ER20, F20, LE_CD,
# LR_CD, SELD): the first key of each column that a result has fills it.
METRICS: tuple[tuple[str, tuple[str, ...], str, int], ...] = (
    ("ER", ("ER", "ER20"), "lower", 3),
    ("F", ("F", "F20"), "higher", 3),
    ("AngE (deg)", ("AngE", "LE_CD"), "lower", 1),
    ("DistE (m)", ("DistE",), "lower", 2),
    ("RelDistE", ("RelDistE",), "lower", 3),
    ("LR", ("LR", "LR_CD"), "higher", 3),
    ("SELD", ("SELD",), "lower", 3),
)
PRIMARY = {"ambisonic": "SELD", "binaural": "F"}  # the first score row of a unit, per format

SOURCE = Option("--seld-source", "names", "HEAR scene/event task whose sounds a synthetic SELD task is built from")  # fmt: skip
GIVEN = Option("--seld-dir", "dir", "ready-made SELD tasks (seld.convert or seld.synth output)")
CLIPS = Option("--seld-clips", "count", "clips per fold (3 folds) of a built SELD task", 20)
EPOCHS = Option("--seld-epochs", "count", "most training epochs of a SELD unit", 40)
SEEDS = Option("--seld-seeds", "count", "training seeds of a SELD unit (mean and sd over them)", 3)


def given_tasks(root: Path, fmt: str) -> list[str]:
    """Folder names of the SELD tasks under `root` whose audio is `fmt` (sorted)."""
    out = []
    for meta_path in sorted(root.glob("*/task_metadata.json")):
        seld = (read_json(meta_path) or {}).get("seld")
        if isinstance(seld, dict) and seld.get("audio") in AUDIO[fmt]:
            out.append(meta_path.parent.name)
    return out


def read_results(path: Path) -> list[dict]:
    """The evaluator's summary rows (method, task, seeds, metric keys with `_sd` and
    `_jackknife`) from its results.json ({"runs": [...], "summary": [...]})."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        data = None
    summary = data.get("summary") if isinstance(data, dict) else None
    if not isinstance(summary, list):
        raise UnitError(f"{EVALUATOR} left no summary of results in {path}")
    return [r for r in summary if isinstance(r, dict)]


def _number(value: object) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


def score_rows(results: list[dict], method: str, unit: Unit) -> list[dict]:
    """The score rows (`ROW_KEYS`) of `method` on `unit`'s task: per column of `METRICS` the
    first of its keys the summary has as a finite number, mean over seeds with its sd and n, the
    primary metric of the format first. Rows of other methods (baselines, references) are not
    this unit's."""
    mine = [r for r in results if r.get("method") == method and r.get("task") == unit.task]
    if len(mine) != 1:
        raise UnitError(f"{EVALUATOR}: {len(mine)} result rows of {method} on {unit.task}, not 1")
    row = mine[0]
    seeds = row.get("seeds")
    n = len(seeds) if isinstance(seeds, list) and seeds else 1
    out = []
    for _, keys, better, _ in METRICS:
        key = next((k for k in keys if _number(row.get(k)) is not None), None)
        if key is None:
            continue
        sd = _number(row.get(f"{key}_sd"))
        iv = row.get(f"{key}_jackknife")
        low, high = (_number(iv[0]), _number(iv[1])) if isinstance(iv, list) and len(iv) == 2 else (None, None)  # fmt: skip
        ci = (low, high) if low is not None and high is not None and low <= high else ("", "")
        out.append({"task": unit.task, "format": unit.fmt, "snr_bin": "", "metric": key,
                    "mean": _number(row[key]), "std": 0.0 if sd is None else sd, "folds": n,
                    "better": better, "ci_low": ci[0], "ci_high": ci[1]})  # fmt: skip
    primary = PRIMARY.get(unit.fmt, "SELD")
    out.sort(key=lambda r: r["metric"] != primary)
    if not out or out[0]["metric"] != primary:
        raise UnitError(f"{EVALUATOR}: no finite {primary} score of {method} on {unit.task}")
    return out


class Seld(Condition):
    """SELD tasks in one spatial format (module docstring)."""

    better = "lower"  # the primary metric, SELD
    group = "seld"
    title = "SELD"
    default = False
    options = (SOURCE, GIVEN, CLIPS, EPOCHS, SEEDS)
    hear_module = True
    baselines = BASELINES
    steps = (EVALUATOR,)

    def __init__(self, fmt: str) -> None:
        self.name = f"seld-{fmt}"
        self.formats = (fmt,)
        self.better = "lower" if PRIMARY[fmt] == "SELD" else "higher"

    @property
    def fmt(self) -> str:
        return self.formats[0]

    def sources(self, settings: Settings) -> list[str]:
        """Source HEAR tasks of the built tasks: named, else ESC-50 when present (and no
        `--seld-dir` replaces it)."""
        named = settings.names(SOURCE.dest)
        for name in named:
            if not (child(settings.tasks_dir, name, "task") / "task_metadata.json").is_file():
                raise FileNotFoundError(f"{SOURCE.flag} {name}: no task_metadata.json under "
                                        f"{settings.tasks_dir}")  # fmt: skip
        if named or settings.folder(GIVEN.dest) is not None:
            return list(named)
        return [DEFAULT_SOURCE] if (settings.tasks_dir / DEFAULT_SOURCE).is_dir() else []

    def plan(self, settings: Settings) -> list[tuple[str, str, str]]:
        units = [(f"{s}-{self.fmt}", self.fmt, s) for s in self.sources(settings)]
        given = settings.folder(GIVEN.dest)
        if given is not None:
            units += [(name, self.fmt, "") for name in given_tasks(given, self.fmt)]
        if not units:
            raise LookupError(
                f"condition {self.name} has no tasks: no {'/'.join(AUDIO[self.fmt])} SELD task under "
                f"{GIVEN.flag} and no source task ({DEFAULT_SOURCE} is not under "
                f"{settings.tasks_dir}); name one with {SOURCE.flag} or give {GIVEN.flag}"
            )
        names = [task for task, _, _ in units]
        if len(set(names)) != len(names):  # a given task named as a built one: one unit folder
            raise ValueError(f"condition {self.name}: task names repeat: {sorted(names)}")
        return units

    def params(self, settings: Settings) -> dict[str, Any]:
        """The settings a built task depends on (besides its source's content and the code)."""
        return {"seed": settings.seed, "format": self.fmt,
                "clips_per_fold": CLIPS.value(settings.extra), "extra_rate": EXTRA_RATE}  # fmt: skip

    def task_key(self, unit: Unit, settings: Settings) -> str:
        if unit.source:
            return build.build_key(self.name, unit.source, settings, GENERATOR, self.params(settings))  # fmt: skip
        return task_digest(child(settings.folder(GIVEN.dest), unit.task, "task"))

    def grid(self, settings: Settings) -> Any:
        # The evaluator's code too: a baseline's module name fingerprints nothing else.
        return [EPOCHS.value(settings.extra), SEEDS.value(settings.extra), settings.seed,
                code_fingerprint(EVALUATOR)]  # fmt: skip

    def builds(self, unit: Unit, resolved: Resolved, settings: Settings) -> list[build.Build]:
        return [self._build(unit, settings)] if unit.source else []

    def _build(self, unit: Unit, settings: Settings) -> build.Build:
        params = self.params(settings)
        key = build.build_key(self.name, unit.source, settings, GENERATOR, params)
        root = build.build_root(self.name, unit.source, settings, GENERATOR, params)
        cmd = (sys.executable, "-m", GENERATOR[0], "--out", str(root), "--name", unit.task,
               "--format", self.fmt, "--clips-per-fold", str(params["clips_per_fold"]),
               "--seed", str(settings.seed), "--extra-rate", str(EXTRA_RATE),
               "--sources", str(child(settings.tasks_dir, unit.source, "task")), "--quiet")  # fmt: skip
        record = {"kind": self.name, "task": unit.source, **params}
        return build.Build(key, root, cmd, f"{self.name} {unit.source}", record)

    def tasks_root(self, unit: Unit, settings: Settings, log_file: Path) -> Path:
        """The folder holding the unit's task, built first when it is a built one."""
        if not unit.source:
            return settings.folder(GIVEN.dest)
        return build.run_build(self._build(unit, settings), settings, log_file)

    def run(self, unit: Unit, resolved: Resolved, settings: Settings, folder: Path) -> list[dict]:
        log_file = folder / "unit.log"
        root = self.tasks_root(unit, settings, log_file)
        if not (child(root, unit.task, "task") / "task_metadata.json").is_file():
            raise UnitError(f"no SELD task {unit.task} under {root}")
        out = folder / "evaluate"
        cmd = [sys.executable, "-m", EVALUATOR, "--tasks-dir", str(root), "--task", unit.task,
               "--out", str(out), "--epochs", str(EPOCHS.value(settings.extra)),
               "--seed", str(settings.seed), "--seeds", str(SEEDS.value(settings.extra)),
               "--quiet"]  # fmt: skip
        if resolved.module == "reference":
            method = REFERENCE_ROWS[AUDIO[self.fmt][0]]  # the evaluator's row of that reference
        elif resolved.module == "chance":  # a row of every evaluation: nothing else to train
            method = "chance"
            cmd += ["--reference", "none", "--baseline", "zero"]
        elif resolved.module in BASELINES:
            method = resolved.module  # the evaluator names a baseline's rows by the baseline
            cmd += ["--reference", "none", "--baseline", method]
        else:
            cmd += ["--reference", "none"]
            method = unit.model
            cmd += ["--module", resolved.module, "--name", method,
                    "--model-options", resolved.options_json()]  # fmt: skip
            if resolved.weights is not None:
                cmd += ["--weights", str(resolved.weights)]
        run_logged(cmd, log_file, EVALUATOR)
        return score_rows(read_results(out / "results.json"), method, unit)

    # ---------------------------------------------------------------- REPORT.md

    def section(self, group: Sequence[Condition], rows: list[dict], models: Sequence[str]) -> list[str]:  # fmt: skip
        names = {c.name for c in group if isinstance(c, Seld)}
        mine = [r for r in rows if r["condition"] in names]
        if not mine:
            return []
        ways = ", ".join(f"{h} ({b} is better)" for h, _, b, _ in METRICS)
        out = ["## SELD", "",
               f"DCASE Task 3 metrics on each task's test folds, mean ± sd (n = training seeds): "
               f"{ways}. FOA tasks with distances: DCASE "
               "2024 metrics (frame-wise; SELD = mean(1 - F, AngE / 180, RelDistE)); binaural "
               "ones: DCASE 2025 stereo metrics (azimuth only, front-folded; no ER, LR or "
               "combined score); without distances the DCASE 2022 ones. '-': a figure the "
               "metrics do not define there.", "",
               "| model | format | task | " + " | ".join(h for h, _, _, _ in METRICS) + " |",
               "|---|---|---|" + "---:|" * len(METRICS)]  # fmt: skip
        order = {m: i for i, m in enumerate(models)}
        keys = sorted({(r["model"], r["format"], r["unit"]) for r in mine},
                      key=lambda k: (order.get(k[0], len(order)), k[0], k[1], k[2]))  # fmt: skip
        for key in keys:
            these = [r for r in mine if (r["model"], r["format"], r["unit"]) == key]
            out.append("| " + " | ".join(key) + " | " + " | ".join(cells(these)) + " |")
        out += ["", "Jackknife 95 % intervals of the same figures (the DCASE baselines' "
                "leave-one-file-out estimate over each test fold's files, Student t; mean over "
                "folds and seeds): two rows whose intervals do not overlap differ beyond what the "
                "test files' spread explains.", "",
                "| model | format | task | " + " | ".join(h for h, _, _, _ in METRICS) + " |",
                "|---|---|---|" + "---:|" * len(METRICS)]  # fmt: skip
        for key in keys:
            these = [r for r in mine if (r["model"], r["format"], r["unit"]) == key]
            out.append("| " + " | ".join(key) + " | " + " | ".join(intervals(these)) + " |")
        return [*out, ""]


def intervals(rows: list[dict]) -> list[str]:
    """The interval cells of one unit's rows, "[low, high]"; '-' where there is none."""
    ok = {r["metric"]: r for r in rows if r["status"] == "ok"}
    out = []
    for _, keys, _, digits in METRICS:
        key = next((k for k in keys if k in ok), None)
        lo, hi = (None, None) if key is None else (_number(ok[key].get("ci_low")), _number(ok[key].get("ci_high")))  # fmt: skip
        out.append("-" if lo is None or hi is None else f"[{lo:.{digits}f}, {hi:.{digits}f}]")
    return out


def cells(rows: list[dict]) -> list[str]:
    """The metric cells of one unit's rows: the value, else the unit's status (failed,
    missing), else '-' (the evaluator has no such key)."""
    ok = {r["metric"]: r for r in rows if r["status"] == "ok"}
    state = next((r["status"] for r in rows if r["status"] != "ok"), "-")
    out = []
    for _, keys, _, digits in METRICS:
        key = next((k for k in keys if k in ok), None)
        if key is None:
            out.append(state)
            continue
        row = ok[key]
        out.append(stats.cell(float(row["mean"]), _number(row.get("std")), stats.count(row.get("folds")), digits))  # fmt: skip
    return out


SELD_AMBISONIC = register(Seld("ambisonic"))
SELD_BINAURAL = register(Seld("binaural"))
