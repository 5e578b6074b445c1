"""Speed and footprint of one small `hear_gram.suite` run, measured from outside (``make bench-suite``).

The suite runs as a user runs it, in a subprocess (``python -m hear_gram.suite``), on a fixed small
set-up: the two synthetic tasks of ``hear_gram.synthetic_tasks`` (a 5-fold scene task, an event
task), a random 2-layer GRAM-T (``python -m hear_gram.checkpoints random --depth 2``), the
conditions dry + nat-binaural + localization, binaural only (the models file gives GRAM-T the
formats mono and binaural, and a `chance` model localization binaural only), one unit at a time
(``--jobs 1``).

Nothing inside the suite is timed by this program: while the suite runs, it polls the run folder
every ``--poll-s`` and reads what the suite leaves there. A step of a unit starts at the time the
suite writes under its command line (``$ python -m MODULE ...`` then ``# started TIME``) in the
unit's ``unit.log`` (when that line is missing: when the command line is read); a build ends at
the mtime of its ``build/<name>.done`` marker; a unit ends at the mtime of its ``result.json`` (or
``failed.json``); start-up ends at the suite's "suite: N units planned" line, the report starts at
its "ran N units" line. At each of these marks the run folder's bytes are summed by subfolder
(`disk_usage`), so every stretch between two marks has a wall time, a kind (`PHASES`) and the
bytes it added.

Per unit, its wall time (from the previous unit's end) less its builds and its embedding and
training time as the tools record them (heareval's ``profile.embeddings.json`` and
``prediction-done.json``; the localization evaluator's log, from the model's "loaded" line to the
last task's result) is its overhead. The `chance` unit embeds nothing and fits no probe: its
overhead is the suite's fixed cost per unit. Goals (issue 19): the run folder <= 10x the source
tasks' bytes, a unit's overhead <= 2 s.

    python -m hear_gram.bench_suite [--out work/bench/suite.json] [--n-scenes 24] [--poll-s 0.1]

Folders: OUT's parent holds ``suite/`` (tasks/, weights, models.toml, run/: the suite's run
folder, kept for inspection and replaced by the next run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hear_gram import cli, safeio
from hear_gram.synthetic_tasks import make_event_task, make_scene_task

PROG = "python -m hear_gram.bench_suite"
BUCKETS = ("build", "scene_bank", "embeddings", "units", "report", "other")
BUCKET_TITLES = {"build": "build/", "scene_bank": "build/scene-bank/ (cache)",
                 "embeddings": "embeddings/ (cache)", "units": "units/", "report": "report/",
                 "other": "other (logs/)"}  # fmt: skip
# What a stretch of the run is, by the module whose command line starts it (others: "other").
STEP_KINDS = {
    "naturalistic_hear": "build",
    "localization_tasks.generate": "build",
    "hear_gram.embed": "embed",
    "hear_gram.predict": "train",
    "localization_tasks.evaluate": "evaluate",
}
PHASES = {
    "start-up": "start-up, imports, plan",
    "build": "builds",
    "embed": "embedding (hear_gram.embed)",
    "train": "downstream training (hear_gram.predict)",
    "evaluate": "localization evaluate (embed + train)",
    "suite": "suite between steps",
    "report": "report",
    "other": "other steps",
}
GOAL_DISK_RATIO = 10.0  # run folder bytes over the source tasks' bytes, at most
GOAL_UNIT_OVERHEAD_S = 2.0  # a unit's wall time less its builds, embedding and training, at most
STEP_RE = re.compile(r"^\$ \S+ -m (\S+)(.*)$")
STARTED_RE = re.compile(r"^# started (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")
LOG_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
MARKER = ".bench-suite"  # in the set-up folder: this program made it (and may replace it)


# ------------------------------------------------------------------ disk


def bucket(rel: Path) -> str:
    """The `BUCKETS` entry of a path relative to the run folder."""
    parts = rel.parts
    if parts[0] == "build":
        return "scene_bank" if len(parts) > 2 and parts[1] == "scene-bank" else "build"
    return parts[0] if parts[0] in ("embeddings", "units", "report") and len(parts) > 1 else "other"


def disk_usage(root: Path) -> dict[str, int]:
    """Bytes (file sizes) of the regular files under `root`, by `bucket`, and their "total".
    Links are neither followed nor counted; a file renamed or removed while walked is skipped."""
    out = dict.fromkeys(BUCKETS, 0)
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                out[bucket(path.relative_to(root))] += st.st_size
    out["total"] = sum(out[b] for b in BUCKETS)
    return out


def tree_bytes(root: Path) -> int:
    return disk_usage(root)["total"]


# ------------------------------------------------------------------ timeline


@dataclass
class Mark:
    """A moment of the run (s since launch): the stretch after it, until the next mark, is of
    `kind` and belongs to `unit` ("" = none); `disk`: the run folder's bytes there."""

    t: float
    kind: str
    unit: str
    label: str
    disk: dict[str, int] = field(default_factory=dict)


