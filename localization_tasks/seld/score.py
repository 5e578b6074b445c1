"""Score DCASE-format SELD predictions against references, with the metrics of a DCASE year.

    python -m localization_tasks.seld.score --ref-dir R --pred-dir P
        [--metrics dcase2022|dcase2024|dcase2025|dcase2019] [--jackknife] [--segment-based]
        [--doa-threshold 20] [--dist-threshold M] [--reldist-threshold 1] [--req-onscreen]
        [--no-distance] [--clip-length S] [--average macro|micro] [--num-classes N]
        [--ref-format auto] [--pred-format auto] [--stereo]

Every `*.csv` in R is a reference file; the prediction with the same name in P is scored against
it (a missing prediction scores as an empty one, with a warning; a prediction without reference
is an error, since it would silently not count). Prints JSON (NaN, for a figure with nothing to
average, printed as null).

`--metrics` (default dcase2022; `score_files` below, the modules name their sources):
  dcase2022  `seld.metrics`: 1 s segments; ER<T>, F<T>, LE_CD, LR_CD, SELD (DCASE 2022/2023).
  dcase2024  `seld.metrics_dcase2024`: frame-wise with distances; ER, F, AngE, DistE, RelDistE,
             LR, SELD. `--segment-based`: its segment-level metrics (ER, F, AngE, LR, SELD);
             `--no-distance`: frame-wise without distances (2023-style SELD).
  dcase2025  `seld.metrics_dcase2025`: stereo, folded azimuths; F, AngE, DistE, RelDistE,
             OnscreenAq. `--req-onscreen`: a TP also needs the right on-screen flag.
  dcase2019  `seld.metrics_dcase2019`: 1 s segment ER, F; frame-wise DOA_error, frame_recall;
             SELD.
`--jackknife`: each figure also gets its leave-one-file-out 95 % interval ("jackknife").
`--clip-length S`: every clip is S seconds long (S / 0.1 frames) instead of the frame count each
baseline derives from the labels (the 2019 one counts trailing silence of its 60 s clips).
Distances are metres (`--dist-threshold` too); `--num-classes` defaults to the highest class
index seen plus one, and macro averaging runs over all of 0..N-1.

Formats: `auto` reads the layouts of the chosen year (`seld.labels`): with dcase2024 a 6-column
file is the 2024 metadata (distance in cm), with dcase2022 it is x,y,z predictions.
`--stereo` is the older option kept as it was: the DCASE 2022 segment metrics on front-folded
azimuths (elevation ignored); the DCASE 2025 challenge's own stereo metrics are
`--metrics dcase2025`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hear_gram import cli
from hear_gram.safeio import child
from localization_tasks.seld import metrics_dcase2019, metrics_dcase2024, metrics_dcase2025
from localization_tasks.seld.labels import FORMATS, FRAME_S, Row, read_rows
from localization_tasks.seld.metrics import score_rows

log = logging.getLogger(__name__)
MAX_FILES = 100_000


def _dcase2022(files, n_classes, *, jackknife=False, average="macro", doa_threshold=20.0,
               n_frames=None, stereo=False) -> dict:  # fmt: skip
    return score_rows(files, n_classes, doa_threshold, average, n_frames, stereo, jackknife)


# metrics name -> (scorer, the DCASE year whose layouts `auto` reads)
METRICS: dict[str, tuple[Callable[..., dict], int]] = {
    "dcase2022": (_dcase2022, 2022),
    "dcase2024": (metrics_dcase2024.score, 2024),
    "dcase2025": (metrics_dcase2025.score, 2025),
    "dcase2019": (metrics_dcase2019.score, 2019),
}


def options_of(metrics: str) -> tuple[str, ...]:
    """The keyword options `score_files` accepts for `metrics`."""
    params = inspect.signature(METRICS[metrics][0]).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "jackknife")


def score_files(
    files: dict[str, tuple[list[Row], list[Row]]],
    metrics: str = "dcase2022",
    n_classes: int | None = None,
    jackknife: bool = False,
    **options,
) -> dict:
    """Scores of {name: (reference rows, predicted rows)} with the DCASE `metrics` (module
    docstring). `n_classes`: default the highest class index seen plus one. `options`: the
    chosen metrics' own (`options_of(metrics)`: thresholds, average, n_frames, ...); an option
    the metrics do not take is a ValueError, never silently ignored."""
    if metrics not in METRICS:
        raise ValueError(f"unknown metrics {metrics!r}; choose one of {', '.join(METRICS)}")
    allowed = options_of(metrics)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"metrics {metrics} take no option {', '.join(unknown)} (they take: {', '.join(allowed)})"
        )
    if n_classes is None:
        seen = [r.cls for ref, pred in files.values() for r in ref + pred]
        n_classes = max(seen, default=0) + 1
    return METRICS[metrics][0](files, n_classes, jackknife=jackknife, **options)


def read_dirs(
    ref_dir: Path,
    pred_dir: Path,
    ref_format: str = "auto",
    pred_format: str = "auto",
    year: int | None = None,
) -> dict[str, tuple[list[Row], list[Row]]]:
    """{file name: (reference rows, predicted rows)} for every reference CSV; `year` tells `auto`
    which year's layouts to read (`labels.read_rows`)."""
    for d, what in ((ref_dir, "--ref-dir"), (pred_dir, "--pred-dir")):
        if not d.is_dir():
            raise FileNotFoundError(f"{what} {d} is not a directory")
    refs = sorted(p.name for p in ref_dir.iterdir() if p.suffix == ".csv" and p.is_file())
    preds = sorted(p.name for p in pred_dir.iterdir() if p.suffix == ".csv" and p.is_file())
    if not refs:
        raise ValueError(f"no reference .csv files in {ref_dir}")
    if len(refs) > MAX_FILES or len(preds) > MAX_FILES:
        raise ValueError(f"over {MAX_FILES} label files; refusing")
    extra = sorted(set(preds) - set(refs))
    if extra:
        raise ValueError(f"predictions without a reference in {ref_dir}: {', '.join(extra[:5])}")
    files = {}
    for name in refs:
        ref = read_rows(child(ref_dir, name, "reference file"), ref_format, year=year)
        pred_path = child(pred_dir, name, "prediction file")
        if pred_path.is_file():
            pred = read_rows(pred_path, pred_format, year=year)
        else:
            log.warning("no prediction for %s: scored as empty", name)
            pred = []
        files[name] = (ref, pred)
    return files


