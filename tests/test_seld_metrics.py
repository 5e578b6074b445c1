"""DCASE SELD metrics against hand-computed cases.

Every expected number below is worked out by hand from the definitions (DCASE 2022/2023 baseline
`SELD_evaluation_metrics.py`; Mesaros et al. WASPAA 2019, Politis et al. TASLP 2020), not by
running the code. Shared setup unless said otherwise: one class (C = 1), reference = class 0,
track 0, straight ahead (az 0, el 0 = [1, 0, 0]) in frames 0..9. The reference's highest frame
index is 9, so the file is ceil(9 / 10) = 1 segment covering frames 0..9, and N_ref = 1.
Formulas: ER = (S + D + I) / N_ref; F = TP / (TP + FP_sp + (FP + FN) / 2); LE = mean paired
distance (180 if nothing paired); LR = DE_TP / (DE_TP + DE_FN); SELD = (ER + 1-F + LE/180 + 1-LR) / 4.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from localization_tasks.seld import score as score_cli
from localization_tasks.seld.labels import LabelFileError, parse_row, read_rows
from localization_tasks.seld.metrics import SELDCounts, score_rows, segment


def rows(track_dirs: dict[tuple[int, int], tuple[float, float]], frames=range(10)) -> str:
    """Polar CSV text: {(class, track): (azimuth, elevation)} active in every frame of `frames`.
    Rows are written in the dict's order inside each frame."""
    return "".join(
        f"{f},{c},{t},{az},{el}\n" for f in frames for (c, t), (az, el) in track_dirs.items()
    )


REF = rows({(0, 0): (0, 0)})

# name: (reference CSV, prediction CSV, n_classes, expected ER, F, LE, LR, SELD)
CASES = {
    # identical: 1 paired track at 0 deg -> TP 1, DE_TP 1; no FP/FN so S = D = I = 0.
    # ER 0/1 = 0; F 1/1 = 1; LE 0; LR 1/1 = 1; SELD (0 + 0 + 0 + 0) / 4 = 0.
    "perfect": (REF, REF, 1, 0.0, 1.0, 0.0, 1.0, 0.0),
    # nothing predicted: FN 1, DE_FN 1; segment FN 1, FP 0 -> D 1. ER 1/1 = 1;
    # F 0 / (0 + 0.5 * 1) = 0; LE 180 (nothing paired); LR 0/1 = 0; SELD (1 + 1 + 1 + 1) / 4 = 1.
    "empty": (REF, "", 1, 1.0, 0.0, 180.0, 0.0, 1.0),
    # C = 2, prediction = class 1 at the reference's direction: class 0 FN 1, class 1 FP 1 ->
    # S = min(1, 1) = 1, ER 1/1 = 1. Macro: F0 = 0/(0.5) = 0, F1 = 0/(0.5) = 0 -> F 0; LE 180 for
    # both (nothing paired) -> 180; LR0 = 0/1 = 0, LR1 = 0/0 -> 0 -> LR 0; SELD (1+1+1+1)/4 = 1.
    "wrong_class": (REF, rows({(1, 0): (0, 0)}), 2, 1.0, 0.0, 180.0, 0.0, 1.0),
    # right class at az 25 deg: paired every frame at 25 deg, mean 25 > 20 -> FP_spatial 1 (one
    # segment FP, no FN -> I 1), DE_TP 1, LE sum 25. ER 1/1 = 1; F 0/(0 + 1 + 0) = 0; LE 25;
    # LR 1/1 = 1; SELD (1 + 1 + 25/180 + 0) / 4 = (2 + 0.1388889) / 4 = 0.5347222.
    "at_25_deg": (REF, rows({(0, 0): (25, 0)}), 1, 1.0, 0.0, 25.0, 1.0, 0.5347222),
    # reference: class 0 tracks 0 (az 90) and 1 (az -90) in frames 0..9, so N_ref = 2; the
    # prediction lists them in the other order with swapped track ids. Per frame the cost matrix
    # is [[180, 0], [0, 180]]; Hungarian pairs position 0<->1 and 1<->0 at 0 deg -> TP 2, DE_TP 2,
    # LE sum 0. ER 0/2 = 0; F 2/2 = 1; LE 0; LR 2/2 = 1; SELD 0. (Pairing by position would give
    # 180 deg, F 0.)
    "tracks_swapped": (
        rows({(0, 0): (90, 0), (0, 1): (-90, 0)}),
        rows({(0, 0): (-90, 0), (0, 1): (90, 0)}),
        1,
        0.0,
        1.0,
        0.0,
        1.0,
        0.0,
    ),
    # prediction: the reference's direction plus a second class-0 track at az 90. N_ref 1,
    # N_pred 2; Hungarian pairs the reference with the 0-deg entry -> TP 1, DE_TP 1, LE sum 0;
    # N_pred > N_ref -> FP 1 (segment FP 1, FN 0 -> I 1). ER 1/1 = 1; F 1/(1 + 0 + 0.5 * 1) =
    # 2/3; LE 0; LR 1/1 = 1; SELD (1 + 1/3 + 0 + 0) / 4 = 1/3.
    "extra_track": (REF, rows({(0, 0): (0, 0), (0, 1): (90, 0)}), 1, 1.0, 2 / 3, 0.0, 1.0, 1 / 3),
}


