"""DCASE 2024 Task 3 metrics: frame-wise detection with direction AND distance, as its baseline.

Our implementation of the scoring of partha2409/DCASE2024_seld_baseline
(`SELD_evaluation_metrics.SELDMetrics`, driven by `cls_compute_seld_results.ComputeSELDResults`
with the defaults of its `parameters.py`: `segment_based_metrics=False`, `evaluate_distance=True`,
`lad_doa_thresh=20`, `lad_dist_thresh=inf`, `lad_reldist_thresh=1`, `average='macro'`):

- Frames: a file is scored over frames 0 .. n - 1, n = the reference's highest frame INDEX (the
  baseline's `nb_ref_frames = max(gt_dict.keys())`, so the last labelled frame itself is not
  scored); prediction rows at or past n are ignored. `n_frames[name]` overrides n.
- Each frame, each class: its R reference and P predicted entries (file order) are paired by the
  Hungarian algorithm on angular distance alone. Each of the K = min(R, P) pairs adds its angle,
  |distance error| and relative distance error |d_ref - d_pred| / (d_ref + eps) to AngE, DistE,
  RelDistE and 1 to DE_TP; it is a TP when angle <= 20 deg and distance error <= dist threshold
  and relative error <= 1, else a spatial FP. P - K extra predictions are FP, R - K FN (also
  DE_FN). Reference only: R FN; prediction only: P FP.
- Each frame over classes: S = min(FP, FN), D = max(0, FN - FP), I = max(0, FP - FN) (spatial FPs
  count as FP); ER = (S + D + I) / N_ref.
- F = TP / (TP + FP_spatial + (FP + FN) / 2); LR = DE_TP / (DE_TP + DE_FN); AngE, DistE,
  RelDistE = error sums / DE_TP, NaN for a class with no pair. `macro`: per class, then mean (F,
  LR) or nanmean (AngE, DistE, RelDistE) over all classes 0..C-1; per-class SELD =
  nanmean(1 - F, AngE / 180, RelDistE), SELD = the mean of those. `micro`: pooled counts,
  SELD = nanmean(1 - F, AngE / 180, RelDistE). This SELD is the baseline's
  `early_stopping_metric` with `eval_dist` (the 2024 challenge ranked on F, AngE and RelDistE).
- `evaluate_distance=False` (its 2023-style frame-wise scoring): no distances, SELD =
  nanmean(ER, 1 - F, AngE / 180, 1 - LR).
- `segment_based=True`: its `SELDMetricsSegmentLevel`, the DCASE 2022/2023 segment metrics
  (`seld.metrics`) without distance, reported as ER, F, AngE, LR, SELD = mean(ER, 1 - F, AngE /
  180, 1 - LR), AngE being 180 for a class with no pair (as there).

Angles as the baseline computes them, so that a decision at the threshold is its decision: every
direction goes through (azimuth, elevation) in degrees and back to a unit vector (its loader
turns 7-column cartesian predictions into polar, then every row into cartesian), both vectors are
divided by sqrt(x^2 + y^2 + z^2 + 1e-10), and the angle is arccos of their clipped dot product.
So identical directions come out ~0.0008 deg apart, and two directions exactly 20 deg apart come
out 20 + 1.6e-8 deg: a miss, by a margin far above any CPU's rounding.

Units and reading (`seld.labels`): the baseline reads reference distances in cm and divides them
by 100 (`cm2m=True`, references only) and reads predictions as written; its writer writes 7
columns, cartesian + metres. `read_rows(path, "dcase2024")` does the same for 6-column metadata
and 7-column predictions. A 6-column PREDICTION the baseline would take as metres; we read it in
the unit of the format named (`dcase2024`: cm like the metadata, `polar-distance`: metres, the
baseline's reading). All distances here are metres; DistE is in metres.

Deviations, each where the baseline fails or is silent: a class index >= n_classes is an error
(the baseline ignores it); a reference without rows scores zero frames (the baseline crashes on
`max([])`); a row without a distance is an error when distances are evaluated (it asserts); more
than 64 entries of one class in one frame are refused (`metrics.check_polyphony`). The baseline's
identity-switch count (`_idss`) is computed but not reported there; nor here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy.optimize import linear_sum_assignment

from localization_tasks.seld.jackknife import leave_one_out
from localization_tasks.seld.labels import Row
from localization_tasks.seld.metrics import (
    EPS,
    Additive,
    Average,
    SELDCounts,
    attach_jackknife,
    check_polyphony,
    check_thresholds,
    figures,
    n_frames_dcase,
    quiet_nanmean,
    segment,
)

# (frame, class) -> indices of that frame's entries of that class, in file order
Entries = dict[int, dict[int, list[int]]]


def baseline_unit_vectors(rows: list[Row]) -> np.ndarray:
    """(n, 3) unit vectors of `rows` as the baseline derives them from a file: a polar row's
    (azimuth, elevation) as read, a cartesian row's via arctan2 in degrees, then
    [cos(az) cos(el), sin(az) cos(el), sin(el)] with the angles turned to radians as `* pi / 180`
    (its `convert_output_format_cartesian_to_polar` and `..._polar_to_cartesian`)."""
    n = len(rows)
    az, el = np.empty(n), np.empty(n)
    cart = [i for i, r in enumerate(rows) if r.azel is None]
    for i, r in enumerate(rows):
        if r.azel is not None:
            az[i], el[i] = r.azel
    if cart:
        x, y, z = np.array([rows[i].xyz for i in cart], dtype=np.float64).T
        az[cart] = np.arctan2(y, x) * 180 / np.pi
        el[cart] = np.arctan2(z, np.sqrt(x**2 + y**2)) * 180 / np.pi
    az_rad, el_rad = az * np.pi / 180.0, el * np.pi / 180.0
    cos_el = np.cos(el_rad)
    return np.stack([np.cos(az_rad) * cos_el, np.sin(az_rad) * cos_el, np.sin(el_rad)], axis=-1)


def baseline_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) angles in degrees between rows of a (n, 3) and b (m, 3), with the baseline's
    arithmetic (`distance_between_cartesian_coordinates`): each vector divided by
    sqrt(x^2 + y^2 + z^2 + 1e-10), arccos of the dot product clipped to [-1, 1], `* 180 / pi`."""
    na = np.sqrt(a[:, 0] ** 2 + a[:, 1] ** 2 + a[:, 2] ** 2 + 1e-10)
    nb = np.sqrt(b[:, 0] ** 2 + b[:, 1] ** 2 + b[:, 2] ** 2 + 1e-10)
    a, b = a / na[:, None], b / nb[:, None]
    dot = (
        a[:, None, 0] * b[None, :, 0]
        + a[:, None, 1] * b[None, :, 1]
        + a[:, None, 2] * b[None, :, 2]
    )
    return np.arccos(np.clip(dot, -1, 1)) * 180 / np.pi


