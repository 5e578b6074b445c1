"""DCASE Task 3 label files: reading, writing and converting per-frame SELD labels.

A label file is a CSV with one row per active (frame, class, track) at the 100 ms label resolution
of DCASE 2020-2025. Row layouts:

    polar               frame,class,track,azimuth,elevation
    cartesian           frame,class,track,x,y,z
    polar-distance      frame,class,track,azimuth,elevation,distance      (distance in metres)
    cartesian-distance  frame,class,track,x,y,z,distance                  (distance in metres)
    polar-distance-cm   frame,class,source,azimuth,elevation,distance     (distance in cm)
    stereo-cm           frame,class,source,azimuth,distance,onscreen      (distance in cm; a header)

`LabelFormat` names either one layout (the first four above) or a file format, which picks the
layout by the number of columns, as that year's scorer does:

    dcase2019           5: polar, 6: cartesian. Our 100 ms labels of TAU 2018/2019 (`seld.tau`
                        turns the event lists of sharathadavanne/seld-dcase2019 into polar rows).
                        The 2019 submission format itself (`metrics/evaluation_metrics.py`
                        `load_output_format_file`: frame,class,azimuth,elevation at 20 ms frames)
                        has 4 columns and is refused: its frames are not ours.
    dcase2020..2023     5: polar (the metadata), 6: cartesian (the baselines' output, written as
                        frame,class,0,x,y,z by `cls_feature_class.write_output_format_file` of
                        sharathadavanne/seld-dcase2020/2021/2022).
    dcase2024           5: polar (no distance), 6: polar-distance-cm (the STARSS23 2024 metadata),
                        7: cartesian-distance (the output of partha2409/DCASE2024_seld_baseline,
                        whose writer puts metres there).
    dcase2025           6: stereo-cm after a header line (partha2409/DCASE2025_seld_baseline
                        `utils.load_labels` skips line 1 unread, so a file without a header is
                        refused: that baseline would silently lose its first row).
    auto                5: polar, 7: cartesian-distance, a DCASE 2025 header: stereo-cm. A
                        6-column file is refused unless the dataset year is given
                        (`read_rows(path, year=2024)` reads it as `dcase2024`): it is x,y,z
                        predictions up to 2023 and azimuth,elevation,cm metadata in 2024, and
                        guessing wrong gives plausible nonsense.

Every row of a file has the same number of columns; a row that differs from the first is refused
naming its line. A first line whose first field is not a number is a header; a UTF-8 BOM, CRLF
line ends, blank lines and numbers such as `5e0` are accepted.

Units: angles are degrees in the DCASE convention (azimuth counter-clockwise from the front, +90 =
left; elevation up; unit vector [cos(el) cos(az), cos(el) sin(az), sin(el)]). Distances are
metres everywhere in the project (`Row.distance`): centimetres are divided by 100 once, at
reading (a division, as the 2024 baseline's `cm2m`, so the metres are bit for bit its own).
`format_rows` writes every format back so that a written file reads back to equal rows.

Every file is data from elsewhere: sizes, indices and values are checked before they cost memory
or turn into plausible numbers, and errors name the file and line.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

LabelFormat = Literal[
    "auto", "polar", "cartesian", "polar-distance", "cartesian-distance",
    "dcase2019", "dcase2020", "dcase2021", "dcase2022", "dcase2023", "dcase2024", "dcase2025",
]  # fmt: skip
FORMATS: tuple[str, ...] = get_args(LabelFormat)
YEARS = range(2019, 2026)

# layout -> the columns after frame, class, track
_LAYOUT_VALUES = {
    "polar": ("azimuth", "elevation"),
    "cartesian": ("x", "y", "z"),
    "polar-distance": ("azimuth", "elevation", "distance"),
    "cartesian-distance": ("x", "y", "z", "distance"),
    "polar-distance-cm": ("azimuth", "elevation", "distance_cm"),
    "stereo-cm": ("azimuth", "distance_cm", "onscreen"),
}
_COLUMNS = {name: 3 + len(values) for name, values in _LAYOUT_VALUES.items()}
_UP_TO_2023 = {5: "polar", 6: "cartesian"}
# format -> {number of columns: layout}
_BY_COLUMNS: dict[str, dict[int, str]] = {
    **{name: {n: name} for name, n in _COLUMNS.items() if name in FORMATS},
    "auto": {5: "polar", 7: "cartesian-distance"},
    **{f"dcase{y}": _UP_TO_2023 for y in range(2019, 2024)},
    "dcase2024": {5: "polar", 6: "polar-distance-cm", 7: "cartesian-distance"},
    "dcase2025": {6: "stereo-cm"},
}
# format -> the layout `format_rows` writes: a year's metadata layout
_WRITES = {
    **{name: name for name in _COLUMNS if name in FORMATS},
    **{f"dcase{y}": "polar" for y in range(2019, 2024)},
    "dcase2024": "polar-distance-cm",
    "dcase2025": "stereo-cm",
}
STEREO_HEADER = "frame,class,source,azimuth,distance,onscreen"  # the DCASE 2025 metadata header

FRAME_S = 0.1  # DCASE label resolution: 100 ms frames
FRAMES_PER_SEGMENT = 10  # DCASE scores in 1 s segments
MAX_FRAME = 10_000_000  # ~11.5 days at 100 ms: anything above is a corrupt file, not a recording
MAX_CLASS = 10_000
MAX_TRACK = 10_000
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_ROWS = 1_000_000  # ~28 h of one source in every 100 ms frame; a Row costs ~360 bytes
MAX_DISTANCE_M = 1e4

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class LabelFileError(ValueError):
    """A DCASE label file that cannot be read as the format it claims."""


@dataclass(frozen=True)
class Row:
    """One active source in one 100 ms frame. `xyz` is as given (cartesian files need not be unit
    vectors; the metrics normalise), polar input is stored as its unit vector. `distance` in
    metres; `onscreen` (0/1) only from DCASE 2025 stereo files."""

    frame: int
    cls: int
    track: int
    xyz: tuple[float, float, float]
    distance: float | None = None
    # the angles as read from a polar file, kept so a polar file writes back unchanged
    azel: tuple[float, float] | None = None
    onscreen: int | None = None

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


def finite_float(text: str, what: str, where: str) -> float:
    """`text` as a finite float; LabelFileError naming `where` and `what` otherwise. Only plain
    decimal numbers (`-1.5`, `5e0`) pass: Python's float() also takes `1_000` and `infinity`."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise LabelFileError(f"{where}: {what} is {text!r}; labels must be finite")
        raise LabelFileError(f"{where}: {what} {text!r} is not a number")
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999
        raise LabelFileError(f"{where}: {what} is {text!r}; labels must be finite")
    return value