def write_case(root: Path, ref: str, pred: str) -> tuple[Path, Path]:
    (root / "ref").mkdir(parents=True)
    (root / "pred").mkdir()
    (root / "ref" / "clip.csv").write_text(ref)
    (root / "pred" / "clip.csv").write_text(pred)
    return root / "ref", root / "pred"


def run_score(args: list[str]) -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        score_cli.main(args)
    return json.loads(out.getvalue())


@pytest.mark.parametrize("name", CASES)
def test_hand_case(tmp_path, name):
    ref, pred, n_classes, er, f, le, lr, seld = CASES[name]
    ref_dir, pred_dir = write_case(tmp_path, ref, pred)
    res = run_score(["--ref-dir", str(ref_dir), "--pred-dir", str(pred_dir),
                     "--num-classes", str(n_classes)])  # fmt: skip
    got = [res["ER20"], res["F20"], res["LE_CD"], res["LR_CD"], res["SELD"]]
    assert got == pytest.approx([er, f, le, lr, seld], abs=1e-6), (name, got)


def test_cartesian_input_scores_like_polar(tmp_path):
    """The 25-deg case written as unit vectors (DCASE 2022 output format) scores the same."""
    import math

    c, s = math.cos(math.radians(25)), math.sin(math.radians(25))
    pred = "".join(f"{f},0,0,{c},{s},0\n" for f in range(10))
    ref_dir, pred_dir = write_case(tmp_path, REF, pred)
    res = run_score(["--ref-dir", str(ref_dir), "--pred-dir", str(pred_dir)])
    assert res["LE_CD"] == pytest.approx(25.0, abs=1e-6)
    assert res["F20"] == pytest.approx(0.0, abs=1e-9)


