"""`python -m hear_gram.suite`: HEAR tasks to the paper's table, for any HEAR modules.

    python -m hear_gram.suite --models models.toml --tasks-dir TASKS --out OUT
        [--conditions dry,nat-binaural,nat-ambisonic,localization,t60] [--task NAME ...]
        [--condition-module MODULE ...] [--nat-task NAME ...]
        [--nat-binaural-dir D] [--nat-ambisonic-dir D] [--localization-dir D]
        [--localization-source NAME ...] [--grid default|fast|faster] [--grid-points N]
        [--localization-grid default|fast|tiny] [--n-scenes N] [--seed S] [--seeds N] [--workers N]
        [--jobs N] [--shard K/N] [--executor local|slurm|submitit-local] [--slurm KEY=VALUE ...]
        [--retry-failed] [--report-only] [--no-report] [--no-probe] [--fresh-processes] [-q | -v]

Plans every unit (model x condition x task, `hear_gram.suite.units`), leaves out those whose
module cannot take their input format (`hear_gram.suite.probe`: one line per model; `--no-probe`
skips it, e.g. on a login node), makes the one-off builds
the units to run read (`Condition.builds`: only their formats, kinds of task and models' sample
rates; a step of its own, one line per build with its time, "build: localization esc50 binaural
16000 Hz (12 s)"), runs the units (in `--jobs` threads, or as a submitit job array; one line per
unit, with an ETA from the units' own times: builds never enter it), then merges every done unit
into OUT/report/ (`hear_gram.suite.report`). A unit's steps (heareval's embeddings and
predictions runners through `hear_gram.embed` and `hear_gram.predict`, the spatial evaluators)
run in warm worker processes, one per job, that import heareval, TensorFlow and Lightning once
(`hear_gram.suite.worker`); `--fresh-processes` starts a fresh interpreter for every step
instead. `--seeds N` repeats every unit's downstream training with N seeds. A failed unit is
reported in the table with its cause and its log kept; the run goes on, and the exit code is 1.
Rerunning runs only the missing,
stale or failed units (a unit's key holds its tasks' content, the keys of the builds it reads,
its module's code, its weights' sha256, options and grid), except those whose failure cannot
change while their key does not (a module that does not import, a format it does not take, a
task that cannot be read; `hear_gram.suite.condition.PERMANENT`): `--retry-failed` runs those
too. `--work` is the old name of `--out`; the detailed log is OUT/logs/hear_gram-suite.log.

Ctrl-C (or SIGINT to this process alone) stops the run: nothing more starts, the running steps
get SIGINT (a second Ctrl-C kills them), an interrupted unit or build is recorded neither done
nor failed, REPORT.md and results.csv are written for what is done (a Ctrl-C while they are
written waits for them), and the last line on stderr is "interrupted: N done, M left; rerun the
same command to resume"; exit status 130.

Conditions are plugins (`hear_gram.suite.condition`): `--condition-module MODULE` imports a
module that registers more (its options appear here when it is given before `--help`). A
condition whose `default` is False (an opt-in, e.g. one that trains a model per unit) runs only
when `--conditions` names it.

Clusters: `--shard K/N` runs every N-th unit from the K-th (0-based) of the sorted plan, for array
jobs (`sbatch --array=0-15 --wrap "python -m hear_gram.suite ... --shard \\$SLURM_ARRAY_TASK_ID/16
--no-report"`, then `--report-only`); a unit another shard is running is left to it ("busy").
`--executor slurm` submits the units itself as one SLURM job array through submitit and waits
(`--slurm slurm_partition=gpu --slurm timeout_min=240 --slurm gpus_per_node=1`: submitit's
AutoExecutor parameters); `submitit-local` runs the same code path as local processes.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hear_gram import cli
from hear_gram.safeio import subdir
from hear_gram.suite import build, probe, report, worker
from hear_gram.suite import condition as conditions
from hear_gram.suite.build import Build
from hear_gram.suite.condition import UnitInterrupted
from hear_gram.suite.config import ModelSpec, Settings, SuiteConfigError, load_models
from hear_gram.suite.units import (
    Unit,
    fail_unit,
    failure,
    permanent,
    plan,
    run_unit,
    shard,
    status,
    unit_key,
)

PROG = "python -m hear_gram.suite"


def _options() -> list[conditions.Option]:
    """Every registered condition's options, each flag once."""
    seen: dict[str, conditions.Option] = {}
    for name in conditions.names():
        for opt in conditions.get(name).options:
            seen.setdefault(opt.flag, opt)
    return list(seen.values())


