"""DCASE 2024 metrics (`seld.metrics_dcase2024`) against a transcription of the baseline's scorer,
hand-computed cases and the thresholds' boundaries.

The transcription below (everything prefixed `t24_`) follows partha2409/DCASE2024_seld_baseline
(MIT), files `cls_feature_class.py` (`load_output_format_file`, the two coordinate conversions,
`organize_labels`, `segment_labels`), `SELD_evaluation_metrics.py` (`SELDMetrics`,
`SELDMetricsSegmentLevel`, `least_distance_between_gt_pred`, `distance_between_cartesian_
coordinates`) and `cls_compute_seld_results.py` (`jackknife_estimation` and the leave-one-out loop
of `get_SELD_Results`), step by step, in plain numpy, and reads the same CSV text as our code. It
is a test oracle only: it shares no code with the implementation under test.
"""

from __future__ import annotations

import io
import json
import math
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

# ---------------------------------------------------------------------------------------------
# Transcription of the DCASE 2024 baseline's scoring path (see the module docstring).
# ---------------------------------------------------------------------------------------------


def t24_load(text: str, cm2m: bool = False) -> dict:
    """`load_output_format_file`: frame -> [[class, track, az, el, dist] ...]; 7-column files
    (cartesian + distance) are turned into polar, decided by the LAST line's column count."""
    out: dict = {}
    words: list[str] = []
    for line in text.splitlines():
        words = line.strip().split(",")
        frame = int(words[0])
        out.setdefault(frame, [])
        if len(words) == 5:
            out[frame].append([int(words[1]), int(words[2]), float(words[3]), float(words[4])])
        if len(words) == 6:
            dist = float(words[5]) / 100 if cm2m else float(words[5])
            out[frame].append(
                [int(words[1]), int(words[2]), float(words[3]), float(words[4]), dist]
            )
        elif len(words) == 7:
            dist = float(words[6]) / 100 if cm2m else float(words[6])
            out[frame].append(
                [
                    int(words[1]),
                    int(words[2]),
                    float(words[3]),
                    float(words[4]),
                    float(words[5]),
                    dist,
                ]
            )
    if len(words) == 7:
        out = t24_cartesian_to_polar(out)
    return out


def t24_cartesian_to_polar(d: dict) -> dict:
    out = {}
    for frame, values in d.items():
        out[frame] = []
        for v in values:
            x, y, z = v[2], v[3], v[4]
            az = np.arctan2(y, x) * 180 / np.pi
            el = np.arctan2(z, np.sqrt(x**2 + y**2)) * 180 / np.pi
            out[frame].append(v[0:2] + [az, el] + v[5:])
    return out


def t24_polar_to_cartesian(d: dict) -> dict:
    out = {}
    for frame, values in d.items():
        out[frame] = []
        for v in values:
            el_rad = v[3] * np.pi / 180.0
            az_rad = v[2] * np.pi / 180.0
            c = np.cos(el_rad)
            out[frame].append(
                v[0:2] + [np.cos(az_rad) * c, np.sin(az_rad) * c, np.sin(el_rad)] + v[4:]
            )
    return out


def t24_organize(d: dict, max_frames: int) -> dict:
    """`organize_labels`: frame -> class -> track -> [x, y, z, dist]; a repeated track id of a
    class in a frame gets the next negative id."""
    out: dict = {f: {} for f in range(max_frames)}
    for frame in range(max_frames):
        if frame not in d:
            continue
        for cls, track, *loc in d[frame]:
            out[frame].setdefault(cls, {})
            if track not in out[frame][cls]:
                out[frame][cls][track] = loc
            else:
                lowest = np.min(np.array(list(out[frame][cls].keys())))
                out[frame][cls][lowest - 1 if lowest < 0 else -1] = loc
    return out


def t24_segment(d: dict, max_frames: int, block: int = 10) -> dict:
    """`segment_labels`: segment -> class -> [[frames within block], [[entries] per frame]]."""
    n_blocks = int(np.ceil(max_frames / float(block)))
    out: dict = {b: {} for b in range(n_blocks)}
    for start in range(0, max_frames, block):
        b = start // block
        loc: dict = {}
        for frame in range(start, start + block):
            if frame not in d:
                continue
            for v in d[frame]:
                loc.setdefault(v[0], {}).setdefault(frame - start, []).append(v[1:])
        for cls in loc:
            out[b].setdefault(cls, [])
            out[b][cls].append([list(loc[cls].keys()), list(loc[cls].values())])
    return out


