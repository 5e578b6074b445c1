"""Localization and T60 tasks from HEAR scene tasks (arXiv 2506.00934, spatial experiments).

    python -m localization_tasks.generate --tasks-dir hear/tasks --out loc-tasks \\
        [--task esc50-v2.0.0-full --task speech_commands-v0.0.2-5h] \\
        [--format binaural ambisonic] [--target direction t60] [--seed 0] [--n-scenes N] \\
        [--sample-rate 48000] \\
        [--rirs builtin | soundspaces:DIR | sofa:FILE] [--noise-dir wham_noise/tt] [--cache-dir DIR]

Per source task and format (binaural: 2 channels, Ambisonic: 4 channels ACN/SN3D: W, Y, Z, X) we
write five HEAR-like tasks under OUT/:

    {task}-loc-{format}-clean       direction, no noise
    {task}-loc-{format}-snr05-10    direction, SNR uniform in 5..10 dB
    {task}-loc-{format}-snr10-20    direction, SNR uniform in 10..20 dB
    {task}-loc-{format}-snr20-40    direction, SNR uniform in 20..40 dB
    {task}-t60-{format}             T60 in s, no noise (same audio as -clean)

`--target direction` writes only the four direction tasks, `--target t60` only the T60 task
(each the same files as in a run that writes both: a clip's scene, noise and SNR draws do not
depend on which tasks are written), so a run that needs one kind does not render the other.

Leak-free by construction: the bank's scenes are split between the source task's splits
(`naturalistic_hear.bank.assign_pools`), whole rooms at a time, in proportion to each split's
clips, and a clip draws its scene from its own split's pool only. No room, hence no source
position, is in two folds, so a probe cannot pass a test fold by recognising rooms or scenes it
was trained on (with one shared bank, ESC-50's 2000 clips reused each of 200 scenes about 10 times
across folds). A bank with fewer rooms than splits (a one-room SOFA file) keeps source positions
apart instead, with a warning; then, and whenever the bank's T60 is unknown (external RIRs), no
T60 task is written. task_metadata.json records the assignment (`localization.scene_assignment`)
and the manifest each clip's `room_id`.

Rendering is the Nat-HEAR code path (`naturalistic_hear.mixing`, one copy): the clip's scene,
noise clip and SNR draw come from `clip_rng(seed, source task, split, file)`, so a clip has the
SAME scene and noise in every bin and format; only the SNR range changes (the SNR is the same
uniform draw mapped into each bin). The scene rendering (`render_spatial`: source and noise
convolved with their RIRs) is done once per clip and mixed per bin (`mix_spatial`), which gives
exactly what `render_components` gives at that bin's range. The noise-free audio is the rendered
target (reverberant source) before noise, at the same level as in the mixes before their headroom
gain, peak-limited alone.

Coordinate frame of the targets ("head"): origin at the centre of the listener's head, x = the
facing direction, y = the listener's left, z = up (right-handed); azimuth counter-clockwise from
the front (+90 deg = left), elevation up. Target = [cos(el) cos(az), cos(el) sin(az), sin(el)].

Layout (HEAR 2021 layout, read by labhamlet/listen-eval-kit with `--localization
cartesian-regression`: it reads a scene task's `{split}.json` labels as they are and makes
`torch.tensor(label)` the target, so a label must be the bare 3-vector; `nlabels` is 3; the
"evaluation" scores are its names "MAE" (mean angular error) and "DOE" (median angular error)):

    OUT/{name}/task_metadata.json   HEAR keys of the source (task_name replaced, splits, folds,
                                    split_mode kept), embedding_type "scene", prediction_type
                                    "cartesian-regression" (T60: "regression") and a
                                    `localization` block {target, frame, units, snr_bin, ...}
    OUT/{name}/labelvocabulary.csv  idx,label rows 0,x 1,y 2,z (T60: 0,t60_s): names of the
                                    target's components (listen-eval-kit copies this file)
    OUT/{name}/{split}.json         {"file.wav": [x, y, z]} (T60: {"file.wav": [t60_s]})
    OUT/{name}/{sr}/{split}/{file}  audio, same splits, sample-rate folders and file names
    OUT/{name}/localization_manifest.csv   one row per (sample rate, split, file): azimuth,
                                    elevation, distance, SNR, room, T60, target components

Resuming: files are written to a temporary name and renamed; a clip counts as done when every
output file exists and its row is in `.localization-rows.jsonl` of the first variant. An output
task whose task_metadata.json differs (another seed, bank, noise, input or generator version) is
refused, never mixed with the new settings. Names read from the source task (splits, files) go
through `hear_gram.safeio.child`: nothing is read or written outside the task and --out. Labels and
manifests are written once every clip is done, sorted, so the output is a pure function of the
inputs and settings whatever the interruptions.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hear_gram import cli, dsp
from hear_gram.safeio import child, write_bytes_atomic, write_json
from localization_tasks.bins import CLEAN, SNR_BINS
from naturalistic_hear.bank import (
    DEFAULT_N_SCENES,
    PoolView,
    ScenePools,
    assign_pools,
)
from naturalistic_hear.formats import NAMES as FORMATS
from naturalistic_hear.formats import scene_format
from naturalistic_hear.mixing import draw_snr_db, mix_spatial, render_spatial
from naturalistic_hear.noise import BuiltinNoise, NoiseDir, NoiseSource
from naturalistic_hear.rooms import head_to_unit_vector
from naturalistic_hear.taskio import (
    RowKey,
    TaskError,
    TaskLayout,
    append_row,
    cell,
    encode_audio,
    json_bytes,
    open_rows,
    output_subtype,
    read_audio,
    read_rows,
    read_task,
    row_key,
    write_static,
)

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "localization-2"  # 2: fold-disjoint scene pools
DEFAULT_TASKS = ("esc50-v2.0.0-full", "speech_commands-v0.0.2-5h")
TARGETS = ("direction", "t60")  # the kinds of output task (`--target`)
FRAME = {
    "name": "head",
    "origin": "centre of the listener's head",
    "x": "front (facing direction)",
    "y": "left",
    "z": "up",
    "azimuth": "deg, counter-clockwise from the front (+90 = left)",
    "elevation": "deg, up from the horizontal plane (+90 = above)",
    "vector": "[cos(el) cos(az), cos(el) sin(az), sin(el)]",
}
MANIFEST_NAME = "localization_manifest.csv"
ROWS_NAME = ".localization-rows.jsonl"
MANIFEST_COLUMNS = (
    "task",
    "source_task",
    "split",
    "filename",
    "sample_rate",
    "format",
    "target",
    "snr_bin",
    "snr_db",
    "achieved_snr_db",
    "azimuth_deg",
    "elevation_deg",
    "distance_m",
    "x",
    "y",
    "z",
    "t60_s",
    "scene_index",
    "scene_id",
    "room_id",
    "room_dim",
    "absorption",
    "head_azimuth_deg",
    "noise_kind",
    "n_noises",
    "noise_file",
)


@dataclass(frozen=True)
class Variant:
    """One output task of a (source task, format): a direction task at an SNR bin or clean, or
    the T60 task."""

    suffix: str  # e.g. "loc-ambisonic-snr20-40"
    target: str  # "direction" | "t60"
    snr_bin: str  # bin name, or "clean"
    snr_range: tuple[float, float] | None  # dB, None = no noise

    def name(self, task: str) -> str:
        return f"{task}-{self.suffix}"


def variants(fmt: str, t60: bool = True, direction: bool = True) -> tuple[Variant, ...]:
    """The five output tasks of one format, clean direction first (the four direction tasks
    only with `direction`, the T60 task last, only with `t60`)."""
    out = []
    if direction:
        out.append(Variant(f"loc-{fmt}-{CLEAN}", "direction", CLEAN, None))
        out += [Variant(f"loc-{fmt}-{b.name}", "direction", b.name, b.range_db) for b in SNR_BINS]
    if t60:
        out.append(Variant(f"t60-{fmt}", "t60", CLEAN, None))
    return tuple(out)


def direction_target(azimuth_deg: float, elevation_deg: float) -> list[float]:
    """[x, y, z] unit vector in the head frame (see module docstring)."""
    return [float(v) for v in head_to_unit_vector(azimuth_deg, elevation_deg)]


# --------------------------------------------------------------------------------------------
# One clip, every variant
# --------------------------------------------------------------------------------------------


def render_variants(
    audio: np.ndarray,
    sample_rate: int,
    bank: Any,
    noise_source: NoiseSource,
    seed: int,
    task: str,
    split: str,
    filename: str,
    fmt: str,
    t60: bool = True,
    room_ids: Sequence[str] | None = None,
    direction: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Audio (C, N) float32 and manifest row of every variant of one clip, keyed by suffix.

    `bank` is the clip's split's pool (`PoolView`) or any bank; the row's scene_index is the
    index in the underlying bank, its room_id `room_ids[scene_index]` (`ScenePools.rooms`). The clip is rendered in its scene once (`render_spatial`: both
    convolutions) and mixed per SNR bin (`mix_spatial`); each bin equals `render_components` at
    that bin's range."""
    spatial = render_spatial(audio, sample_rate, bank, noise_source, seed, task, split, filename)
    if isinstance(bank, PoolView):
        spatial.row["scene_index"] = bank.index(spatial.row["scene_index"])
    spatial.row["room_id"] = room_ids[spatial.row["scene_index"]] if room_ids else ""
    where = (spatial.row["source_azimuth_deg"], spatial.row["source_elevation_deg"])
    if not all(math.isfinite(float(v)) for v in where):
        raise TaskError(
            f"scene {spatial.row['scene_id']} has no source direction ({where}): a direction "
            "task needs banks whose scenes know where the source is"
        )
    # The noise-free clip: the target at the mix's level before its headroom gain, limited alone.
    clean = dsp.limit_peak(spatial.target, dsp.MAX_PEAK)[0].astype(np.float32)
    clean_row = dict(spatial.row, snr_db=math.inf, achieved_snr_db=math.inf)
    audios, rows = {}, {}
    for v in variants(fmt, t60, direction):
        if v.snr_range is None:
            audios[v.suffix], rows[v.suffix] = clean, _row(clean_row, task, v, fmt)
        else:
            snr_db = draw_snr_db(seed, task, split, filename, v.snr_range)
            part = mix_spatial(spatial, snr_db)
            audios[v.suffix], rows[v.suffix] = part.mix, _row(part.row, task, v, fmt)
        rows[v.suffix]["room_id"] = spatial.row["room_id"]
    return audios, rows