def _int(text: str, what: str, hi: int, where: str) -> int:
    """A non-negative integer up to `hi`; some tools write indices as `12.0` or `5e0`."""
    value = finite_float(text, what, where)
    if not value.is_integer():
        raise LabelFileError(f"{where}: {what} {text!r} is not an integer")
    if not 0 <= value <= hi:
        raise LabelFileError(f"{where}: {what} {text.strip()} outside 0..{hi}")
    return int(value)


def layout_of(fmt: str, n_columns: int, where: str) -> str:
    """The layout a row of `n_columns` has in format `fmt` (see the module docstring)."""
    if fmt not in _BY_COLUMNS and fmt not in _COLUMNS:
        raise LabelFileError(f"unknown label format {fmt!r}; choose one of {', '.join(FORMATS)}")
    by_n = _BY_COLUMNS.get(fmt, {_COLUMNS.get(fmt, 0): fmt})
    if n_columns in by_n:
        return by_n[n_columns]
    if fmt == "auto" and n_columns == 6:
        raise LabelFileError(
            f"{where}: 6 columns can be frame,class,track,x,y,z (DCASE 2020-2023 predictions: "
            "format cartesian or dcase2022) or frame,class,source,azimuth,elevation,distance "
            "(DCASE 2024 metadata, distance in cm: format dcase2024; in metres: polar-distance); "
            "name the format"
        )
    if n_columns == 4:
        raise LabelFileError(
            f"{where}: 4 columns (frame,class,azimuth,elevation: the DCASE 2019 submission "
            "format at 20 ms frames?) is not read; write 100 ms rows frame,class,track,azimuth,"
            "elevation"
        )
    expected = " or ".join(str(n) for n in sorted(by_n))
    raise LabelFileError(f"{where}: {n_columns} columns; format {fmt} has {expected}")