def t24_angle(x1, y1, z1, x2, y2, z2):
    """`distance_between_cartesian_coordinates`."""
    n1 = np.sqrt(x1**2 + y1**2 + z1**2 + 1e-10)
    n2 = np.sqrt(x2**2 + y2**2 + z2**2 + 1e-10)
    x1, y1, z1, x2, y2, z2 = x1 / n1, y1 / n1, z1 / n1, x2 / n2, y2 / n2, z2 / n2
    dot = np.clip(x1 * x2 + y1 * y2 + z1 * z2, -1, 1)
    return np.arccos(dot) * 180 / np.pi


def t24_least_distance(gt, pred):
    """`least_distance_between_gt_pred` (angular cost, no 3-D distance)."""
    n, m = gt.shape[0], pred.shape[0]
    pairs = np.array([[x, y] for y in range(m) for x in range(n)])
    cost = np.zeros((n, m))
    if n and m:
        a, b = gt[pairs[:, 0]], pred[pairs[:, 1]]
        cost[pairs[:, 0], pairs[:, 1]] = t24_angle(
            a[:, 0], a[:, 1], a[:, 2], b[:, 0], b[:, 1], b[:, 2]
        )
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols], rows, cols


class T24SELDMetrics:
    """`SELDMetrics` (frame-wise, with distances)."""

    def __init__(self, nb_classes, doa_threshold=20, dist_threshold=np.inf, reldist_threshold=1.0,
                 eval_dist=True, average="macro"):  # fmt: skip
        self.C, self.eval_dist, self.average = nb_classes, eval_dist, average
        self.ang_T, self.dist_T, self.reldist_T = doa_threshold, dist_threshold, reldist_threshold
        z = lambda: np.zeros(nb_classes)  # noqa: E731
        self.TP, self.FP, self.FP_spatial, self.FN, self.Nref = z(), z(), z(), z(), z()
        self.AngE, self.DistE, self.RelDistE = z(), z(), z()
        self.DE_TP, self.DE_FN = z(), z()
        self.S = self.D = self.I = 0

    def early_stopping(self, er, f, ae, lr, rde):
        if self.eval_dist:
            return np.nanmean([1 - f, ae / 180, rde], 0)
        return np.nanmean([er, 1 - f, ae / 180, 1 - lr], 0)

    def compute(self):
        ER = (self.S + self.D + self.I) / (self.Nref.sum() + EPS)
        classwise = []
        if self.average == "micro":
            F = self.TP.sum() / (
                EPS + self.TP.sum() + self.FP_spatial.sum() + 0.5 * (self.FP.sum() + self.FN.sum())
            )
            k = self.DE_TP.sum()
            AngE = self.AngE.sum() / float(k + EPS) if k else np.nan
            DistE = self.DistE.sum() / float(k + EPS) if k else np.nan
            RelDistE = self.RelDistE.sum() / float(k + EPS) if k else np.nan
            LR = k / (EPS + k + self.DE_FN.sum())
            SELD = self.early_stopping(ER, F, AngE, LR, RelDistE)
        else:
            F = self.TP / (EPS + self.TP + self.FP_spatial + 0.5 * (self.FP + self.FN))
            AngE = self.AngE / (self.DE_TP + EPS)
            AngE[self.DE_TP == 0] = np.nan
            DistE = self.DistE / (self.DE_TP + EPS)
            DistE[self.DE_TP == 0] = np.nan
            RelDistE = self.RelDistE / (self.DE_TP + EPS)
            RelDistE[self.DE_TP == 0] = np.nan
            LR = self.DE_TP / (EPS + self.DE_TP + self.DE_FN)
            SELD = self.early_stopping(np.repeat(ER, self.C), F, AngE, LR, RelDistE)
            classwise = np.array([np.repeat(ER, self.C), F, AngE, DistE, RelDistE, LR, SELD])
            with warnings.catch_warnings():  # an all-NaN class row warns; the baseline prints it
                warnings.simplefilter("ignore", RuntimeWarning)
                F, AngE, LR, SELD = F.mean(), np.nanmean(AngE), LR.mean(), SELD.mean()
                DistE, RelDistE = np.nanmean(DistE), np.nanmean(RelDistE)
        return ER, F, AngE, DistE, RelDistE, LR, SELD, classwise

    def update(self, pred, gt):
        for frame in range(len(gt.keys())):
            loc_FN, loc_FP = 0, 0
            for c in range(self.C):
                n_gt = len(gt[frame][c]) if c in gt[frame] else None
                n_pred = len(pred[frame][c]) if c in pred[frame] else None
                if n_gt is not None:
                    self.Nref[c] += n_gt
                if c in gt[frame] and c in pred[frame]:
                    gt_doas = np.array(list(gt[frame][c].values()))
                    pred_doas = np.array(list(pred[frame][c].values()))
                    gt_dist, pred_dist = gt_doas[:, 3], pred_doas[:, 3]
                    gt_doas, pred_doas = gt_doas[:, :3], pred_doas[:, :3]
                    doa_err, rows, cols = t24_least_distance(gt_doas, pred_doas)
                    dist_err = np.abs(gt_dist[rows] - pred_dist[cols])
                    rel_err = dist_err / (gt_dist[rows] + EPS)
                    Pc, Rc = len(pred_doas), len(gt_doas)
                    FNc, FPcinf, Kc = max(0, Rc - Pc), max(0, Pc - Rc), min(Pc, Rc)
                    Lc = np.sum(
                        (doa_err > self.ang_T)
                        + (self.eval_dist and dist_err > self.dist_T)
                        + (self.eval_dist and rel_err > self.reldist_T)
                    )
                    self.AngE[c] += doa_err.sum()
                    self.DistE[c] += dist_err.sum()
                    self.RelDistE[c] += rel_err.sum()
                    self.TP[c] += Kc - Lc
                    self.DE_TP[c] += Kc
                    self.FP[c] += FPcinf
                    self.FP_spatial[c] += Lc
                    loc_FP += FPcinf + Lc
                    self.FN[c] += FNc
                    self.DE_FN[c] += FNc
                    loc_FN += FNc
                elif c in gt[frame]:
                    loc_FN += n_gt
                    self.FN[c] += n_gt
                    self.DE_FN[c] += n_gt
                elif c in pred[frame]:
                    loc_FP += n_pred
                    self.FP[c] += n_pred
            self.S += np.minimum(loc_FP, loc_FN)
            self.D += np.maximum(0, loc_FN - loc_FP)
            self.I += np.maximum(0, loc_FP - loc_FN)


