"""Nat-HEAR generator: HEAR tasks re-rendered as binaural or Ambisonic scenes (GRAM, arXiv
2506.00934, Nat-HEAR; scene simulation as in its training data).

Per clip: `naturalistic_hear.mixing.render_scene_mix` (scene, noise and SNR draws, convolutions,
mix).

Per task (`process_task`): OUT/<task dir name>/ gets the input's labels, split JSONs and
vocabulary byte for byte, task_metadata.json with a `naturalistic` block added, the audio at the
same sample-rate folders, splits and file names with 2 (binaural) or 4 (Ambisonic) channels, and
`naturalistic_manifest.csv` (one row per rendered file).

Audio files keep the input's container and sample subtype when it is PCM_16, PCM_24, PCM_32, FLOAT
or DOUBLE (HEAR 2021 tasks are 16-bit WAV, so Nat-HEAR is too); any other subtype (e.g. PCM_U8, or
a lossy one) is written as 32-bit float WAV.

Resuming and sharding: each file is written to a hidden temporary name and renamed into place, then
its manifest row is appended to `.naturalistic-rows/rows-<K>-of-<N>.jsonl` (one JSON object per
line). A file counts as done when its row is in any rows file (or in an existing manifest) and
the file is whole (`taskio.output_complete`: header, frames, channels, rate, subtype and size as
expected), so an interrupted run redoes at most the files in flight, and a rerun redoes a file
truncated or replaced since (byte-identical: every file is a pure function of its clip). Shard K of N renders the
clips whose index in the sorted (sample rate, split, file name) list is K modulo N. Whichever
process finds every clip of the task done (the last shard, or any rerun) writes the manifest
sorted by (sample rate, split, file name), then removes the rows files and stray temporary files:
the finished folder is byte-identical whatever the sharding, worker count or interruptions.

Hostile or broken input:
- Names from the task's JSON (split names, file names) and the task's top-level files become
  paths only through `hear_gram.safeio.child`: an absolute, `..` or sub-folder name, or a
  symbolic link leading outside the task, is an `UnsafePathError` before anything is written.
  Every file under the output folder is written by `write_bytes_atomic` / `open_append`, which
  never write through a link planted there, and output folders are `child`ren of --out too.
- Audio, noise and RIRs must be finite (`hear_gram.dsp.NonFiniteError` naming the file); a noise
  clip shorter than `hear_gram.dsp.NOISE_MIN_S` (or than the clip) or silent over the part it
  covers is an error, never a mix whose manifest claims an SNR its source was erased for.
- Concurrent runs: shard K/N of an output task is held by one run at a time (a lock file; a
  second run of the same shard stops with "another run holds ..."); different shards may run at
  once (the shared files are written under a short task lock, and what one shard removes when the
  task is complete no other shard still needs). Worker processes end with their parent, also
  when it is killed with SIGKILL (`die_with_parent`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from hear_gram import dsp
from hear_gram.safeio import TMP_SUFFIX, check_name, child, remove_stale_lock, write_bytes_atomic
from naturalistic_hear.formats import scene_format
from naturalistic_hear.mixing import (
    DEFAULT_SNR_RANGE,
    MANIFEST_COLUMNS,
    check_snr_range,
    jsonable,
)
from naturalistic_hear.noise import NoiseSource
from naturalistic_hear.taskio import (
    Clip,
    RowKey,
    TaskError,
    TaskLayout,
    append_row,
    json_bytes,
    open_rows,
    output_complete,
    read_rows,
    read_task,
    row_key,
    write_static,
)
from naturalistic_hear.workers import Job, Renderer, check_workers, locked, render_all

if TYPE_CHECKING:  # rooms imports pyroomacoustics (1 s); the mixer needs none of it
    from naturalistic_hear.rooms import Format

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "nat-hear-1"

# The 11 HEAR tasks of Nat-HEAR (GRAM, arXiv 2506.00934), as named by the HEAR 2021 task folders.
NAT_HEAR_TASKS: tuple[str, ...] = (
    "dcase2016_task2-hear2021-full",
    "fsd50k-v1.0-full",
    "libricount-v1.0.0-hear2021-full",
    "esc50-v2.0.0-full",
    "tfds_crema_d-1.0.0-full",
    "vox_lingua_top10-hear2021-full",
    "speech_commands-v0.0.2-5h",
    "nsynth_pitch-v2.2.3-5h",
    "beijing_opera-v1.0-hear2021-full",
    "mridangam_stroke-v1.5-full",
    "mridangam_tonic-v1.5-full",
)

MANIFEST_NAME = "naturalistic_manifest.csv"
ROWS_DIR = ".naturalistic-rows"
TASK_LOCK = ".naturalistic-task.lock"
SHARD_LOCK = ".naturalistic-shard-{k}-of-{n}.lock"


# --------------------------------------------------------------------------------------------
# Manifest rows (the protocol itself is `naturalistic_hear.taskio`)
# --------------------------------------------------------------------------------------------


def _read_rows(out_dir: Path) -> dict[RowKey, dict[str, str]]:
    """Rows recorded so far: the manifest, if any, and every shard's rows log (a torn line,
    from an interrupted write, is skipped)."""
    rows = {}
    manifest = out_dir / MANIFEST_NAME
    if manifest.is_file() and not manifest.is_symlink():
        with manifest.open(newline="") as f:
            rows.update({row_key(r): r for r in csv.DictReader(f)})
    for path in sorted((out_dir / ROWS_DIR).glob("*.jsonl")):
        rows.update({row_key(r): r for r in read_rows(path)})
    return rows


def _manifest_bytes(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=row_key))
    return buffer.getvalue().encode()


def _is_done(clip: Clip, layout: TaskLayout, out_dir: Path, rows: dict, channels: int) -> bool:
    """Whether `clip` is recorded as done and its output file is whole."""
    return clip.key in rows and output_complete(
        clip.path(out_dir), clip.path(layout.path), channels
    )


def _finish(layout: TaskLayout, out_dir: Path, channels: int) -> bool:
    """Write the manifest and clean up if every clip of the task is done; True if so."""
    rows = _read_rows(out_dir)
    keys = [(c.sample_rate, c.split, c.filename) for c in layout.clips]
    if not all(_is_done(c, layout, out_dir, rows, channels) for c in layout.clips):
        return False
    manifest = out_dir / MANIFEST_NAME
    data = _manifest_bytes([rows[k] for k in keys])
    if manifest.is_symlink() or not manifest.is_file() or manifest.read_bytes() != data:
        write_bytes_atomic(manifest, data)
    # Every clip is done, so no shard has work in flight: its debris can go. A run of another
    # shard finishing at the same time does the same (hence missing_ok), under the task lock.
    rows_dir = out_dir / ROWS_DIR
    for path in sorted(rows_dir.glob("*")):
        path.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        rows_dir.rmdir()
    for sr in layout.sample_rates:
        for split in layout.splits:
            for tmp in (out_dir / str(sr) / split).glob(f".*{TMP_SUFFIX}"):
                tmp.unlink(missing_ok=True)
    for lock in out_dir.glob(SHARD_LOCK.format(k="*", n="*")):
        remove_stale_lock(lock)
    return True


# --------------------------------------------------------------------------------------------
# A whole task
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    out_dir: Path
    rendered: int  # files rendered by this call
    skipped: int  # files of this shard already done
    complete: bool  # every file of the task done and the manifest written


def naturalistic_metadata(
    fmt: Format,
    seed: int,
    snr_range: tuple[float, float],
    noise_source: NoiseSource,
    banks: dict[int, Any],
) -> dict:
    """The `naturalistic` block added to task_metadata.json (heareval ignores unknown keys)."""
    descriptions = {str(sr): jsonable(bank.describe()) for sr, bank in sorted(banks.items())}
    first = next(iter(descriptions.values()))
    return {
        "generator": GENERATOR_VERSION,
        "format": fmt,
        "channels": scene_format(fmt).channels,
        "seed": seed,
        "scene_pool": first.get("pool"),
        "hrtf": first.get("hrtf"),
        "snr_db_range": list(snr_range),
        "source_dbfs": dsp.SOURCE_DBFS,
        "noise_fade_s": dsp.NOISE_FADE_S,
        "noise_max_s": dsp.NOISE_MAX_S,
        "max_peak": dsp.MAX_PEAK,
        "noise_source": noise_source.describe(),
        "sample_rates": sorted(banks),
        "banks": descriptions,
        "manifest": MANIFEST_NAME,
    }


def _parse_shard(shard: tuple[int, int]) -> tuple[int, int]:
    k, n = shard
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"shard must be (K, N) with 0 <= K < N, got {shard}")
    return k, n


def process_task(
    task_dir: str | Path,
    out_root: str | Path,
    fmt: Format,
    bank_factory: Callable[[int], Any],
    noise_source: NoiseSource,
    seed: int = 0,
    snr_range: tuple[float, float] = DEFAULT_SNR_RANGE,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    sample_rates: Sequence[int] | None = None,
) -> TaskResult:
    """Render shard `shard` = (K, N) of the HEAR task at `task_dir` into OUT/<task dir name>/.

    Args:
        fmt: "binaural" (2 channels) or "ambisonic" (4); the banks must produce that format.
        bank_factory: sample rate (Hz) -> SceneBank, called once per sample-rate folder here and
            in each worker process (so it must be picklable, e.g. a `functools.partial`); `build()`
            is called on what it returns.
        noise_source: a `NoiseSource`; `at_rate` gives it each folder's rate.
        seed: generator seed (scene choice, SNR, noise per clip).
        snr_range: (low, high) dB.
        workers: processes (1: render here).
        shard: (K, N), 0 <= K < N: this call renders the clips whose sorted index is K mod N.
        sample_rates: only these sample-rate folders (default: all of the input's).

    Returns a `TaskResult`; raises `TaskError` for a malformed task directory.
    """
    fmt = scene_format(fmt)
    k, n = _parse_shard(shard)
    snr_range = check_snr_range(snr_range)
    workers = check_workers(workers)
    layout = read_task(task_dir, sample_rates)
    banks = {
        sr: bank_factory(sr).build(workers=workers, progress=progress) for sr in layout.sample_rates
    }
    job = Job(
        layout.path,
        child(out_root, layout.name, "task folder name"),
        seed,
        snr_range,
        bank_factory,
        noise_source,
    )
    renderer = Renderer(job, banks)
    for sr in layout.sample_rates:  # fail before writing anything if the bank does not fit
        scene, rir, _ = renderer.bank(sr).get(0)
        if rir.shape[0] != fmt.channels:
            raise ValueError(f"the {sr} Hz bank gives {rir.shape[0]}-channel RIRs, not {fmt}")

    out_dir = job.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = dict(layout.metadata)
    metadata["naturalistic"] = naturalistic_metadata(fmt, seed, snr_range, noise_source, banks)
    # allow_nan=False: a NaN that slipped through would not be valid JSON for other readers
    meta_bytes = json_bytes(metadata)
    with locked(out_dir / SHARD_LOCK.format(k=k, n=n), wait=False):
        with locked(out_dir / TASK_LOCK, wait=True):
            _prepare_output(layout, out_dir, meta_bytes)
        rendered, skipped = _render_shard(
            layout, job, renderer, (k, n), workers, progress, fmt.channels
        )
        with locked(out_dir / TASK_LOCK, wait=True):
            complete = _finish(layout, out_dir, fmt.channels)
    logger.info(
        "%s: rendered %d, skipped %d%s",
        layout.name,
        rendered,
        skipped,
        ", task complete" if complete else "",
    )
    return TaskResult(out_dir, rendered, skipped, complete)


def _prepare_output(layout: TaskLayout, out_dir: Path, meta_bytes: bytes) -> None:
    """The files every shard writes identically, and the audio folders (all under out_dir)."""
    write_static(child(out_dir, "task_metadata.json", "output file"), meta_bytes)
    for name in layout.copied_files:
        data = child(layout.path, name, "top-level file of the task").read_bytes()
        write_static(child(out_dir, name, "output file"), data)
    for sr in layout.sample_rates:
        for split in layout.splits:
            child(out_dir, f"{sr}/{split}", "output folder", subdirs=True).mkdir(
                parents=True, exist_ok=True
            )
    child(out_dir, ROWS_DIR, "output folder").mkdir(exist_ok=True)


def _render_shard(
    layout: TaskLayout,
    job: Job,
    renderer: Renderer,
    shard: tuple[int, int],
    workers: int,
    progress: bool,
    channels: int,
) -> tuple[int, int]:
    """Render this shard's clips not done yet (or whose file is not whole); (rendered,
    skipped)."""
    k, n = shard
    out_dir = job.out_dir
    mine = [c for i, c in enumerate(layout.clips) if i % n == k]
    done = _read_rows(out_dir)
    todo = [c for c in mine if not _is_done(c, layout, out_dir, done, channels)]
    redo = sum(c.key in done for c in todo)
    if redo:
        logger.warning("%s: %d file(s) listed as done are truncated or wrong: rendering them "
                       "again", layout.name, redo)  # fmt: skip
    rows_path = child(out_dir, f"{ROWS_DIR}/rows-{k}-of-{n}.jsonl", "rows file", subdirs=True)
    bar = tqdm(
        total=len(mine), initial=len(mine) - len(todo), desc=layout.name, disable=not progress
    )
    with open_rows(rows_path) as rows_file, bar:

        def append(row: dict[str, str]) -> None:
            append_row(rows_file, row)
            bar.update()

        render_all(renderer, job, todo, min(workers, max(len(todo), 1)), append)
    return len(todo), len(mine) - len(todo)


def find_tasks(tasks_dir: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """Task directories to process: `names` (each must exist), else the Nat-HEAR tasks present."""
    root = Path(tasks_dir)
    if not root.is_dir():
        state = "is not a directory" if root.exists() else "does not exist"
        raise TaskError(f"tasks directory {root} {state}")
    present = sorted(p.name for p in root.iterdir() if (p / "task_metadata.json").is_file())
    for name in names or ():
        check_name(name, "--task")
    if names:
        missing = [name for name in names if not (root / name).is_dir()]
        if missing:
            raise TaskError(f"{root}: no task folder {missing}; found {present}")
        return [root / name for name in names]
    chosen = [root / name for name in NAT_HEAR_TASKS if name in present]
    if not chosen:
        raise TaskError(
            f"{root} holds none of the Nat-HEAR tasks {list(NAT_HEAR_TASKS)}; found task "
            f"folders {present} (pick some with --task)"
        )
    return chosen