def _distance(text: str, layout: str, where: str) -> float:
    value = finite_float(text, "distance", where)
    if layout.endswith("-cm"):
        if not 0.0 <= value <= MAX_DISTANCE_M * 100:
            raise LabelFileError(
                f"{where}: distance {value} cm out of range 0..{MAX_DISTANCE_M * 100:g}"
            )
        return value / 100  # cm -> m by division, as the 2024 baseline's cm2m
    if not 0.0 <= value <= MAX_DISTANCE_M:
        raise LabelFileError(f"{where}: distance {value} m out of range 0..{MAX_DISTANCE_M:g}")
    return value


def _angles(az: float, el: float, where: str) -> None:
    if not (-360.0 <= az <= 360.0 and -90.0 <= el <= 90.0):
        raise LabelFileError(f"{where}: azimuth {az} / elevation {el} out of range (degrees)")


def parse_row(fields: list[str], fmt: str, where: str) -> Row:
    """One CSV row in `fmt` (a layout, or a format picking the layout by column count) -> Row.
    `where` ("file:line") prefixes errors."""
    layout = layout_of(fmt, len(fields), where)
    if any(not f.strip() for f in fields):
        k = next(i for i, f in enumerate(fields) if not f.strip()) + 1
        raise LabelFileError(f"{where}: field {k} is empty")
    frame = _int(fields[0], "frame", MAX_FRAME, where)
    cls = _int(fields[1], "class", MAX_CLASS, where)
    track = _int(fields[2], "track", MAX_TRACK, where)
    names = _LAYOUT_VALUES[layout]
    distance = onscreen = None
    if "distance" in names or "distance_cm" in names:
        k = names.index("distance" if "distance" in names else "distance_cm")
        distance = _distance(fields[3 + k], layout, where)
    if layout == "stereo-cm":
        az = finite_float(fields[3], "azimuth", where)
        _angles(az, 0.0, where)
        onscreen = _int(fields[5], "onscreen", 1, where)
        return Row(frame, cls, track, polar_to_unit(az, 0.0), distance, (az, 0.0), onscreen)
    if names[0] == "azimuth":
        az = finite_float(fields[3], "azimuth", where)
        el = finite_float(fields[4], "elevation", where)
        _angles(az, el, where)
        return Row(frame, cls, track, polar_to_unit(az, el), distance, (az, el))
    xyz = tuple(finite_float(f, name, where) for f, name in zip(fields[3:6], "xyz", strict=True))
    if max(abs(v) for v in xyz) > 1e6:
        raise LabelFileError(f"{where}: direction {xyz} is absurd")
    return Row(frame, cls, track, xyz, distance)  # type: ignore[arg-type]