def test_macro_and_micro_differ_by_hand():
    """C = 2, reference class 0 in segment 0 (frames 0..9) and class 1 in segment 1 (10..19),
    both at az 0; prediction = class 0 only, exact. Highest reference frame 19 -> 2 segments.
    Counts: class 0 TP 1, DE_TP 1; class 1 FN 1, DE_FN 1; segment 1 has D 1 -> ER 1/2 = 0.5.
    Macro: F = (1 + 0)/2 = 0.5; LE = (0 + 180)/2 = 90; LR = (1 + 0)/2 = 0.5;
      SELD per class (0.5+0+0+0)/4 = 0.125 and (0.5+1+1+1)/4 = 0.875 -> 0.5.
    Micro: F = 1/(1 + 0.5 * 1) = 2/3; LE = 0/1 = 0; LR = 1/2 = 0.5;
      SELD = (0.5 + 1/3 + 0 + 0.5)/4 = 1/3."""
    ref = [parse_row(x.split(","), "polar", "t") for x in rows({(0, 0): (0, 0)}).split()]
    ref += [
        parse_row(x.split(","), "polar", "t") for x in rows({(1, 0): (0, 0)}, range(10, 20)).split()
    ]
    pred = [r for r in ref if r.cls == 0]
    macro = score_rows({"a": (ref, pred)}, 2, average="macro")
    micro = score_rows({"a": (ref, pred)}, 2, average="micro")
    assert macro["ER20"] == pytest.approx(0.5) and micro["ER20"] == pytest.approx(0.5)
    assert [macro["F20"], macro["LE_CD"], macro["LR_CD"], macro["SELD"]] == pytest.approx(
        [0.5, 90.0, 0.5, 0.5]
    )
    assert [micro["F20"], micro["LE_CD"], micro["LR_CD"], micro["SELD"]] == pytest.approx(
        [2 / 3, 0.0, 0.5, 1 / 3]
    )
    assert macro["per_class"]["1"]["SELD"] == pytest.approx(0.875)


def test_never_simultaneous_counts_pred_tracks_as_misses():
    """The baseline's special case: reference class 0 in frames 0..4, prediction class 0 (same
    direction) in frames 5..9 of the same segment: no frame has both -> N_pred = 1 FN, no FP,
    DE_FN 1. Highest reference frame 4 -> ceil(4/10) = 1 segment. ER = D/N_ref = 1; F = 0; LR = 0."""
    ref = [parse_row(x.split(","), "polar", "t") for x in rows({(0, 0): (0, 0)}, range(5)).split()]
    pred = [parse_row(x.split(","), "polar", "t") for x in rows({(0, 0): (0, 0)}, range(5, 10)).split()]  # fmt: skip
    res = score_rows({"a": (ref, pred)}, 1)
    assert res["counts"] == {"ref_tracks": 1, "TP": 0, "FP": 0, "FP_spatial": 0, "FN": 1,
                             "S": 0, "D": 1, "I": 0}  # fmt: skip
    assert res["ER20"] == pytest.approx(1.0) and res["LR_CD"] == pytest.approx(0.0)


def test_segmentation_follows_the_baseline_frame_count():
    """The baseline segments by the highest reference frame INDEX: frames 0..10 -> index 10 ->
    ceil(10/10) = 1 segment, so frame 10 is not scored; `n_frames` = 11 scores it (2 segments)."""
    ref = [parse_row(x.split(","), "polar", "t") for x in rows({(0, 0): (0, 0)}, range(11)).split()]
    assert sorted(segment(ref, 10)) == [0]
    assert sorted(segment(ref, 11)) == [0, 1]
    counts = SELDCounts(1)
    counts.update(segment(ref, 11), {})
    assert counts.n_ref.sum() == 2  # one track in each of two segments


@pytest.mark.parametrize(
    "text, needle",
    [
        ("0,0,0,nan,0\n", "finite"),
        ("0,0,0,0,0,0,0,0\n", "columns"),
        ("-1,0,0,0,0\n", "frame"),
        ("99999999999,0,0,0,0\n", "frame"),
        ("0,0,0,400,0\n", "out of range"),
        ("0,x,0,0,0\n", "class"),
    ],
)
def test_malformed_rows_are_refused(tmp_path, text, needle):
    p = tmp_path / "a.csv"
    p.write_text(text)
    with pytest.raises(LabelFileError, match=needle):
        read_rows(p)


