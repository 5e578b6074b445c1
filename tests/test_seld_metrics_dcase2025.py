"""DCASE 2025 stereo metrics (`seld.metrics_dcase2025`) against a transcription of the baseline's
scorer, hand-computed cases and the thresholds' boundaries.

The transcription (prefixed `t25_`) follows partha2409/DCASE2025_seld_baseline (MIT): `utils.py`
(`load_labels` with `convert_to_cartesian=False`, `organize_labels`, `fold_az_angle`,
`least_distance_between_gt_pred`, `jackknife_estimation`) and `metrics.py` (`SELDMetrics`,
`ComputeSELDResults.get_SELD_Results`), in plain numpy, on the same CSV text as our reader. One
departure, in the jackknife: that code appends the class-wise array itself to each partial
estimate before flattening it (a ragged array numpy >= 1.24 refuses); the oracle builds the
partial estimates as the code evidently intends, [F, AngE, DistE, RelDistE, OnscreenAq] followed
by the flattened class-wise results.
"""

from __future__ import annotations

import io
import json
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment

from localization_tasks.seld import score as score_cli
from localization_tasks.seld.labels import read_rows
from localization_tasks.seld.score import score_files

EPS = np.finfo(float).eps
HEADER = "frame,class,source,azimuth,distance,onscreen\n"

# ---------------------------------------------------------------------------------------------
# Transcription of the DCASE 2025 baseline's scoring path (see the module docstring).
# ---------------------------------------------------------------------------------------------


def t25_load(text: str) -> dict:
    """`load_labels(convert_to_cartesian=False)`: line 1 skipped; frame -> [[class, source,
    azimuth, distance, onscreen] ...]."""
    out: dict = {}
    for line in text.splitlines(keepends=True)[1:]:
        v = line.strip().split(",")
        out.setdefault(int(v[0]), []).append(
            [int(v[1]), int(v[2]), float(v[3]), float(v[4]), int(v[5])]
        )
    return out


def t25_organize(d: dict, max_frames: int, max_tracks: int = 10) -> dict:
    """`organize_labels`: a source id is its track when free and < max_tracks, else the first
    free track."""
    tracks = set(range(max_tracks))
    out: dict = {f: {} for f in range(max_frames)}
    for frame in range(max_frames):
        if frame not in d:
            continue
        for cls, src, az, dist, on in d[frame]:
            out[frame].setdefault(cls, {})
            if src not in out[frame][cls] and src < max_tracks:
                track = src
            else:
                try:
                    track = list(set(tracks) - out[frame][cls].keys())[0]
                except IndexError:
                    track = 0
            out[frame][cls][track] = [az, dist, on]
    return out


def t25_fold(az):
    az = (az + 180) % 360 - 180
    folded = az.copy()
    m1 = np.logical_and(-180 <= az, az < -90)
    m2 = np.logical_and(90 < az, az <= 180)
    folded[m1] = -180 - az[m1]
    folded[m2] = 180 - az[m2]
    return folded


def t25_least_distance(gt, pred):
    n, m = gt.shape[0], pred.shape[0]
    pairs = np.array([[x, y] for y in range(m) for x in range(n)])
    cost = np.zeros((n, m))
    if n and m:
        a1, a2 = gt[pairs[:, 0]], pred[pairs[:, 1]]
        cost[pairs[:, 0], pairs[:, 1]] = np.abs(t25_fold(a1) - t25_fold(a2))
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols], rows, cols