def entries_by_frame(rows: list[Row], n_frames: int) -> Entries:
    """frame (< n_frames) -> class -> indices into `rows`, file order kept (the baseline's
    per-frame track dictionaries keep insertion order, a repeated track id under a new key)."""
    out: Entries = {}
    for i, r in enumerate(rows):
        if r.frame < n_frames:
            out.setdefault(r.frame, {}).setdefault(r.cls, []).append(i)
    return out


@dataclass
class FrameCounts(Additive):
    """The baseline's `SELDMetrics` accumulators, per class (arrays) and over frames (S, D, I)."""

    n_classes: int
    doa_threshold: float = 20.0
    dist_threshold: float = float("inf")
    reldist_threshold: float = 1.0
    evaluate_distance: bool = True
    ADDITIVE: ClassVar[tuple[str, ...]] = (
        "tp", "fp", "fp_spatial", "fn", "n_ref", "de_tp", "de_fn", "ang", "dist", "reldist",
        "S", "D", "I",
    )  # fmt: skip
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fp_spatial: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)
    n_ref: np.ndarray = field(init=False)
    de_tp: np.ndarray = field(init=False)
    de_fn: np.ndarray = field(init=False)
    ang: np.ndarray = field(init=False)
    dist: np.ndarray = field(init=False)
    reldist: np.ndarray = field(init=False)
    S: int = 0
    D: int = 0
    I: int = 0  # noqa: E741 (the metric's name)

    def __post_init__(self) -> None:
        check_thresholds(self.n_classes, self.doa_threshold, self.dist_threshold,
                         self.reldist_threshold)  # fmt: skip
        for name in self.ADDITIVE[:-3]:  # the per-class arrays (S, D, I are totals)
            setattr(self, name, np.zeros(self.n_classes))

    def update(self, ref: list[Row], pred: list[Row], n_frames: int, where: str = "") -> None:
        """Add one file: reference and predicted rows, scored over frames 0..n_frames-1."""
        if self.evaluate_distance:
            for side, rows in (("reference", ref), ("prediction", pred)):
                missing = next((r for r in rows if r.distance is None and r.frame < n_frames), None)
                if missing is not None:
                    raise ValueError(
                        f"{where} ({side}): frame {missing.frame} has no distance; DCASE 2024 "
                        "scoring evaluates distances (evaluate_distance=False scores without)"
                    )
        gt_xyz, pr_xyz = baseline_unit_vectors(ref), baseline_unit_vectors(pred)
        gt_d = np.array([r.distance or 0.0 for r in ref])
        pr_d = np.array([r.distance or 0.0 for r in pred])
        gt, pr = entries_by_frame(ref, n_frames), entries_by_frame(pred, n_frames)
        for frame in sorted(set(gt) | set(pr)):
            gt_f, pr_f = gt.get(frame, {}), pr.get(frame, {})
            loc_fp = loc_fn = 0
            for cls in sorted(set(gt_f) | set(pr_f)):
                if not 0 <= cls < self.n_classes:
                    raise ValueError(f"{where}: class {cls} outside 0..{self.n_classes - 1}")
                g, p = gt_f.get(cls, []), pr_f.get(cls, [])
                self.n_ref[cls] += len(g)
                if g and p:
                    fp, fn = self._match(cls, gt_xyz[g], pr_xyz[p], gt_d[g], pr_d[p])
                elif g:
                    fp, fn = 0, len(g)
                    self.fn[cls] += fn
                    self.de_fn[cls] += fn
                else:
                    fp, fn = len(p), 0
                    self.fp[cls] += fp
                loc_fp += fp
                loc_fn += fn
            self.S += min(loc_fp, loc_fn)
            self.D += max(0, loc_fn - loc_fp)
            self.I += max(0, loc_fp - loc_fn)

    def _match(self, cls, gt_xyz, pr_xyz, gt_d, pr_d) -> tuple[int, int]:
        """One frame, one class present on both sides; returns its (FP, FN) for S, D, I."""
        cost = baseline_angle_deg(gt_xyz, pr_xyz)
        rows, cols = linear_sum_assignment(cost)
        angle = cost[rows, cols]
        wrong = angle > self.doa_threshold
        if self.evaluate_distance:
            err = np.abs(gt_d[rows] - pr_d[cols])
            rel = err / (gt_d[rows] + EPS)
            wrong = wrong | (err > self.dist_threshold) | (rel > self.reldist_threshold)
            self.dist[cls] += err.sum()
            self.reldist[cls] += rel.sum()
        n_gt, n_pr = len(gt_xyz), len(pr_xyz)
        k, misses = min(n_gt, n_pr), int(wrong.sum())
        self.ang[cls] += angle.sum()
        self.tp[cls] += k - misses
        self.fp_spatial[cls] += misses
        self.de_tp[cls] += k
        self.fp[cls] += max(0, n_pr - n_gt)
        self.fn[cls] += max(0, n_gt - n_pr)
        self.de_fn[cls] += max(0, n_gt - n_pr)
        return misses + max(0, n_pr - n_gt), max(0, n_gt - n_pr)

    def scores(self, average: Average = "macro") -> dict:
        """ER, F, AngE, DistE, RelDistE, LR, SELD (module docstring) and per-class figures."""
        if average not in ("macro", "micro"):
            raise ValueError(f"average must be macro or micro, got {average!r}")
        er = (self.S + self.D + self.I) / (self.n_ref.sum() + EPS)
        f_c = self.tp / (EPS + self.tp + self.fp_spatial + 0.5 * (self.fp + self.fn))
        lr_c = self.de_tp / (EPS + self.de_tp + self.de_fn)
        paired = self.de_tp > 0
        mean_c = {
            k: np.where(paired, getattr(self, k) / (self.de_tp + EPS), np.nan)
            for k in ("ang", "dist", "reldist")
        }
        seld_c = self._seld(er, f_c, mean_c["ang"], lr_c, mean_c["reldist"])
        if average == "macro":
            f, lr, seld = f_c.mean(), lr_c.mean(), seld_c.mean()
            ang, dist, reldist = (quiet_nanmean(mean_c[k]) for k in ("ang", "dist", "reldist"))
        else:
            tp, n_pairs = self.tp.sum(), self.de_tp.sum()
            f = tp / (EPS + tp + self.fp_spatial.sum() + 0.5 * (self.fp.sum() + self.fn.sum()))
            lr = n_pairs / (EPS + n_pairs + self.de_fn.sum())
            ang, dist, reldist = (
                getattr(self, k).sum() / (n_pairs + EPS) if n_pairs else np.nan
                for k in ("ang", "dist", "reldist")
            )
            seld = self._seld(er, f, ang, lr, reldist)
        names = ["F", "AngE", "DistE", "RelDistE", "LR", "SELD"]
        if not self.evaluate_distance:
            names = ["F", "AngE", "LR", "SELD"]
        overall = dict(zip(["F", "AngE", "DistE", "RelDistE", "LR", "SELD"],
                           [f, ang, dist, reldist, lr, seld], strict=True))  # fmt: skip
        per = {"F": f_c, "AngE": mean_c["ang"], "DistE": mean_c["dist"],
               "RelDistE": mean_c["reldist"], "LR": lr_c, "SELD": seld_c}  # fmt: skip
        return {
            "ER": float(er),
            **{k: float(overall[k]) for k in names},
            "average": average,
            "counts": {
                "ref_entries": int(self.n_ref.sum()),
                "TP": int(self.tp.sum()),
                "FP": int(self.fp.sum()),
                "FP_spatial": int(self.fp_spatial.sum()),
                "FN": int(self.fn.sum()),
                "S": int(self.S),
                "D": int(self.D),
                "I": int(self.I),
            },
            "per_class": {
                str(c): {**{k: float(per[k][c]) for k in names}, "ref_entries": int(self.n_ref[c])}
                for c in range(self.n_classes)
            },
        }

    def _seld(self, er, f, ang, lr, reldist):
        """The baseline's `early_stopping_metric`: nanmean over the figures, per class when
        given arrays."""
        if self.evaluate_distance:
            parts = [1 - f, ang / 180, reldist]
        else:
            parts = [np.broadcast_to(er, np.shape(f)), 1 - f, ang / 180, 1 - lr]
        return quiet_nanmean(np.array(parts, dtype=np.float64), axis=0)


