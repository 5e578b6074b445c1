"""DCASE Task 3 SELD metrics: location-sensitive detection and class-sensitive localization.

Our implementation of the metrics of Mesaros et al. (WASPAA 2019) with the multi-instance
extension of Politis et al. (TASLP 2020), following the DCASE 2022/2023 baseline's
`SELD_evaluation_metrics.py` and `cls_feature_class.segment_labels` (MIT) step by step so that
scores agree with published ones:

- Labels at 100 ms are grouped into 1 s segments of 10 frames. In a segment a class has
  N_ref (N_pred) tracks = the largest number of simultaneous entries of that class in one frame.
- Where both have the class: in every frame both have it, reference and predicted directions are
  paired by the Hungarian algorithm on angular distance (scipy `linear_sum_assignment`). A
  reference track is identified by its POSITION among that class's entries in the frame (the
  baseline ignores track ids), and its distance in the segment is the mean over the frames where it
  was paired. Each paired track adds its distance to LE and one to DE_TP (localization recall);
  it is a TP if its distance <= threshold (20 deg), else a "spatial FP". Extra predicted tracks
  (N_pred > N_ref) are FP, missing ones FN. If no frame has both (the entries never overlap in
  time), the baseline counts N_pred (sic) FN; we do the same so scores match.
- Reference only: N_ref FN. Prediction only: N_pred FP.
- Per segment, over all classes: substitutions S = min(FP, FN), deletions D = max(0, FN - FP),
  insertions I = max(0, FP - FN) (spatial FPs count as FP). ER = (S + D + I) / sum N_ref.
- F = TP / (TP + FP_spatial + (FP + FN) / 2); LE = mean paired distance (180 when nothing was
  paired); LR = DE_TP / (DE_TP + DE_FN). `macro`: F, LE, LR per class, then the mean over ALL
  classes 0..C-1 (a class absent from reference and prediction scores F 0, LE 180, LR 0, as in the
  baseline); `micro`: pooled counts. SELD = mean(ER, 1 - F, LE / 180, 1 - LR).

Segments: the baseline segments a file into ceil(n / 10) segments where n is the reference's
highest frame INDEX (not the count); pass `n_frames` to score a known clip length instead.

`jackknife=True` adds the baseline's leave-one-file-out 95 % intervals (`seld.jackknife`).
Hostile input: more than MAX_TRACKS_PER_CLASS entries of one class in one frame are refused
(`check_polyphony`) before the Hungarian matching, whose cost grows with their square.

This module also holds what the other years' metrics share (`Additive` counts, the polyphony
cap, the DCASE 2025 azimuth fold); `metrics_dcase2019`, `metrics_dcase2024` and
`metrics_dcase2025` are the other challenges' metrics, `seld.score.score_files` picks one.
"""

from __future__ import annotations

import copy
import math
import operator
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from localization_tasks.seld.jackknife import leave_one_out
from localization_tasks.seld.labels import FRAMES_PER_SEGMENT, Row, frames_of

Average = Literal["macro", "micro"]
EPS = float(np.finfo(np.float64).eps)  # the baseline's denominators add float64 eps

# segment -> class -> [(frame within segment, (n, 3) directions)] in frame order
Segments = dict[int, dict[int, list[tuple[int, np.ndarray]]]]


MAX_TRACKS_PER_CLASS = 64  # entries of one class in one frame; real data has at most a handful


class Additive:
    """Counts that add over files: `a + b` and `a - b` combine every field named in ADDITIVE
    (the leave-one-file-out jackknife subtracts one file's counts from the total)."""

    ADDITIVE: ClassVar[tuple[str, ...]] = ()

    def _combine(self, other, op):
        out = copy.copy(self)
        for name in self.ADDITIVE:
            setattr(out, name, op(getattr(self, name), getattr(other, name)))
        return out

    def __add__(self, other):
        return self._combine(other, operator.add)

    def __sub__(self, other):
        return self._combine(other, operator.sub)


