"""DCASE Task 3 label files: reading, writing and converting per-frame SELD labels.

A label file is a header-less CSV with one row per active (frame, class, track) at the 100 ms label
resolution of DCASE 2020-2024. Column layouts (`LabelFormat`):

    polar               frame,class,track,azimuth,elevation            (DCASE 2020/2021, STARSS23)
    cartesian           frame,class,track,x,y,z                        (DCASE 2022/2023 output)
    polar-distance      frame,class,track,azimuth,elevation,distance   (STARSS 2024 metadata)
    cartesian-distance  frame,class,track,x,y,z,distance               (DCASE 2024 output)

`auto` reads 5 columns as polar, 6 as cartesian and 7 as cartesian-distance, which is what the
DCASE 2022/2023 baseline's `load_output_format_file` does with 5 and 6 (a 6-column 2024 metadata
file must be read with `polar-distance`). Angles are degrees in the DCASE convention: azimuth
counter-clockwise from the front (+90 = left), elevation up; unit vector
[cos(el) cos(az), cos(el) sin(az), sin(el)]. Distances are metres.

Every file is data from elsewhere: sizes, indices and values are checked before they cost memory
or turn into plausible numbers, and errors name the file and line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

LabelFormat = Literal["auto", "polar", "cartesian", "polar-distance", "cartesian-distance"]
FORMATS: tuple[str, ...] = get_args(LabelFormat)
_COLUMNS = {"polar": 5, "cartesian": 6, "polar-distance": 6, "cartesian-distance": 7}
_AUTO = {5: "polar", 6: "cartesian", 7: "cartesian-distance"}

FRAME_S = 0.1  # DCASE label resolution: 100 ms frames
FRAMES_PER_SEGMENT = 10  # DCASE scores in 1 s segments
MAX_FRAME = 10_000_000  # ~11.5 days at 100 ms: anything above is a corrupt file, not a recording
MAX_CLASS = 10_000
MAX_TRACK = 10_000
MAX_FILE_BYTES = 256 * 1024 * 1024


class LabelFileError(ValueError):
    """A DCASE label file that cannot be read as the format it claims."""


@dataclass(frozen=True)
class Row:
    """One active source in one 100 ms frame. `xyz` is as given (cartesian files need not be unit
    vectors; the metrics normalise), polar input is stored as its unit vector."""

    frame: int
    cls: int
    track: int
    xyz: tuple[float, float, float]
    distance: float | None = None
    # the angles as read from a polar file, kept so a polar file writes back unchanged
    azel: tuple[float, float] | None = None

    @property
    def azimuth_elevation(self) -> tuple[float, float]:
        return self.azel if self.azel is not None else dcase_azimuth_elevation_deg(self.xyz)


def polar_to_unit(azimuth_deg: float, elevation_deg: float) -> tuple[float, float, float]:
    """Unit vector of a DCASE direction (degrees)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))


def dcase_azimuth_elevation_deg(xyz: Iterable[float]) -> tuple[float, float]:
    """(azimuth in (-180, 180], elevation) in degrees of one direction vector (any length), the
    DCASE label convention; `localization_tasks.metrics.azimuth360_elevation_deg` is the [0, 360)
    one on arrays."""
    x, y, z = (float(v) for v in xyz)
    return math.degrees(math.atan2(y, x)), math.degrees(math.atan2(z, math.hypot(x, y)))