def build_parser() -> argparse.ArgumentParser:
    from naturalistic_hear.bank import DEFAULT_N_SCENES

    p = cli.parser(PROG, __doc__)
    p.add_argument("--models", type=Path, required=True, metavar="FILE", help="TOML models file")
    cli.add_tasks_dir(p)
    p.add_argument("--out", "--work", dest="out", type=Path, default=Path("work/suite"),
                   metavar="DIR", help="run folder: units, builds, report (--work: the same)")  # fmt: skip
    p.add_argument("--conditions", default="",
                   help=f"comma-separated, of {','.join(conditions.names())} "
                        f"(default: {','.join(conditions.defaults())})")  # fmt: skip
    p.add_argument("--condition-module", action="append", default=[], metavar="MODULE",
                   help="module to import for the conditions it registers")  # fmt: skip
    p.add_argument("--task", action="append", default=[], help="HEAR task (default: all)")
    for opt in _options():
        if opt.kind == "names":
            p.add_argument(opt.flag, dest=opt.dest, action="append", default=[],
                           metavar="NAME", help=opt.help)  # fmt: skip
        elif opt.kind == "count":
            p.add_argument(opt.flag, dest=opt.dest, type=cli.positive_int, default=opt.default,
                           metavar="N", help=f"{opt.help} (default {opt.default})")  # fmt: skip
        else:
            p.add_argument(opt.flag, dest=opt.dest, type=Path, metavar="DIR", help=opt.help)
    p.add_argument("--grid", default="default", choices=("default", "fast", "faster"))
    p.add_argument("--grid-points", type=cli.positive_int, default=8)
    p.add_argument("--localization-grid", default="default", choices=("default", "fast", "tiny"))
    p.add_argument("--n-scenes", type=cli.positive_int, default=DEFAULT_N_SCENES,
                   help="scenes in built scene banks")  # fmt: skip
    cli.add_seed(p)
    p.add_argument("--workers", type=cli.positive_int, default=1,
                   help="processes per Nat-HEAR render")  # fmt: skip
    cli.add_jobs(p, help="units run in parallel (local)")
    p.add_argument("--shard", type=cli.shard, default=(0, 1), metavar="K/N",
                   help="run this deterministic subset of the plan")  # fmt: skip
    p.add_argument("--executor", default="local", choices=("local", "slurm", "submitit-local"))
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="submitit AutoExecutor parameter, e.g. slurm_partition=gpu")  # fmt: skip
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun units whose failure cannot change (module import, format, task)")  # fmt: skip
    p.add_argument("--report-only", action="store_true", help="merge done units, run nothing")
    p.add_argument("--no-report", action="store_true", help="run units, skip the report")
    p.add_argument("--fresh-processes", action="store_true",
                   help="run each step of a unit in a fresh interpreter, not a warm worker "
                        "(slower: each imports heareval, TensorFlow and Lightning again)")  # fmt: skip
    p.add_argument("--no-probe", action="store_true",
                   help="plan every unit without first checking each module takes its formats")  # fmt: skip
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    extra = {}
    for opt in _options():
        value = getattr(args, opt.dest, None)
        if opt.kind == "names":
            extra[opt.dest] = conditions.unique(value or [])
        elif opt.kind == "count":
            extra[opt.dest] = value
        else:
            extra[opt.dest] = value.resolve() if value is not None else None
    return Settings(
        work=args.out.resolve(),
        tasks_dir=args.tasks_dir.resolve(),
        conditions=tuple(c.strip() for c in args.conditions.split(",") if c.strip()),
        tasks=conditions.unique(args.task),
        extra=extra,
        grid=args.grid,
        grid_points=args.grid_points,
        localization_grid=args.localization_grid,
        n_scenes=args.n_scenes,
        seed=args.seed,
        workers=args.workers,
        condition_modules=tuple(args.condition_module),
    )


