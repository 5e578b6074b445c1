"""DCASE 2019 Task 3 metrics (TAU Spatial Sound Events 2018/2019, RealSELD's older SELD scores).

Our implementation of sharathadavanne/seld-dcase2019 `metrics/evaluation_metrics.py` (class
`SELDMetrics` as `calculate_SELD_metrics.py` drives it, with `output_format_dict_to_
classification_labels` and `cls_feature_class.get_list_index`), on our 100 ms label rows:

- Detection, segment-based: a class is active in a frame when it has an entry there. Blocks of
  10 frames (1 s); a block's activity is the max over frames 10 i .. 10 i + 8: the baseline's
  slice `[i * bs : i * bs + bs - 1]` leaves out the last frame of every block, and so do we. Per
  block: TP = classes active on both sides, FP, FN; S = min(FP, FN), D = max(0, FN - FP),
  I = max(0, FP - FN). Over all blocks and files: ER = (S + D + I) / N_ref, precision =
  TP / (N_sys + eps), recall = TP / (N_ref + eps), F = 2 P R / (P + R + eps).
- Localization, frame-wise and across classes: each entry's direction is put on the baseline's
  10-deg grid (azimuth clipped to [-180, 170], elevation to [-40, 40], floored to the cell's
  lower edge); an entry is a (class, cell) pair, so two entries of one class in one cell are
  one. In a frame with entries on both sides, ALL reference and predicted cells are paired by the
  Hungarian algorithm on great-circle distance whatever their class
  (`distance_between_gt_pred`), and the paired distances summed. DOA error = the sum over
  frames / the number of predicted entries; frame recall = frames in which reference and
  prediction have the same number of entries (silent frames included) / frames.
- SELD = mean(ER, 1 - F, DOA error / 180, 1 - frame recall) (`compute_seld_metric`).

Frames: the baseline scores every file over 3000 frames of 20 ms (its 60 s clips). Ours are
100 ms frames, n_frames per file: by default the highest frame index in reference or prediction
+ 1; pass the clip length (`n_frames`, the CLI's `--clip-length`) so that trailing silence counts
in the frame recall as there. Azimuths beyond [-180, 180] (never in its integer files) are wrapped
into [-180, 180) before the grid.

Deviations: 100 ms frames instead of 20 ms; more than MAX_ENTRIES_PER_FRAME entries in one frame
(all classes) are refused before the class-agnostic matching; a figure with a zero denominator
(no reference, no prediction) is NaN (inf for ER with insertions), as numpy's division gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.optimize import linear_sum_assignment

from localization_tasks.seld.jackknife import leave_one_out
from localization_tasks.seld.labels import FRAMES_PER_SEGMENT, Row
from localization_tasks.seld.metrics import EPS, Additive, attach_jackknife, check_polyphony

MAX_ENTRIES_PER_FRAME = 256  # the baseline's grid allows 11 classes x 324 cells; real data ~3
AZ_LO, AZ_HI, EL_LO, EL_HI, GRID = -180, 170, -40, 40, 10
N_ELEVATIONS = (EL_HI - EL_LO) // GRID + 1  # 9 elevation cells, the baseline's `_height`
FIGURES = ("ER", "F", "DOA_error", "frame_recall", "SELD")

# frame -> sorted [(class, cell)] of that frame; cell = azimuth index * 9 + elevation index
Cells = dict[int, list[tuple[int, int]]]


def grid_cells(rows: list[Row], n_frames: int, where: str) -> Cells:
    """Each frame's distinct (class, grid cell) entries, sorted as the baseline's
    `np.where(labels[frame] == 1)` lists them; frames >= n_frames dropped."""
    if not rows:
        return {}
    az = np.array([r.azimuth_elevation[0] for r in rows], dtype=np.float64)
    el = np.array([r.azimuth_elevation[1] for r in rows], dtype=np.float64)
    outside = (az < -180) | (az > 180)
    az[outside] = (az[outside] + 180) % 360 - 180
    az_i = np.floor_divide(np.clip(az, AZ_LO, AZ_HI) - AZ_LO, GRID).astype(np.int64)
    el_i = np.floor_divide(np.clip(el, EL_LO, EL_HI) - EL_LO, GRID).astype(np.int64)
    sets: dict[int, set[tuple[int, int]]] = {}
    for r, a, e in zip(rows, az_i, el_i, strict=True):
        if r.frame < n_frames:
            sets.setdefault(r.frame, set()).add((r.cls, int(a) * N_ELEVATIONS + int(e)))
    for frame, entries in sets.items():
        if len(entries) > MAX_ENTRIES_PER_FRAME:
            raise ValueError(
                f"{where}: frame {frame} has {len(entries)} entries; at most "
                f"{MAX_ENTRIES_PER_FRAME} per frame are scored"
            )
    return {frame: sorted(entries) for frame, entries in sets.items()}


def cell_radians(cells: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth, elevation) in radians of each cell's lower edge (`get_matrix_index`, `* pi / 180`)."""
    idx = np.array([c for _, c in cells], dtype=np.int64)
    az = (idx // N_ELEVATIONS) * GRID + AZ_LO
    el = (idx % N_ELEVATIONS) * GRID + EL_LO
    return az * np.pi / 180, el * np.pi / 180


def great_circle_deg(az1, el1, az2, el2) -> np.ndarray:
    """(n, m) great-circle distances in degrees, the baseline's spherical formula
    (`distance_between_spherical_coordinates_rad`)."""
    az1, el1, az2, el2 = az1[:, None], el1[:, None], az2[None, :], el2[None, :]
    cos = np.sin(el1) * np.sin(el2) + np.cos(el1) * np.cos(el2) * np.cos(np.abs(az1 - az2))
    return np.arccos(np.clip(cos, -1, 1)) * 180 / np.pi


@dataclass
class Counts2019(Additive):
    """The baseline's `SELDMetrics` accumulators (all overall, no class-wise figures)."""

    ADDITIVE: ClassVar[tuple[str, ...]] = (
        "S", "D", "I", "TP", "n_ref", "n_sys", "doa_sum", "n_pred_doa", "good_frames", "frames",
    )  # fmt: skip
    S: int = 0
    D: int = 0
    I: int = 0  # noqa: E741 (the metric's name)
    TP: int = 0
    n_ref: int = 0
    n_sys: int = 0
    doa_sum: float = 0.0
    n_pred_doa: int = 0
    good_frames: int = 0
    frames: int = 0

    def update(self, ref: list[Row], pred: list[Row], n_frames: int, where: str = "") -> None:
        gt, pr = (
            grid_cells(ref, n_frames, f"{where} (reference)"),
            grid_cells(pred, n_frames, f"{where} (prediction)"),
        )
        self._detection(gt, pr, n_frames)
        self.frames += n_frames
        self.good_frames += n_frames
        for frame in sorted(set(gt) | set(pr)):
            g, p = gt.get(frame, []), pr.get(frame, [])
            self.n_pred_doa += len(p)
            if len(g) != len(p):
                self.good_frames -= 1
            if g and p:
                cost = great_circle_deg(*cell_radians(g), *cell_radians(p))
                rows, cols = linear_sum_assignment(cost)
                self.doa_sum += float(cost[rows, cols].sum())

    def _detection(self, gt: Cells, pr: Cells, n_frames: int) -> None:
        """Segment-based ER / F counts (module docstring), over the blocks with any activity."""
        block = FRAMES_PER_SEGMENT
        active: dict[int, tuple[set[int], set[int]]] = {}
        for side, cells in enumerate((gt, pr)):
            for frame, entries in cells.items():
                if frame % block == block - 1:  # the frame the baseline's block slice leaves out
                    continue
                active.setdefault(frame // block, (set(), set()))[side].update(
                    c for c, _ in entries
                )
        for t, o in active.values():
            fp, fn = len(o - t), len(t - o)
            self.TP += len(t & o)
            self.n_ref += len(t)
            self.n_sys += len(o)
            self.S += min(fp, fn)
            self.D += max(0, fn - fp)
            self.I += max(0, fp - fn)

    def scores(self) -> dict:
        with np.errstate(divide="ignore", invalid="ignore"):
            er = np.float64(self.S + self.D + self.I) / np.float64(self.n_ref)
            doa = np.float64(self.doa_sum) / np.float64(self.n_pred_doa)
            recall_frames = np.float64(self.good_frames) / np.float64(self.frames)
        precision = self.TP / (self.n_sys + EPS)
        recall = self.TP / (self.n_ref + EPS)
        f = 2 * precision * recall / (precision + recall + EPS)
        seld = np.mean([er, 1 - f, doa / 180, 1 - recall_frames])
        return {
            "ER": float(er),
            "F": float(f),
            "DOA_error": float(doa),
            "frame_recall": float(recall_frames),
            "SELD": float(seld),
            "counts": {
                "TP": self.TP,
                "ref_active": self.n_ref,
                "pred_active": self.n_sys,
                "S": self.S,
                "D": self.D,
                "I": self.I,
                "pred_doas": self.n_pred_doa,
                "good_frames": self.good_frames,
                "frames": self.frames,
            },  # fmt: skip
        }


def default_n_frames(ref: list[Row], pred: list[Row]) -> int:
    """Highest frame index on either side + 1 (0 for two empty files)."""
    return max((r.frame + 1 for r in ref + pred), default=0)


def score(
    files: dict[str, tuple[list[Row], list[Row]]],
    n_classes: int,
    *,
    jackknife: bool = False,
    n_frames: dict[str, int] | None = None,
) -> dict:
    """DCASE 2019 scores of {name: (reference rows, predicted rows)} (module docstring).
    `n_classes` only bounds the class indices (the metrics are class-agnostic sums).
    `jackknife`: the later baselines' leave-one-file-out 95 % intervals (the 2019 one has none)."""
    if not 1 <= n_classes <= 10_000:
        raise ValueError(f"n_classes must be in 1..10000, got {n_classes}")
    total, per_file = Counts2019(), []
    for name in sorted(files):
        ref, pred = files[name]
        for side, rows in (("reference", ref), ("prediction", pred)):
            check_polyphony(rows, f"{name} ({side})")
            bad = next((r for r in rows if r.cls >= n_classes), None)
            if bad is not None:
                raise ValueError(f"{name} ({side}): class {bad.cls} outside 0..{n_classes - 1}")
        n = (n_frames or {}).get(name, default_n_frames(ref, pred))
        if not 0 <= n <= 10_000_000 or not math.isfinite(n):
            raise ValueError(f"{name}: n_frames {n} out of range")
        one = Counts2019()
        one.update(ref, pred, n, name)
        per_file.append(one)
        total = total + one
    out = {"metrics": "dcase2019", **total.scores(), "files": len(files)}
    if jackknife:
        fig = lambda c: {k: c.scores()[k] for k in FIGURES}  # noqa: E731
        attach_jackknife(out, leave_one_out(total, per_file, fig))
    return out