def check_polyphony(rows: Iterable[Row], where: str, limit: int = MAX_TRACKS_PER_CLASS) -> None:
    """ValueError naming `where` and the frame when some frame has more than `limit` entries of
    one class: the Hungarian matching of that frame would cost (entries)^2 memory and time, and no
    recording has thousands of simultaneous sources of one class."""
    counts = Counter((r.frame, r.cls) for r in rows)
    if not counts:
        return
    (frame, cls), n = max(counts.items(), key=lambda kv: kv[1])
    if n > limit:
        raise ValueError(
            f"{where}: frame {frame} has {n} entries of class {cls}; at most {limit} per class "
            "and frame are scored"
        )


def fold_azimuth_deg(az: np.ndarray) -> np.ndarray:
    """Azimuths (degrees, any range) mirrored about the interaural axis into [-90, 90], with the
    arithmetic of partha2409/DCASE2025_seld_baseline `utils.fold_az_angle` (wrap into
    [-180, 180) by `(az + 180) % 360 - 180`, then az < -90 -> -180 - az, az > 90 -> 180 - az), so
    that the folded values are bit for bit the baseline's."""
    az = np.asarray(az, dtype=np.float64)
    wrapped = (az + 180) % 360 - 180
    out = wrapped.copy()
    back_right = (-180 <= wrapped) & (wrapped < -90)
    back_left = (90 < wrapped) & (wrapped <= 180)
    out[back_right] = -180 - wrapped[back_right]
    out[back_left] = 180 - wrapped[back_left]
    return out


def angular_distance_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise great-circle distance in degrees between rows of a (n, 3) and b (m, 3), any
    lengths; (n, m). A zero vector is 90 deg from everything, as in the baseline. Unlike the
    baseline (which adds 1e-10 under the norm and takes arccos, so identical directions come out
    0.0008 deg apart), we use atan2(|a x b|, a . b): exact for equal directions."""
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    a = a / np.maximum(na, 1e-12)[:, None]
    b = b / np.maximum(nb, 1e-12)[:, None]
    cross = np.linalg.norm(np.cross(a[:, None, :], b[None, :, :]), axis=-1)
    deg = np.degrees(np.arctan2(cross, a @ b.T))
    zero = (na[:, None] < 1e-12) | (nb[None, :] < 1e-12)
    return np.where(zero, 90.0, deg)


def azimuth_difference_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) absolute differences of the azimuths (degrees) in column 0 of a (n, k) and b (m, k):
    DCASE 2025's stereo distance, taken on the folded azimuths directly as its baseline does
    (partha2409/DCASE2025_seld_baseline `metrics.py`). Going through unit vectors and atan2
    instead puts two azimuths exactly 20 deg apart a rounding error above or below a 20 deg
    threshold depending on the CPU's math library; a difference of two exactly representable
    numbers has no such error."""
    return np.abs(a[:, None, 0] - b[None, :, 0])


def folded_azimuth(row: Row) -> tuple[float]:
    """A `stereo_rows` row's direction for the stereo scorer: its folded azimuth in degrees."""
    return (row.azimuth_elevation[0],)


def stereo_rows(rows: list[Row]) -> list[Row]:
    """Rows as DCASE 2025 stereo SELD scores them: azimuth only, front-folded. A two-microphone
    recording cannot tell front from back, so every azimuth is mirrored about the interaural axis
    into [-90, 90] (`fold_azimuth_deg`), elevation is dropped (set to 0), and the distance
    between two rows is the difference of their folded azimuths (`azimuth_difference_deg`, in
    degrees as the 2025 baseline computes it). Used by the older `--stereo` scoring (the 2022
    metrics on these rows); `metrics_dcase2025` is the 2025 challenge's own."""
    out = []
    folded = fold_azimuth_deg([r.azimuth_elevation[0] for r in rows]) if rows else []
    for r, az in zip(rows, folded, strict=True):
        az = float(az)
        a = math.radians(az)
        out.append(Row(r.frame, r.cls, r.track, (math.cos(a), math.sin(a), 0.0), r.distance,
                       (az, 0.0), r.onscreen))  # fmt: skip
    return out