def _slurm_parameters(pairs: list[str]) -> dict:
    out = {"timeout_min": 24 * 60}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise SuiteConfigError(f"--slurm takes KEY=VALUE, got {pair!r}")
        try:
            out[key] = cli.loads_json(value, f"--slurm {key}")
        except cli.CLIError:
            out[key] = value
    return out


def _duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '2 h 05 min'."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def eta(seconds: Sequence[float], left: int, jobs: int) -> float | None:
    """Seconds until `left` more units end, `jobs` at a time, from the times of the units that
    ran (None before any did). One-off builds are a step of their own before the units and
    never enter `seconds`: a 10-minute render must not make every unit look 10 minutes long."""
    if not seconds:
        return None
    return statistics.fmean(seconds) * math.ceil(left / max(1, jobs))


class Progress:
    """The units' bar and one line per ended unit ("done    m/dry/a (12 s) [3/10, ETA 1 min
    24 s]"), on stderr; the ETA is `eta` of the units that ran (not skipped or busy)."""

    def __init__(self, total: int, jobs: int, quiet: bool) -> None:
        from tqdm import tqdm

        self.jobs, self.quiet, self.times = jobs, quiet, []
        self.bar = tqdm(total=total, desc="units", unit="unit", file=sys.stderr, disable=quiet,
                        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}{postfix}")  # fmt: skip

    def finished(self, record: dict) -> None:
        if record["status"] in ("done", "failed"):
            self.times.append(record["seconds"])
        self.bar.update(1)
        left = self.bar.total - self.bar.n
        when = eta(self.times, left, self.jobs)
        where = f"{self.bar.n}/{self.bar.total}" + (f", ETA {_duration(when)}" if when else "")
        self.bar.set_postfix_str(f"ETA {_duration(when)}" if when else "", refresh=False)
        if not self.quiet:
            line = f"{record['status']:7s} {record['unit']} ({record['seconds']:.0f} s) [{where}]"
            if record["error"]:
                line += f": {record['error'][:200]}"
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _in_pool(fn: Callable[[Any], Any], items: Sequence[Any], jobs: int,
             on_result: Callable[[Any, Any], bool]) -> bool:  # fmt: skip
    """`fn(item)` for every item, `jobs` at a time in threads; `on_result(item, result)` as each
    ends (True from it: stop, as on Ctrl-C). On Ctrl-C (a KeyboardInterrupt in this, the main
    thread): nothing more starts, each running step gets SIGINT (`condition.stop_steps`; a
    second Ctrl-C kills them), and the items running are waited for, their results passed on.
    Returns True when stopped so."""
    pool = cf.ThreadPoolExecutor(max(1, jobs))
    futures: dict[cf.Future, Any] = {}
    seen: set[cf.Future] = set()

    def take(future: cf.Future) -> bool:
        seen.add(future)
        return bool(on_result(futures[future], future.result()))

    try:
        futures = {pool.submit(fn, item): item for item in items}
        for future in cf.as_completed(futures):
            if take(future):
                raise KeyboardInterrupt
        return False
    except KeyboardInterrupt:
        conditions.stop_steps()
        pool.shutdown(wait=False, cancel_futures=True)
        kill = False
        while True:
            try:
                if kill:
                    conditions.stop_steps(kill=True)
                running = [f for f in futures if f not in seen and not f.cancelled()]
                for future in cf.as_completed(running):
                    take(future)
                return True
            except KeyboardInterrupt:  # again, while the running steps end: end them now
                kill = True
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _needed_builds(units: Sequence[Unit], models: dict[str, ModelSpec],
                   settings: Settings) -> dict[Path, tuple[Build, list[Unit]]]:  # fmt: skip
    """The builds the units read that are not made yet, by folder (two sources of the same
    content have one key but two folders), with the units reading each."""
    out: dict[Path, tuple[Build, list[Unit]]] = {}
    for unit in units:
        try:
            resolved = models[unit.model].resolve(unit.condition, unit.fmt)
            needed = conditions.get(unit.condition).builds(unit, resolved, settings)
        except (OSError, ValueError, LookupError):
            continue  # the unit's own run says why
        for b in needed:
            if not build.built(b):
                out.setdefault(b.root, (b, []))[1].append(unit)
    return out


