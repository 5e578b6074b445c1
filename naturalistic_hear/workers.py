"""Rendering the clips of one Nat-HEAR task into files, in this process or in worker processes,
and the locks that keep two runs off one shard (see `naturalistic_hear.generate`, "Resuming and
sharding" and "Concurrent runs").

Results never depend on the worker count: every clip is a pure function of its key
(`naturalistic_hear.mixing`), and this process runs torch single-threaded as the workers do.
Workers end with their parent, also when it is killed with SIGKILL (`die_with_parent`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hear_gram import safeio
from hear_gram.safeio import write_bytes_atomic
from naturalistic_hear.mixing import MANIFEST_COLUMNS, render_scene_mix
from naturalistic_hear.noise import NoiseSource
from naturalistic_hear.taskio import Clip, TaskError, cell, encode_audio, output_subtype, read_audio

logger = logging.getLogger("naturalistic_hear.generate")  # one logger for the generator's messages

# --------------------------------------------------------------------------------------------
# Rendering files (in this process or in workers)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What a worker needs to render any clip of a task (picklable)."""

    task_dir: Path
    out_dir: Path
    seed: int
    snr_range: tuple[float, float]
    bank_factory: Callable[[int], Any]
    noise_source: NoiseSource


class Renderer:
    """Renders and writes clips of one task; banks and noise sources made once per rate."""

    def __init__(self, job: Job, banks: dict[int, Any] | None = None) -> None:
        self.job = job
        self.banks = dict(banks or {})
        self.noise: dict[int, NoiseSource] = {}

    def bank(self, sample_rate: int) -> Any:
        if sample_rate not in self.banks:
            self.banks[sample_rate] = self.job.bank_factory(sample_rate).build(
                workers=1, progress=False
            )
        return self.banks[sample_rate]

    def noise_source(self, sample_rate: int) -> NoiseSource:
        if sample_rate not in self.noise:
            self.noise[sample_rate] = self.job.noise_source.at_rate(sample_rate)
        return self.noise[sample_rate]

    def __call__(self, clip: Clip) -> dict[str, str]:
        job, sr = self.job, clip.sample_rate
        audio, info = read_audio(clip.path(job.task_dir))
        mix, row = render_scene_mix(
            audio,
            sr,
            self.bank(sr),
            self.noise_source(sr),
            job.seed,
            job.task_dir.name,
            clip.split,
            clip.filename,
            job.snr_range,
        )
        container, subtype = output_subtype(info)
        data = encode_audio(mix, sr, container, subtype)
        write_bytes_atomic(clip.path(job.out_dir), data)
        return {k: cell(row[k]) for k in MANIFEST_COLUMNS}


_WORKER: Renderer | None = None
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """End this worker process when `parent` ends, SIGKILL included (a pool's own clean-up never
    runs then, and its workers used to live on, reparented to PID 1, holding the output). Linux:
    the kernel sends SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG); everywhere: a daemon
    thread polls the parent id. Checked once right away, in case the parent died before."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no libc symbol: the thread below still works
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(job: Job, parent: int | None = None) -> None:
    global _WORKER
    if parent is not None:
        die_with_parent(parent)
    torch.set_num_threads(1)  # one process per core; torch only resamples noise files
    _WORKER = Renderer(job)


def _render_in_worker(clip: Clip) -> dict[str, str]:
    assert _WORKER is not None
    return _WORKER(clip)


class _SingleThreadTorch:
    """Same torch thread count as the workers, so results never depend on `workers`."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.threads)


def render_all(
    renderer: Renderer,
    job: Job,
    clips: list[Clip],
    workers: int,
    append: Callable[[dict[str, str]], None],
) -> None:
    if workers <= 1:
        with _SingleThreadTorch():
            for clip in clips:
                append(renderer(clip))
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with cf.ProcessPoolExecutor(workers, context, _init_worker, (job, os.getpid())) as pool:
        futures = [pool.submit(_render_in_worker, clip) for clip in clips]
        try:
            for future in cf.as_completed(futures):
                append(future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


# Locks (one run per shard of an output task): hear_gram.safeio.locked
@contextlib.contextmanager
def locked(path: Path, wait: bool) -> Iterator[None]:
    """`hear_gram.safeio.locked`, with a busy shard lock refused as a TaskError that says which
    run holds it and what to do."""
    try:
        with safeio.locked(path, wait=wait):
            yield
    except safeio.LockBusyError as e:
        raise TaskError(
            f"another run holds {path} (pid {e.holder}): the same shard of this task is being "
            "rendered into the same --out; wait for it to finish (or stop it) and rerun"
        ) from None


def cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_workers(workers: int) -> int:
    """`workers` if it is an int >= 1, capped (with a warning) at the CPU cores available: the
    rendering is CPU-bound, so more processes only multiply memory."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    cores = cpu_count()
    if workers > cores:
        logger.warning("workers: %d capped at %d (the CPU cores available)", workers, cores)
    return min(workers, cores)