class T24SegmentLevel:
    """`SELDMetricsSegmentLevel` (the 2022/2023 segment metrics, no distance)."""

    def __init__(self, nb_classes, doa_threshold=20, average="macro"):
        self.C, self.T, self.average = nb_classes, doa_threshold, average
        z = lambda: np.zeros(nb_classes)  # noqa: E731
        self.TP, self.FP, self.FP_spatial, self.FN, self.Nref = z(), z(), z(), z(), z()
        self.DE, self.DE_TP, self.DE_FN = z(), z(), z()
        self.S = self.D = self.I = 0

    def compute(self):
        ER = (self.S + self.D + self.I) / (self.Nref.sum() + EPS)
        if self.average == "micro":
            F = self.TP.sum() / (
                EPS + self.TP.sum() + self.FP_spatial.sum() + 0.5 * (self.FP.sum() + self.FN.sum())
            )
            LE = self.DE.sum() / float(self.DE_TP.sum() + EPS) if self.DE_TP.sum() else 180
            LR = self.DE_TP.sum() / (EPS + self.DE_TP.sum() + self.DE_FN.sum())
            return ER, F, LE, LR, np.mean([ER, 1 - F, LE / 180, 1 - LR], 0)
        F = self.TP / (EPS + self.TP + self.FP_spatial + 0.5 * (self.FP + self.FN))
        LE = self.DE / (self.DE_TP + EPS)
        LE[self.DE_TP == 0] = 180.0
        LR = self.DE_TP / (EPS + self.DE_TP + self.DE_FN)
        SELD = np.mean([np.repeat(ER, self.C), 1 - F, LE / 180, 1 - LR], 0)
        return ER, F.mean(), LE.mean(), LR.mean(), SELD.mean()

    def update(self, pred, gt):
        for b in range(len(gt.keys())):
            loc_FN, loc_FP = 0, 0
            for c in range(self.C):
                n_gt = max(len(v) for v in gt[b][c][0][1]) if c in gt[b] else None
                n_pred = max(len(v) for v in pred[b][c][0][1]) if c in pred[b] else None
                if n_gt is not None:
                    self.Nref[c] += n_gt
                if c in gt[b] and c in pred[b]:
                    dist, count = {}, {}
                    gt_frames, pred_frames = gt[b][c][0][0], pred[b][c][0][0]
                    for gi, gf in enumerate(gt_frames):
                        if gf in pred_frames:
                            g = np.array(gt[b][c][0][1][gi])
                            ids = np.arange(len(g[:, -1]))
                            pi = pred_frames.index(gf)
                            p = np.array(pred[b][c][0][1][pi])
                            g, p = g[:, 1:4], p[:, 1:4]  # drop the track id and the distance
                            d, rows, _ = t24_least_distance(g, p)
                            for k, v in enumerate(d):
                                dist.setdefault(ids[rows[k]], []).append(v)
                                count.setdefault(ids[rows[k]], []).append(pi)
                    if not dist:
                        loc_FN += n_pred
                        self.FN[c] += n_pred
                        self.DE_FN[c] += n_pred
                    else:
                        for t in dist:
                            avg = sum(dist[t]) / len(count[t])
                            self.DE[c] += avg
                            self.DE_TP[c] += 1
                            if avg <= self.T:
                                self.TP[c] += 1
                            else:
                                loc_FP += 1
                                self.FP_spatial[c] += 1
                        if n_pred > n_gt:
                            loc_FP += n_pred - n_gt
                            self.FP[c] += n_pred - n_gt
                        elif n_pred < n_gt:
                            loc_FN += n_gt - n_pred
                            self.FN[c] += n_gt - n_pred
                            self.DE_FN[c] += n_gt - n_pred
                elif c in gt[b]:
                    loc_FN += n_gt
                    self.FN[c] += n_gt
                    self.DE_FN[c] += n_gt
                elif c in pred[b]:
                    loc_FP += n_pred
                    self.FP[c] += n_pred
            self.S += np.minimum(loc_FP, loc_FN)
            self.D += np.maximum(0, loc_FN - loc_FP)
            self.I += np.maximum(0, loc_FP - loc_FN)