def run_builds(builds: Sequence[Build], settings: Settings, jobs: int,
               quiet: bool) -> tuple[dict[Path, str], bool]:  # fmt: skip
    """Make `builds` as a step of their own ("build: LABEL (12 s)"), each logged to
    WORK/build/<folder>.log. Returns ({folder: error} of those that failed, interrupted)."""
    failed: dict[Path, str] = {}
    if not quiet:
        print(f"build: {len(builds)} to make first (one-off: not in the units' ETA)",
              file=sys.stderr)  # fmt: skip

    def make(b: Build) -> tuple[str, float]:
        t0 = time.time()
        log = subdir(settings.work, "build", what="build folder") / f"{b.root.name}.log"
        try:
            build.run_build(b, settings, log)
        except UnitInterrupted:
            return "interrupted", time.time() - t0
        except Exception as e:  # reported on its units; the other builds go on
            return " ".join(f"{type(e).__name__}: {e}".split()) or "failed", time.time() - t0
        return "", time.time() - t0

    def ended(b: Build, result: tuple[str, float]) -> bool:
        error, seconds = result
        if error and error != "interrupted":
            failed[b.root] = error
        if not quiet:
            what = {"": "", "interrupted": " interrupted"}.get(error, f" failed: {error[:200]}")
            print(f"build: {b.label} ({_duration(seconds)}){what}", file=sys.stderr)
        return error == "interrupted"

    interrupted = _in_pool(make, builds, jobs, ended)
    return failed, interrupted


def run_local(units: list[Unit], models: dict[str, ModelSpec], settings: Settings, jobs: int,
              quiet: bool = False, warm: bool = True) -> tuple[list[dict], bool]:  # fmt: skip
    """The builds the units need (`run_builds`), then the units, `jobs` at a time, their steps
    in warm workers (`hear_gram.suite.worker`; fresh processes without `warm`). Returns their
    records and whether Ctrl-C stopped the run (then the units not started have no record)."""
    tools = sorted({t for u in units for t in conditions.get(u.condition).steps})
    if not (warm and tools):
        return _run_local(units, models, settings, jobs, quiet)
    pool = worker.pool_for(settings, tools)
    try:
        conditions.use_workers(pool)
        # With builds to make, the workers start before them, so that their imports (heareval,
        # TensorFlow, Lightning) overlap the builds; otherwise each starts with its first step.
        return _run_local(units, models, settings, jobs, quiet,
                          lambda: pool.start(min(jobs, len(units))))  # fmt: skip
    finally:
        conditions.use_workers(None)
        pool.close()


def _run_local(units: list[Unit], models: dict[str, ModelSpec], settings: Settings, jobs: int,
               quiet: bool, before_builds: Callable[[], None] = lambda: None,
               ) -> tuple[list[dict], bool]:  # fmt: skip
    needed = _needed_builds(units, models, settings)
    failed_builds, interrupted = {}, False
    if needed:
        before_builds()
        failed_builds, interrupted = run_builds([b for b, _ in needed.values()], settings, jobs,
                                                quiet)  # fmt: skip
    if interrupted:
        return [], True
    records: list[dict] = []
    progress = Progress(len(units), jobs, quiet)
    try:
        blocked = set()
        for root, error in failed_builds.items():
            b, readers = needed[root]
            for unit in readers:
                if unit not in blocked:
                    blocked.add(unit)
                    message = f"build {b.label} failed: {error}"
                    records.append(fail_unit(unit, models[unit.model], settings, message,
                                             conditions.failure_cause(error)))  # fmt: skip
                    progress.finished(records[-1])

        def ended(unit: Unit, record: dict) -> bool:
            records.append(record)
            progress.finished(record)
            # Ctrl-C reached a unit's subprocess (and so this process too, in a moment)
            return record["status"] == "interrupted"

        todo = [u for u in units if u not in blocked]
        interrupted = _in_pool(lambda u: run_unit(u, models[u.model], settings), todo, jobs, ended)
    finally:
        progress.close()
    return records, interrupted


