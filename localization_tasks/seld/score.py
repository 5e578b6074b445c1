"""Score DCASE-format SELD predictions against references.

    python -m localization_tasks.seld.score --ref-dir R --pred-dir P [--doa-threshold 20]
        [--average macro|micro] [--num-classes N] [--ref-format auto] [--pred-format auto]
        [--stereo]

Every `*.csv` in R is a reference file; the prediction with the same name in P is scored against
it (a missing prediction scores as an empty one, with a warning; a prediction without reference
is an error, since it would silently not count). Prints JSON: ER<T>, F<T>, LE_CD, LR_CD, SELD,
counts and per-class scores (see `localization_tasks.seld.metrics`). `--num-classes` defaults to
the highest class index seen in R or P plus one; macro averaging runs over all of 0..N-1.
`--stereo`: DCASE 2025 stereo SELD scoring, azimuth only and front-folded (azimuths mirrored into
[-90, 90], elevation ignored; `metrics.stereo_rows`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hear_gram import cli
from hear_gram.safeio import child
from localization_tasks.seld.labels import FORMATS, Row, read_rows
from localization_tasks.seld.metrics import score_rows

log = logging.getLogger(__name__)
MAX_FILES = 100_000


def read_dirs(
    ref_dir: Path, pred_dir: Path, ref_format: str = "auto", pred_format: str = "auto"
) -> dict[str, tuple[list[Row], list[Row]]]:
    """{file name: (reference rows, predicted rows)} for every reference CSV."""
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
        ref = read_rows(child(ref_dir, name, "reference file"), ref_format)
        pred_path = child(pred_dir, name, "prediction file")
        if pred_path.is_file():
            pred = read_rows(pred_path, pred_format)
        else:
            log.warning("no prediction for %s: scored as empty", name)
            pred = []
        files[name] = (ref, pred)
    return files


PROG = "python -m localization_tasks.seld.score"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--ref-dir", type=Path, required=True, metavar="DIR")
    p.add_argument("--pred-dir", type=Path, required=True, metavar="DIR")
    p.add_argument("--doa-threshold", type=float, default=20.0, help="degrees (default 20)")
    p.add_argument("--average", choices=("macro", "micro"), default="macro")
    p.add_argument("--num-classes", type=cli.positive_int, default=None)
    p.add_argument("--ref-format", choices=FORMATS, default="auto")
    p.add_argument("--pred-format", choices=FORMATS, default="auto")
    p.add_argument("--stereo", action="store_true",
                   help="DCASE 2025 stereo scoring: azimuth only, folded to [-90, 90]")  # fmt: skip
    return p


def run(args: argparse.Namespace) -> None:
    files = read_dirs(args.ref_dir, args.pred_dir, args.ref_format, args.pred_format)
    seen = [r.cls for ref, pred in files.values() for r in ref + pred]
    n_classes = args.num_classes if args.num_classes is not None else max(seen, default=0) + 1
    result = score_rows(files, n_classes, args.doa_threshold, args.average, stereo=args.stereo)
    print(json.dumps(result, indent=1))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (`hear_gram.cli` convention; no OUT, so no log file): expected failures end
    in one line `PROG: error: ...` and exit status 2, Ctrl-C in 130."""
    return cli.main(PROG, build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