def _read_text(path: Path) -> str:
    """The file's text, read with a bound: special files (FIFOs, devices) and files over
    MAX_FILE_BYTES are refused before they are read."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise LabelFileError(f"{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise LabelFileError(f"{path}: not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise LabelFileError(f"{path}: {st.st_size} bytes, over the {MAX_FILE_BYTES}-byte limit")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:  # grew since stat
        raise LabelFileError(f"{path}: over the {MAX_FILE_BYTES}-byte limit")
    try:
        return data.decode("utf-8-sig")  # -sig: a leading BOM is dropped, not read as data
    except UnicodeDecodeError as e:
        raise LabelFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def is_header(first_field: str) -> bool:
    """Line 1 is a header when its first field is a name (`frame`), not a number, nor `nan`/`inf`
    (a data row with a bad number, refused as one rather than skipped)."""
    text = first_field.strip().lower()
    return not _NUMBER.fullmatch(text) and text.lstrip("+-") not in ("nan", "inf", "infinity")


def read_rows(
    path: str | os.PathLike, fmt: LabelFormat = "auto", *, year: int | None = None
) -> list[Row]:
    """All rows of a DCASE label CSV in `fmt` (module docstring), distances in metres. `year`
    (2019..2025): the dataset year, which decides what `auto` makes of a 6-column file (the same
    as naming `dcase<year>`); ignored for a named format. LabelFileError naming the line for
    anything malformed, a row whose column count differs from the first row's, a file over
    MAX_FILE_BYTES or MAX_ROWS."""
    if fmt not in FORMATS:
        raise LabelFileError(f"unknown label format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if year is not None:
        if year not in YEARS:
            raise LabelFileError(f"unknown DCASE year {year}; choose {YEARS[0]}..{YEARS[-1]}")
        if fmt == "auto":
            fmt = f"dcase{year}"  # type: ignore[assignment]
    path = Path(path)
    text = _read_text(path)
    rows: list[Row] = []
    first: tuple[int, int] | None = None  # (line, columns) of the first data row
    header = None
    # newline="\n": lines end at \n only (a stray \r inside a line is an error, not a new line)
    for i, line in enumerate(io.StringIO(text, newline="\n"), 1):
        if i > MAX_ROWS + 1:
            raise LabelFileError(f"{path}: over {MAX_ROWS} lines; refusing")
        fields = [x.strip() for x in line.rstrip("\r\n").split(",")]
        if fields == [""]:
            continue
        where = f"{path}:{i}"
        if i == 1 and is_header(fields[0]):
            header = ",".join(f.lower() for f in fields)
            if fmt == "auto" and header == STEREO_HEADER:
                fmt = "dcase2025"
            elif header == STEREO_HEADER and fmt != "dcase2025":
                raise LabelFileError(
                    f"{where}: the header names the DCASE 2025 columns ({STEREO_HEADER}); read "
                    f"the file as dcase2025, not {fmt}"
                )
            continue
        if fmt == "dcase2025" and header is None:
            raise LabelFileError(
                f"{where}: no header line; DCASE 2025 files start with one ({STEREO_HEADER}) and "
                "its baseline skips line 1 unread, so it would lose this row"
            )
        if first is None:
            first = (i, len(fields))
        elif len(fields) != first[1]:
            raise LabelFileError(
                f"{where}: {len(fields)} columns, but line {first[0]} has {first[1]}; "
                "all rows of a label file have one layout"
            )
        rows.append(parse_row(fields, fmt, where))
    return rows


def _num(value: float) -> str:
    """Shortest text that reads back as the same float; integral values without '.0' (the
    STARSS23 metadata writes integer degrees)."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _cm(metres: float) -> str:
    """Centimetres as text that reads back (divided by 100) as exactly `metres`: an integer when
    there is one (DCASE metadata and the 2025 writer use whole cm), else the shortest decimal."""
    whole = round(metres * 100)
    if whole / 100 == metres:
        return str(whole)
    for digits in range(1, 18):
        text = f"{metres * 100:.{digits}g}"
        if float(text) / 100 == metres:
            return text
    return repr(metres * 100)  # no decimal maps back exactly; within one ulp


def _values(r: Row, layout: str) -> list[str]:
    names = _LAYOUT_VALUES[layout]
    out = [_num(v) for v in (r.azimuth_elevation if names[0] == "azimuth" else r.xyz)]
    if layout == "stereo-cm":
        out = out[:1]  # the azimuth; stereo files have no elevation
    if "distance" in names or "distance_cm" in names:
        if r.distance is None:
            raise LabelFileError(f"format {layout} needs a distance; frame {r.frame} has none")
        out.append(_cm(r.distance) if layout.endswith("-cm") else _num(r.distance))
    if layout == "stereo-cm":
        if r.onscreen is None:
            raise LabelFileError(
                f"format dcase2025 needs an on-screen flag; frame {r.frame} has none"
            )
        out.append(str(r.onscreen))
    return out


def format_rows(rows: Iterable[Row], fmt: LabelFormat = "cartesian") -> str:
    """CSV text of `rows` in `fmt`, rows in the given order; a year format writes that year's
    metadata layout (dcase2019..2023 polar, dcase2024 polar-distance-cm, dcase2025 stereo-cm
    with its header). Polar output writes the angles as read when the row came from a polar
    file (so such a file round-trips to the same text), else the angles of the direction vector;
    nothing is rounded."""
    if fmt not in _WRITES:
        raise LabelFileError(f"cannot write format {fmt!r}; choose one of {', '.join(_WRITES)}")
    layout = _WRITES[fmt]
    out = [STEREO_HEADER] if layout == "stereo-cm" else []
    for r in rows:
        out.append(",".join([str(r.frame), str(r.cls), str(r.track)] + _values(r, layout)))
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
