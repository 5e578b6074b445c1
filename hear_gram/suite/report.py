"""WORK/report/: whatever units are done, merged into results.csv, results.json, REPORT.md and
figures (the layout of the paper's central table, arXiv 2602.03307 and 2506.00934 sec. 5).

- results.csv / results.json: one row per (model, condition, task, metric) of every done unit,
  and one row per failed, missing or unsupported unit (status and error, no score); sorted, so
  the same units give the same files whatever order, sharding or machine produced them.
- REPORT.md: the models, then one section per table group of the run's conditions (each drawn by
  its conditions: `Condition.section`), then the failed units with their error, the unsupported
  ones (`hear_gram.suite.probe`) with their cause, then figures
  (`Condition.figures`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from hear_gram.cache import weights_sha256
from hear_gram.safeio import subdir, write_bytes_atomic
from hear_gram.suite import condition as conditions
from hear_gram.suite.condition import ROW_KEYS, Condition, Unit, read_json
from hear_gram.suite.config import ModelSpec, Settings
from hear_gram.suite.units import status, unit_key

COLUMNS = ("model", "condition", "unit", *ROW_KEYS, "status", "error")


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
            for r in (read_json(folder / "result.json") or {}).get("rows", []):
                rows.append({**base, **{k: r.get(k, "") for k in ROW_KEYS}, "status": "ok"})
        elif state == "failed":
            error = (read_json(folder / "failed.json") or {}).get("error", "")
            rows.append({**base, "status": "failed", "error": error})
        else:
            rows.append({**base, "status": "missing"})
    return rows


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


def markdown(rows: list[dict], models: Sequence[ModelSpec], settings: Settings, images: list[str]) -> str:  # fmt: skip
    names = [m.name for m in models]
    counts = {s: sum(1 for r in _unit_rows(rows) if r["status"] == s)
              for s in ("ok", "failed", "missing", "unsupported")}  # fmt: skip
    skipped = f", {counts['unsupported']} unsupported" if counts["unsupported"] else ""
    out = ["# HEAR suite report", "",
           f"Units: {counts['ok']} done, {counts['failed']} failed, {counts['missing']} missing{skipped} "
           f"(heareval grid {settings.grid}, {settings.grid_points} grid point(s); "
           f"localization grid {settings.localization_grid}; seed {settings.seed}).", "",
           "| model | module (per format) | weights sha256 |", "|---|---|---|"]  # fmt: skip
    for m in models:
        mods = sorted({f"{f}: {m.resolve('', f).module}" for f in m.formats})
        out.append(f"| {m.name} | {'; '.join(mods)} | {_sha(m.weights)} |")
    out.append("")
    for group in groups(settings):
        out += group[0].section(group, rows, names)
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
    out += [f"![{name}]({name})" for name in images]
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
    write_bytes_atomic(out / "REPORT.md", markdown(rows, models, settings, images).encode())
    return out