def stretches(marks: list[Mark]) -> list[dict]:
    """Consecutive marks as stretches: kind, unit, label, seconds and bytes added per bucket."""
    out = []
    for a, b in zip(marks, marks[1:], strict=False):
        added = {k: b.disk.get(k, 0) - a.disk.get(k, 0) for k in (*BUCKETS, "total")}
        out.append({"kind": a.kind, "unit": a.unit, "label": a.label, "start_s": a.t,
                    "seconds": b.t - a.t, "added": added, "after": dict(b.disk)})  # fmt: skip
    return out


def phases(parts: list[dict]) -> dict[str, dict]:
    """Stretches summed by kind, in `PHASES` order: seconds, count, bytes added per bucket, and
    the run folder's bytes after the last stretch of the kind ("after")."""
    out: dict[str, dict] = {}
    for kind in PHASES:
        mine = [p for p in parts if p["kind"] == kind]
        if mine:
            out[kind] = {"seconds": sum(p["seconds"] for p in mine), "count": len(mine),
                         "added": {k: sum(p["added"][k] for p in mine)
                                   for k in (*BUCKETS, "total")},
                         "after": mine[-1]["after"]}  # fmt: skip
    return out


class Watch:
    """Marks of a suite run read from its run folder while it runs (module docstring)."""

    def __init__(self, run: Path, t0: float) -> None:
        self.run, self.t0 = run, t0
        self.marks = [Mark(0.0, "start-up", "", "launch", disk_usage(run))]
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, str] = {}
        self._ended: set[Path] = set()
        self._step_mark: dict[Path, Mark] = {}  # per log, its last step's mark (its time to set)
        self.commands: dict[str, list[tuple[str, str]]] = {}  # unit -> [(module, arguments)]
        self.builds_left = 0  # builds of the suite's build step not yet reported made

    def add(self, t: float, kind: str, unit: str, label: str) -> None:
        self.marks.append(Mark(t, kind, unit, label))

    def poll(self) -> None:
        """Add the marks that appeared since the last poll (sorted by time), with the disk now."""
        n = len(self.marks)
        for log in sorted(self.run.glob("units/*/*/*/unit.log")):
            self._read_steps(log)
        for folder in sorted(self.run.glob("units/*/*/*")):
            self._unit_end(folder)
        for marker in sorted(self.run.glob("build/*.done")):
            if marker not in self._ended:
                self._ended.add(marker)
                unit = next((m.unit for m in reversed(self.marks) if m.kind == "build"), "")
                self.add(self._mtime(marker), "suite", unit, f"built {marker.stem}")
        if len(self.marks) > n:
            new = sorted(self.marks[n:], key=lambda m: m.t)
            disk = disk_usage(self.run)
            for m in new:
                m.disk = disk
            self.marks[n:] = new

    def _unit_id(self, folder: Path) -> str:
        return "/".join(folder.relative_to(self.run / "units").parts)

    def _read_steps(self, log: Path) -> None:
        now = time.time() - self.t0
        try:
            with log.open("rb") as f:
                f.seek(self._offsets.get(log, 0))
                data = f.read()
        except OSError:
            return
        self._offsets[log] = self._offsets.get(log, 0) + len(data)
        text = self._partial.get(log, "") + data.decode(errors="replace")
        *lines, self._partial[log] = text.split("\n")
        unit = self._unit_id(log.parent)
        for line in lines:
            m = STEP_RE.match(line)
            started = STARTED_RE.match(line)
            if m:
                module = m.group(1)
                self.commands.setdefault(unit, []).append((module, m.group(2)))
                self.add(now, STEP_KINDS.get(module, "other"), unit, module)
                self._step_mark[log] = self.marks[-1]
            elif started and log in self._step_mark:
                # the time the suite wrote under the step's command line: not this poll's
                stamp = datetime.datetime.strptime(started.group(1), "%Y-%m-%d %H:%M:%S.%f")
                self._step_mark.pop(log).t = stamp.timestamp() - self.t0

    def _unit_end(self, folder: Path) -> None:
        if folder in self._ended:
            return
        for name in ("result.json", "failed.json"):
            path = folder / name
            if path.is_file():
                self._ended.add(folder)
                self.add(self._mtime(path), "suite", "", f"{name} {self._unit_id(folder)}")
                return

    def _mtime(self, path: Path) -> float:
        return path.stat().st_mtime - self.t0