def n_frames_dcase(ref_rows: list[Row]) -> int:
    """The baseline's frame count for a reference file: its highest frame index."""
    return max((r.frame for r in ref_rows), default=0)


def segment(rows: list[Row], n_frames: int, block: int = FRAMES_PER_SEGMENT,
            direction: Callable[[Row], tuple[float, ...]] | None = None) -> Segments:  # fmt: skip
    """Group rows into `block`-frame segments; frames >= ceil(n_frames / block) * block dropped.
    `direction`: a row's direction for the scorer (`frames_of`)."""
    n_blocks = math.ceil(n_frames / block)
    out: Segments = {}
    for frame, entries in sorted(frames_of(rows, direction).items()):
        seg = frame // block
        if seg >= n_blocks:
            continue
        per_class: dict[int, list[np.ndarray]] = {}
        for cls, xyz in entries:
            per_class.setdefault(cls, []).append(xyz)
        for cls, dirs in per_class.items():
            out.setdefault(seg, {}).setdefault(cls, []).append(
                (frame - seg * block, np.stack(dirs))
            )
    return out


@dataclass
class SELDCounts(Additive):
    """Accumulated counts over files; `update` per file, `scores` at the end."""

    ADDITIVE: ClassVar[tuple[str, ...]] = (
        "tp", "fp", "fp_spatial", "fn", "n_ref", "de_sum", "de_tp", "de_fn", "S", "D", "I",
    )  # fmt: skip

    n_classes: int
    doa_threshold: float = 20.0
    # distance (degrees) between (n, k) reference and (m, k) predicted directions -> (n, m)
    distance: Callable[[np.ndarray, np.ndarray], np.ndarray] = angular_distance_deg
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fp_spatial: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)
    n_ref: np.ndarray = field(init=False)
    de_sum: np.ndarray = field(init=False)
    de_tp: np.ndarray = field(init=False)
    de_fn: np.ndarray = field(init=False)
    S: int = 0
    D: int = 0
    I: int = 0  # noqa: E741 (the metric's name)

    def __post_init__(self) -> None:
        if not 1 <= self.n_classes <= 10_000:
            raise ValueError(f"n_classes must be in 1..10000, got {self.n_classes}")
        if not (math.isfinite(self.doa_threshold) and 0 <= self.doa_threshold <= 180):
            raise ValueError(f"doa_threshold must be in 0..180 degrees, got {self.doa_threshold}")
        for name in ("tp", "fp", "fp_spatial", "fn", "n_ref", "de_sum", "de_tp", "de_fn"):
            setattr(self, name, np.zeros(self.n_classes))

    def update(self, ref: Segments, pred: Segments) -> None:
        """Add one file's segments (same segmentation for both)."""
        for seg in sorted(set(ref) | set(pred)):
            loc_fp = loc_fn = 0
            gt_seg, pr_seg = ref.get(seg, {}), pred.get(seg, {})
            for cls in sorted(set(gt_seg) | set(pr_seg)):
                if not 0 <= cls < self.n_classes:
                    raise ValueError(f"class {cls} outside 0..{self.n_classes - 1} (n_classes)")
                gt, pr = gt_seg.get(cls), pr_seg.get(cls)
                n_gt = max(len(d) for _, d in gt) if gt else 0
                n_pr = max(len(d) for _, d in pr) if pr else 0
                self.n_ref[cls] += n_gt
                if gt and pr:
                    fp, fn = self._match(cls, gt, pr, n_gt, n_pr)
                elif gt:
                    fp, fn = 0, n_gt
                    self.fn[cls] += n_gt
                    self.de_fn[cls] += n_gt
                else:
                    fp, fn = n_pr, 0
                    self.fp[cls] += n_pr
                loc_fp += fp
                loc_fn += fn
            self.S += min(loc_fp, loc_fn)
            self.D += max(0, loc_fn - loc_fp)
            self.I += max(0, loc_fp - loc_fn)

    def _match(self, cls: int, gt, pr, n_gt: int, n_pr: int) -> tuple[int, int]:
        """Hungarian pairing frame by frame; returns this class's (FP, FN) for the segment."""
        pred_at = dict(pr)
        dists: dict[int, list[float]] = {}  # reference track position -> paired distances
        for frame, gt_dirs in gt:
            if frame not in pred_at:
                continue
            cost = self.distance(gt_dirs, pred_at[frame])
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                dists.setdefault(int(r), []).append(float(cost[r, c]))
        if not dists:  # never simultaneous: the baseline counts N_pred misses
            self.fn[cls] += n_pr
            self.de_fn[cls] += n_pr
            return 0, n_pr
        fp = fn = 0
        for d in dists.values():
            mean = sum(d) / len(d)
            self.de_sum[cls] += mean
            self.de_tp[cls] += 1
            if mean <= self.doa_threshold:
                self.tp[cls] += 1
            else:
                self.fp_spatial[cls] += 1
                fp += 1
        if n_pr > n_gt:
            self.fp[cls] += n_pr - n_gt
            fp += n_pr - n_gt
        elif n_pr < n_gt:
            self.fn[cls] += n_gt - n_pr
            self.de_fn[cls] += n_gt - n_pr
            fn += n_gt - n_pr
        return fp, fn

    def scores(self, average: Average = "macro") -> dict:
        """ER, F, LE, LR and SELD (see the module docstring) and per-class F, LE, LR, SELD."""
        if average not in ("macro", "micro"):
            raise ValueError(f"average must be macro or micro, got {average!r}")
        er = (self.S + self.D + self.I) / (self.n_ref.sum() + EPS)
        f_c = self.tp / (EPS + self.tp + self.fp_spatial + 0.5 * (self.fp + self.fn))
        le_c = np.where(self.de_tp > 0, self.de_sum / (self.de_tp + EPS), 180.0)
        lr_c = self.de_tp / (EPS + self.de_tp + self.de_fn)
        seld_c = (er + (1 - f_c) + le_c / 180 + (1 - lr_c)) / 4
        if average == "macro":
            f, le, lr = f_c.mean(), le_c.mean(), lr_c.mean()
        else:
            f = self.tp.sum() / (
                EPS + self.tp.sum() + self.fp_spatial.sum() + 0.5 * (self.fp.sum() + self.fn.sum())
            )
            le = self.de_sum.sum() / (self.de_tp.sum() + EPS) if self.de_tp.sum() else 180.0
            lr = self.de_tp.sum() / (EPS + self.de_tp.sum() + self.de_fn.sum())
        seld = (er + (1 - f) + le / 180 + (1 - lr)) / 4
        t = f"{self.doa_threshold:g}"
        return {
            f"ER{t}": float(er),
            f"F{t}": float(f),
            "LE_CD": float(le),
            "LR_CD": float(lr),
            "SELD": float(seld),
            "average": average,
            "doa_threshold": self.doa_threshold,
            "counts": {
                "ref_tracks": int(self.n_ref.sum()),
                "TP": int(self.tp.sum()),
                "FP": int(self.fp.sum()),
                "FP_spatial": int(self.fp_spatial.sum()),
                "FN": int(self.fn.sum()),
                "S": int(self.S),
                "D": int(self.D),
                "I": int(self.I),
            },
            "per_class": {
                str(c): {
                    f"F{t}": float(f_c[c]),
                    "LE_CD": float(le_c[c]),
                    "LR_CD": float(lr_c[c]),
                    "SELD": float(seld_c[c]),
                    "ref_tracks": int(self.n_ref[c]),
                }
                for c in range(self.n_classes)
            },
        }


