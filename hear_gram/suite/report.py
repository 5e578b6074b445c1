"""WORK/report/: whatever units are done, merged into results.csv, results.json, REPORT.md and
figures (the layout of the paper's central table, arXiv 2602.03307 and 2506.00934 sec. 5).

- results.csv / results.json: one row per (model, condition, task, metric) of every done unit
  (`fold` empty: the aggregate, mean ± sd over n folds or seeds x folds), then its per-fold rows
  (`fold`, `seed`: that test fold's score), and one row per failed, missing or unsupported unit (status and
  error, no score); `seconds`: the unit's wall time (the same on each of its rows). Sorted, so the
  same units give the same files, apart from `seconds`, whatever order, sharding or machine
  produced them.
- REPORT.md: the models, then one section per table group of the run's conditions (each drawn by
  its conditions: `Condition.section`; cells "mean ± sd (n=N)"), the model comparisons (a paired
  t-test over folds, `hear_gram.suite.stats`), the failed units with their error, the unsupported ones
  (`hear_gram.suite.probe`) with their cause, then figures
  (`Condition.figures`) and links to each unit's own figures.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from hear_gram.cache import weights_sha256
from hear_gram.safeio import subdir, write_bytes_atomic
from hear_gram.suite import condition as conditions
from hear_gram.suite import stats
from hear_gram.suite.condition import ROW_KEYS, SEEDS, Condition, Unit, aggregate, read_json
from hear_gram.suite.config import ModelSpec, Settings
from hear_gram.suite.units import status, unit_key

COLUMNS = ("model", "condition", "unit", *ROW_KEYS, "seconds", "status", "error")


def collect(units: Sequence[Unit], models: Sequence[ModelSpec], settings: Settings,
            unsupported: Mapping[Unit, str] | None = None) -> list[dict]:  # fmt: skip
    """Rows of every unit: its scores when done, else one row saying failed or missing; the
    units the probe found the module cannot take (`unsupported`: unit -> cause) one row each."""
    by_name = {m.name: m for m in models}
    unsupported = unsupported or {}
    rows = []
    for unit in sorted({*units, *unsupported}):
        base = {k: "" for k in COLUMNS if k != "status"} | {"model": unit.model, "condition": unit.condition,
                                           "unit": unit.task, "task": unit.task,
                                           "format": unit.fmt}  # fmt: skip
        if unit in unsupported:
            rows.append({**base, "status": "unsupported", "error": unsupported[unit]})
            continue
        try:
            key = unit_key(unit, by_name[unit.model].resolve(unit.condition, unit.fmt), settings)
            state = status(unit, key, settings.work)
        except (OSError, ValueError, LookupError) as e:
            rows.append({**base, "status": "failed", "error": " ".join(str(e).split())})
            continue
        folder = unit.folder(settings.work)
        if state == "done":
            record = read_json(folder / "result.json") or {}
            for r in record.get("rows", []):
                rows.append({**base, **{k: r.get(k, "") for k in ROW_KEYS},
                             "seconds": _seconds(record), "status": "ok"})  # fmt: skip
        elif state == "failed":
            record = read_json(folder / "failed.json") or {}
            rows.append({**base, "seconds": _seconds(record), "status": "failed",
                         "error": record.get("error", "")})  # fmt: skip
        else:
            rows.append({**base, "status": "missing"})
    return rows


def _seconds(record: dict) -> float | str:
    """The unit's wall time from its record (s, 0.1 s), '' when it has none."""
    value = stats.number(record.get("seconds"))
    return round(value, 1) if value is not None and value >= 0 else ""


def groups(settings: Settings) -> list[list[Condition]]:
    """The run's conditions by table group, in registration order."""
    out: dict[str, list[Condition]] = {}
    for name in conditions.names():
        if name in settings.conditions:
            cond = conditions.get(name)
            out.setdefault(cond.table, []).append(cond)
    return list(out.values())