# ------------------------------------------------------------------ the suite run


def setup(folder: Path, n_scenes: int) -> tuple[Path, Path, list[str]]:
    """The fixed set-up under `folder` (replaced when this program made it): source tasks,
    random 2-layer GRAM-T, models file. Returns (tasks folder, models file, suite arguments)."""
    if folder.exists() and not (folder / MARKER).is_file():
        raise cli.CLIError(f"{folder} exists and was not made by {PROG}; choose another --out")
    if folder.exists():
        shutil.rmtree(folder)
    folder = safeio.subdir(folder)
    safeio.write_bytes_atomic(folder / MARKER, b"")
    tasks = safeio.subdir(folder, "tasks")
    scene = make_scene_task(tasks)
    make_event_task(tasks)
    weights = folder / "gram-t-depth2.safetensors"
    subprocess.run([sys.executable, "-m", "hear_gram.checkpoints", "random", "--preset", "gram-t",
                    "--depth", "2", "--out", str(weights)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    models = folder / "models.toml"
    safeio.write_bytes_atomic(models, models_toml(weights).encode())
    args = ["--models", str(models), "--tasks-dir", str(tasks), "--out", str(folder / "run"),
            "--conditions", "dry,nat-binaural,localization", "--nat-task", scene.name,
            "--localization-source", scene.name, "--grid", "fast", "--grid-points", "1",
            "--localization-grid", "tiny", "--n-scenes", str(n_scenes), "--jobs", "1"]  # fmt: skip
    return tasks, models, args


def models_toml(weights: Path) -> str:
    return f"""# written by {PROG}
[[model]]
name = "gram"
module = "hear_gram"
weights = {json.dumps(str(weights))}
formats = ["mono", "binaural"]
options = {{ precision = "bf16" }}

[model.binaural]
module = "hear_gram.gram_t"

[model.localization]
options = {{ precision = "bf16", strategy = "cls" }}

[[model]]
name = "chance"
module = "chance"
conditions = ["localization"]
formats = ["binaural"]
"""


def read_lines(stream, sink: list[tuple[float, str]], t0: float, log) -> None:
    for line in stream:
        sink.append((time.time() - t0, line.rstrip("\n")))
        log.write(line)


def run_suite(run: Path, args: list[str], log_file: Path, poll_s: float) -> tuple[Watch, int, list]:
    """Run the suite (its output to `log_file`), marking it from outside; (marks, exit code,
    its stdout lines with their times)."""
    cmd = [sys.executable, "-m", "hear_gram.suite", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out: list[tuple[float, str]] = []
    with safeio.open_append(log_file) as log:
        log.write("$ " + " ".join(cmd) + "\n")
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)  # fmt: skip
        reader = threading.Thread(target=read_lines, args=(proc.stdout, out, t0, log))
        reader.start()
        watch = Watch(run, t0)
        seen = 0
        while proc.poll() is None:
            time.sleep(poll_s)
            watch.poll()
            seen = stdout_marks(watch, out, seen)
        reader.join()
        end = time.time() - t0
        watch.poll()
        stdout_marks(watch, out, seen)
    watch.add(end, "end", "", "exit")
    watch.marks[-1].disk = disk_usage(run)
    watch.marks.sort(key=lambda m: m.t)  # the suite's own lines were marked after the polls
    return watch, proc.returncode, out


# The suite's build step (`hear_gram.suite.__main__`): its first line, then one line per build made
BUILDS_RE = re.compile(r"build: (\d+) to make first")
BUILT_RE = re.compile(r"build: (.+) \([^()]*\)")


def stdout_marks(watch: Watch, lines: list[tuple[float, str]], seen: int) -> int:
    """Marks from the suite's own lines: "suite: ... planned" (start-up ends), "build: N to make
    first" .. each "build: LABEL (T)" (the build step, before the units), "ran N units" (the
    report starts). Returns how many lines are read."""
    for t, line in lines[seen:]:
        if line.startswith("suite: ") and "planned" in line:
            watch.add(t, "suite", "", "planned")
            watch.marks[-1].disk = disk_usage(watch.run)
        elif BUILDS_RE.match(line):  # the suite's build step, before any unit: "build: N to make"
            watch.builds_left = int(BUILDS_RE.match(line).group(1))
            watch.add(t, "build", "", "builds")
            watch.marks[-1].disk = disk_usage(watch.run)
        elif BUILT_RE.match(line) and watch.builds_left > 0:  # "build: LABEL (12 s)": one made
            watch.builds_left -= 1
            more = watch.builds_left > 0
            watch.add(t, "build" if more else "suite", "", f"built {BUILT_RE.match(line).group(1)}")
            watch.marks[-1].disk = disk_usage(watch.run)
        elif line.startswith("ran ") and " units in " in line:
            watch.add(t, "report", "", "units ran")
            watch.marks[-1].disk = disk_usage(watch.run)
    return len(lines)


# ------------------------------------------------------------------ per unit


def log_times(path: Path, pattern: str) -> list[float]:
    """POSIX times of the lines of a `hear_gram.cli` log file that contain `pattern`."""
    out = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        m = LOG_TIME_RE.match(line)
        if m and pattern in line:
            stamp = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            out.append(stamp.timestamp())
    return out


def recorded_work(run: Path, unit: str, commands: list[tuple[str, str]]) -> dict:
    """The embedding and training seconds the unit's tools recorded (None: not found)."""
    rec: dict = {"embed_s": None, "train_s": None, "evaluate_s": None}
    for module, rest in commands:
        if module == "hear_gram.predict" and rest.split():
            emb = Path(rest.split()[0])
            rec["embed_s"] = _json_number(emb / "profile.embeddings.json", "time_elapsed")
            rec["train_s"] = _json_number(emb / "prediction-done.json", "time")
        if module == "localization_tasks.evaluate":
            log = run / "units" / unit / "evaluate" / "logs" / "localization_tasks-evaluate.log"
            loaded = log_times(log, " loaded ")
            results = log_times(log, "'mean_angular_error_deg'")
            if "--module chance" in rest:
                rec["evaluate_s"] = 0.0  # nothing embedded; the probe is the training mean
            elif loaded and results:
                rec["evaluate_s"] = results[-1] - loaded[0]
    return rec


def _json_number(path: Path, key: str) -> float | None:
    try:
        value = json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def units_table(run: Path, watch: Watch, parts: list[dict]) -> list[dict]:
    """Per unit: wall time (from the previous unit's end, or from the plan), builds, the
    recorded embedding and training, and the overhead: the rest."""
    rows = []
    start = next((m.t for m in watch.marks if m.label == "planned"), 0.0)
    for m in watch.marks:
        if not m.label.startswith(("result.json ", "failed.json ")):
            continue
        unit = m.label.split(" ", 1)[1]
        mine = [p for p in parts if start <= p["start_s"] < m.t]
        builds = sum(p["seconds"] for p in mine if p["kind"] == "build")
        rec = recorded_work(run, unit, watch.commands.get(unit, []))
        work = [v for v in rec.values() if v is not None]
        known = rec["evaluate_s"] is not None or None not in (rec["embed_s"], rec["train_s"])
        wall = m.t - start
        overhead = wall - builds - sum(work) if known else None
        outside = sum(p["seconds"] for p in mine if p["kind"] == "suite")
        rows.append({"unit": unit, "status": m.label.split(" ")[0].split(".")[0], "wall_s": wall,
                     "build_s": builds, **rec, "overhead_s": overhead,
                     "outside_steps_s": outside})  # fmt: skip
        start = m.t
    return rows


# ------------------------------------------------------------------ printing


def mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def fmt_timeline(parts: list[dict]) -> list[str]:
    head = (
        f"{'s':>7s} {'seconds':>8s}  {'kind':9s} {'unit / step':58s} {'+MB':>7s} {'MB after':>9s}"
    )
    lines = [head, "-" * len(head)]
    for p in parts:
        what = f"{p['unit']} {p['label']}".strip()[:58]
        lines.append(f"{p['start_s']:7.1f} {p['seconds']:8.2f}  {p['kind']:9s} {what:58s} "
                     f"{mb(p['added']['total']):>7s} {mb(p['after']['total']):>9s}")  # fmt: skip
    return lines


def fmt_phases(phase: dict[str, dict], end: dict[str, int], source: int) -> list[str]:
    cols = list(BUCKETS)
    head = (f"{'phase':40s} {'n':>3s} {'wall s':>8s} " + " ".join(f"{c[:10]:>10s}" for c in cols)
            + f" {'total':>8s} {'MB after':>9s}")  # fmt: skip
    lines = ["per phase: wall time, MB added to the run folder by subfolder, and the run folder's "
             "MB after its last step:", head, "-" * len(head)]  # fmt: skip
    for kind, p in phase.items():
        cells = " ".join(f"{mb(p['added'][c]):>10s}" for c in cols)
        lines.append(f"{PHASES[kind]:40s} {p['count']:3d} {p['seconds']:8.1f} {cells} "
                     f"{mb(p['added']['total']):>8s} {mb(p['after']['total']):>9s}")  # fmt: skip
    cells = " ".join(f"{mb(end[c]):>10s}" for c in cols)
    lines.append(
        f"{'run folder at the end (MB)':40s} {'':3s} {'':8s} {cells} {mb(end['total']):>8s}"
    )
    ratios = " ".join(f"{end[c] / source:10.2f}" for c in cols)
    lines.append(
        f"{'  x the source tasks':40s} {'':3s} {'':8s} {ratios} {end['total'] / source:8.2f}"
    )
    return lines


def fmt_units(rows: list[dict]) -> list[str]:
    def s(v):
        return "-" if v is None else f"{v:.1f}"

    head = (f"{'unit':50s} {'wall s':>7s} {'build':>6s} {'embed':>6s} {'train':>6s} "
            f"{'eval':>6s} {'overhead':>8s} {'in suite':>8s} {'in tools':>8s}")  # fmt: skip
    lines = ["per unit, s (embed, train, eval: as the tools record them; overhead: the rest, "
             "in the suite between steps and in the tools' processes):", head, "-" * len(head)]  # fmt: skip
    for r in rows:
        over = r["overhead_s"]
        tools = None if over is None else over - r["outside_steps_s"]
        lines.append(f"{r['unit'][:50]:50s} {r['wall_s']:7.1f} {r['build_s']:6.1f} "
                     f"{s(r['embed_s']):>6s} {s(r['train_s']):>6s} {s(r['evaluate_s']):>6s} "
                     f"{s(over):>8s} {r['outside_steps_s']:8.1f} {s(tools):>8s}")  # fmt: skip
    return lines


def fmt_goals(result: dict) -> list[str]:
    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    end, source = result["disk_end"], result["source_bytes"]
    ratio = end["total"] / source
    no_bank = (end["total"] - end["scene_bank"]) / source
    known = [r for r in result["units"] if r["overhead_s"] is not None]
    lines = ["goals (issue 19):",
             f"  run folder {mb(end['total'])} MB = {ratio:.1f}x the source tasks "
             f"({mb(source)} MB) (goal <= {GOAL_DISK_RATIO:g}x) {mark(ratio <= GOAL_DISK_RATIO)}; "
             f"without the scene-bank cache ({result['n_scenes']} scenes, a fixed cost) "
             f"{no_bank:.1f}x"]  # fmt: skip
    if known:
        worst = max(known, key=lambda r: r["overhead_s"])
        lines.append(f"  per-unit overhead max {worst['overhead_s']:.1f} s ({worst['unit']}) "
                     f"(goal <= {GOAL_UNIT_OVERHEAD_S:g} s) "
                     f"{mark(worst['overhead_s'] <= GOAL_UNIT_OVERHEAD_S)}")  # fmt: skip
        chance = [r for r in known if r["unit"].startswith("chance/")]
        if chance:
            lines.append(f"  chance unit (no embedding, no probe: the fixed cost of a unit) "
                         f"{chance[0]['overhead_s']:.1f} s")  # fmt: skip
    return lines


# ------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--out", type=Path, default=Path("work/bench/suite.json"),
                   help="the JSON written; the set-up and run folder: suite/ beside it")  # fmt: skip
    p.add_argument("--n-scenes", type=cli.positive_int, default=24,
                   help="scenes in the scene banks the builds render")  # fmt: skip
    p.add_argument("--poll-s", type=float, default=0.1, help="seconds between looks at the run")
    return p


def body(args: argparse.Namespace) -> int:
    if not 0.01 <= args.poll_s <= 10:  # also refuses NaN
        raise cli.CLIError(f"--poll-s must be in [0.01, 10], got {args.poll_s}")
    folder = args.out.parent.resolve() / "suite"
    print(f"{PROG}: set-up in {folder} ...", flush=True)
    tasks, _, suite_args = setup(folder, args.n_scenes)
    source = tree_bytes(tasks)
    run = folder / "run"
    print(f"suite: python -m hear_gram.suite {' '.join(suite_args)}", flush=True)
    watch, code, _ = run_suite(run, suite_args, folder / "suite-output.log", args.poll_s)
    parts = stretches(watch.marks)
    result = {"cpu": platform.processor() or platform.machine(), "n_scenes": args.n_scenes,
              "source_bytes": source, "suite_exit": code, "wall_s": watch.marks[-1].t,
              "stretches": parts, "phases": phases(parts), "disk_end": watch.marks[-1].disk,
              "units": units_table(run, watch, parts)}  # fmt: skip
    print("\n".join(["", *fmt_timeline(parts), "", *fmt_phases(result["phases"],
          result["disk_end"], source), "", *fmt_units(result["units"]), "", *fmt_goals(result)]))  # fmt: skip
    print(f"suite exit {code}, {result['wall_s']:.0f} s in all; its output: "
          f"{folder / 'suite-output.log'}; run folder {run}")  # fmt: skip
    safeio.write_json(safeio.subdir(args.out.parent) / safeio.check_name(args.out.name, "--out"),
                      result)  # fmt: skip
    print(f"wrote {args.out}")
    return 0 if code == 0 else 1


def main(argv: list[str] | None = None) -> int:
    return cli.main(PROG, build_parser, body, argv, log_dir=lambda a: a.out.parent)


if __name__ == "__main__":
    sys.exit(main())