def _row(r: dict[str, Any], source_task: str, v: Variant, fmt: str) -> dict[str, Any]:
    x, y, z = direction_target(r["source_azimuth_deg"], r["source_elevation_deg"])
    return {
        "task": v.name(source_task),
        "source_task": source_task,
        "split": r["split"],
        "filename": r["filename"],
        "sample_rate": r["sample_rate"],
        "format": fmt,
        "target": v.target,
        "snr_bin": v.snr_bin,
        "snr_db": r["snr_db"],
        "achieved_snr_db": r["achieved_snr_db"],
        "azimuth_deg": r["source_azimuth_deg"],
        "elevation_deg": r["source_elevation_deg"],
        "distance_m": r["source_distance_m"],
        "x": x,
        "y": y,
        "z": z,
        "t60_s": r["t60_s"],
        "scene_index": r["scene_index"],
        "scene_id": r["scene_id"],
        "room_id": r.get("room_id", ""),
        "room_dim": r["room_dim"],
        "absorption": r["absorption"],
        "head_azimuth_deg": r["head_azimuth_deg"],
        "noise_kind": r["noise_kind"],
        "n_noises": r["n_noises"],
        "noise_file": r["noise_file"],
    }


# --------------------------------------------------------------------------------------------
# Task directories
# --------------------------------------------------------------------------------------------