def score(
    files: dict[str, tuple[list[Row], list[Row]]],
    n_classes: int,
    *,
    jackknife: bool = False,
    average: Average = "macro",
    doa_threshold: float = 20.0,
    dist_threshold: float = float("inf"),
    reldist_threshold: float = 1.0,
    evaluate_distance: bool = True,
    segment_based: bool = False,
    n_frames: dict[str, int] | None = None,
) -> dict:
    """DCASE 2024 scores of {name: (reference rows, predicted rows)} (module docstring); distance
    thresholds in metres (dist) and as a ratio (reldist). `jackknife`: leave-one-file-out 95 %
    intervals of every figure (`seld.jackknife`)."""
    if segment_based:
        if evaluate_distance and (dist_threshold != float("inf") or reldist_threshold != 1.0):
            raise ValueError("segment-based DCASE 2024 scoring evaluates no distance thresholds")
        return _score_segments(files, n_classes, jackknife, average, doa_threshold, n_frames)
    make = lambda: FrameCounts(  # noqa: E731
        n_classes, doa_threshold, dist_threshold, reldist_threshold, evaluate_distance
    )
    total, per_file = make(), []
    for name in sorted(files):
        ref, pred = files[name]
        check_polyphony(ref, f"{name} (reference)")
        check_polyphony(pred, f"{name} (prediction)")
        n = (n_frames or {}).get(name, n_frames_dcase(ref))
        one = make()
        one.update(ref, pred, n, name)
        per_file.append(one)
        total = total + one
    out = {"metrics": "dcase2024", **total.scores(average)}
    out["thresholds"] = {
        "doa": doa_threshold,
        "dist": None if dist_threshold == float("inf") else dist_threshold,
        "reldist": None if reldist_threshold == float("inf") else reldist_threshold,
    }
    out["evaluate_distance"], out["segment_based"], out["files"] = (
        evaluate_distance,
        False,
        len(files),
    )
    if jackknife:
        attach_jackknife(
            out, leave_one_out(total, per_file, lambda c: figures(c.scores(average), ("average",)))
        )
    return out