def _unit_rows(rows: list[dict]) -> list[dict]:
    """One row per unit (its first)."""
    seen, out = set(), []
    for r in rows:
        key = (r["model"], r["condition"], r["unit"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _sha(path: Path | None) -> str:
    try:
        sha = weights_sha256(path)
    except OSError:
        return "missing"
    return sha[:12] if sha else "none"


def comparisons(rows: list[dict], models: Sequence[str]) -> list[str]:
    """REPORT.md's model comparisons: for each pair of models scored on the same test folds (and
    seeds) of a task, condition, format and SNR bin, the paired t-test of their per-fold primary
    scores (the metric of each unit's first aggregate row of the task). [] when no pair has
    per-fold scores."""
    primary: dict[tuple, tuple[str, str]] = {}
    for r in aggregate(rows):
        if r["status"] == "ok":
            key = (r["model"], r["condition"], r["unit"], r["task"])
            primary.setdefault(key, (r["metric"], r["better"]))
    folds: dict[tuple, dict[str, dict[tuple[str, str], float]]] = defaultdict(dict)
    for r in rows:
        value = stats.number(r["mean"])
        first = primary.get((r["model"], r["condition"], r["unit"], r["task"]))
        if r["status"] != "ok" or not r["fold"] or value is None or first is None:
            continue
        if r["metric"] == first[0]:
            group = (r["condition"], r["task"], r["format"], r["snr_bin"], r["metric"], first[1])
            folds[group].setdefault(r["model"], {})[(str(r["seed"]), str(r["fold"]))] = value
    order = {m: i for i, m in enumerate(models)}
    lines = []
    for (cond, task, fmt, _, metric, better), by_model in sorted(folds.items()):
        names = sorted(by_model, key=lambda m: (order.get(m, len(order)), m))
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                common = sorted(set(by_model[a]) & set(by_model[b]))
                if not common:
                    continue
                test = stats.paired([by_model[a][k] for k in common],
                                    [by_model[b][k] for k in common])  # fmt: skip
                verdict = test.verdict
                if verdict == "beyond noise":
                    verdict = f"{a if (test.diff > 0) == (better == 'higher') else b} better"
                diff = f"{test.diff:+.3g}" + (f" ± {test.sd:.2g}" if test.sd is not None else "")
                lines.append(f"| {cond} | {task} | {fmt} | {metric} | {a} vs {b} | {diff} | "
                             f"{test.n} | {test.p_text} | {verdict} |")  # fmt: skip
    if not lines:
        return []
    return ["## Model comparisons", "",
            "Two models scored on the same test folds of a task (and the same training seeds), "
            f"compared fold against fold on its primary metric: a {stats.TEST} of their "
            "per-fold scores. 'a - b': the mean per-fold difference ± its sd, in the metric's "
            "units (HEAR scores 0-1, not x 100); '<model> better': the difference exceeds the "
            "folds' spread (p < 0.05); 'noise': it does not; 'n too small': fewer than "
            f"{stats.MIN_N} paired folds, not tested.", "",
            "| condition | task | format | metric | a vs b | a - b | n | p | verdict |",
            "|---|---|---|---|---|---:|---:|---:|---|", *lines, ""]  # fmt: skip


def unit_figures(rows: list[dict], work: Path, out: Path) -> list[str]:
    """Markdown links to the figures each done unit's own tool drew in its folder (e.g. the
    localization evaluator's error_vs_snr.png and azimuth_scatter.png), relative to `out`."""
    links = []
    for r in _unit_rows(rows):
        if r["status"] != "ok":
            continue
        folder = Unit(r["model"], r["condition"], r["unit"], r["format"]).folder(work)
        # rglob does not descend into linked folders; a linked file is left out as well.
        for path in sorted(p for p in folder.rglob("*.png") if p.is_file() and not p.is_symlink()):
            rel = Path(os.path.relpath(path, out)).as_posix()
            links.append(
                f"- [{r['model']}/{r['condition']}/{r['unit']}: {path.name}]({quote(rel)})"
            )
    return links


def markdown(rows: list[dict], models: Sequence[ModelSpec], settings: Settings, images: list[str],
             links: Sequence[str] = ()) -> str:  # fmt: skip
    names = [m.name for m in models]
    counts = {s: sum(1 for r in _unit_rows(rows) if r["status"] == s)
              for s in ("ok", "failed", "missing", "unsupported")}  # fmt: skip
    seeds = SEEDS.value(settings.extra)
    skipped = f", {counts['unsupported']} unsupported" if counts["unsupported"] else ""
    out = ["# HEAR suite report", "",
           f"Units: {counts['ok']} done, {counts['failed']} failed, {counts['missing']} missing{skipped} "
           f"(heareval grid {settings.grid}, {settings.grid_points} grid point(s); "
           f"localization grid {settings.localization_grid}; seed {settings.seed}"
           + (f"; {seeds} training seeds where the scorer takes one" if seeds > 1 else "")
           + ").", "",
           "| model | module (per format) | weights sha256 |", "|---|---|---|"]  # fmt: skip
    for m in models:
        mods = sorted({f"{f}: {m.resolve('', f).module}" for f in m.formats})
        out.append(f"| {m.name} | {'; '.join(mods)} | {_sha(m.weights)} |")
    out.append("")
    for group in groups(settings):
        out += group[0].section(group, rows, names)
    out += comparisons(rows, names)
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        out += ["## Failed units", ""]
        out += [f"- {r['model']}/{r['condition']}/{r['unit']}: {r['error']}" for r in failed]
        out.append("")
    refused = [r for r in rows if r["status"] == "unsupported"]
    if refused:  # found by hear_gram.suite.probe before the run: never run, never failed
        out += ["## Unsupported units (the module cannot take their input)", ""]
        out += [f"- {r['model']}/{r['condition']}/{r['unit']}: {r['error']}" for r in refused]
        out.append("")
    if images or links:
        out += ["## Figures", ""]
    out += [f"![{name}]({name})" for name in images]
    if links:
        out += ["", "Each unit's own figures:", "", *links]
    return "\n".join(out) + "\n"


def write_report(units: Sequence[Unit], models: Sequence[ModelSpec], settings: Settings,
                 unsupported: Mapping[Unit, str] | None = None) -> Path:  # fmt: skip
    """Write WORK/report/ (through `safeio.subdir`: a planted link leading outside is refused)."""
    out = subdir(settings.work, "report", what="report folder")
    rows = collect(units, models, settings, unsupported)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(out / "results.csv", buf.getvalue().encode())
    write_bytes_atomic(out / "results.json", (json.dumps(rows, indent=1) + "\n").encode())
    names = [m.name for m in models]
    images = [name for group in groups(settings)
              for name in group[0].figures(group, rows, names, out)]  # fmt: skip
    links = unit_figures(rows, settings.work, out)
    write_bytes_atomic(out / "REPORT.md", markdown(rows, models, settings, images, links).encode())
    return out
