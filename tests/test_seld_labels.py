"""DCASE label files by year (`seld.labels`): hand-written files of each format read to the rows
worked out by hand, refusals naming the line, bounds, and round trips through `format_rows`.

Formats checked against what each year's files hold (the upstream loaders named in the
`seld.labels` docstring): 2019-2023 polar references and x,y,z predictions, 2024 metadata with
cm and 7-column predictions in metres, 2025 stereo files with a header and cm.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from localization_tasks.seld import labels
from localization_tasks.seld.labels import (
    LabelFileError,
    Row,
    format_rows,
    polar_to_unit,
    read_rows,
)


def write(tmp_path, text: str, name: str = "a.csv", binary: bool = False):
    p = tmp_path / name
    if binary:
        p.write_bytes(text.encode())
    else:
        p.write_text(text)
    return p


def polar(frame, cls, track, az, el, distance=None, onscreen=None) -> Row:
    return Row(frame, cls, track, polar_to_unit(az, el), distance, (az, el), onscreen)


# (format, file text, expected rows): the values by hand from the column layouts
HAND = {
    "dcase2019": ("0,3,0,-40,10\n1,3,1,170,-20\n",
                  [polar(0, 3, 0, -40, 10), polar(1, 3, 1, 170, -20)]),
    "dcase2021": ("7,11,0,0.5,-0.5,0.25\n",
                  [Row(7, 11, 0, (0.5, -0.5, 0.25))]),
    "dcase2023": ("12,2,1,-90,45\n",  # references of 2020-2023: polar
                  [polar(12, 2, 1, -90, 45)]),
    # 2024 metadata: 250 cm -> 2.5 m, 37 cm -> 0.37 m
    "dcase2024": ("3,1,2,30,-10,250\n3,1,0,-150,5,37\n",
                  [polar(3, 1, 2, 30, -10, 2.5), polar(3, 1, 0, -150, 5, 0.37)]),
    # 2024 predictions: 7 columns, metres as written (1.25 m, not 0.0125)
    "dcase2024-output": ("4,0,0,0.6,0.8,0.0,1.25\n",
                         [Row(4, 0, 0, (0.6, 0.8, 0.0), 1.25)]),
    # 2025: header, azimuth only (elevation 0), 120 cm -> 1.2 m, on-screen flag
    "dcase2025": ("frame,class,source,azimuth,distance,onscreen\n5,2,1,-45,120,1\n6,2,1,100,35,0\n",
                  [polar(5, 2, 1, -45, 0, 1.2, 1), polar(6, 2, 1, 100, 0, 0.35, 0)]),
    "polar-distance": ("1,0,0,10,20,3.5\n", [polar(1, 0, 0, 10, 20, 3.5)]),
    "cartesian-distance": ("1,0,0,0,0,1,2\n", [Row(1, 0, 0, (0.0, 0.0, 1.0), 2.0)]),
}  # fmt: skip


@pytest.mark.parametrize("key", HAND)
def test_hand_written_files_read_to_hand_rows(tmp_path, key):
    text, expected = HAND[key]
    fmt = key.removesuffix("-output")
    assert read_rows(write(tmp_path, text), fmt) == expected


@pytest.mark.parametrize(
    "key, fmt", [("dcase2024", "dcase2024"), ("dcase2025", "dcase2025"), ("dcase2019", "polar"),
                 ("polar-distance", "polar-distance")],
)  # fmt: skip
def test_metadata_writes_back_to_the_same_text(tmp_path, key, fmt):
    """A year's metadata file read and written in its format is the same text (integers stay
    integers, cm stay cm, the 2025 header is written)."""
    text, _ = HAND[key]
    assert format_rows(read_rows(write(tmp_path, text), fmt), fmt) == text


@pytest.mark.parametrize("fmt", ["polar", "cartesian", "polar-distance", "cartesian-distance",
                                 "dcase2020", "dcase2024", "dcase2025"])  # fmt: skip
def test_round_trip_of_random_rows(tmp_path, fmt):
    """Rows read from a file with arbitrary decimals, written in `fmt` and read again are equal
    (for cm formats, the metres survive the x100 / 100 trip exactly)."""
    rng = np.random.default_rng(0)
    n = 200
    az = [
        round(float(v), int(d))
        for v, d in zip(rng.uniform(-180, 180, n), rng.integers(0, 7, n), strict=True)
    ]
    el = [round(float(v), 3) for v in rng.uniform(-90, 90, n)]
    cm = [
        round(float(v), int(d))
        for v, d in zip(rng.uniform(0, 2000, n), rng.integers(0, 5, n), strict=True)
    ]
    text = "".join(f"{i},{i % 5},{i % 3},{a!r},{e!r},{c!r}\n" for i, (a, e, c) in
                   enumerate(zip(az, el, cm, strict=True)))  # fmt: skip
    rows = read_rows(write(tmp_path, text), "dcase2024")
    if fmt == "dcase2025":
        rows = [Row(r.frame, r.cls, r.track, polar_to_unit(r.azel[0], 0.0), r.distance,
                    (r.azel[0], 0.0), r.frame % 2) for r in rows]  # fmt: skip
    if fmt in ("polar", "cartesian", "dcase2020"):
        rows = [Row(r.frame, r.cls, r.track, r.xyz, None, r.azel if fmt != "cartesian" else None)
                for r in rows]  # fmt: skip
    back = read_rows(write(tmp_path, format_rows(rows, fmt), "b.csv"), fmt)
    if fmt.startswith("cartesian"):  # a cartesian file keeps vectors, not angles
        key = lambda r: (r.frame, r.cls, r.track, r.xyz, r.distance)  # noqa: E731
        assert [key(r) for r in back] == [key(r) for r in rows]
    else:
        assert back == rows


def test_cm_are_divided_by_100_as_the_2024_baseline():
    """`value / 100`, not `value * 0.01` (35 * 0.01 = 0.35000000000000003): the metres are bit for
    bit the baseline's, so its relative-distance decisions are ours."""
    assert 35 * 0.01 != 35 / 100
    for cm in (35, 250, 12345, 0, 999999):
        row = labels.parse_row(["0", "0", "0", "0", "0", str(cm)], "dcase2024", "t")
        assert row.distance == cm / 100