def t_jackknife(global_value, partial, significance_level=0.05):
    """`jackknife_estimation` (the same in the 2022, 2024 and 2025 baselines)."""
    mean = np.mean(partial)
    n = len(partial)
    bias = (n - 1) * (mean - global_value)
    std_err = np.sqrt((n - 1) * np.mean((partial - mean) * (partial - mean), axis=0))
    estimate = global_value - bias
    t = stats.t.ppf(1 - significance_level / 2, n - 1)
    return estimate, bias, std_err, estimate + t * np.array((-std_err, std_err))


def t24_score(texts: dict[str, tuple[str, str]], n_classes, segment_level=False, jackknife=False,
              **kw) -> tuple:  # fmt: skip
    """`ComputeSELDResults.get_SELD_Results` on {name: (reference text, prediction text)}:
    global figures (+ classwise) and, with `jackknife`, each figure's interval."""
    refs, preds = {}, {}
    for name, (ref, pred) in texts.items():
        gt = t24_polar_to_cartesian(t24_load(ref, cm2m=True))
        n = max(list(gt.keys()))
        p = t24_polar_to_cartesian(t24_load(pred))
        if segment_level:
            refs[name], preds[name] = t24_segment(gt, n), t24_segment(p, n)
        else:
            refs[name], preds[name] = t24_organize(gt, n), t24_organize(p, n)

    def run(names):
        ev = T24SegmentLevel(n_classes, **kw) if segment_level else T24SELDMetrics(n_classes, **kw)
        for name in names:
            ev.update(preds[name], refs[name])
        return ev.compute()

    res = run(list(texts))
    if not jackknife:
        return res, None

    def flat(r):  # noqa: E306
        return (
            (list(r[:-1]) + list(np.asarray(r[-1]).reshape(-1))) if not segment_level else list(r)
        )

    glob = flat(res)
    partial = np.array([flat(run([n for n in texts if n != left])) for left in texts])
    return res, [t_jackknife(g, partial[:, i])[3] for i, g in enumerate(glob)]


# ---------------------------------------------------------------------------------------------
# Random multi-instance files
# ---------------------------------------------------------------------------------------------


def unit(az, el):
    a, e = math.radians(az), math.radians(el)
    return math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)