def test_angular_distance_reference_values():
    """Hand values: orthogonal 90, opposite 180, identical 0, any length; zero vector 90."""
    import numpy as np

    from localization_tasks.seld.metrics import angular_distance_deg

    a = np.array([[1.0, 0, 0], [0, 0, 2.0], [0, 0, 0]])
    b = np.array([[3.0, 0, 0], [0, -1.0, 0], [-1.0, 0, 0]])
    expected = [[0, 90, 180], [90, 90, 90], [90, 90, 90]]
    assert angular_distance_deg(a, b) == pytest.approx(np.array(expected, float), abs=1e-9)


def test_stereo_scoring_folds_azimuth_and_ignores_elevation(tmp_path):
    """DCASE 2025 stereo scoring by hand. Reference class 0 at az 150, el 40 (behind-left, up),
    class 1 at az -100, el 0. Prediction class 0 at az 35, el -30; class 1 at az -60, el 0.
    Folded: 150 -> 180 - 150 = 30 and 35 stays 35, elevations dropped -> 5 deg; -100 -> -180 + 100
    = -80 vs -60 -> 20 deg. Every frame the same: class 0 TP (5 <= 20), class 1 TP (20 <= 20),
    LE = mean(5, 20) = 12.5, ER 0, F 1, LR 1, SELD (0 + 0 + 12.5/180 + 0) / 4 = 0.0173611.
    In 3-D the same files are 121.6 deg and 40 deg apart (both spatial FPs): F 0."""
    ref = rows({(0, 0): (150, 40), (1, 1): (-100, 0)})
    pred = rows({(0, 0): (35, -30), (1, 1): (-60, 0)})
    ref_dir, pred_dir = write_case(tmp_path, ref, pred)
    args = ["--ref-dir", str(ref_dir), "--pred-dir", str(pred_dir), "--num-classes", "2"]
    res = run_score(args + ["--stereo"])
    got = [res["ER20"], res["F20"], res["LE_CD"], res["LR_CD"], res["SELD"]]
    assert got == pytest.approx([0.0, 1.0, 12.5, 1.0, 12.5 / 180 / 4], abs=1e-6), got
    assert res["per_class"]["0"]["LE_CD"] == pytest.approx(5.0, abs=1e-6)
    full = run_score(args)
    assert full["F20"] == 0.0 and full["per_class"]["1"]["LE_CD"] == pytest.approx(40.0, abs=1e-6)


def test_stereo_distance_is_the_plain_difference_of_folded_azimuths():
    # The threshold decision must not depend on the CPU's trigonometry: the distance is the
    # subtraction the DCASE 2025 baseline does, bit for bit.
    import numpy as np

    from localization_tasks.seld.metrics import azimuth_difference_deg

    a = np.array([[-80.0], [12.3], [89.9]])
    b = np.array([[-60.0], [-7.7]])
    d = azimuth_difference_deg(a, b)
    expected = np.array([[abs(x - y) for y in (-60.0, -7.7)] for x in (-80.0, 12.3, 89.9)])
    assert d.shape == (3, 2) and (d == expected).all()
    assert d[0, 0] == 20.0


def test_jackknife_by_hand():
    """Two files of the shared setup: A predicted exactly, B not at all. Global F = TP / (TP +
    (FP + FN) / 2) = 1 / (1 + 0.5) = 2/3. Leave A out: F(B) = 0; leave B out: F(A) = 1; mean 0.5.
    bias = (2 - 1)(0.5 - 2/3) = -1/6; estimate = 2/3 + 1/6 = 5/6; std_err = sqrt(1 * mean(0.25,
    0.25)) = 0.5; t(0.975, 1 dof) = 12.7062047; interval 5/6 -+ 6.3531024."""
    ref = [parse_row(x.split(","), "polar", "t") for x in REF.split()]
    res = score_rows({"A": (ref, ref), "B": (ref, [])}, 1, jackknife=True)
    jk = res["jackknife"]["F20"]
    assert res["F20"] == pytest.approx(2 / 3)
    assert [jk["estimate"], jk["bias"], jk["std_err"]] == pytest.approx([5 / 6, -1 / 6, 0.5])
    assert jk["interval"] == pytest.approx([5 / 6 - 6.3531024, 5 / 6 + 6.3531024], abs=1e-6)
    assert res["per_class"]["0"]["jackknife"]["F20"]["estimate"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="at least 2 files"):
        score_rows({"A": (ref, ref)}, 1, jackknife=True)