def task_metadata(
    layout: TaskLayout,
    v: Variant,
    fmt: str,
    seed: int,
    banks: dict,
    noise: NoiseSource | None = None,
    pools: ScenePools | None = None,
) -> dict:
    """task_metadata.json of a variant: the source's split keys, our target and a
    `localization` block (heareval and listen-eval-kit ignore unknown keys) recording every
    setting the audio depends on (a resumed run compares it)."""
    src = layout.metadata
    keep = ("split_mode", "nfolds", "sample_duration", "mode", "splits", "version")
    meta = {k: src[k] for k in keep if k in src}
    direction = v.target == "direction"
    meta.update(
        task_name=v.name(layout.name),
        embedding_type="scene",
        prediction_type="cartesian-regression" if direction else "regression",
        evaluation=["MAE", "DOE"] if direction else ["t60_median_abs_error"],
    )
    first_bank = banks[min(banks)].describe()
    meta["localization"] = {
        "generator": GENERATOR_VERSION,
        "source_task": layout.name,
        "target": "direction" if direction else "t60",
        "target_components": ["x", "y", "z"] if direction else ["t60_s"],
        "units": "unit vector" if direction else "s",
        "frame": FRAME if direction else None,
        "format": fmt,
        "channels": scene_format(fmt).channels,
        "ambisonic_channels": "ACN/SN3D: W, Y, Z, X" if fmt == "ambisonic" else None,
        "snr_bin": v.snr_bin,
        "snr_db_range": list(v.snr_range) if v.snr_range else None,
        "seed": seed,
        "scene_pool": first_bank.get("pool"),
        "n_scenes": first_bank.get("n_scenes"),
        "hrtf": first_bank.get("hrtf"),
        "bank": first_bank,
        "noise": noise.describe() if noise is not None else None,
        "scene_assignment": pools.describe() if pools is not None else None,
        "manifest": MANIFEST_NAME,
    }
    return meta


