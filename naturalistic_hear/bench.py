"""Throughput of the Nat-HEAR generator on an ESC-50-sized synthetic task.

Builds (or reuses) a synthetic scene task of `--clips` x `--duration-s` s at `--sample-rate`
(hear_gram.synthetic_tasks; default 2000 x 5 s at 32 kHz, the size of ESC-50), builds (or reuses)
the held-out scene bank, renders the task from scratch with `--workers` processes and reports, as
JSON: the bank's build time (and its cached load time), the render wall time, clips per second and
seconds of audio per wall second.

    python -m naturalistic_hear.bench [--clips 2000] [--duration-s 5] [--jobs 2] \\
        [--format binaural] [--n-scenes N] [--work work/nat-hear-bench] [--out bench.json]

`--jobs` (old name `--workers`) is the number of processes; `WORK/out` is the bench's own render
folder, removed before each run (refused when it is a symbolic link). The command follows
`hear_gram.cli` (one line and exit 2 for a refused option, 130 on Ctrl-C, the log under
`WORK/logs/`).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hear_gram import cli
from hear_gram.safeio import refuse_symlink, write_bytes_atomic
from hear_gram.synthetic_tasks import SCENE_CLASSES, make_scene_task
from naturalistic_hear.bank import DEFAULT_N_SCENES
from naturalistic_hear.generate import process_task
from naturalistic_hear.noise import BuiltinNoise

PROG = "python -m naturalistic_hear.bench"
MAX_CLIPS = 100_000  # 50x ESC-50: past this a typo, not a benchmark
MAX_DURATION_S = 600.0
SAMPLE_RATES_HZ = (8000, 192000)  # what a bench task may be made at

if TYPE_CHECKING:
    from naturalistic_hear.rooms import Format


def bench_task(work: Path, clips: int, duration_s: float, sample_rate: int) -> tuple[Path, float]:
    """The synthetic input task (made once, then reused) and the seconds it took to make now."""
    name = f"bench-{clips}x{duration_s:g}s-{sample_rate}"
    task = work / "tasks" / name
    if (task / "task_metadata.json").is_file():
        return task, 0.0
    n_per_class = -(-clips // len(SCENE_CLASSES))  # ceil
    t0 = time.perf_counter()
    make_scene_task(
        work / "tasks",
        name=name,
        n_per_class=n_per_class,
        duration_s=duration_s,
        sample_rates=(sample_rate,),
    )
    return task, time.perf_counter() - t0


def run_bench(
    work: Path,
    clips: int = 2000,
    duration_s: float = 5.0,
    sample_rate: int = 32000,
    fmt: Format = "binaural",
    workers: int = 1,
    n_scenes: int = DEFAULT_N_SCENES,
    bank_factory: Callable[[int], Any] | None = None,
    progress: bool = True,
) -> dict:
    """Time bank building and rendering; `bank_factory` defaults to the real SceneBank under
    work/bank-cache (a fake bank can be passed in to time the mixer alone)."""
    if bank_factory is None:
        from naturalistic_hear.bank import SceneBank

        bank_factory = functools.partial(
            SceneBank, work / "bank-cache", fmt, pool="test", n_scenes=n_scenes
        )
    task, task_s = bench_task(work, clips, duration_s, sample_rate)
    t0 = time.perf_counter()
    bank_factory(sample_rate).build(workers=workers, progress=progress)
    bank_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bank_factory(sample_rate).build(workers=workers, progress=False)
    bank_cached_s = time.perf_counter() - t0

    out = work / "out"
    refuse_symlink(out)  # the bench's own folder: never removed through a planted link
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = process_task(
        task, out, fmt, bank_factory, BuiltinNoise(sample_rate), workers=workers, progress=progress
    )
    render_s = time.perf_counter() - t0
    n_files = result.rendered
    return {
        "clips": n_files,
        "duration_s": duration_s,
        "sample_rate": sample_rate,
        "format": fmt,
        "workers": workers,
        "n_scenes": n_scenes,
        "bank": json.loads(json.dumps(bank_factory(sample_rate).describe())),
        "task_synthesis_s": round(task_s, 2),
        "bank_build_s": round(bank_s, 2),
        "bank_cached_s": round(bank_cached_s, 2),
        "render_s": round(render_s, 2),
        "clips_per_s": round(n_files / render_s, 2),
        "audio_s_per_s": round(n_files * duration_s / render_s, 1),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def bounded(kind: type, lo: float, hi: float) -> Callable[[str], Any]:
    """argparse `type=`: a finite `kind` in [lo, hi]."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"must be in [{lo:g}, {hi:g}], got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--clips", type=bounded(int, 1, MAX_CLIPS), default=2000)
    p.add_argument("--duration-s", type=bounded(float, 0.1, MAX_DURATION_S), default=5.0)
    p.add_argument("--sample-rate", type=bounded(int, *SAMPLE_RATES_HZ), default=32000)
    p.add_argument("--format", choices=["binaural", "ambisonic"], default="binaural", dest="fmt")
    p.add_argument("--jobs", "--workers", dest="jobs", type=cli.positive_int, default=1,
                   metavar="N", help="processes (--workers: the same)")  # fmt: skip
    p.add_argument("--n-scenes", type=cli.positive_int, default=DEFAULT_N_SCENES)
    p.add_argument("--work", type=Path, default=Path("work/nat-hear-bench"))
    p.add_argument("--out", type=Path, help="also write the report here (JSON)")
    return p


def run(args: argparse.Namespace) -> None:
    report = run_bench(
        args.work,
        args.clips,
        args.duration_s,
        args.sample_rate,
        args.fmt,
        args.jobs,
        args.n_scenes,
        progress=not args.quiet,
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(args.out, (text + "\n").encode())


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(PROG, build_parser, run, argv, log_dir=lambda a: a.work)


if __name__ == "__main__":
    sys.exit(main())
