"""`python -m hear_gram.suite`: HEAR tasks to the paper's table, for any HEAR modules.

    python -m hear_gram.suite --models models.toml --tasks-dir TASKS --out OUT
        [--conditions dry,nat-binaural,nat-ambisonic,localization,t60] [--task NAME ...]
        [--condition-module MODULE ...] [--nat-task NAME ...]
        [--nat-binaural-dir D] [--nat-ambisonic-dir D] [--localization-dir D]
        [--localization-source NAME ...] [--grid default|fast|faster] [--grid-points N]
        [--localization-grid default|fast|tiny] [--n-scenes N] [--seed S] [--workers N]
        [--jobs N] [--shard K/N] [--executor local|slurm|submitit-local] [--slurm KEY=VALUE ...]
        [--report-only] [--no-report] [--no-probe] [-q | -v]

Plans every unit (model x condition x task, `hear_gram.suite.units`), leaves out those whose
module cannot take their input format (`hear_gram.suite.probe`), runs those not done (in
`--jobs` threads, or as a submitit job array), then merges every done unit into OUT/report/
(`hear_gram.suite.report`). A failed unit is reported in the table and its log kept; the run goes
on, and the exit code is 1. Rerunning runs only the missing, failed or stale units (a unit's key
holds its tasks' content, its module's code, its weights' sha256, options and grid). `--work` is
the old name of `--out`; the detailed log is OUT/logs/hear_gram-suite.log.

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
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hear_gram import cli
from hear_gram.safeio import subdir
from hear_gram.suite import condition as conditions
from hear_gram.suite import probe, report
from hear_gram.suite.config import ModelSpec, Settings, SuiteConfigError, load_models
from hear_gram.suite.units import Unit, plan, run_unit, shard, status, unit_key

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
    p.add_argument("--report-only", action="store_true", help="merge done units, run nothing")
    p.add_argument("--no-report", action="store_true", help="run units, skip the report")
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


def _progress(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="units", unit="unit", file=sys.stderr, disable=quiet)


def _finished(bar, record: dict, quiet: bool) -> None:
    if not quiet:
        line = f"{record['status']:7s} {record['unit']} ({record['seconds']:.0f} s)"
        if record["error"]:
            line += f": {record['error'][:200]}"
        bar.write(line, file=sys.stderr)
    bar.update(1)


def run_local(units: list[Unit], models: dict[str, ModelSpec], settings: Settings, jobs: int,
              quiet: bool = False) -> list[dict]:  # fmt: skip
    records = []
    pool = cf.ThreadPoolExecutor(max(1, jobs))
    try:
        with _progress(len(units), quiet) as bar:
            futures = [pool.submit(run_unit, u, models[u.model], settings) for u in units]
            for future in cf.as_completed(futures):
                records.append(future.result())
                _finished(bar, records[-1], quiet)
    finally:
        # On Ctrl-C (raised in this, the main thread): start nothing more; the units running
        # see their subprocesses end by the same signal and return; the KeyboardInterrupt then
        # goes on to cli.main (exit 130). A rerun picks up the rest.
        pool.shutdown(wait=True, cancel_futures=True)
    return records


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
    with _progress(len(jobs), quiet) as bar:
        poll = 1.0 if cluster == "local" else 10.0
        for job in submitit.helpers.as_completed(jobs, poll_frequency=poll):
            unit = units[jobs.index(job)]
            try:
                records.append(job.result())
            except Exception as e:  # the job itself died (time limit, node failure)
                error = " ".join(f"{type(e).__name__}: {e}".split())[:500]
                records.append({"unit": unit.id, "status": "failed", "seconds": 0.0,
                                "error": error})  # fmt: skip
            _finished(bar, records[-1], quiet)
    return records


def _state(unit: Unit, model: ModelSpec, settings: Settings) -> str:
    try:
        return status(unit, unit_key(unit, model.resolve(unit.condition, unit.fmt), settings),
                      settings.work)  # fmt: skip
    except (OSError, ValueError, LookupError):
        return "todo"  # its run records why


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
    units = plan(models, settings)
    # Modules that cannot take a unit's format are found here, before the run (hear_gram.suite.probe)
    unsupported = {} if args.no_probe else probe.check(units, by_name, settings, args.jobs)
    k, n = args.shard
    mine = [u for u in shard(units, k, n) if u not in unsupported]
    states = {u: _state(u, by_name[u.model], settings) for u in mine}
    parameters = _slurm_parameters(args.slurm) if args.executor != "local" else {}
    todo = [u for u in mine if states[u] != "done"]
    counts = {s: sum(1 for v in states.values() if v == s) for s in ("done", "failed")}
    print(f"suite: {len(units)} units planned, {len(mine)} in shard {k}/{n}: {counts['done']} done, "
          f"{counts['failed']} failed before, {len(todo)} to run", flush=True)  # fmt: skip
    failed = 0
    if todo and not args.report_only:
        t0 = time.time()
        if args.executor == "local":
            records = run_local(todo, by_name, settings, args.jobs, args.quiet)
        else:
            cluster = "slurm" if args.executor == "slurm" else "local"
            records = run_submitit(todo, by_name, settings, cluster, parameters, args.quiet)
        by = {s: sum(r["status"] == s for r in records) for s in ("failed", "busy", "interrupted")}
        failed = by["failed"]
        done = len(records) - sum(by.values())
        line = f"ran {len(records)} units in {time.time() - t0:.0f} s: {done} done, {failed} failed"
        if by["busy"]:
            line += f", {by['busy']} busy (another run holds them)"
        print(line, flush=True)
        if by["interrupted"]:  # Ctrl-C reached a unit's subprocess: stop as cli.main does
            raise KeyboardInterrupt
    if not args.no_report:
        out = report.write_report(units, models, settings, unsupported)
        text = (out / "REPORT.md").read_text()
        print("\n" + "\n".join(ln for ln in text.splitlines() if not ln.startswith("![")))
        print(f"report: {out}/REPORT.md (results.csv, results.json, figures)")
        print(f"logs: {settings.work / 'units'}/<model>/<condition>/<task>/unit.log")
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