def _first_difference(old: bytes, new: bytes) -> str:
    """The first differing key of two localization blocks, for the refusal message."""
    try:  # the old file may be anything: refuse it as not ours (loads_json: depth checked)
        a = cli.loads_json(old, "task_metadata.json").get("localization", {})
        b = json.loads(new)["localization"]
        if not isinstance(a, dict):
            raise TypeError(type(a).__name__)
    except (ValueError, AttributeError, TypeError):
        return "not a task of this generator"
    keys = [k for k in b if a.get(k) != b[k]] or ["task keys"]
    k = keys[0]
    return f"{k}: {json.dumps(a.get(k))[:60]} before, {json.dumps(b.get(k))[:60]} now"


def _finish(
    layout: TaskLayout,
    fmt: str,
    out_root: Path,
    rows: dict[RowKey, dict],
    t60: bool = True,
    direction: bool = True,
) -> None:
    """Labels and manifests of every variant, from the recorded rows (sorted)."""
    keys = sorted(rows)
    for v in variants(fmt, t60, direction):
        out_dir = out_root / v.name(layout.name)
        labels: dict[str, dict] = {s: {} for s in layout.splits}
        for sr, split, filename in keys:
            row = rows[(sr, split, filename)][v.suffix]
            target = [row["x"], row["y"], row["z"]] if v.target == "direction" else [row["t60_s"]]
            labels[split][filename] = target  # identical at every sample rate
        for split, split_labels in labels.items():
            write_json(child(out_dir, f"{split}.json", "split name"), split_labels, indent=4)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            {k: cell(rows[key][v.suffix][k]) for k in MANIFEST_COLUMNS} for key in keys
        )
        write_bytes_atomic(out_dir / MANIFEST_NAME, buffer.getvalue().encode())


def clips_per_split(layout: TaskLayout) -> dict[str, int]:
    """Distinct clips per split (whatever the number of sample-rate folders), in split order."""
    names: dict[str, set[str]] = {s: set() for s in layout.splits}
    for clip in layout.clips:
        names[clip.split].add(clip.filename)
    return {s: len(names[s]) for s in layout.splits}