def score_rows(
    files: dict[str, tuple[list[Row], list[Row]]],
    n_classes: int,
    doa_threshold: float = 20.0,
    average: Average = "macro",
    n_frames: dict[str, int] | None = None,
    stereo: bool = False,
    jackknife: bool = False,
) -> dict:
    """Scores of {name: (reference rows, predicted rows)}. `n_frames[name]` overrides the
    baseline's frame count (highest reference frame index) for that file. `stereo`: the DCASE
    2022 metrics on front-folded azimuths (`stereo_rows`; the DCASE 2025 challenge's own metrics
    are `metrics_dcase2025`). `jackknife`: adds "jackknife" intervals to every figure."""
    distance = azimuth_difference_deg if stereo else angular_distance_deg
    direction = folded_azimuth if stereo else None
    counts = SELDCounts(n_classes, doa_threshold, distance)
    per_file = []
    for name in sorted(files):
        ref, pred = files[name]
        check_polyphony(ref, f"{name} (reference)")
        check_polyphony(pred, f"{name} (prediction)")
        if stereo:
            ref, pred = stereo_rows(ref), stereo_rows(pred)
        n = (n_frames or {}).get(name, n_frames_dcase(ref))
        ref_seg = segment(ref, n, direction=direction)
        pred_seg = segment(pred, n, direction=direction)
        counts.update(ref_seg, pred_seg)
        if jackknife:
            one = SELDCounts(n_classes, doa_threshold, distance)
            one.update(ref_seg, pred_seg)
            per_file.append(one)
    out = counts.scores(average)
    out["files"] = len(files)
    out["stereo"] = stereo
    if jackknife:
        attach_jackknife(out, leave_one_out(counts, per_file, lambda c: figures(c.scores(average))))
    return out


