"""WORK/report/: whatever units are done, merged into results.csv, results.json, REPORT.md and
figures (the layout of the paper's central table, arXiv 2602.03307 and 2506.00934 sec. 5).

- results.csv / results.json: one row per (model, condition, task, metric) of every done unit,
  and one row per failed or missing unit (status and error, no score); sorted, so the same units
  give the same files whatever order, sharding or machine produced them.
- REPORT.md: HEAR and Nat-HEAR scores per task (primary metric x 100: the first of the task's
  `evaluation` list, heareval's `test_score`), averages per model and condition, the drop from
  dry to naturalistic (over the tasks scored in both, in points), the localization error per SNR
  bin and the T60 error, and the failed units with their error.
- dry_vs_naturalistic.png (per-task bars per model) and error_vs_snr.png.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from hear_gram.plotting import save, subplots
from hear_gram.safeio import write_bytes_atomic
from hear_gram.suite.config import CONDITION_FORMAT, ModelSpec
from hear_gram.suite.units import Unit, read_json, status, unit_key, weights_sha

COLUMNS = ("model", "condition", "unit", "task", "format", "snr_bin", "metric", "mean", "std", "folds",
           "better", "status", "error")  # fmt: skip
HEAR_CONDITIONS = tuple(CONDITION_FORMAT)
SNR_BINS = ("clean", "snr20-40", "snr10-20", "snr05-10")
BIN_LABEL = {
    "clean": "clean",
    "snr20-40": "20-40 dB",
    "snr10-20": "10-20 dB",
    "snr05-10": "5-10 dB",
}


def collect(units: Sequence[Unit], models: Sequence[ModelSpec], settings) -> list[dict]:
    """Rows of every unit: its scores when done, else one row saying failed or missing."""
    by_name = {m.name: m for m in models}
    rows = []
    for unit in sorted(units):
        base = {"model": unit.model, "condition": unit.condition, "unit": unit.task,
                "task": unit.task,
                "format": unit.fmt, "snr_bin": "", "metric": "", "mean": "", "std": "",
                "folds": "", "better": "", "error": ""}  # fmt: skip
        try:
            key = unit_key(unit, by_name[unit.model].resolve(unit.condition, unit.fmt), settings)
            state = status(unit, key, settings.work)
        except (OSError, ValueError) as e:
            rows.append({**base, "status": "failed", "error": str(e)})
            continue
        folder = unit.folder(settings.work)
        if state == "done":
            for r in (read_json(folder / "result.json") or {}).get("rows", []):
                rows.append({**base, **{k: r.get(k, "") for k in COLUMNS if k in r},
                             "status": "ok"})  # fmt: skip
        elif state == "failed":
            error = (read_json(folder / "failed.json") or {}).get("error", "")
            rows.append({**base, "status": "failed", "error": error})
        else:
            rows.append({**base, "status": "missing"})
    return rows


def _fmt(value: object, scale: float = 1.0, digits: int = 1) -> str:
    if value in ("", None) or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value) * scale:.{digits}f}"


def primary_scores(rows: list[dict]) -> dict[tuple[str, str, str], float]:
    """(model, condition, task) -> primary metric (the first row of the task, heareval's order)."""
    out: dict[tuple[str, str, str], float] = {}
    for r in rows:
        key = (r["model"], r["condition"], r["unit"])
        if r["status"] == "ok" and r["condition"] in HEAR_CONDITIONS and key not in out:
            out[key] = float(r["mean"])
    return out


def hear_tables(rows: list[dict], models: Sequence[str]) -> list[str]:
    scores = primary_scores(rows)
    failed = {(r["model"], r["condition"], r["unit"]): r["status"] for r in rows
              if r["status"] != "ok"}  # fmt: skip
    conditions = [c for c in HEAR_CONDITIONS if any(r["condition"] == c for r in rows)]
    tasks = sorted({r["unit"] for r in rows if r["condition"] in HEAR_CONDITIONS})
    if not tasks:
        return []
    columns = [(m, c) for m in models for c in conditions
               if any(r["model"] == m and r["condition"] == c for r in rows)]  # fmt: skip
    out = ["## HEAR and Nat-HEAR (primary metric x 100; dry = HEAR, nat-* = Nat-HEAR)", ""]
    out.append("| task | " + " | ".join(f"{m} {c}" for m, c in columns) + " |")
    out.append("|---|" + "---:|" * len(columns))
    for task in tasks:
        cells = []
        for m, c in columns:
            value = scores.get((m, c, task))
            cells.append(_fmt(value, 100) if value is not None else failed.get((m, c, task), "-"))
        out.append(f"| {task} | " + " | ".join(cells) + " |")
    out += ["", "## Averages", ""]
    nat = [c for c in conditions if c != "dry"]
    head = ["model", "HEAR avg (tasks)"]
    for c in nat:
        head += [f"Nat-HEAR {c[4:]} avg (tasks)", f"drop dry -> {c[4:]} (paired tasks)"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|---|" + "---:|" * (len(head) - 1))
    for m in models:
        if not any(m == mm for mm, _ in columns):
            continue
        dry = {t: s for (mm, c, t), s in scores.items() if mm == m and c == "dry"}
        cells = [m, _avg(dry.values())]
        for c in nat:
            wet = {t: s for (mm, cc, t), s in scores.items() if mm == m and cc == c}
            paired = [dry[t] - wet[t] for t in sorted(set(dry) & set(wet))]
            cells += [_avg(wet.values()), _avg(paired)]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "drop = mean over the tasks scored in both conditions of (dry - naturalistic) x 100.",
            ""]  # fmt: skip
    return out


def _avg(values) -> str:
    values = list(values)
    return f"{100 * statistics.fmean(values):.1f} ({len(values)})" if values else "-"


def spatial_table(rows: list[dict], models: Sequence[str]) -> list[str]:
    loc = [r for r in rows if r["condition"] in ("localization", "t60")]
    if not loc:
        return []
    out = ["## Localization and T60", "",
           "Mean angular error (deg) per SNR bin; T60 median absolute error (s).", "",
           "| model | format | source | " + " | ".join(BIN_LABEL[b] for b in SNR_BINS)
           + " | T60 (s) |", "|---|---|---|" + "---:|" * (len(SNR_BINS) + 1)]  # fmt: skip
    groups = sorted({(r["model"], r["format"], r["unit"].rsplit("-", 1)[0]) for r in loc},
                    key=lambda g: (list(models).index(g[0]), g[1], g[2]))  # fmt: skip
    for m, fmt, source in groups:
        mine = [r for r in loc if (r["model"], r["format"]) == (m, fmt)
                and r["unit"].rsplit("-", 1)[0] == source]  # fmt: skip
        cells = []
        for b in SNR_BINS:
            hit = [r for r in mine if r["condition"] == "localization" and r["snr_bin"] == b
                   and r["status"] == "ok"]  # fmt: skip
            cells.append(_fmt(hit[0]["mean"]) if hit else _state(mine, "localization"))
        t60 = [r for r in mine if r["condition"] == "t60" and r["status"] == "ok"]
        cells.append(_fmt(t60[0]["mean"], digits=3) if t60 else _state(mine, "t60"))
        out.append(f"| {m} | {fmt} | {source} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _state(rows: list[dict], condition: str) -> str:
    states = {r["status"] for r in rows if r["condition"] == condition}
    return next((s for s in ("failed", "missing") if s in states), "-")


def figures(rows: list[dict], models: Sequence[str], out: Path) -> list[str]:
    """Write the figures that have data; returns their file names."""
    made = []
    scores = primary_scores(rows)
    with_hear = [m for m in models if any(k[0] == m for k in scores)]
    if with_hear:
        tasks = sorted({k[2] for k in scores})
        fig, axes = subplots(len(with_hear), 1, figsize=(max(6, 1.6 * len(tasks)), 3 * len(with_hear)), squeeze=False)  # fmt: skip
        width = 0.8 / len(HEAR_CONDITIONS)
        for ax, m in zip(axes[:, 0], with_hear, strict=True):
            for i, c in enumerate(HEAR_CONDITIONS):
                xs = [j + (i - 1) * width for j in range(len(tasks))]
                ys = [100 * scores.get((m, c, t), math.nan) for t in tasks]
                ax.bar(xs, ys, width, label=c)
            ax.set_xticks(range(len(tasks)), tasks, fontsize=7)
            ax.set_ylabel("score x 100")
            ax.set_title(f"{m}: dry vs naturalistic")
            ax.legend(fontsize=7)
        save(fig, out / "dry_vs_naturalistic.png", dpi=110)
        made.append("dry_vs_naturalistic.png")
    loc = [r for r in rows if r["condition"] == "localization" and r["status"] == "ok"]
    if loc:
        fig, ax = subplots(figsize=(6, 4))
        bins = [b for b in reversed(SNR_BINS)]
        for key in sorted({(r["model"], r["format"], r["unit"].rsplit("-", 1)[0]) for r in loc}):
            by_bin = {r["snr_bin"]: float(r["mean"]) for r in loc
                      if (r["model"], r["format"], r["unit"].rsplit("-", 1)[0]) == key}  # fmt: skip
            ax.plot(range(len(bins)), [by_bin.get(b, math.nan) for b in bins], "o-",
                    label=" / ".join(key))  # fmt: skip
        ax.set_xticks(range(len(bins)), [BIN_LABEL[b] for b in bins])
        ax.set_xlabel("SNR bin")
        ax.set_ylabel("mean angular error (deg)")
        ax.legend(fontsize=7)
        save(fig, out / "error_vs_snr.png", dpi=110)
        made.append("error_vs_snr.png")
    return made


def markdown(rows: list[dict], models: Sequence[ModelSpec], settings, images: list[str]) -> str:
    names = [m.name for m in models]
    counts = {s: sum(1 for r in _unit_rows(rows) if r["status"] == s)
              for s in ("ok", "failed", "missing")}  # fmt: skip
    out = ["# HEAR suite report", "",
           f"Units: {counts['ok']} done, {counts['failed']} failed, {counts['missing']} missing "
           f"(heareval grid {settings.grid}, {settings.grid_points} grid point(s); "
           f"localization grid {settings.localization_grid}; seed {settings.seed}).", "",
           "| model | module (per format) | weights sha256 |", "|---|---|---|"]  # fmt: skip
    for m in models:
        mods = sorted({f"{f}: {m.resolve('dry', f).module}" for f in m.formats})
        sha = weights_sha(m.weights)
        out.append(f"| {m.name} | {'; '.join(mods)} | {sha[:12] if sha else 'none'} |")
    out.append("")
    out += hear_tables(rows, names)
    out += spatial_table(rows, names)
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        out += ["## Failed units", ""]
        out += [f"- {r['model']}/{r['condition']}/{r['unit']}: {r['error']}" for r in failed]
        out.append("")
    out += [f"![{name}]({name})" for name in images]
    return "\n".join(out) + "\n"


def _unit_rows(rows: list[dict]) -> list[dict]:
    """One row per unit (its first)."""
    seen, out = set(), []
    for r in rows:
        key = (r["model"], r["condition"], r["unit"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def write_report(units: Sequence[Unit], models: Sequence[ModelSpec], settings) -> Path:
    out = settings.work / "report"
    out.mkdir(parents=True, exist_ok=True)
    rows = collect(units, models, settings)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(out / "results.csv", buf.getvalue().encode())
    write_bytes_atomic(out / "results.json", (json.dumps(rows, indent=1) + "\n").encode())
    images = figures(rows, [m.name for m in models], out)
    write_bytes_atomic(out / "REPORT.md", markdown(rows, models, settings, images).encode())
    return out