class T25SELDMetrics:
    def __init__(self, nb_classes, doa_threshold=20, dist_threshold=np.inf, reldist_threshold=1.0,
                 req_onscreen=False, average="macro"):  # fmt: skip
        self.C, self.average, self.req_onscreen = nb_classes, average, req_onscreen
        self.ang_T, self.dist_T, self.reldist_T = doa_threshold, dist_threshold, reldist_threshold
        z = lambda: np.zeros(nb_classes)  # noqa: E731
        self.TP, self.FP, self.FP_spatial, self.FN, self.Nref = z(), z(), z(), z(), z()
        self.AngE, self.DistE, self.RelDistE, self.Onscreen = z(), z(), z(), z()
        self.DE_TP, self.DE_FN = z(), z()

    def compute(self):
        classwise = []
        if self.average == "micro":
            F = self.TP.sum() / (
                EPS + self.TP.sum() + self.FP_spatial.sum() + 0.5 * (self.FP.sum() + self.FN.sum())
            )
            k = self.DE_TP.sum()
            AngE = self.AngE.sum() / float(k + EPS) if k else np.nan
            DistE = self.DistE.sum() / float(k + EPS) if k else np.nan
            RelDistE = self.RelDistE.sum() / float(k + EPS) if k else np.nan
            OnscreenAq = self.Onscreen.sum() / float(k + EPS) if k else np.nan
        else:
            F = self.TP / (EPS + self.TP + self.FP_spatial + 0.5 * (self.FP + self.FN))
            figures = []
            for total in (self.AngE, self.DistE, self.RelDistE, self.Onscreen):
                x = total / (self.DE_TP + EPS)
                x[self.DE_TP == 0] = np.nan
                figures.append(x)
            AngE, DistE, RelDistE, OnscreenAq = figures
            classwise = np.array([F, AngE, DistE, RelDistE, OnscreenAq])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                F, AngE = F.mean(), np.nanmean(AngE)
                DistE, RelDistE, OnscreenAq = (
                    np.nanmean(DistE),
                    np.nanmean(RelDistE),
                    np.nanmean(OnscreenAq),
                )
        return F, AngE, DistE, RelDistE, OnscreenAq, classwise

    def update(self, pred, gt):
        for frame in range(len(gt.keys())):
            for c in range(self.C):
                n_gt = len(gt[frame][c]) if c in gt[frame] else None
                n_pred = len(pred[frame][c]) if c in pred[frame] else None
                if n_gt is not None:
                    self.Nref[c] += n_gt
                if c in gt[frame] and c in pred[frame]:
                    g = np.array(list(gt[frame][c].values()))
                    p = np.array(list(pred[frame][c].values()))
                    doa_err, rows, cols = t25_least_distance(g[:, 0], p[:, 0])
                    dist_err = np.abs(g[:, 1][rows] - p[:, 1][cols])
                    rel_err = dist_err / (g[:, 1][rows] + EPS)
                    on_ok = g[:, 2][rows] == p[:, 2][cols]
                    Pc, Rc = len(p), len(g)
                    FNc, FPcinf, Kc = max(0, Rc - Pc), max(0, Pc - Rc), min(Pc, Rc)
                    Lc = np.sum(np.any((doa_err > self.ang_T, dist_err > self.dist_T,
                                        rel_err > self.reldist_T,
                                        np.logical_and(np.logical_not(on_ok), self.req_onscreen)),
                                       axis=0))  # fmt: skip
                    self.AngE[c] += doa_err.sum()
                    self.DistE[c] += dist_err.sum()
                    self.RelDistE[c] += rel_err.sum()
                    self.Onscreen[c] += on_ok.sum()
                    self.TP[c] += Kc - Lc
                    self.DE_TP[c] += Kc
                    self.FP[c] += FPcinf
                    self.FP_spatial[c] += Lc
                    self.FN[c] += FNc
                    self.DE_FN[c] += FNc
                elif c in gt[frame]:
                    self.FN[c] += n_gt
                    self.DE_FN[c] += n_gt
                elif c in pred[frame]:
                    self.FP[c] += n_pred


def t25_jackknife(global_value, partial, significance_level=0.05):
    mean = np.mean(partial)
    n = len(partial)
    bias = (n - 1) * (mean - global_value)
    std_err = np.sqrt((n - 1) * np.mean((partial - mean) * (partial - mean), axis=0))
    estimate = global_value - bias
    t = stats.t.ppf(1 - significance_level / 2, n - 1)
    return estimate + t * np.array((-std_err, std_err))


def t25_score(texts: dict[str, tuple[str, str]], n_classes: int, jackknife=False, **kw):
    refs, preds = {}, {}
    for name, (ref, pred) in texts.items():
        gt = t25_load(ref)
        n_ref = max(list(gt.keys())) if len(gt) > 0 else 0
        refs[name] = t25_organize(gt, n_ref)
        p = t25_load(pred)
        n_pred = max(list(p.keys())) if len(p) > 0 else 0
        preds[name] = t25_organize(p, max(n_pred, n_ref))

    def run(names):
        ev = T25SELDMetrics(n_classes, **kw)
        for name in names:
            ev.update(preds[name], refs[name])
        return ev.compute()

    res = run(list(texts))
    if not jackknife:
        return res, None
    flat = lambda r: list(r[:5]) + list(np.asarray(r[5]).reshape(-1))  # noqa: E731
    partial = np.array([flat(run([n for n in texts if n != left])) for left in texts])
    return res, [t25_jackknife(g, partial[:, i]) for i, g in enumerate(flat(res))]