def test_six_columns_need_a_format_or_a_year(tmp_path):
    p = write(tmp_path, "0,1,0,30,10,250\n")
    with pytest.raises(LabelFileError, match=r"a\.csv:1: 6 columns .*name the format"):
        read_rows(p)
    assert read_rows(p, year=2024) == [polar(0, 1, 0, 30, 10, 2.5)]
    assert read_rows(p, year=2022) == [Row(0, 1, 0, (30.0, 10.0, 250.0))]
    assert read_rows(p, "dcase2024", year=2022) == read_rows(p, year=2024)  # a named format wins


def test_auto_reads_a_2025_header_as_dcase2025(tmp_path):
    text, expected = HAND["dcase2025"]
    assert read_rows(write(tmp_path, text)) == expected


@pytest.mark.parametrize(
    "fmt, text, needle",
    [
        ("dcase2025", "5,2,1,-45,120,1\n", r"a\.csv:1: no header line"),
        ("dcase2024", HAND["dcase2025"][0], r"a\.csv:1: the header names the DCASE 2025"),
        ("auto", "0,0,0,10,20\n1,0,0,1,0,0,2\n", r"a\.csv:2: 7 columns, but line 1 has 5"),
        ("dcase2024", "0,0,0,10,20,100\n1,0,0,10,20\n", r"a\.csv:2: 5 columns, but line 1 has 6"),
        ("auto", "0,0,10,20\n", r"a\.csv:1: 4 columns .*DCASE 2019 submission"),
        (
            "dcase2025",
            HAND["dcase2025"][0] + "7,0,0,10,100,2\n",
            r"a\.csv:4: onscreen 2 outside 0\.\.1",
        ),
        ("polar", "0,0,0,1_0,0\n", r"a\.csv:1: azimuth '1_0' is not a number"),
        ("polar", "0,0,0,inf,0\n", r"a\.csv:1: azimuth is 'inf'; labels must be finite"),
        ("polar", "0,0,0,1e999,0\n", r"must be finite"),
        ("polar", "0,0,,10,0\n", r"a\.csv:1: field 3 is empty"),
        ("polar", "frame,class,track,az,el\nframe,class,track,az,el\n", r"a\.csv:2: frame 'frame'"),
        ("polar", "nan,0,0,0,0\n", r"a\.csv:1: frame is 'nan'"),  # not skipped as a header
        ("dcase2024", "0,0,0,0,0,-5\n", r"distance -5\.0 cm out of range"),
        ("polar", "0,0,0,0,0\r1,0,0,0,0\n", r"a\.csv:1: 9 columns"),  # a lone CR ends no line
    ],
)
def test_refusals_name_the_line(tmp_path, fmt, text, needle):
    with pytest.raises(LabelFileError, match=needle):
        read_rows(write(tmp_path, text), fmt)