def generate_task(
    task_dir: str | Path,
    out_root: str | Path,
    fmt: str,
    bank_factory: Callable[[int], Any],
    noise_source: NoiseSource,
    seed: int = 0,
    sample_rates: Sequence[int] | None = None,
    progress: bool = True,
    targets: Sequence[str] = TARGETS,
) -> list[Path]:
    """Write the five variants (see module docstring) of one HEAR scene task in one format.

    Args:
        bank_factory: sample rate (Hz) -> scene bank (`naturalistic_hear.bank.SceneBank`, an
            external bank of `naturalistic_hear.external`, or one with their interface);
            `build()` is called on it, and its scenes are split between the task's splits
            (`assign_pools`).
        noise_source: a `NoiseSource` (its `at_rate` gives each folder's rate).
        sample_rates: only these sample-rate folders (default: all of the source's).
        targets: the kinds of task to write, of `TARGETS` (default: both).

    Returns the output task directories (four when the T60 task cannot be made leak-free or
    the bank's T60 is unknown).
    """
    fmt = scene_format(fmt)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown or not targets:
        raise ValueError(f"targets must be among {list(TARGETS)}, got {list(targets)}")
    direction = "direction" in targets
    layout = read_task(task_dir, sample_rates)
    if layout.metadata.get("embedding_type", "scene") != "scene":
        raise TaskError(f"{layout.path}: only scene tasks can be turned into localization tasks")
    for split in layout.splits:
        child(layout.path, split, "split name")  # before anything is written from it
    banks = {sr: bank_factory(sr).build(workers=1, progress=progress) for sr in layout.sample_rates}
    noises = {sr: noise_source.at_rate(sr) for sr in layout.sample_rates}
    counts = clips_per_split(layout)
    pools = {sr: assign_pools(banks[sr], counts, need_rooms=False) for sr in banks}
    first = pools[min(pools)]
    t60 = first.t60_known and first.disjoint_by == "room"
    if not t60 and not direction:  # only a T60 task was asked for, and none can be made
        raise TaskError(
            f"{layout.name}/{fmt}: no T60 task can be made ("
            + ("the bank's T60 is unknown" if not first.t60_known else "rooms are shared by folds")
            + ")"
        )
    t60 = t60 and "t60" in targets
    if not t60 and "t60" in targets:
        logger.warning(
            "%s/%s: no T60 task (%s)",
            layout.name,
            fmt,
            "the bank's T60 is unknown" if not first.t60_known else "rooms are shared by folds",
        )
    views = {
        (sr, split): PoolView(banks[sr], pools[sr].pools[split])
        for sr in banks
        for split in layout.splits
    }
    out_root = Path(out_root)
    dirs = []
    for v in variants(fmt, t60, direction):
        out_dir = child(out_root, v.name(layout.name), "task name")
        for sr in layout.sample_rates:
            for split in layout.splits:
                child(child(out_dir, str(sr), "rate"), split, "split name").mkdir(
                    parents=True, exist_ok=True
                )
        meta = task_metadata(layout, v, fmt, seed, banks, noise_source, first)
        write_static(out_dir / "task_metadata.json", json_bytes(meta), _first_difference)
        vocab = "idx,label\n" + ("0,x\n1,y\n2,z\n" if v.target == "direction" else "0,t60_s\n")
        write_bytes_atomic(out_dir / "labelvocabulary.csv", vocab.encode())
        dirs.append(out_dir)

    def out_path(out_dir: Path, clip: Any) -> Path:
        folder = child(child(out_dir, str(clip.sample_rate), "rate"), clip.split, "split name")
        return child(folder, clip.filename, "file name")

    rows_path = dirs[0] / ROWS_NAME
    rows = {row_key(r): r for r in read_rows(rows_path)}
    todo = [
        c
        for c in layout.clips
        if c.key not in rows or not all(out_path(d, c).is_file() for d in dirs)
    ]
    bar = tqdm(todo, desc=f"{layout.name} {fmt}", disable=not progress)
    with open_rows(rows_path) as rows_file:
        for clip in bar:
            sr = clip.sample_rate
            audio, info = read_audio(out_path(layout.path, clip))
            audios, clip_rows = render_variants(
                audio,
                sr,
                views[(sr, clip.split)],
                noises[sr],
                seed,
                layout.name,
                clip.split,
                clip.filename,
                fmt,
                t60,
                pools[sr].rooms,
                direction,
            )
            container, subtype = output_subtype(info)
            for v, out_dir in zip(variants(fmt, t60, direction), dirs, strict=True):
                data = encode_audio(audios[v.suffix], sr, container, subtype)
                write_bytes_atomic(out_path(out_dir, clip), data)
            record = {"sample_rate": sr, "split": clip.split, "filename": clip.filename}
            append_row(rows_file, {**record, **clip_rows})
            rows[clip.key] = clip_rows
    _finish(layout, fmt, out_root, rows, t60, direction)
    rows_path.unlink()
    logger.info("%s/%s: rendered %d clips into %d tasks", layout.name, fmt, len(todo), len(dirs))
    return dirs


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


