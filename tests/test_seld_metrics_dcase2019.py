"""DCASE 2019 metrics (`seld.metrics_dcase2019`) against a transcription of the baseline's scorer
and hand-computed cases.

The transcription (prefixed `t19_`) follows sharathadavanne/seld-dcase2019 (MIT),
`metrics/evaluation_metrics.py` (`SELDMetrics`: `f1_overall_1sec`, `er_overall_1sec`,
`update_doa_scores`, `compute_sed_scores`, `compute_doa_scores`; `distance_between_gt_pred`,
`distance_between_spherical_coordinates_rad`, `output_format_dict_to_classification_labels`,
`compute_seld_metric`) and `cls_feature_class.py` (`get_list_index`, `get_matrix_index`, the 10-deg
grid), in plain numpy on dense label matrices. Adapted, as our implementation is, to 100 ms rows
(10 frames a second, a track column in each row, references given as rows instead of event
lists) and a per-file frame count. The jackknife has no 2019 original; the oracle rescoring N - 1
files follows the later baselines' loop.
"""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment

from localization_tasks.seld import score as score_cli
from localization_tasks.seld.labels import read_rows
from localization_tasks.seld.score import score_files

EPS = np.finfo(float).eps
AZI, ELE = list(range(-180, 180, 10)), list(range(-40, 50, 10))

# ---------------------------------------------------------------------------------------------
# Transcription of the DCASE 2019 baseline's scoring path (see the module docstring).
# ---------------------------------------------------------------------------------------------


def t19_list_index(azi, ele):
    return ((azi - AZI[0]) // 10) * len(ELE) + (ele - ELE[0]) // 10


def t19_matrix_index(ind):
    azi, ele = ind // len(ELE), ind % len(ELE)
    return azi * 10 + AZI[0], ele * 10 + ELE[0]


def t19_labels(text: str, n_frames: int, n_classes: int) -> np.ndarray:
    """`load_output_format_file` (integers; our rows carry a track column, skipped) and
    `output_format_dict_to_classification_labels`: [frames, classes, cells] of 0/1."""
    labels = np.zeros((n_frames, n_classes, len(AZI) * len(ELE)))
    for line in text.splitlines():
        frame, cls, _track, azi, ele = (int(w) for w in line.strip().split(","))
        if frame < n_frames:
            azi, ele = np.clip(azi, AZI[0], AZI[-1]), np.clip(ele, ELE[0], ELE[-1])
            labels[frame, cls, int(t19_list_index(azi, ele))] = 1
    return labels


def t19_spherical(az1, ele1, az2, ele2):
    d = np.sin(ele1) * np.sin(ele2) + np.cos(ele1) * np.cos(ele2) * np.cos(np.abs(az1 - az2))
    return np.arccos(np.clip(d, -1, 1)) * 180 / np.pi


def t19_least_cost(gt, pred):
    n, m = gt.shape[0], pred.shape[0]
    pairs = np.array([[x, y] for y in range(m) for x in range(n)])
    cost = np.zeros((n, m))
    if n and m:
        cost[pairs[:, 0], pairs[:, 1]] = t19_spherical(
            gt[pairs[:, 0], 0], gt[pairs[:, 0], 1], pred[pairs[:, 1], 0], pred[pairs[:, 1], 1]
        )
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].sum()