def figures(scores: dict, skip: tuple[str, ...] = ("average", "doa_threshold")) -> dict[str, float]:
    """The numbers of a scores dict as {"F20": .., "per_class/3/F20": ..} (what the jackknife
    estimates: every overall and class-wise figure, as the baselines' `classwise_results`)."""
    out = {k: v for k, v in scores.items() if isinstance(v, float) and k not in skip}
    for c, per in scores.get("per_class", {}).items():
        for k, v in per.items():
            if isinstance(v, float):
                out[f"per_class/{c}/{k}"] = v
    return out


def quiet_nanmean(values, axis=None):
    """`np.nanmean` without its all-NaN warning: an all-NaN mean is NaN, as in the DCASE
    baselines (a figure with nothing to average)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def check_thresholds(n_classes: int, doa: float, dist: float, reldist: float) -> None:
    """The settings of the DCASE 2024/2025 accumulators: ValueError naming the one out of range
    (inf allowed for the distance thresholds, meaning none; NaN refused)."""
    if not 1 <= n_classes <= 10_000:
        raise ValueError(f"n_classes must be in 1..10000, got {n_classes}")
    if not 0 <= doa <= 180:
        raise ValueError(f"doa_threshold must be in 0..180 degrees, got {doa}")
    for name, value in (("dist", dist), ("reldist", reldist)):
        if not value >= 0:
            raise ValueError(f"{name}_threshold must be >= 0, got {value}")


def attach_jackknife(scores: dict, intervals: dict[str, dict]) -> None:
    """Put `leave_one_out`'s {figure path: interval} into `scores`: "jackknife" at the top for the
    overall figures, per_class[c]["jackknife"] for the class-wise ones."""
    for key, value in intervals.items():
        if key.startswith("per_class/"):
            _, c, k = key.split("/", 2)
            scores["per_class"][c].setdefault("jackknife", {})[k] = value
        else:
            scores.setdefault("jackknife", {})[key] = value