_SEGMENT_NAMES = {"ER20": "ER", "F20": "F", "LE_CD": "AngE", "LR_CD": "LR", "SELD": "SELD"}


def _segment_scores(counts: SELDCounts, average: Average) -> dict:
    """`SELDCounts.scores` under the names the 2024 baseline's caller gives its segment figures."""
    raw = counts.scores(average)
    t = f"{counts.doa_threshold:g}"
    names = {k.replace("20", t): v for k, v in _SEGMENT_NAMES.items()}
    out = {names[k]: raw[k] for k in names}
    out["per_class"] = {
        c: {names[k]: v for k, v in per.items() if k in names} | {"ref_tracks": per["ref_tracks"]}
        for c, per in raw["per_class"].items()
    }
    out["counts"] = raw["counts"]
    return out


def _score_segments(files, n_classes, jackknife, average, doa_threshold, n_frames) -> dict:
    """The baseline's `SELDMetricsSegmentLevel`: the 2022 segment metrics with its angle."""
    total, per_file = SELDCounts(n_classes, doa_threshold, baseline_angle_deg), []
    for name in sorted(files):
        ref, pred = files[name]
        check_polyphony(ref, f"{name} (reference)")
        check_polyphony(pred, f"{name} (prediction)")
        n = (n_frames or {}).get(name, n_frames_dcase(ref))
        one = SELDCounts(n_classes, doa_threshold, baseline_angle_deg)
        one.update(*(segment(rows, n, direction=_baseline_direction(rows)) for rows in (ref, pred)))
        per_file.append(one)
        total = total + one
    out = {"metrics": "dcase2024", **_segment_scores(total, average), "average": average}
    out["thresholds"] = {"doa": doa_threshold}
    out["evaluate_distance"], out["segment_based"], out["files"] = False, True, len(files)
    if jackknife:
        fig = lambda c: figures(_segment_scores(c, average))  # noqa: E731
        attach_jackknife(out, leave_one_out(total, per_file, fig))
    return out


def _baseline_direction(rows: list[Row]):
    """`segment`'s direction callback giving each row its `baseline_unit_vectors` vector."""
    vectors = {id(r): v for r, v in zip(rows, baseline_unit_vectors(rows), strict=True)}
    return lambda r: vectors[id(r)]