class T19SELDMetrics:
    def __init__(self, block=10):
        self.S = self.D = self.I = self.TP = self.Nref = self.Nsys = 0
        self.block = block
        self.doa_pred_cnt = self.frames = self.doa_loss = self.good = 0

    def _blocks(self, out, ref):
        """[i * bs : i * bs + bs - 1] maxima (O and T in the baseline)."""
        n = int(np.ceil(float(out.shape[0]) / self.block))
        ob, tb = np.zeros((n, out.shape[1])), np.zeros((n, out.shape[1]))
        for i in range(n):
            ob[i] = np.max(out[i * self.block : i * self.block + self.block - 1], axis=0)
            tb[i] = np.max(ref[i * self.block : i * self.block + self.block - 1], axis=0)
        return ob, tb

    def update_sed(self, out, ref):
        ob, tb = self._blocks(out, ref)
        self.TP += ((2 * tb - ob) == 1).sum()
        self.Nref += tb.sum()
        self.Nsys += ob.sum()
        FP = np.logical_and(tb == 0, ob == 1).sum(1)
        FN = np.logical_and(tb == 1, ob == 0).sum(1)
        self.S += np.minimum(FP, FN).sum()
        self.D += np.maximum(0, FN - FP).sum()
        self.I += np.maximum(0, FP - FN).sum()

    def update_doa(self, pred, gt):
        self.doa_pred_cnt += np.sum(pred)
        self.frames += pred.shape[0]
        for frame in range(pred.shape[0]):
            n_gt, n_pred = int(np.sum(gt[frame])), int(np.sum(pred[frame]))
            if n_gt == n_pred:
                self.good += 1
            if n_gt and n_pred:
                p = np.array(t19_matrix_index(np.where(pred[frame] == 1)[1])) * np.pi / 180
                g = np.array(t19_matrix_index(np.where(gt[frame] == 1)[1])) * np.pi / 180
                self.doa_loss += t19_least_cost(g.T, p.T)

    def compute(self):
        with np.errstate(divide="ignore", invalid="ignore"):
            ER = (self.S + self.D + self.I) / (self.Nref + 0.0)
            prec = float(self.TP) / float(self.Nsys + EPS)
            recall = float(self.TP) / float(self.Nref + EPS)
            F = 2 * prec * recall / (prec + recall + EPS)
            doa = self.doa_loss / self.doa_pred_cnt
            fr = self.good / float(self.frames)
        return ER, F, doa, fr, np.mean([ER, 1 - F, doa / 180, 1 - fr])


def t19_score(texts, n_frames: dict[str, int], n_classes: int, jackknife=False):
    labels = {
        name: (
            t19_labels(ref, n_frames[name], n_classes),
            t19_labels(pred, n_frames[name], n_classes),
        )
        for name, (ref, pred) in texts.items()
    }

    def run(names):
        ev = T19SELDMetrics()
        for name in names:
            gt, pred = labels[name]
            ev.update_sed(pred.max(2), gt.max(2))
            ev.update_doa(pred, gt)
        return ev.compute()

    res = run(list(texts))
    if not jackknife:
        return res, None
    partial = np.array([run([n for n in texts if n != left]) for left in texts])
    n = len(texts)
    intervals = []
    for i, g in enumerate(res):
        mean = np.mean(partial[:, i])
        estimate = g - (n - 1) * (mean - g)
        se = np.sqrt((n - 1) * np.mean((partial[:, i] - mean) ** 2))
        t = stats.t.ppf(0.975, n - 1)
        intervals.append([estimate - t * se, estimate + t * se])
    return res, intervals


# ---------------------------------------------------------------------------------------------


def random_pair(rng: np.random.Generator, n_classes: int, n_frames: int) -> tuple[str, str]:
    """Polar integer rows (as TAU 2019's event lists give them): angles on and off the grid and
    outside it (azimuth 175..180, elevation beyond +-40, clipped), same-class polyphony (same
    and different cells), near and far predictions, missed, wrong-class and extra ones."""
    ref, pred = [], []
    for frame in range(n_frames):
        for _ in range(rng.integers(0, 4)):
            cls, az, el = (
                int(rng.integers(n_classes)),
                int(rng.integers(-180, 181)),
                int(rng.integers(-50, 51)),
            )
            ref.append(f"{frame},{cls},0,{az},{el}")
            if rng.random() < 0.7:
                paz = int(np.clip(az + rng.normal(0, 15), -180, 180))
                pel = int(np.clip(el + rng.normal(0, 10), -90, 90))
                pcls = cls if rng.random() < 0.85 else int(rng.integers(n_classes))
                pred.append(f"{frame},{pcls},1,{paz},{pel}")
        if rng.random() < 0.2:
            pred.append(
                f"{frame},{int(rng.integers(n_classes))},0,{int(rng.integers(-180, 181))},0"
            )
    return "\n".join(ref) + "\n", "\n".join(pred) + "\n"


def last_frame(text: str) -> int:
    return max((int(line.split(",")[0]) for line in text.splitlines() if line), default=-1)


def ours(tmp_path, texts, n_classes, **options):
    files = {}
    for name, (ref, pred) in texts.items():
        (tmp_path / f"r_{name}").write_text(ref)
        (tmp_path / f"p_{name}").write_text(pred)
        files[name] = (read_rows(tmp_path / f"r_{name}", "dcase2019"),
                       read_rows(tmp_path / f"p_{name}", "dcase2019"))  # fmt: skip
    return score_files(files, "dcase2019", n_classes, **options)