def run_submitit(units: list[Unit], models: dict[str, ModelSpec], settings: Settings,
                 cluster: str, parameters: dict, quiet: bool = False) -> list[dict]:  # fmt: skip
    """One job array (SLURM, or local processes) of `run_unit` calls; waits for all."""
    try:
        import submitit
    except ImportError as e:
        raise SuiteConfigError(
            f"--executor {cluster} needs submitit (pip install submitit); or run array jobs "
            "yourself with --shard K/N"
        ) from e
    folder = subdir(settings.work, "submitit", what="submitit folder")
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    executor.update_parameters(name="hear_gram.suite", **parameters)
    jobs = executor.map_array(run_unit, units, [models[u.model] for u in units],
                              [settings] * len(units))  # fmt: skip
    print(f"submitted {len(jobs)} units ({cluster}); job logs under {folder}", file=sys.stderr)
    records = []
    progress = Progress(len(jobs), len(jobs), quiet)
    try:
        poll = 1.0 if cluster == "local" else 10.0
        for job in submitit.helpers.as_completed(jobs, poll_frequency=poll):
            unit = units[jobs.index(job)]
            try:
                records.append(job.result())
            except Exception as e:  # the job itself died (time limit, node failure): transient
                error = " ".join(f"{type(e).__name__}: {e}".split())[:500]
                records.append({"unit": unit.id, "status": "failed", "seconds": 0.0,
                                "error": error, "cause": ""})  # fmt: skip
            progress.finished(records[-1])
    finally:
        progress.close()
    return records


def _state(unit: Unit, model: ModelSpec, settings: Settings) -> str:
    """'done', 'failed' (may pass on a rerun), 'permanent' (cannot change while its key does
    not: `hear_gram.suite.condition.PERMANENT`) or 'todo'."""
    try:
        key = unit_key(unit, model.resolve(unit.condition, unit.fmt), settings)
        state = status(unit, key, settings.work)
        if state == "failed" and permanent(failure(unit, key, settings.work)):
            return "permanent"
        return state
    except (OSError, ValueError, LookupError):
        return "todo"  # its run records why


def _states(units: Sequence[Unit], models: dict[str, ModelSpec], settings: Settings) -> dict[Unit, str]:  # fmt: skip
    return {u: _state(u, models[u.model], settings) for u in units}


def _to_run(states: dict[Unit, str], retry_failed: bool) -> list[Unit]:
    skip = {"done"} if retry_failed else {"done", "permanent"}
    return [u for u, state in states.items() if state not in skip]


class _DeferredInterrupt:
    """Ctrl-C is held back while the report is written (seconds), so that an interrupted run
    still leaves a whole REPORT.md and results.csv; a second Ctrl-C is not held back."""

    def __init__(self) -> None:
        self.hit = False
        self.saved: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.hit = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self.saved = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            signal.signal(signal.SIGINT, self.saved)


