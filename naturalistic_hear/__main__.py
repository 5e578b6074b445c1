"""Command line of the Nat-HEAR generator (console script `naturalistic-hear`).

    python -m naturalistic_hear --tasks-dir hear-2021.0.6/tasks --out nat-hear --format binaural \\
        [--task esc50-v2.0.0-full ...] [--sample-rate 32000] [--seed 0] [--noise-dir wham_noise/tt] \\
        [--rirs builtin | soundspaces:DIR | sofa:FILE] [--hrtf FILE] [--snr-db 5 40] \\
        [--jobs 2] [--shard 0/4] [--n-scenes N] [--cache-dir DIR] [-q | -v]

Without --task, every Nat-HEAR task (GRAM, arXiv 2506.00934) found under --tasks-dir is rendered. Without
--noise-dir, noise comes from the built-in generator (a stand-in for WHAMR!; the task metadata
says so). Runs are resumable and shardable: rerun the same command to finish an interrupted run;
shards (--shard K/N, 0 <= K < N) may run in any order or at once, and the last one to finish a
task writes its manifest (see naturalistic_hear.generate).

--rirs picks the rooms: builtin simulates held-out rooms (naturalistic_hear.bank, cached under
--cache-dir); soundspaces:DIR reads GRAM's SoundSpaces 2.0 scene JSON files and .npy RIRs and
sofa:FILE measured RIRs (naturalistic_hear.external). The bank's describe() is recorded in the
`naturalistic` block of each task_metadata.json.

--jobs is the number of worker processes (--workers is its old name). The command follows
`hear_gram.cli`: expected failures (a malformed or hostile task, unreadable noise or RIRs, bad
options) end with one line `python -m naturalistic_hear: error: ...` on stderr and exit status 2,
no traceback; Ctrl-C with exit status 130. The log goes to `CACHE/logs/naturalistic_hear.log`
(CACHE: --cache-dir or its default), not under --out: --out is a HEAR tasks folder, and
heareval's runner takes every folder in it for a task.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hear_gram import cli
from hear_gram.cli import positive_int
from naturalistic_hear.bank import DEFAULT_N_SCENES
from naturalistic_hear.external import SofaBank, SoundSpacesBank
from naturalistic_hear.formats import CHANNELS
from naturalistic_hear.generate import NAT_HEAR_TASKS, find_tasks, process_task
from naturalistic_hear.mixing import DEFAULT_SNR_RANGE, SNR_LIMIT_DB
from naturalistic_hear.noise import BuiltinNoise, NoiseDir, NoiseSource

PROG = "python -m naturalistic_hear"
logger = logging.getLogger("naturalistic_hear")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "naturalistic_hear"


def snr_db(text: str) -> float:
    """A finite SNR in dB within +-SNR_LIMIT_DB (argparse's float accepts 'nan' and 'inf')."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or abs(value) > SNR_LIMIT_DB:
        raise argparse.ArgumentTypeError(
            f"must be a finite number of dB within +-{SNR_LIMIT_DB:g}, got {text!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    cli.add_tasks_dir(p)
    cli.add_out(p, help="output tasks folder")
    p.add_argument("--format", choices=sorted(CHANNELS), required=True, dest="fmt")
    p.add_argument(
        "--task",
        action="append",
        dest="tasks",
        metavar="NAME",
        help=f"task folder name; repeat for several (default: those of {', '.join(NAT_HEAR_TASKS)} "
        "present under --tasks-dir)",
    )
    p.add_argument(
        "--sample-rate",
        type=positive_int,
        action="append",
        dest="sample_rates",
        metavar="HZ",
        help="render only this sample-rate folder; repeat for several (default: all)",
    )
    cli.add_seed(p)  # scene bank and per-clip draws
    p.add_argument("--noise-dir", type=Path, help="noise recordings, e.g. wham_noise/tt")
    p.add_argument(
        "--rirs",
        default="builtin",
        help="builtin (simulated held-out scenes) | soundspaces:DIR (GRAM/SoundSpaces 2.0 scene "
        "JSON files and .npy RIRs at 32 kHz) | sofa:FILE (measured RIRs, e.g. SingleRoomSRIR)",
    )
    p.add_argument(
        "--hrtf",
        type=Path,
        help="HRTF SOFA file (SimpleFreeFieldHRIR) for binaural RIRs (default: MIT KEMAR)",
    )
    p.add_argument(
        "--ambisonic-convention",
        choices=["acn-sn3d", "fuma"],
        default="acn-sn3d",
        help="channel order and normalisation of Ambisonic output: ACN/SN3D (W, Y, Z, X; what "
        "hear_gram.gram_t_ambisonic reads as W then three first-order channels) or FuMa "
        "(W/sqrt(2), X, Y, Z)",
    )
    p.add_argument(
        "--snr-db", type=snr_db, nargs=2, default=DEFAULT_SNR_RANGE, metavar=("LO", "HI")
    )
    p.add_argument("--jobs", "--workers", dest="jobs", type=positive_int, default=1, metavar="N",
                   help="worker processes (capped, with a warning, at the CPU cores; "
                   "--workers: the same)")  # fmt: skip
    p.add_argument("--shard", type=cli.shard, default=(0, 1), metavar="K/N")
    p.add_argument(
        "--n-scenes",
        type=positive_int,
        help=f"scenes in the bank (builtin: default {DEFAULT_N_SCENES}; sofa: default one per "
        "measurement; soundspaces: one per sampled region, not settable)",
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="scene bank cache")
    return p


def bank_factory(args: argparse.Namespace) -> functools.partial:
    """sample rate -> scene bank for --rirs, picklable for worker processes."""
    kind, _, location = args.rirs.partition(":")
    if kind in ("soundspaces", "sofa"):
        return external_bank_factory(args, kind, location)
    if kind != "builtin" or location:
        raise ValueError(f"--rirs must be builtin, soundspaces:DIR or sofa:FILE; got {args.rirs!r}")
    from naturalistic_hear.bank import SceneBank
    from naturalistic_hear.hrtf import load_sofa

    if args.hrtf is not None and args.fmt != "binaural":
        raise ValueError("--hrtf applies to --format binaural only")
    if args.ambisonic_convention != "acn-sn3d" and args.fmt != "ambisonic":
        raise ValueError("--ambisonic-convention applies to --format ambisonic only")
    # Nat-HEAR renders held-out scenes: the "test" pool of naturalistic_hear.rooms.
    return functools.partial(
        SceneBank,
        args.cache_dir or default_cache_dir(),
        args.fmt,
        pool="test",
        n_scenes=DEFAULT_N_SCENES if args.n_scenes is None else args.n_scenes,
        seed=args.seed,
        hrtf=None if args.hrtf is None else load_sofa(args.hrtf),
        ambisonic_convention=args.ambisonic_convention if args.fmt == "ambisonic" else "acn-sn3d",
    )


def external_bank_factory(args: argparse.Namespace, kind: str, location: str) -> functools.partial:
    """sample rate -> SoundSpacesBank (one scene per sampled region) or SofaBank (--n-scenes
    scenes, default one per measurement); see naturalistic_hear.external."""
    if not location:
        raise ValueError(f"--rirs {kind}: needs a path, e.g. --rirs {kind}:PATH")
    if args.hrtf is not None:
        raise ValueError(
            f"--hrtf applies to --rirs builtin only ({kind} RIRs are already rendered)"
        )
    path = Path(location).resolve()
    if kind == "soundspaces":
        if not path.is_dir():
            state = "is a file, not a folder" if path.exists() else "does not exist"
            raise ValueError(f"--rirs soundspaces:DIR: {location} {state}")
        if args.n_scenes is not None:
            raise ValueError("--n-scenes does not apply to --rirs soundspaces (one per region)")
        return functools.partial(SoundSpacesBank, path, args.fmt)
    if not path.is_file():
        state = "is a directory, not a file" if path.is_dir() else "is not a file"
        raise ValueError(f"--rirs sofa:FILE: {location} {state}")
    return functools.partial(SofaBank, path, args.fmt, n_scenes=args.n_scenes, seed=args.seed)


def noise_source(args: argparse.Namespace) -> NoiseSource:
    # The rate is a placeholder: process_task asks for each folder's rate with at_rate.
    if args.noise_dir is None:
        return BuiltinNoise(sample_rate=16000)
    return NoiseDir(args.noise_dir, sample_rate=16000)


def run(args: argparse.Namespace) -> None:
    """Render every task of the command line (main, without the error handling)."""
    lo, hi = args.snr_db
    if lo > hi:
        raise cli.CLIError(f"--snr-db LO HI needs LO <= HI, got {lo} {hi}")
    tasks = find_tasks(args.tasks_dir, args.tasks)
    factory, noise = bank_factory(args), noise_source(args)
    for task_dir in tasks:
        result = process_task(
            task_dir,
            args.out,
            args.fmt,
            factory,
            noise,
            seed=args.seed,
            snr_range=tuple(args.snr_db),
            workers=args.jobs,
            shard=args.shard,
            progress=not args.quiet,
            sample_rates=args.sample_rates,
        )
        state = "complete" if result.complete else "waiting for other shards"
        logger.info(
            "%s: %d rendered, %d already done (%s)",
            result.out_dir,
            result.rendered,
            result.skipped,
            state,
        )


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(PROG, build_parser, run, argv, log_dir=log_dir)


def log_dir(args: argparse.Namespace) -> Path:
    """Where the log goes (module docstring): the scene bank cache, never the tasks folder."""
    return args.cache_dir or default_cache_dir()


if __name__ == "__main__":
    sys.exit(main())
