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
  `foa` for seld-ambisonic, `binaural` for seld-binaural), such as a DCASE dataset converted by
  `localization_tasks.seld.convert` or a task of `seld.synth`; unit = its folder name.

A model whose module is one of the evaluator's baselines (`BASELINES`) runs that baseline
instead of a HEAR module. Both conditions are opt-in (`default = False`: each unit trains a
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
from hear_gram.suite import build
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
AUDIO = {"ambisonic": "foa", "binaural": "binaural"}  # task_metadata.json's seld.audio
EXTRA_RATE = 32000  # built tasks also hold GRAM's rate, so its units read it without resampling
# The evaluator's `--baseline` choices today: a model with such a module runs the baseline.
BASELINES = ("crnn", "zero")
# The REPORT.md table, one column per metric: (header, the key of the evaluator's results.json,
# direction, decimals). The keys are evaluate.py's today, the DCASE 2022 metrics: ER and F at
# 20 deg, class-dependent localization error and recall, SELD = mean(ER, 1 - F, LE / 180, 1 - LR).
# It writes no distance errors yet: their columns show '-' until a results.json has the keys.
METRICS: tuple[tuple[str, str, str, int], ...] = (
    ("ER", "ER20", "lower", 3),
    ("F", "F20", "higher", 3),
    ("AngE (deg)", "LE_CD", "lower", 1),
    ("DistE (m)", "DistE", "lower", 2),
    ("RelDistE", "RelDistE", "lower", 3),
    ("LR", "LR_CD", "higher", 3),
    ("SELD", "SELD", "lower", 3),
)
PRIMARY = "SELD"  # the first score row of a unit

SOURCE = Option("--seld-source", "names", "HEAR scene/event task whose sounds a synthetic SELD task is built from")  # fmt: skip
GIVEN = Option("--seld-dir", "dir", "ready-made SELD tasks (seld.convert or seld.synth output)")
CLIPS = Option("--seld-clips", "count", "clips per fold (3 folds) of a built SELD task", 20)
EPOCHS = Option("--seld-epochs", "count", "most training epochs of a SELD unit", 40)


def given_tasks(root: Path, fmt: str) -> list[str]:
    """Folder names of the SELD tasks under `root` whose audio is `fmt` (sorted)."""
    out = []
    for meta_path in sorted(root.glob("*/task_metadata.json")):
        seld = (read_json(meta_path) or {}).get("seld")
        if isinstance(seld, dict) and seld.get("audio") == AUDIO[fmt]:
            out.append(meta_path.parent.name)
    return out


def read_results(path: Path) -> list[dict]:
    """The evaluator's results.json: a list of rows (method, task, metric keys...)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        data = None
    if not isinstance(data, list):
        raise UnitError(f"{EVALUATOR} left no list of results in {path}")
    return [r for r in data if isinstance(r, dict)]


def score_rows(results: list[dict], method: str, unit: Unit) -> list[dict]:
    """The score rows (`ROW_KEYS`) of `method` on `unit`'s task: one per metric of `METRICS`
    the row has as a finite number, the primary metric first. Rows of other methods (baselines,
    references) are not this unit's."""
    mine = [r for r in results if r.get("method") == method and r.get("task") == unit.task]
    if len(mine) != 1:
        raise UnitError(f"{EVALUATOR}: {len(mine)} result rows of {method} on {unit.task}, not 1")
    row = mine[0]
    out = []
    for _, key, better, _ in sorted(METRICS, key=lambda m: m[1] != PRIMARY):
        value = row.get(key)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and math.isfinite(value):
            out.append({"task": unit.task, "format": unit.fmt, "snr_bin": "", "metric": key,
                        "mean": float(value), "std": 0.0, "folds": 1, "better": better})  # fmt: skip
    if not out or out[0]["metric"] != PRIMARY:
        raise UnitError(f"{EVALUATOR}: no finite {PRIMARY} score of {method} on {unit.task}")
    return out


class Seld(Condition):
    """SELD tasks in one spatial format (module docstring)."""

    better = "lower"  # the primary metric, SELD
    group = "seld"
    title = "SELD"
    default = False
    options = (SOURCE, GIVEN, CLIPS, EPOCHS)

    def __init__(self, fmt: str) -> None:
        self.name = f"seld-{fmt}"
        self.formats = (fmt,)

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
                f"condition {self.name} has no tasks: no {AUDIO[self.fmt]} SELD task under "
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
        return [EPOCHS.value(settings.extra), settings.seed, code_fingerprint(EVALUATOR)]

    def tasks_root(self, unit: Unit, settings: Settings, log_file: Path) -> Path:
        """The folder holding the unit's task, built first when it is a built one."""
        if not unit.source:
            return settings.folder(GIVEN.dest)
        params = self.params(settings)
        root = build.build_root(self.name, unit.source, settings, GENERATOR, params)
        cmd = [sys.executable, "-m", GENERATOR[0], "--out", str(root), "--name", unit.task,
               "--format", self.fmt, "--clips-per-fold", str(params["clips_per_fold"]),
               "--seed", str(settings.seed), "--extra-rate", str(EXTRA_RATE),
               "--sources", str(child(settings.tasks_dir, unit.source, "task")), "--quiet"]  # fmt: skip
        record = {"kind": self.name, "task": unit.source, **params}
        return build.build_once(root, cmd, settings, log_file, f"build {self.name} {unit.source}", record)  # fmt: skip

    def run(self, unit: Unit, resolved: Resolved, settings: Settings, folder: Path) -> list[dict]:
        log_file = folder / "unit.log"
        root = self.tasks_root(unit, settings, log_file)
        if not (child(root, unit.task, "task") / "task_metadata.json").is_file():
            raise UnitError(f"no SELD task {unit.task} under {root}")
        out = folder / "evaluate"
        cmd = [sys.executable, "-m", EVALUATOR, "--tasks-dir", str(root), "--task", unit.task,
               "--out", str(out), "--epochs", str(EPOCHS.value(settings.extra)),
               "--seed", str(settings.seed), "--quiet"]  # fmt: skip
        if resolved.module in BASELINES:
            method = resolved.module  # the evaluator names a baseline's rows by the baseline
            cmd += ["--baseline", method]
        else:
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
        ways = ", ".join(f"{h} = {k} ({b} is better)" for h, k, b, _ in METRICS)
        out = ["## SELD", "",
               f"DCASE Task 3 metrics on each task's test fold: {ways}; '-': not in the "
               "evaluator's results. Binaural tasks are scored with DCASE 2025's stereo metrics "
               "(azimuth only, front-folded).", "",
               "| model | format | task | " + " | ".join(h for h, _, _, _ in METRICS) + " |",
               "|---|---|---|" + "---:|" * len(METRICS)]  # fmt: skip
        order = {m: i for i, m in enumerate(models)}
        keys = sorted({(r["model"], r["format"], r["unit"]) for r in mine},
                      key=lambda k: (order.get(k[0], len(order)), k[0], k[1], k[2]))  # fmt: skip
        for key in keys:
            these = [r for r in mine if (r["model"], r["format"], r["unit"]) == key]
            out.append("| " + " | ".join(key) + " | " + " | ".join(cells(these)) + " |")
        return [*out, ""]


def cells(rows: list[dict]) -> list[str]:
    """The metric cells of one unit's rows: the value, else the unit's status (failed,
    missing), else '-' (the evaluator has no such key)."""
    ok = {r["metric"]: float(r["mean"]) for r in rows if r["status"] == "ok"}
    state = next((r["status"] for r in rows if r["status"] != "ok"), "-")
    return [f"{ok[key]:.{digits}f}" if key in ok else state for _, key, _, digits in METRICS]


SELD_AMBISONIC = register(Seld("ambisonic"))
SELD_BINAURAL = register(Seld("binaural"))