# ---------------------------------------------------------------------------------------------


def random_pair(rng: np.random.Generator, n_classes: int, n_frames: int) -> tuple[str, str]:
    """A 2025 reference and prediction (header, integer azimuths and cm as its writer rounds
    them, on-screen flags): same-class polyphony with repeated and >= 10 source ids, azimuths
    behind (folded), near and far, distances within and beyond the relative threshold (whole
    multiples included: d_pred = 0 and 2 d_ref sit exactly on it), frames past the reference."""
    ref, pred = [HEADER.strip()], [HEADER.strip()]
    for frame in range(n_frames):
        for _ in range(rng.integers(0, 4)):
            cls, src = int(rng.integers(n_classes)), int(rng.choice([0, 1, 1, 12]))
            az, cm, on = (
                int(rng.integers(-180, 181)),
                int(rng.integers(20, 600)),
                int(rng.integers(2)),
            )
            ref.append(f"{frame},{cls},{src},{az},{cm},{on}")
            if rng.random() < 0.75:
                paz = az + int(rng.normal(0, 14))
                if rng.random() < 0.3:  # the mirror image behind: same folded azimuth
                    paz = 180 - az
                pcm = int(rng.choice([cm * 2, 0, int(cm * np.exp(rng.normal(0, 0.5)))]))
                pon = on if rng.random() < 0.8 else 1 - on
                pcls = cls if rng.random() < 0.9 else int(rng.integers(n_classes))
                pred.append(f"{frame},{pcls},{int(rng.integers(0, 3))},{paz},{pcm},{pon}")
        if rng.random() < 0.2:
            pred.append(
                f"{frame},{int(rng.integers(n_classes))},0,{int(rng.integers(-180, 181))},100,0"
            )
    pred += [f"{f},0,0,0,100,1" for f in range(n_frames, n_frames + 3)]
    return "\n".join(ref) + "\n", "\n".join(pred) + "\n"


def ours(tmp_path, texts, n_classes, **options):
    files = {}
    for name, (ref, pred) in texts.items():
        (tmp_path / f"r_{name}").write_text(ref)
        (tmp_path / f"p_{name}").write_text(pred)
        files[name] = (read_rows(tmp_path / f"r_{name}", "dcase2025"),
                       read_rows(tmp_path / f"p_{name}", "dcase2025"))  # fmt: skip
    return score_files(files, "dcase2025", n_classes, **options)


FIGURES = ("F", "AngE", "DistE", "RelDistE", "OnscreenAq")


def close(ours_value, theirs, what):
    if "DistE" in what and "Rel" not in what:  # theirs in cm, ours in metres
        theirs = np.asarray(theirs, dtype=float) / 100
    tol = 0.01 if "AngE" in what else 1e-6
    assert ours_value == pytest.approx(theirs, abs=tol, nan_ok=True), what


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("average, req_onscreen", [("macro", False), ("micro", True)])
def test_equals_the_baseline_transcription(tmp_path, seed, average, req_onscreen):
    """24 random multi-file scorings (8 seeds x 3 files; macro, and micro with the on-screen
    requirement): every figure, class-wise figure and jackknife interval as the transcription's."""
    rng = np.random.default_rng(seed)
    n_classes = 4
    texts = {f"f{i}.csv": random_pair(rng, n_classes, int(rng.integers(15, 40))) for i in range(3)}
    kw = {"average": average, "req_onscreen": req_onscreen}
    theirs, intervals = t25_score(texts, n_classes, jackknife=True, **kw)
    got = ours(tmp_path, texts, n_classes, jackknife=True, **kw)
    for i, k in enumerate(FIGURES):
        close(got[k], theirs[i], k)
        close(got["jackknife"][k]["interval"], list(intervals[i]), f"jackknife {k}")
    if average == "macro":
        for row, k in enumerate(FIGURES):
            for c in range(n_classes):
                close(got["per_class"][str(c)][k], theirs[5][row][c], f"class {c} {k}")
                j = 5 + row * n_classes + c
                close(got["per_class"][str(c)]["jackknife"][k]["interval"], list(intervals[j]),
                      f"jackknife class {c} {k}")  # fmt: skip
    assert got["counts"]["TP"] > 0 and got["counts"]["FP_spatial"] > 0