def test_bom_crlf_header_and_exponents(tmp_path):
    """A BOM, CRLF line ends, a header line, blank lines, `5e0`-style numbers: read as plain."""
    text = (
        "\ufeffframe,class,track,azimuth,elevation\r\n5e0,1.0,0,1.5e1,-2E0\r\n\r\n6,1,0,+30,0.\r\n"
    )
    rows = read_rows(write(tmp_path, text, binary=True), "polar")
    assert rows == [polar(5, 1, 0, 15.0, -2.0), polar(6, 1, 0, 30.0, 0.0)]
    # no header: the BOM must not hide the first row's frame (nor `5e0` pass for a header)
    text = "\ufeff5e0,1,0,15,-2\r\n"
    assert read_rows(write(tmp_path, text, "b.csv", binary=True)) == [polar(5, 1, 0, 15.0, -2.0)]


def test_sizes_are_bounded_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:  # sparse: costs no disk, and must not be read
        f.truncate(labels.MAX_FILE_BYTES + 1)
    with pytest.raises(LabelFileError, match="over the"):
        read_rows(big)
    monkeypatch.setattr(labels, "MAX_ROWS", 3)
    with pytest.raises(LabelFileError, match="over 3 lines"):
        read_rows(write(tmp_path, "".join(f"{i},0,0,0,0\n" for i in range(5))))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "f.csv"
    os.mkfifo(fifo)
    with pytest.raises(LabelFileError, match="not a regular file"):
        read_rows(fifo)


def test_writing_refuses_what_the_format_cannot_hold():
    row = Row(0, 0, 0, (1.0, 0.0, 0.0))
    with pytest.raises(LabelFileError, match="needs a distance"):
        format_rows([row], "dcase2024")
    with pytest.raises(LabelFileError, match="on-screen"):
        format_rows([Row(0, 0, 0, (1.0, 0.0, 0.0), 1.0)], "dcase2025")
    with pytest.raises(LabelFileError, match="cannot write"):
        format_rows([row], "auto")


def test_cartesian_rows_write_their_angles_in_polar_formats():
    """A cartesian row (0, 1, 1) written as 2024 metadata: azimuth atan2(1, 0) = 90, elevation
    atan2(1, 1) = 45; 1.5 m -> 150 cm."""
    text = format_rows([Row(2, 0, 1, (0.0, 1.0, 1.0), 1.5)], "dcase2024")
    az, el = (float(v) for v in text.strip().split(",")[3:5])
    assert text.strip().split(",")[:3] == ["2", "0", "1"] and text.strip().endswith(",150")
    assert az == pytest.approx(90.0) and el == pytest.approx(45.0) and math.isfinite(az)
