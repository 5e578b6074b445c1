"""`python -m hear_gram.suite`: HEAR tasks to the paper's table, for any HEAR modules.

    python -m hear_gram.suite --models models.toml --tasks-dir TASKS --work WORK
        [--conditions dry,nat-binaural,nat-ambisonic,localization,t60] [--task NAME ...]
        [--nat-task NAME ...]
        [--nat-binaural-dir D] [--nat-ambisonic-dir D] [--localization-dir D]
        [--localization-source NAME ...] [--grid default|fast|faster] [--grid-points N]
        [--localization-grid default|fast|tiny] [--n-scenes N] [--seed S] [--workers N]
        [--jobs N] [--shard K/N] [--executor local|slurm|submitit-local] [--slurm KEY=VALUE ...]
        [--report-only] [--no-report]

Plans every unit (model x condition x task, `hear_gram.suite.units`), runs those not done (in
`--jobs` threads, or as a submitit job array), then merges every done unit into WORK/report/
(`hear_gram.suite.report`). A failed unit is reported in the table and its log kept; the run goes
on, and the exit code is 1. Rerunning runs only the missing, failed or stale units.

Clusters: `--shard K/N` runs every N-th unit from the K-th (0-based) of the sorted plan, for array
jobs (`sbatch --array=0-15 --wrap "python -m hear_gram.suite ... --shard \\$SLURM_ARRAY_TASK_ID/16
--no-report"`, then `--report-only`); `--executor slurm` submits the units itself as one SLURM job
array through submitit and waits (`--slurm slurm_partition=gpu --slurm timeout_min=240
--slurm gpus_per_node=1`: submitit's AutoExecutor parameters); `submitit-local` runs the same code
path as local processes.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hear_gram.suite import report
from hear_gram.suite.config import CONDITIONS, ModelSpec, Settings, SuiteConfigError, load_models
from hear_gram.suite.units import Unit, plan, run_unit, shard, status, unit_key

PROG = "python -m hear_gram.suite"
log = logging.getLogger("hear_gram.suite")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--models", type=Path, required=True, help="TOML models file")
    p.add_argument("--tasks-dir", type=Path, required=True, help="folder of HEAR task folders")
    p.add_argument("--work", type=Path, default=Path("work/suite"))
    p.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated")
    p.add_argument("--task", action="append", default=[], help="HEAR task (default: all)")
    p.add_argument("--nat-task", action="append", default=[],
                   help="task of the Nat-HEAR conditions (default: those of --task)")  # fmt: skip
    p.add_argument("--nat-binaural-dir", type=Path, help="ready-made Nat-HEAR binaural tasks")
    p.add_argument("--nat-ambisonic-dir", type=Path, help="ready-made Nat-HEAR Ambisonic tasks")
    p.add_argument("--localization-dir", type=Path, help="ready-made localization/T60 tasks")
    p.add_argument("--localization-source", action="append", default=[],
                   help="source scene task of the localization and T60 tasks")  # fmt: skip
    p.add_argument("--grid", default="default", choices=("default", "fast", "faster"))
    p.add_argument("--grid-points", type=int, default=8)
    p.add_argument("--localization-grid", default="default", choices=("default", "fast", "tiny"))
    p.add_argument("--n-scenes", type=int, default=200, help="scenes in built scene banks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes per Nat-HEAR render")
    p.add_argument("--jobs", type=int, default=1, help="units run in parallel (local)")
    p.add_argument("--shard", default="0/1", help="K/N: run this deterministic subset")
    p.add_argument("--executor", default="local", choices=("local", "slurm", "submitit-local"))
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="submitit AutoExecutor parameter, e.g. slurm_partition=gpu")  # fmt: skip
    p.add_argument("--report-only", action="store_true", help="merge done units, run nothing")
    p.add_argument("--no-report", action="store_true", help="run units, skip the report")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    def absolute(p: Path | None) -> Path | None:
        return p.resolve() if p is not None else None

    return Settings(
        work=args.work.resolve(),
        tasks_dir=args.tasks_dir.resolve(),
        conditions=tuple(c.strip() for c in args.conditions.split(",") if c.strip()),
        tasks=tuple(args.task),
        nat_tasks=tuple(args.nat_task),
        nat_dirs={
            "nat-binaural": absolute(args.nat_binaural_dir),
            "nat-ambisonic": absolute(args.nat_ambisonic_dir),
        },  # fmt: skip
        localization_dir=absolute(args.localization_dir),
        localization_sources=tuple(args.localization_source),
        grid=args.grid,
        grid_points=args.grid_points,
        localization_grid=args.localization_grid,
        n_scenes=args.n_scenes,
        seed=args.seed,
        workers=args.workers,
    )


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SuiteConfigError(f"--shard must be K/N, e.g. 0/4, got {text!r}") from None
    return k, n


def _slurm_parameters(pairs: list[str]) -> dict:
    out = {"timeout_min": 24 * 60}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise SuiteConfigError(f"--slurm takes KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="units", unit="unit", file=sys.stderr)


def _finished(bar, record: dict) -> None:
    line = f"{record['status']:7s} {record['unit']} ({record['seconds']:.0f} s)"
    if record["error"]:
        line += f": {record['error'][:200]}"
    bar.write(line, file=sys.stderr)
    bar.update(1)


def run_local(units: list[Unit], models: dict[str, ModelSpec], settings: Settings, jobs: int) -> list[dict]:  # fmt: skip
    records = []
    pool = cf.ThreadPoolExecutor(max(1, jobs))
    try:
        with _progress(len(units)) as bar:
            futures = [pool.submit(run_unit, u, models[u.model], settings) for u in units]
            for future in cf.as_completed(futures):
                records.append(future.result())
                _finished(bar, records[-1])
    finally:
        # On Ctrl-C: start nothing more; the units running finish or fail (their processes get
        # the same signal) and a rerun picks up the rest.
        pool.shutdown(wait=True, cancel_futures=True)
    return records


def run_submitit(units: list[Unit], models: dict[str, ModelSpec], settings: Settings,
                 cluster: str, parameters: dict) -> list[dict]:  # fmt: skip
    """One job array (SLURM, or local processes) of `run_unit` calls; waits for all."""
    try:
        import submitit
    except ImportError as e:
        raise SuiteConfigError(
            f"--executor {cluster} needs submitit (pip install submitit); or run array jobs "
            "yourself with --shard K/N"
        ) from e
    folder = settings.work / "submitit"
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    executor.update_parameters(name="hear_gram.suite", **parameters)
    jobs = executor.map_array(run_unit, units, [models[u.model] for u in units],
                              [settings] * len(units))  # fmt: skip
    print(f"submitted {len(jobs)} units ({cluster}); job logs under {folder}", file=sys.stderr)
    records = []
    with _progress(len(jobs)) as bar:
        poll = 1.0 if cluster == "local" else 10.0
        for job in submitit.helpers.as_completed(jobs, poll_frequency=poll):
            unit = units[jobs.index(job)]
            try:
                records.append(job.result())
            except Exception as e:  # the job itself died (time limit, node failure)
                error = " ".join(f"{type(e).__name__}: {e}".split())[:500]
                records.append({"unit": unit.id, "status": "failed", "seconds": 0.0,
                                "error": error})  # fmt: skip
            _finished(bar, records[-1])
    return records


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        settings = settings_from(args)
        models = load_models(args.models)
        by_name = {m.name: m for m in models}
        units = plan(models, settings)
        k, n = parse_shard(args.shard)
        mine = shard(units, k, n)
        states = {u: status(u, unit_key(u, by_name[u.model].resolve(u.condition, u.fmt),
                                        settings), settings.work) for u in mine}  # fmt: skip
        parameters = _slurm_parameters(args.slurm) if args.executor != "local" else {}
    except (ValueError, OSError) as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    todo = [u for u in mine if states[u] != "done"]
    counts = {s: sum(1 for v in states.values() if v == s) for s in ("done", "failed")}
    print(f"suite: {len(units)} units planned, {len(mine)} in shard {k}/{n}: {counts['done']} done, "
          f"{counts['failed']} failed before, {len(todo)} to run", flush=True)  # fmt: skip
    failed = 0
    if todo and not args.report_only:
        t0 = time.time()
        if args.executor == "local":
            records = run_local(todo, by_name, settings, args.jobs)
        else:
            cluster = "slurm" if args.executor == "slurm" else "local"
            try:
                records = run_submitit(todo, by_name, settings, cluster, parameters)
            except (ValueError, OSError) as e:
                print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
                return 2
        failed = sum(r["status"] == "failed" for r in records)
        print(f"ran {len(records)} units in {time.time() - t0:.0f} s: "
              f"{len(records) - failed} done, {failed} failed", flush=True)  # fmt: skip
    if not args.no_report:
        out = report.write_report(units, models, settings)
        text = (out / "REPORT.md").read_text()
        print("\n" + "\n".join(ln for ln in text.splitlines() if not ln.startswith("![")))
        print(f"report: {out}/REPORT.md (results.csv, results.json, figures)")
        print(f"logs: {settings.work / 'units'}/<model>/<condition>/<task>/unit.log")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