def body(args: argparse.Namespace) -> int:
    for module in args.condition_module:
        conditions.load_module(module)
    settings = settings_from(args)
    models = load_models(args.models)
    # Made first, through safeio.subdir: a link planted at OUT/units or OUT/report that leads
    # outside OUT is refused before any unit runs.
    subdir(settings.work, "units", what="units folder")
    if not args.no_report:
        subdir(settings.work, "report", what="report folder")
    by_name = {m.name: m for m in models}
    k, n = args.shard
    try:  # minutes on the full HEAR set: unit keys hash every audio file
        units = plan(models, settings)
        # modules that cannot take a unit's format are found here, before the run
        unsupported = {} if args.no_probe else probe.check(units, by_name, settings, args.jobs)
        mine = [u for u in shard(units, k, n) if u not in unsupported]
        states = _states(mine, by_name, settings)
    except KeyboardInterrupt:
        print("interrupted while planning: nothing ran; rerun the same command to resume",
              file=sys.stderr)  # fmt: skip
        return cli.EXIT_INTERRUPTED
    parameters = _slurm_parameters(args.slurm) if args.executor != "local" else {}
    todo = _to_run(states, args.retry_failed)
    counts = {s: sum(1 for v in states.values() if v == s) for s in ("done", "failed", "permanent")}
    print(f"suite: {len(units)} units planned, {len(mine)} in shard {k}/{n}: {counts['done']} done, "
          f"{counts['failed'] + counts['permanent']} failed before, {len(todo)} to run",
          flush=True)  # fmt: skip
    if counts["permanent"] and not args.retry_failed:
        print(f"{counts['permanent']} units failed before for a reason that cannot change; "
              "--retry-failed reruns them", flush=True)  # fmt: skip
    failed = 0
    interrupted = False
    if todo and not args.report_only:
        conditions.allow_steps()
        t0 = time.time()
        records: list[dict] = []
        try:
            if args.executor == "local":
                records, interrupted = run_local(todo, by_name, settings, args.jobs, args.quiet,
                                                 warm=not args.fresh_processes)  # fmt: skip
            else:
                cluster = "slurm" if args.executor == "slurm" else "local"
                records = run_submitit(todo, by_name, settings, cluster, parameters, args.quiet)
        except KeyboardInterrupt:  # between steps: nothing of a unit is lost, the rerun resumes
            conditions.stop_steps()
            interrupted = True
        by = {s: sum(r["status"] == s for r in records) for s in ("failed", "busy", "interrupted")}
        failed = by["failed"]
        done = sum(r["status"] in ("done", "skipped") for r in records)
        line = f"ran {len(records)} units in {time.time() - t0:.0f} s: {done} done, {failed} failed"
        if by["busy"]:
            line += f", {by['busy']} busy (another run holds them)"
        if by["interrupted"]:
            line += f", {by['interrupted']} interrupted"
        print(line, flush=True)
        interrupted = interrupted or by["interrupted"] > 0
    with _DeferredInterrupt() as held:
        if not args.no_report:
            out = report.write_report(units, models, settings, unsupported)
            if not (interrupted or held.hit):
                text = (out / "REPORT.md").read_text()
                print("\n" + "\n".join(ln for ln in text.splitlines() if not ln.startswith("![")))
            print(f"report: {out}/REPORT.md (results.csv, results.json, figures)")
            print(f"logs: {settings.work / 'units'}/<model>/<condition>/<task>/unit.log")
        sys.stdout.flush()  # before stderr's last line
        if interrupted or held.hit:
            after = _states(mine, by_name, settings)
            left = len(_to_run(after, args.retry_failed))
            done = sum(v == "done" for v in after.values())
            print(f"interrupted: {done} done, {left} left; rerun the same command to resume",
                  file=sys.stderr, flush=True)  # fmt: skip
            return cli.EXIT_INTERRUPTED
    return 1 if failed else 0


def _preload(argv: Sequence[str]) -> None:
    """Import the `--condition-module`s before the parser is built, so that their conditions'
    options are known to it."""
    for i, arg in enumerate(argv):
        if arg == "--condition-module" and i + 1 < len(argv):
            conditions.load_module(argv[i + 1])
        elif arg.startswith("--condition-module="):
            conditions.load_module(arg.split("=", 1)[1])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _preload(argv)
    except (ImportError, ValueError) as e:
        print(f"{PROG}: error: {cli.one_line(e)}", file=sys.stderr)
        return cli.EXIT_ERROR
    return cli.main(PROG, build_parser, body, argv, log_dir=lambda a: a.out)


if __name__ == "__main__":
    sys.exit(main())