FIGURES = ("ER", "F", "DOA_error", "frame_recall", "SELD")


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("clip", [None, 33])
def test_equals_the_baseline_transcription(tmp_path, seed, clip):
    """20 random multi-file scorings (10 seeds x 3 files, frame count from the files and a fixed
    33-frame clip that cuts some rows off): every figure and jackknife interval."""
    rng = np.random.default_rng(seed)
    texts = {f"f{i}.csv": random_pair(rng, 5, int(rng.integers(20, 45))) for i in range(3)}
    if clip is None:
        n_frames = {k: max(last_frame(r), last_frame(p)) + 1 for k, (r, p) in texts.items()}
        got = ours(tmp_path, texts, 5, jackknife=True)
    else:
        n_frames = dict.fromkeys(texts, clip)
        got = ours(tmp_path, texts, 5, jackknife=True, n_frames=n_frames)
    theirs, intervals = t19_score(texts, n_frames, 5, jackknife=True)
    for i, k in enumerate(FIGURES):
        tol = 0.01 if k == "DOA_error" else 1e-6
        assert got[k] == pytest.approx(theirs[i], abs=tol), k
        assert got["jackknife"][k]["interval"] == pytest.approx(intervals[i], abs=tol), k


def test_hand_case():
    """One class, 20 frames (2 blocks). Reference: class 0 at (az 12, el 3) in frames 0..19.
    Prediction: (az 27, el 3) in frames 0..9 only. Grid: 12 -> cell 10, 27 -> cell 20, el 3 ->
    cell 0, so the paired distance is the great circle between (10, 0) and (20, 0) deg = 10 deg.
    Detection: block 0 (frames 0..8) TP; block 1 (frames 10..18) FN -> D 1. N_ref 2, N_sys 1:
    ER 1/2; P 1, R 1/2, F = 2 * 0.5 / 1.5 = 2/3. DOA: 10 frames x 10 deg / 10 predicted = 10;
    frame recall: frames 0..9 equal counts (1 = 1), 10..19 not -> 10/20 = 0.5.
    SELD = mean(0.5, 1/3, 10/180, 0.5) = 0.3472222."""
    from localization_tasks.seld.labels import parse_row

    ref = [parse_row(f"{f},0,0,12,3".split(","), "polar", "t") for f in range(20)]
    pred = [parse_row(f"{f},0,0,27,3".split(","), "polar", "t") for f in range(10)]
    res = score_files({"a": (ref, pred)}, "dcase2019", 1)
    got = [res[k] for k in FIGURES]
    assert got == pytest.approx([0.5, 2 / 3, 10.0, 0.5, 0.3472222], abs=1e-6)


def test_localization_is_class_agnostic():
    """Class 0 at az 0 in the reference, class 1 at az 0 in the prediction (frames 0..9): the
    2019 DOA error pairs them regardless of class (0 deg), while detection counts a
    substitution: ER 1, F 0, DOA_error 0, frame recall 1."""
    from localization_tasks.seld.labels import parse_row

    ref = [parse_row(f"{f},0,0,0,0".split(","), "polar", "t") for f in range(10)]
    pred = [parse_row(f"{f},1,0,0,0".split(","), "polar", "t") for f in range(10)]
    res = score_files({"a": (ref, pred)}, "dcase2019", 2)
    assert [res[k] for k in FIGURES[:4]] == pytest.approx([1.0, 0.0, 0.0, 1.0], abs=1e-9)


def test_cli_clip_length(tmp_path):
    """--clip-length 3 s = 30 frames: 10 labelled frames, 20 silent (good) ones -> recall 1 for a
    perfect prediction either way, but a prediction in the silent frames 20..29 now counts."""
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref" / "a.csv").write_text("".join(f"{f},0,0,0,0\n" for f in range(10)))
    (tmp_path / "pred" / "a.csv").write_text(
        "".join(f"{f},0,0,0,0\n" for f in list(range(10)) + [25])
    )
    args = ["--ref-dir", str(tmp_path / "ref"), "--pred-dir", str(tmp_path / "pred"), "--metrics",
            "dcase2019"]  # fmt: skip
    out = io.StringIO()
    with redirect_stdout(out):
        assert score_cli.main(args + ["--clip-length", "3"]) == 0
    res = json.loads(out.getvalue())
    # frame 25 (block 2, frames 20..28): an insertion; frame recall 29 / 30
    assert res["counts"]["frames"] == 30 and res["counts"]["I"] == 1
    assert res["frame_recall"] == pytest.approx(29 / 30) and math.isfinite(res["SELD"])