def _int(text: str, what: str, hi: int, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        try:  # some tools write frame indices as "12.0"
            f = float(text)
        except ValueError:
            raise LabelFileError(f"{where}: {what} {text!r} is not a number") from None
        if not f.is_integer():
            raise LabelFileError(f"{where}: {what} {text!r} is not an integer") from None
        value = int(f)
    if not 0 <= value <= hi:
        raise LabelFileError(f"{where}: {what} {value} outside 0..{hi}")
    return value


def finite_float(text: str, what: str, where: str) -> float:
    """`text` as a finite float; LabelFileError naming `where` and `what` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise LabelFileError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise LabelFileError(f"{where}: {what} is {text!r}; labels must be finite")
    return value


def parse_row(fields: list[str], fmt: str, where: str) -> Row:
    """One CSV row in `fmt` (not `auto`) -> Row. `where` ("file:line") prefixes errors."""
    if len(fields) != _COLUMNS[fmt]:
        raise LabelFileError(f"{where}: {len(fields)} columns, format {fmt} has {_COLUMNS[fmt]}")
    frame = _int(fields[0], "frame", MAX_FRAME, where)
    cls = _int(fields[1], "class", MAX_CLASS, where)
    track = _int(fields[2], "track", MAX_TRACK, where)
    values = [finite_float(f, "value", where) for f in fields[3:]]
    if fmt.startswith("polar"):
        az, el = values[0], values[1]
        if not (-360.0 <= az <= 360.0 and -90.0 <= el <= 90.0):
            raise LabelFileError(f"{where}: azimuth {az} / elevation {el} out of range (degrees)")
        xyz, azel = polar_to_unit(az, el), (az, el)
        rest = values[2:]
    else:
        xyz, azel = (values[0], values[1], values[2]), None
        if max(abs(v) for v in xyz) > 1e6:
            raise LabelFileError(f"{where}: direction {xyz} is absurd")
        rest = values[3:]
    distance = rest[0] if rest else None
    if distance is not None and not 0.0 <= distance <= 1e4:
        raise LabelFileError(f"{where}: distance {distance} m out of range 0..10000")
    return Row(frame, cls, track, xyz, distance, azel)


def read_rows(path: str | os.PathLike, fmt: LabelFormat = "auto") -> list[Row]:
    """All rows of a DCASE label CSV. A first line whose first field is not a number is a header
    and skipped; blank lines are skipped; anything else malformed raises LabelFileError."""
    if fmt not in FORMATS:
        raise LabelFileError(f"unknown label format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LabelFileError(f"{path}: {size} bytes, over the {MAX_FILE_BYTES}-byte limit")
    rows: list[Row] = []
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError as e:
            raise LabelFileError(f"{path}: not UTF-8 text ({e.reason})") from None
    for i, line in enumerate(lines, 1):
        fields = [x.strip() for x in line.split(",")]
        if fields == [""]:
            continue
        if i == 1 and not fields[0].lstrip("-").replace(".", "", 1).isdigit():
            continue  # header
        row_fmt = fmt if fmt != "auto" else _AUTO.get(len(fields))
        if row_fmt is None:
            raise LabelFileError(f"{path}:{i}: {len(fields)} columns; expected 5, 6 or 7")
        rows.append(parse_row(fields, row_fmt, f"{path}:{i}"))
    return rows


def _num(value: float) -> str:
    """Shortest text that reads back as the same float; integral values without '.0' (the
    STARSS23 metadata writes integer degrees)."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def format_rows(rows: Iterable[Row], fmt: LabelFormat = "cartesian") -> str:
    """CSV text of `rows` in `fmt` (no header, as DCASE writes them), rows in the given order.
    Polar output writes the angles as read when the row came from a polar file (so such a file
    round-trips to the same text), else the angles of the direction vector; nothing is rounded."""
    if fmt not in _COLUMNS:
        raise LabelFileError(f"cannot write format {fmt!r}; choose one of {', '.join(_COLUMNS)}")
    out = []
    for r in rows:
        if fmt.startswith("polar"):
            values = list(r.azimuth_elevation)
        else:
            values = list(r.xyz)
        if fmt.endswith("distance"):
            if r.distance is None:
                raise LabelFileError(f"format {fmt} needs a distance; frame {r.frame} has none")
            values.append(r.distance)
        out.append(",".join([str(r.frame), str(r.cls), str(r.track)] + [_num(v) for v in values]))
    return "".join(line + "\n" for line in out)


def frames_of(
    rows: Iterable[Row], direction: Callable[[Row], Sequence[float]] | None = None
) -> dict[int, list[tuple[int, np.ndarray]]]:
    """frame -> [(class, direction)] in file order within a frame (the order the DCASE scorer's
    per-frame track positions follow). `direction`: what a row's direction is for the scorer
    (default its unit vector `xyz`; the stereo scorer uses the folded azimuth in degrees)."""
    out: dict[int, list[tuple[int, np.ndarray]]] = {}
    for r in rows:
        d = r.xyz if direction is None else direction(r)
        out.setdefault(r.frame, []).append((r.cls, np.asarray(d, dtype=np.float64)))
    return out