# ---------------------------------------------------------------------------------------------
# Hand-computed cases and boundaries. Reference: class 0, source 0, 200 cm, on-screen, in frames
# 0..10; frames 0..9 are scored (the highest index is the frame count).


def stereo(az, cm, on=1, cls=0, frames=range(11)) -> str:
    return HEADER + "".join(f"{f},{cls},0,{az},{cm},{on}\n" for f in frames)


@pytest.mark.parametrize(
    "ref_az, pred_az, tp",
    [
        (150, 10, 10),  # fold(150) = 30; |30 - 10| = 20 exactly: not above 20 -> TP
        (-100, -60, 10),  # fold(-100) = -80; |-80 + 60| = 20 -> TP
        (150, 9, 0),  # 21 deg -> spatial FP
        (150, 30, 10),  # front-back mirror images: 0 deg
        (340, 0, 10),  # 340 wraps to -20: |-20 - 0| = 20 -> TP
    ],
)
def test_doa_threshold_on_folded_azimuths(tmp_path, ref_az, pred_az, tp):
    """Folded azimuths are subtracted in degrees, so exactly 20 deg apart is exactly 20.0 and a
    TP (not above the threshold) on every CPU."""
    res = ours(tmp_path, {"a": (stereo(ref_az, 200), stereo(pred_az, 200))}, 1)
    assert res["counts"]["TP"] == tp and res["counts"]["FP_spatial"] == 10 - tp


@pytest.mark.parametrize("pred_cm, tp", [(400, 10), (0, 10), (401, 0), (100, 10)])
def test_relative_distance_exactly_1_is_a_hit(tmp_path, pred_cm, tp):
    """d_ref 2 m: d_pred 4 m and 0 m are exactly 1.0 relative error (2 + eps rounds to 2): TP;
    4.01 m: FP."""
    res = ours(tmp_path, {"a": (stereo(0, 200), stereo(0, pred_cm))}, 1)
    assert res["counts"]["TP"] == tp


def test_hand_case_figures_and_onscreen(tmp_path):
    """Prediction 10 deg off, 300 cm, wrong on-screen flag. Without the on-screen requirement:
    10 TP; F 1, AngE 10, DistE |2 - 3| = 1 m (the baseline's 100 cm), RelDistE 0.5,
    OnscreenAq 0. With it: 10 spatial FP, F 0, the error figures unchanged."""
    texts = {"a": (stereo(0, 200, on=1), stereo(10, 300, on=0))}
    res = ours(tmp_path, texts, 1)
    assert [res[k] for k in FIGURES] == pytest.approx([1, 10, 1.0, 0.5, 0], abs=1e-9)
    strict = ours(tmp_path, texts, 1, req_onscreen=True)
    assert [strict[k] for k in FIGURES] == pytest.approx([0, 10, 1.0, 0.5, 0], abs=1e-9)


def test_more_than_10_tracks_of_a_class_are_refused(tmp_path):
    """The baseline keeps 10 tracks per class and frame and overwrites track 0 with the rest;
    we refuse instead of scoring what it would silently drop."""
    pred = HEADER + "".join(f"3,0,{s},0,200,1\n" for s in range(11))
    with pytest.raises(ValueError, match=r"frame 3 has 11 entries of class 0; at most 10"):
        ours(tmp_path, {"a.csv": (stereo(0, 200), pred)}, 1)


def test_cli_dcase2025(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    for i in range(2):
        (tmp_path / "ref" / f"c{i}.csv").write_text(stereo(0, 200))
        (tmp_path / "pred" / f"c{i}.csv").write_text(stereo(5 * i, 200))
    out = io.StringIO()
    with redirect_stdout(out):
        assert score_cli.main(["--ref-dir", str(tmp_path / "ref"), "--pred-dir",
                               str(tmp_path / "pred"), "--metrics", "dcase2025"]) == 0  # fmt: skip
    res = json.loads(out.getvalue())
    # AngE = (10 x 0 + 10 x 5) / 20 = 2.5; everything else perfect
    assert [res[k] for k in FIGURES] == pytest.approx([1, 2.5, 0, 0, 1], abs=1e-9)
    assert "ER" not in res and "SELD" not in res