def random_pair(rng: np.random.Generator, n_classes: int, n_frames: int) -> tuple[str, str]:
    """A 2024 metadata text (integer degrees, distance in cm) and a 7-column prediction text
    (non-unit cartesian vectors, metres): several classes, same-class polyphony with repeated
    track ids, predictions near (within and beyond 20 deg, within and beyond the relative
    distance threshold), missed, wrong-class and extra, frames past the reference's last."""
    ref, pred = [], []
    for frame in range(n_frames):
        for _ in range(rng.integers(0, 4)):
            cls, track = int(rng.integers(n_classes)), int(rng.integers(0, 2))
            az, el, cm = (
                int(rng.integers(-180, 181)),
                int(rng.integers(-60, 61)),
                int(rng.integers(20, 600)),
            )
            ref.append(f"{frame},{cls},{track},{az},{el},{cm}")
            if rng.random() < 0.75:
                paz, pel = az + rng.normal(0, 15), float(np.clip(el + rng.normal(0, 8), -90, 90))
                scale = float(rng.uniform(0.3, 2.0))
                x, y, z = (scale * v for v in unit(paz, pel))
                metres = cm / 100 * float(np.exp(rng.normal(0, 0.5)))
                pcls = cls if rng.random() < 0.9 else int(rng.integers(n_classes))
                pred.append(
                    f"{frame},{pcls},{int(rng.integers(0, 3))},{x!r},{y!r},{z!r},{metres!r}"
                )
        if rng.random() < 0.2:
            x, y, z = (float(v) for v in rng.normal(size=3))
            pred.append(
                f"{frame},{int(rng.integers(n_classes))},0,{x!r},{y!r},{z!r},{float(rng.uniform(0, 5))!r}"
            )
    for frame in range(n_frames, n_frames + 3):  # past the reference: never scored
        pred.append(f"{frame},0,0,1.0,0.0,0.0,1.0")
    if not ref:
        ref.append(f"{n_frames},0,0,0,0,100")
    return "\n".join(ref) + "\n", "\n".join(pred) + "\n"


def ours(tmp_path, texts, n_classes, **options):
    files = {}
    for name, (ref, pred) in texts.items():
        (tmp_path / f"r_{name}").write_text(ref)
        (tmp_path / f"p_{name}").write_text(pred)
        files[name] = (
            read_rows(tmp_path / f"r_{name}", "dcase2024"),
            read_rows(tmp_path / f"p_{name}", "dcase2024"),
        )
    return score_files(files, "dcase2024", n_classes, **options)


FRAME_FIGURES = ("ER", "F", "AngE", "DistE", "RelDistE", "LR", "SELD")
CLASS_FIGURES = ("F", "AngE", "DistE", "RelDistE", "LR", "SELD")  # classwise rows 1..6


def close(a, b, what):
    tol = 0.01 if "AngE" in what else 1e-6  # degrees / ratios
    assert a == pytest.approx(b, abs=tol, nan_ok=True), what


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("average", ["macro", "micro"])
def test_frame_wise_equals_the_baseline_transcription(tmp_path, seed, average):
    """24 random multi-file scorings (8 seeds x 3 files, macro and micro): every figure, every
    class-wise figure and every jackknife interval equal to the transcription's."""
    rng = np.random.default_rng(seed)
    n_classes = 4
    texts = {f"f{i}.csv": random_pair(rng, n_classes, int(rng.integers(15, 40))) for i in range(3)}
    theirs, intervals = t24_score(texts, n_classes, jackknife=True, average=average)
    got = ours(tmp_path, texts, n_classes, jackknife=True, average=average)
    for i, k in enumerate(FRAME_FIGURES):
        close(got[k], theirs[i], k)
        close(got["jackknife"][k]["interval"], list(intervals[i]), f"jackknife {k}")
    if average == "macro":
        classwise = theirs[7]
        for row, k in enumerate(CLASS_FIGURES, start=1):
            for c in range(n_classes):
                close(got["per_class"][str(c)][k], classwise[row][c], f"class {c} {k}")
                j = 7 + row * n_classes + c
                close(got["per_class"][str(c)]["jackknife"][k]["interval"], list(intervals[j]),
                      f"jackknife class {c} {k}")  # fmt: skip
    assert got["counts"]["TP"] > 0 and got["counts"]["FP_spatial"] > 0  # the cases are mixed