PROG = "python -m localization_tasks.generate"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    cli.add_tasks_dir(p)
    cli.add_out(p, help="output tasks folder")
    p.add_argument(
        "--task",
        action="append",
        dest="tasks",
        metavar="NAME",
        help=f"source scene task; repeat for several (default: {' '.join(DEFAULT_TASKS)})",
    )
    p.add_argument(
        "--format",
        nargs="+",
        choices=sorted(FORMATS),
        default=["binaural", "ambisonic"],
        dest="formats",
    )
    p.add_argument("--target", nargs="+", choices=TARGETS, default=list(TARGETS), dest="targets",
                   help="kinds of task to write (default: both)")  # fmt: skip
    cli.add_seed(p)
    p.add_argument(
        "--n-scenes",
        type=cli.positive_int,
        default=None,
        help=f"scenes in the built-in bank (default {DEFAULT_N_SCENES}), split between the "
        "folds; sofa: default one per measurement",
    )
    p.add_argument(
        "--rirs",
        default="builtin",
        help="builtin (simulated held-out scenes) | soundspaces:DIR | sofa:FILE "
        "(naturalistic_hear.external)",
    )
    p.add_argument("--sample-rate", type=cli.positive_int, action="append", dest="sample_rates",
                   metavar="HZ")  # fmt: skip
    p.add_argument("--noise-dir", type=Path, help="noise recordings (default: built-in noise)")
    p.add_argument("--cache-dir", type=Path, default=None, help="scene bank cache")
    return p


def bank_factory(args: argparse.Namespace, fmt: str) -> Callable[[int], Any]:
    """sample rate -> scene bank for --rirs and one format."""
    from naturalistic_hear.__main__ import default_cache_dir
    from naturalistic_hear.bank import SceneBank
    from naturalistic_hear.external import SofaBank, SoundSpacesBank

    kind, _, location = args.rirs.partition(":")
    if kind == "builtin" and not location:
        # Held-out scenes (the "test" pool), as Nat-HEAR.
        return functools.partial(
            SceneBank,
            args.cache_dir or default_cache_dir(),
            fmt,
            pool="test",
            n_scenes=DEFAULT_N_SCENES if args.n_scenes is None else args.n_scenes,
            seed=args.seed,
        )
    if kind == "soundspaces" and location:
        if args.n_scenes is not None:
            raise ValueError("--n-scenes does not apply to --rirs soundspaces (one per region)")
        return functools.partial(SoundSpacesBank, Path(location), fmt)
    if kind == "sofa" and location:
        return functools.partial(
            SofaBank, Path(location), fmt, n_scenes=args.n_scenes, seed=args.seed
        )
    raise ValueError(f"--rirs must be builtin, soundspaces:DIR or sofa:FILE; got {args.rirs!r}")


def run(args: argparse.Namespace) -> None:
    noise: NoiseSource = (
        BuiltinNoise(sample_rate=16000)
        if args.noise_dir is None
        else NoiseDir(args.noise_dir, sample_rate=16000)
    )
    # TaskError, SceneAssignmentError, ExternalRIRError and UnsafePathError are ValueErrors:
    # cli.main reports them in one line.
    for name in args.tasks or list(DEFAULT_TASKS):
        task_dir = child(args.tasks_dir, name, "--task")
        if not task_dir.is_dir():
            found = sorted(p.name for p in args.tasks_dir.iterdir() if p.is_dir()) if (
                args.tasks_dir.is_dir()) else []  # fmt: skip
            raise TaskError(f"{args.tasks_dir}: no task folder {name!r} (found {found})")
        for fmt in args.formats:
            generate_task(task_dir, args.out, fmt, bank_factory(args, fmt), noise,
                          seed=args.seed, sample_rates=args.sample_rates,
                          progress=not args.quiet, targets=args.targets)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (`hear_gram.cli` convention): expected failures end in one line
    `PROG: error: ...` and exit status 2, Ctrl-C in 130."""
    return cli.main(PROG, build_parser, run, argv, log_dir=lambda a: a.out)


if __name__ == "__main__":
    sys.exit(main())
