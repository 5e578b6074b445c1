"""Throughput of the Nat-HEAR generator on an ESC-50-sized synthetic task.

Builds (or reuses) a synthetic scene task of `--clips` x `--duration-s` s at `--sample-rate`
(hear_gram.synthetic_tasks; default 2000 x 5 s at 32 kHz, the size of ESC-50), builds (or reuses)
the held-out scene bank, renders the task from scratch with `--workers` processes and reports, as
JSON: the bank's build time (and its cached load time), the render wall time, clips per second and
seconds of audio per wall second.

    python -m naturalistic_hear.bench [--clips 2000] [--duration-s 5] [--workers 2] \\
        [--format binaural] [--n-scenes 200] [--work work/nat-hear-bench] [--out bench.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hear_gram.synthetic_tasks import SCENE_CLASSES, make_scene_task
from naturalistic_hear.generate import process_task
from naturalistic_hear.noise import BuiltinNoise

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
    n_scenes: int = 200,
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


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m naturalistic_hear.bench", description=__doc__)
    p.add_argument("--clips", type=int, default=2000)
    p.add_argument("--duration-s", type=float, default=5.0)
    p.add_argument("--sample-rate", type=int, default=32000)
    p.add_argument("--format", choices=["binaural", "ambisonic"], default="binaural", dest="fmt")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--n-scenes", type=int, default=200)
    p.add_argument("--work", type=Path, default=Path("work/nat-hear-bench"))
    p.add_argument("--out", type=Path, help="also write the report here (JSON)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    report = run_bench(
        args.work,
        args.clips,
        args.duration_s,
        args.sample_rate,
        args.fmt,
        args.workers,
        args.n_scenes,
        progress=not args.quiet,
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
