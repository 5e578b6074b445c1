"""DCASE 2025 Task 3 metrics: stereo SELD (azimuth, distance, on-screen), as its baseline.

Our implementation of partha2409/DCASE2025_seld_baseline `metrics.py` (`SELDMetrics`,
`ComputeSELDResults`) with the defaults of its `parameters.py` (`lad_doa_thresh=20`,
`lad_dist_thresh=inf`, `lad_reldist_thresh=1.0`, `lad_req_onscreen=False`, `average='macro'`):

- Frames: 0 .. n - 1 with n = the reference's highest frame index (0 for an empty reference, so
  nothing of that file is scored), as its `organize_labels(gt_dict, max(gt_dict))` and the
  `range(len(gt))` loop; prediction rows at or past n are ignored.
- Azimuths are folded into [-90, 90] (`metrics.fold_azimuth_deg`, its `fold_az_angle`); the
  angular error of a pair is |fold(az_ref) - fold(az_pred)| in degrees, elevation plays no part.
- Each frame, each class: Hungarian pairing on that error; of the K = min(R, P) pairs one is a TP
  when error <= 20 deg, |distance error| <= dist threshold, relative error
  |d_ref - d_pred| / (d_ref + eps) <= 1, and (only with `req_onscreen`, for audio-visual systems)
  the on-screen flags agree; else a spatial FP. P - K extra predictions FP, R - K FN; class on one
  side only: all FN or all FP. No ER, S, D, I: the baseline computes none.
- F = TP / (TP + FP_spatial + (FP + FN) / 2); AngE (DOAE), DistE, RelDistE (RDE) = error sums
  over pairs / number of pairs; OnscreenAq = share of pairs whose on-screen flags agree; NaN for a
  class without pairs. `macro`: per class, then mean (F) or nanmean (the others); `micro`:
  pooled. The baseline has no combined score; it keeps the model with the best F (`main.py`).

Units: the 2025 files hold distances in cm and the baseline compares them as read, so its DistE
is in cm. Here distances are metres (cm / 100 at reading, `seld.labels`), so DistE is in metres,
the baseline's / 100; `dist_threshold` is in metres. RelDistE is a ratio: for whole-cm distances
(what its writer writes) it decides the 1.0 threshold as the baseline does (|d_ref - d_pred| =
d_ref happens only for d_pred = 0 or 2 d_ref, where the metre values keep the exact ratio).

Jackknife (`seld.jackknife`): the baseline's estimator over the five overall figures and the
class-wise ones. Its own code appends the class-wise array itself to each partial estimate
before flattening it, which makes numpy >= 1.24 refuse the ragged array (and older numpy shift
the class-wise intervals by one); we compute every figure's interval as intended.

Deviations: the baseline keeps at most 10 tracks per class and frame (`organize_labels(...,
max_tracks=10)` overwrites track 0 with any further entry, with a warning); we refuse such a file
naming the frame, rather than score what it silently dropped. A class index >= n_classes, a row
without a distance or on-screen flag, are errors (the baseline ignores the class, or fails).
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
    attach_jackknife,
    check_polyphony,
    check_thresholds,
    figures,
    fold_azimuth_deg,
    quiet_nanmean,
)
from localization_tasks.seld.metrics_dcase2024 import entries_by_frame

MAX_TRACKS = 10  # the baseline's `organize_labels(max_tracks=10)`
FIGURES = ("F", "AngE", "DistE", "RelDistE", "OnscreenAq")


def n_frames_2025(ref: list[Row]) -> int:
    """The baseline's frame count: the reference's highest frame index, 0 when it is empty."""
    return max((r.frame for r in ref), default=0)


@dataclass
class StereoCounts(Additive):
    """The baseline's `SELDMetrics` accumulators, per class."""

    n_classes: int
    doa_threshold: float = 20.0
    dist_threshold: float = float("inf")
    reldist_threshold: float = 1.0
    req_onscreen: bool = False
    ADDITIVE: ClassVar[tuple[str, ...]] = (
        "tp", "fp", "fp_spatial", "fn", "n_ref", "de_tp", "de_fn", "ang", "dist", "reldist",
        "onscreen",
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
    onscreen: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        check_thresholds(self.n_classes, self.doa_threshold, self.dist_threshold,
                         self.reldist_threshold)  # fmt: skip
        for name in self.ADDITIVE:
            setattr(self, name, np.zeros(self.n_classes))

    def update(self, ref: list[Row], pred: list[Row], n_frames: int, where: str = "") -> None:
        """Add one file: reference and predicted rows, scored over frames 0..n_frames-1."""
        for side, rows in (("reference", ref), ("prediction", pred)):
            bad = next((r for r in rows if r.frame < n_frames and
                        (r.distance is None or r.onscreen is None)), None)  # fmt: skip
            if bad is not None:
                raise ValueError(
                    f"{where} ({side}): frame {bad.frame} has no distance or on-screen flag; "
                    "DCASE 2025 scoring needs both (read the files as dcase2025)"
                )
        values = []
        for rows in (ref, pred):
            az = fold_azimuth_deg([r.azimuth_elevation[0] for r in rows])
            # rows past n_frames may lack the fields: never read, NaN / -1 placeholders
            dist = [np.nan if r.distance is None else r.distance for r in rows]
            on = [-1 if r.onscreen is None else r.onscreen for r in rows]
            values.append((az, np.array(dist, dtype=np.float64), np.array(on, dtype=np.int64)))
        gt, pr = entries_by_frame(ref, n_frames), entries_by_frame(pred, n_frames)
        for frame in sorted(set(gt) | set(pr)):
            gt_f, pr_f = gt.get(frame, {}), pr.get(frame, {})
            for cls in sorted(set(gt_f) | set(pr_f)):
                if not 0 <= cls < self.n_classes:
                    raise ValueError(f"{where}: class {cls} outside 0..{self.n_classes - 1}")
                g, p = gt_f.get(cls, []), pr_f.get(cls, [])
                self.n_ref[cls] += len(g)
                if g and p:
                    self._match(cls, *(v[g] for v in values[0]), *(v[p] for v in values[1]))
                elif g:
                    self.fn[cls] += len(g)
                    self.de_fn[cls] += len(g)
                else:
                    self.fp[cls] += len(p)

    def _match(self, cls, gt_az, gt_d, gt_on, pr_az, pr_d, pr_on) -> None:
        cost = np.abs(gt_az[:, None] - pr_az[None, :])  # folded azimuths subtracted, in degrees
        rows, cols = linear_sum_assignment(cost)
        angle = cost[rows, cols]
        err = np.abs(gt_d[rows] - pr_d[cols])
        rel = err / (gt_d[rows] + EPS)
        same_side = gt_on[rows] == pr_on[cols]
        wrong = (angle > self.doa_threshold) | (err > self.dist_threshold)
        wrong |= rel > self.reldist_threshold
        if self.req_onscreen:
            wrong |= ~same_side
        n_gt, n_pr = len(gt_az), len(pr_az)
        k, misses = min(n_gt, n_pr), int(wrong.sum())
        self.ang[cls] += angle.sum()
        self.dist[cls] += err.sum()
        self.reldist[cls] += rel.sum()
        self.onscreen[cls] += same_side.sum()
        self.tp[cls] += k - misses
        self.fp_spatial[cls] += misses
        self.de_tp[cls] += k
        self.fp[cls] += max(0, n_pr - n_gt)
        self.fn[cls] += max(0, n_gt - n_pr)
        self.de_fn[cls] += max(0, n_gt - n_pr)

    def scores(self, average: Average = "macro") -> dict:
        """F, AngE, DistE, RelDistE, OnscreenAq (module docstring) and per-class figures."""
        if average not in ("macro", "micro"):
            raise ValueError(f"average must be macro or micro, got {average!r}")
        f_c = self.tp / (EPS + self.tp + self.fp_spatial + 0.5 * (self.fp + self.fn))
        paired = self.de_tp > 0
        per = {"F": f_c}
        for name, k in zip(FIGURES[1:], ("ang", "dist", "reldist", "onscreen"), strict=True):
            per[name] = np.where(paired, getattr(self, k) / (self.de_tp + EPS), np.nan)
        if average == "macro":
            overall = {"F": f_c.mean(), **{k: quiet_nanmean(per[k]) for k in FIGURES[1:]}}
        else:
            tp, n_pairs = self.tp.sum(), self.de_tp.sum()
            f = tp / (EPS + tp + self.fp_spatial.sum() + 0.5 * (self.fp.sum() + self.fn.sum()))
            overall = {"F": f}
            for name, k in zip(FIGURES[1:], ("ang", "dist", "reldist", "onscreen"), strict=True):
                overall[name] = getattr(self, k).sum() / (n_pairs + EPS) if n_pairs else np.nan
        return {
            **{k: float(overall[k]) for k in FIGURES},
            "average": average,
            "counts": {
                "ref_entries": int(self.n_ref.sum()),
                "TP": int(self.tp.sum()),
                "FP": int(self.fp.sum()),
                "FP_spatial": int(self.fp_spatial.sum()),
                "FN": int(self.fn.sum()),
            },
            "per_class": {
                str(c): {
                    **{k: float(per[k][c]) for k in FIGURES},
                    "ref_entries": int(self.n_ref[c]),
                }
                for c in range(self.n_classes)
            },
        }


def score(
    files: dict[str, tuple[list[Row], list[Row]]],
    n_classes: int,
    *,
    jackknife: bool = False,
    average: Average = "macro",
    doa_threshold: float = 20.0,
    dist_threshold: float = float("inf"),
    reldist_threshold: float = 1.0,
    req_onscreen: bool = False,
    n_frames: dict[str, int] | None = None,
) -> dict:
    """DCASE 2025 stereo scores of {name: (reference rows, predicted rows)} (module docstring);
    `dist_threshold` in metres. `jackknife`: leave-one-file-out 95 % intervals."""
    make = lambda: StereoCounts(  # noqa: E731
        n_classes, doa_threshold, dist_threshold, reldist_threshold, req_onscreen
    )
    total, per_file = make(), []
    for name in sorted(files):
        ref, pred = files[name]
        check_polyphony(ref, f"{name} (reference)", MAX_TRACKS)
        check_polyphony(pred, f"{name} (prediction)", MAX_TRACKS)
        one = make()
        one.update(ref, pred, (n_frames or {}).get(name, n_frames_2025(ref)), name)
        per_file.append(one)
        total = total + one
    out = {"metrics": "dcase2025", **total.scores(average)}
    out["thresholds"] = {
        "doa": doa_threshold,
        "dist": None if dist_threshold == float("inf") else dist_threshold,
        "reldist": None if reldist_threshold == float("inf") else reldist_threshold,
        "req_onscreen": req_onscreen,
    }
    out["files"] = len(files)
    if jackknife:
        attach_jackknife(
            out, leave_one_out(total, per_file, lambda c: figures(c.scores(average), ("average",)))
        )
    return out