@pytest.mark.parametrize("seed", range(4))
def test_segment_level_equals_the_baseline_transcription(tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    texts = {f"f{i}.csv": random_pair(rng, 3, int(rng.integers(25, 45))) for i in range(3)}
    theirs, intervals = t24_score(texts, 3, segment_level=True, jackknife=True)
    got = ours(tmp_path, texts, 3, segment_based=True, jackknife=True)
    for i, k in enumerate(("ER", "F", "AngE", "LR", "SELD")):
        close(got[k], theirs[i], k)
        close(got["jackknife"][k]["interval"], list(intervals[i]), f"jackknife {k}")


# ---------------------------------------------------------------------------------------------
# Hand-computed cases and thresholds
# ---------------------------------------------------------------------------------------------

# reference: class 0 at az 0, el 0, 200 cm in frames 0..10; frames 0..9 are scored (the
# highest index, 10, is the frame count and itself not scored: 10 frames, 10 entries).
REF = "".join(f"{f},0,0,0,0,200\n" for f in range(11))


def pred7(x, y, z, metres, frames=range(11)):
    return "".join(f"{f},0,0,{x!r},{y!r},{z!r},{metres!r}\n" for f in frames)


def score_texts(tmp_path, ref, pred, n_classes=1, **kw):
    return ours(tmp_path, {"a.csv": (ref, pred)}, n_classes, **kw)


def test_hand_case_distance_and_angle(tmp_path):
    """Prediction at az 10 deg (cartesian, length 2) and 3 m: every scored frame pairs at 10 deg
    (+ ~1e-8 from the baseline's 1e-10) with distance error |2 - 3| = 1 m, relative 1 / 2 = 0.5
    -> 10 TP. F = 10 / 10 = 1; AngE 10; DistE 1; RelDistE 0.5; LR 1; ER 0 (no FP/FN);
    SELD = nanmean(1 - 1, 10 / 180, 0.5) = (0 + 0.0555556 + 0.5) / 3 = 0.1851852."""
    c, s = math.cos(math.radians(10)), math.sin(math.radians(10))
    res = score_texts(tmp_path, REF, pred7(2 * c, 2 * s, 0.0, 3.0))
    assert res["counts"]["TP"] == 10 and res["counts"]["ref_entries"] == 10
    got = [res[k] for k in FRAME_FIGURES]
    assert got == pytest.approx([0, 1, 10, 1, 0.5, 1, 0.1851852], abs=1e-6)


def test_hand_case_class_without_pairs_is_nan_and_skipped_by_nanmean(tmp_path):
    """C = 2; class 1 never appears. Class 0 perfect (AngE ~0, RelDistE 0, F 1, LR 1); class 1:
    F 0/eps = 0, LR 0, AngE/DistE/RelDistE NaN, class SELD = nanmean(1 - 0, NaN, NaN) = 1.
    Macro: F = (1 + 0) / 2 = 0.5, AngE = nanmean(~0, NaN) = ~0, LR 0.5,
    SELD = mean(nanmean(0, ~0, 0), 1) = 0.5. (~0: 8.1e-4 deg, the baseline's angle between
    identical directions, see the CLI test.)"""
    res = score_texts(tmp_path, REF, pred7(1.0, 0.0, 0.0, 2.0), n_classes=2)
    assert math.isnan(res["per_class"]["1"]["AngE"]) and res["per_class"]["1"]["SELD"] == 1.0
    assert [res["F"], res["AngE"], res["LR"], res["SELD"]] == pytest.approx(
        [0.5, 0.0, 0.5, 0.5], abs=1e-3
    )


def test_exactly_20_degrees_is_a_miss_as_in_the_baseline(tmp_path):
    """At exactly 20 deg the baseline's 1e-10 under the norms makes the angle arccos(cos 20 /
    (1 + 1e-10)) = 20 + 1.6e-8 deg > 20: a spatial FP, on any CPU (the margin is 1e7 times a
    rounding error). 19.999 deg is a TP."""
    for az, tp in ((20, 0), (19.999, 10), (-20, 0)):
        pred = "".join(f"{f},0,0,{az},0,2.0\n" for f in range(11))  # polar, metres
        (tmp_path / "p.csv").write_text(pred)
        (tmp_path / "r.csv").write_text(REF)
        files = {"a": (read_rows(tmp_path / "r.csv", "dcase2024"),
                       read_rows(tmp_path / "p.csv", "polar-distance"))}  # fmt: skip
        res = score_files(files, "dcase2024", 1)
        assert res["counts"]["TP"] == tp, az
        assert res["counts"]["FP_spatial"] == 10 - tp
        assert res["AngE"] == pytest.approx(abs(az), abs=1e-6)


@pytest.mark.parametrize("metres, tp", [(4.0, 10), (0.0, 10), (4.000001, 0), (1.0, 10)])
def test_relative_distance_exactly_1_is_a_hit(tmp_path, metres, tp):
    """Reference 200 cm = 2 m exactly; relative error |2 - d| / (2 + eps): 2 + eps rounds to 2,
    so d = 4 and d = 0 give exactly 1.0, not above the threshold: TP. 4.000001 m: FP."""
    res = score_texts(tmp_path, REF, pred7(1.0, 0.0, 0.0, metres))
    assert res["counts"]["TP"] == tp and res["counts"]["FP_spatial"] == 10 - tp


def test_reference_distance_is_read_in_cm_and_prediction_as_written(tmp_path):
    """A 6-column reference read as dcase2024 is cm (200 -> 2 m); the 7-column prediction's 2.0
    is metres: a perfect distance. Read as `polar-distance` (metres), the same reference is
    200 m away: relative error 198 / 200 = 0.99, DistE 198."""
    ref_p, pred_p = tmp_path / "r.csv", tmp_path / "p.csv"
    ref_p.write_text(REF)
    pred_p.write_text(pred7(1.0, 0.0, 0.0, 2.0))
    cm = score_files({"a": (read_rows(ref_p, "dcase2024"), read_rows(pred_p, "dcase2024"))},
                     "dcase2024", 1)  # fmt: skip
    m = score_files({"a": (read_rows(ref_p, "polar-distance"), read_rows(pred_p, "dcase2024"))},
                    "dcase2024", 1)  # fmt: skip
    assert cm["DistE"] == 0.0 and m["DistE"] == pytest.approx(198.0)
    assert m["RelDistE"] == pytest.approx(0.99)


def test_without_distance_the_2023_seld_applies(tmp_path):
    """evaluate_distance=False: 5-column files; prediction 25 deg off in all 10 frames -> FP
    spatial 10 (I = 10 over frames), ER = 10 / 10 = 1, F 0, AngE 25, LR 1:
    SELD = nanmean(1, 1, 25/180, 0) = (2 + 0.1388889) / 4 = 0.5347222."""
    ref = "".join(f"{f},0,0,0,0\n" for f in range(11))
    pred = "".join(f"{f},0,0,25,0\n" for f in range(11))
    res = score_texts(tmp_path, ref, pred, evaluate_distance=False)
    assert "DistE" not in res
    assert [res[k] for k in ("ER", "F", "AngE", "LR", "SELD")] == pytest.approx(
        [1, 0, 25, 1, 0.5347222], abs=1e-6
    )


def test_missing_distance_is_refused(tmp_path):
    ref = "".join(f"{f},0,0,0,0\n" for f in range(11))
    with pytest.raises(ValueError, match="no distance"):
        score_texts(tmp_path, ref, pred7(1.0, 0.0, 0.0, 2.0))


def test_cli_prints_the_baseline_keys_and_jackknife(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    for i, az in enumerate((5, 30, 0)):
        (tmp_path / "ref" / f"c{i}.csv").write_text(REF)
        c, s = math.cos(math.radians(az)), math.sin(math.radians(az))
        (tmp_path / "pred" / f"c{i}.csv").write_text(pred7(c, s, 0.0, 2.0))
    out = io.StringIO()
    with redirect_stdout(out):
        code = score_cli.main(["--ref-dir", str(tmp_path / "ref"), "--pred-dir",
                               str(tmp_path / "pred"), "--metrics", "dcase2024", "--jackknife"])  # fmt: skip
    assert code == 0
    res = json.loads(out.getvalue())
    assert set(FRAME_FIGURES) <= set(res) and set(FRAME_FIGURES) <= set(res["jackknife"])
    # files at 5 and 0 deg all TP, the one at 30 deg all spatial FP: F = 20 / (20 + 10) = 2/3.
    # AngE = (5 + 30 + a0) / 3 where a0, the baseline's angle between identical directions, is
    # arccos(1 / (1 + 1e-10)) = sqrt(2e-10) rad = 8.1028e-4 deg: 11.6669368.
    assert res["F"] == pytest.approx(2 / 3) and res["AngE"] == pytest.approx(11.6669368, abs=1e-6)
    assert res["thresholds"] == {"doa": 20.0, "dist": None, "reldist": 1.0}