def json_safe(value):
    """`value` with every non-finite float as None: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


PROG = "python -m localization_tasks.seld.score"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--ref-dir", type=Path, required=True, metavar="DIR")
    p.add_argument("--pred-dir", type=Path, required=True, metavar="DIR")
    p.add_argument("--metrics", choices=tuple(METRICS), default="dcase2022")
    p.add_argument("--jackknife", action="store_true",
                   help="leave-one-file-out 95%% intervals of every figure")  # fmt: skip
    p.add_argument("--segment-based", action="store_true",
                   help="dcase2024: its segment-level metrics instead of frame-wise")  # fmt: skip
    p.add_argument("--doa-threshold", type=float, default=20.0, help="degrees (default 20)")
    p.add_argument("--dist-threshold", type=float, default=None,
                   help="dcase2024/2025: metres (default none)")  # fmt: skip
    p.add_argument("--reldist-threshold", type=float, default=None,
                   help="dcase2024/2025: relative distance error (default 1)")  # fmt: skip
    p.add_argument("--req-onscreen", action="store_true",
                   help="dcase2025: a TP needs the right on-screen flag")  # fmt: skip
    p.add_argument("--no-distance", action="store_true",
                   help="dcase2024: frame-wise without distances")  # fmt: skip
    p.add_argument("--clip-length", type=float, default=None, metavar="SECONDS",
                   help="every clip's length (default: from its labels, as each baseline)")  # fmt: skip
    p.add_argument("--average", choices=("macro", "micro"), default=None)
    p.add_argument("--num-classes", type=cli.positive_int, default=None)
    p.add_argument("--ref-format", choices=FORMATS, default="auto")
    p.add_argument("--pred-format", choices=FORMATS, default="auto")
    p.add_argument("--stereo", action="store_true",
                   help="dcase2022 metrics on folded azimuths (the older stereo option)")  # fmt: skip
    return p


def _options(args: argparse.Namespace, files: dict) -> dict:
    """The options given on the command line, under `score_files`' names (unset ones left to the
    metrics' defaults, so that an option the chosen metrics lack is refused by name)."""
    opts: dict = {"doa_threshold": args.doa_threshold}
    for name in ("dist_threshold", "reldist_threshold", "average"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    flags = {"segment_based": "segment_based", "req_onscreen": "req_onscreen", "stereo": "stereo"}
    opts.update({key: True for flag, key in flags.items() if getattr(args, flag)})
    if args.segment_based and args.metrics == "dcase2022":
        del opts["segment_based"]  # the 2022 metrics are segment-based already
    if args.no_distance:
        opts["evaluate_distance"] = False
    if args.clip_length is not None:
        if not (math.isfinite(args.clip_length) and 0 < args.clip_length <= 1e6):
            raise ValueError(f"--clip-length {args.clip_length} must be in (0, 1e6] seconds")
        opts["n_frames"] = dict.fromkeys(files, math.ceil(round(args.clip_length / FRAME_S, 6)))
    if args.metrics == "dcase2019":
        del opts["doa_threshold"]  # the 2019 metrics have no threshold
        if args.doa_threshold != 20.0:
            raise ValueError("--metrics dcase2019 has no DOA threshold")
    return opts


def run(args: argparse.Namespace) -> None:
    year = METRICS[args.metrics][1]
    files = read_dirs(args.ref_dir, args.pred_dir, args.ref_format, args.pred_format, year)
    result = score_files(files, args.metrics, args.num_classes, args.jackknife,
                         **_options(args, files))  # fmt: skip
    print(json.dumps(json_safe(result), indent=1, allow_nan=False))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (`hear_gram.cli` convention; no OUT, so no log file): expected failures end
    in one line `PROG: error: ...` and exit status 2, Ctrl-C in 130."""
    return cli.main(PROG, build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