@pytest.mark.parametrize("metrics", ["dcase2022", "dcase2024", "dcase2019"])
def test_thousands_of_entries_in_one_frame_are_refused_before_matching(tmp_path, metrics):
    """A hostile prediction: 5000 entries of class 0 in frame 7. The Hungarian matching of that
    frame would build 5000 x 5000 matrices per frame; the file is refused naming it and the
    frame, at once."""
    import time

    ref = "".join(f"{f},0,0,0,0,100\n" for f in range(20))
    pred = "".join(f"7,0,{k % 3},{k % 360 - 180},0,1.0\n" for k in range(5000))
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref" / "clip.csv").write_text(ref if metrics == "dcase2024" else
                                               "".join(ln.rsplit(",", 1)[0] + "\n" for ln in ref.split()))  # fmt: skip
    (tmp_path / "pred" / "clip.csv").write_text(
        pred
        if metrics == "dcase2024"
        else "".join(ln.rsplit(",", 1)[0] + "\n" for ln in pred.split())
    )
    err = io.StringIO()
    start = time.monotonic()
    from contextlib import redirect_stderr

    with redirect_stderr(err):
        code = score_cli.main(["--ref-dir", str(tmp_path / "ref"), "--pred-dir",
                               str(tmp_path / "pred"), "--metrics", metrics])  # fmt: skip
    assert code == 2 and time.monotonic() - start < 10
    line = err.getvalue().strip()
    assert "\n" not in line
    assert "clip.csv (prediction): frame 7 has 5000 entries of class 0; at most 64" in line


def test_score_files_refuses_options_the_metrics_do_not_take():
    from localization_tasks.seld.score import options_of, score_files

    ref = [parse_row(x.split(","), "polar", "t") for x in REF.split()]
    assert "reldist_threshold" in options_of("dcase2024") and "stereo" in options_of("dcase2022")
    with pytest.raises(ValueError, match="dcase2022 take no option reldist_threshold"):
        score_files({"a": (ref, ref)}, "dcase2022", reldist_threshold=1.0)
    with pytest.raises(ValueError, match="unknown metrics"):
        score_files({"a": (ref, ref)}, "dcase2030")
    # the default metrics are today's: the same dict as score_rows
    assert score_files({"a": (ref, ref)}) == score_rows({"a": (ref, ref)}, 1)


def test_cli_refuses_options_of_other_metrics_in_one_line(tmp_path, capsys):
    ref_dir, pred_dir = write_case(tmp_path, REF, REF)
    base = ["--ref-dir", str(ref_dir), "--pred-dir", str(pred_dir)]
    assert score_cli.main(base + ["--stereo", "--metrics", "dcase2024"]) == 2
    assert "take no option stereo" in capsys.readouterr().err
    assert score_cli.main(base + ["--req-onscreen"]) == 2
    assert "dcase2022 take no option req_onscreen" in capsys.readouterr().err


def test_cli_prints_nan_as_null(tmp_path):
    """DCASE 2024 with no prediction: no pair, so AngE, DistE, RelDistE are NaN (the baseline's
    nanmean of all-NaN); JSON has no NaN, the CLI prints null. SELD = nanmean(1 - 0, NaN, NaN) = 1."""
    ref = "".join(f"{f},0,0,0,0,100\n" for f in range(11))
    ref_dir, pred_dir = write_case(tmp_path, ref, "")
    res = run_score(
        ["--ref-dir", str(ref_dir), "--pred-dir", str(pred_dir), "--metrics", "dcase2024"]
    )
    assert res["AngE"] is None and res["RelDistE"] is None and res["SELD"] == 1.0
