"""SELD training targets of DCASE rows, their losses, and decoding of model outputs back to rows.

Three target kinds (`Target`):

- ``accdoa`` (Shimada et al., ICASSP 2021; DCASE 2022 baseline): per 100 ms frame and class a
  vector whose length is the activity and whose direction is the DOA; a class is detected in a
  frame when its vector is longer than 0.5 (two instances of one class in a frame keep the last
  one in the target). Output (B, T, K, 3).
- ``multi-accdoa`` (Shimada et al., ICASSP 2022; DCASE 2022 baseline `seldnet_model.py`
  MSELoss_ADPIT): 3 output tracks x classes x 3, trained with ADPIT: the loss of each (frame,
  class) is the smallest MSE over the 13 track-duplication patterns of its 0-3 instances
  (`adpit_loss`). Output (B, T, 3, K, 3).
- ``multi-accddoa``: multi-ACCDOA with a distance per track (DCASE 2024 baseline,
  partha2409/DCASE2024_seld_baseline `seldnet_model.py` MSELoss_ADPIT and `cls_feature_class.py`
  `get_adpit_labels_for_file`): each track holds the activity-scaled unit vector and the distance
  in metres (zero where silent), ADPIT over the same 13 patterns of (x, y, z, distance). Output
  (B, T, 3, K, 4); the direction part goes through tanh, the distance is linear (the baseline's
  output layer is linear) and negative distances decode to 0, as the baseline's inference does.

Decoding (`decode`) merges two active tracks of a class closer than 15 deg into their mean (the
distance too), as the baselines' inference does (`decode_multi_accdoa`). `choose_target` picks the
kind from a task's labels.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from typing import Literal, get_args

import numpy as np
import torch

from localization_tasks.seld.labels import Row

Target = Literal["accdoa", "multi-accdoa", "multi-accddoa"]
TARGETS: tuple[str, ...] = get_args(Target)
ACTIVE = 0.5
TRACKS = 3  # multi-ACCDOA output tracks (DCASE 2022/2024 baselines)
UNIFY_DEG = 15.0  # multi-ACCDOA inference: merge same-class tracks closer than this (baseline)


def check_target(kind: str) -> Target:
    if kind not in TARGETS:
        raise ValueError(f"unknown target {kind!r}; choose one of {', '.join(TARGETS)}")
    return kind  # type: ignore[return-value]


def tracks(kind: Target) -> int:
    """Output tracks per class: 1 for single ACCDOA, 3 for the multi-track targets."""
    return 1 if check_target(kind) == "accdoa" else TRACKS


def values(kind: Target) -> int:
    """Values per track and class: x, y, z (and the distance for multi-ACCDDOA)."""
    return 4 if check_target(kind) == "multi-accddoa" else 3


def output_shape(kind: Target, n_frames: int, n_classes: int) -> tuple[int, ...]:
    """Shape of one clip's model output: (T, K, 3) or (T, 3 tracks, K, values)."""
    if tracks(kind) == 1:
        return (n_frames, n_classes, 3)
    return (n_frames, TRACKS, n_classes, values(kind))


def choose_target(clips: Iterable[list[Row]]) -> Target:
    """The target kind of a task's labels (the rows of every clip of every split):
    ``multi-accddoa`` when every row carries a distance, else ``multi-accdoa`` when some frame of
    some clip has two instances of one class, else ``accdoa``."""
    n, with_distance, poly = 0, True, False
    for rows in clips:
        per_frame = Counter((r.frame, r.cls) for r in rows)
        poly = poly or any(c > 1 for c in per_frame.values())
        with_distance = with_distance and all(r.distance is not None for r in rows)
        n += len(rows)
    if n and with_distance:
        return "multi-accddoa"
    return "multi-accdoa" if poly else "accdoa"


def _unit(xyz: tuple[float, float, float]) -> np.ndarray:
    v = np.asarray(xyz, dtype=np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _adpit_patterns() -> tuple[np.ndarray, np.ndarray]:
    """The 13 ADPIT track-duplication patterns: (13, 3) instance index per output track, and the
    number of instances (1, 2 or 3) each pattern is for. 1 instance: AAA; 2: the 6 sequences of
    A and B that use both; 3: the 6 permutations of A, B, C."""
    pats = [((0, 0, 0), 1)]
    pats += [(p, 2) for p in itertools.product((0, 1), repeat=3) if len(set(p)) == 2]
    pats += [(p, 3) for p in itertools.permutations((0, 1, 2))]
    return np.array([p for p, _ in pats]), np.array([n for _, n in pats])


ADPIT_PATTERNS, ADPIT_COUNTS = _adpit_patterns()


def accdoa_target(rows: list[Row], n_frames: int, n_classes: int) -> np.ndarray:
    """(T, K, 3) unit DOA vectors where a class is active, zeros elsewhere."""
    y = np.zeros((n_frames, n_classes, 3), dtype=np.float32)
    for r in rows:
        if r.frame < n_frames:
            y[r.frame, r.cls] = _unit(r.xyz)
    return y


def adpit_target(rows: list[Row], n_frames: int, n_classes: int, distance: bool = False) -> np.ndarray:  # fmt: skip
    """(T, K, 3 instances, 3) unit DOA vectors of up to 3 instances of each class in each frame,
    in track order (zeros for absent instances; a 4th simultaneous instance is dropped, as the
    baselines' ADPIT labels hold 3). With `distance`: (T, K, 3, 4), the 4th value the distance in
    metres; a row without a distance is refused."""
    y = np.zeros((n_frames, n_classes, TRACKS, 4 if distance else 3), dtype=np.float32)
    n = np.zeros((n_frames, n_classes), dtype=np.int64)
    for r in sorted(rows, key=lambda r: (r.frame, r.cls, r.track)):
        if r.frame < n_frames and n[r.frame, r.cls] < TRACKS:
            y[r.frame, r.cls, n[r.frame, r.cls], :3] = _unit(r.xyz)
            if distance:
                if r.distance is None:
                    raise ValueError(f"frame {r.frame} class {r.cls} has no distance")
                y[r.frame, r.cls, n[r.frame, r.cls], 3] = r.distance
            n[r.frame, r.cls] += 1
    return y


def encode(rows: list[Row], n_frames: int, n_classes: int, kind: Target) -> np.ndarray:
    """The target of one clip's rows: `accdoa_target` or `adpit_target` (with distance)."""
    if check_target(kind) == "accdoa":
        return accdoa_target(rows, n_frames, n_classes)
    return adpit_target(rows, n_frames, n_classes, distance=kind == "multi-accddoa")


def _masked_mean(per_frame: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, T) per-frame losses over the frames where `mask` (B, T) is true."""
    if mask is None:
        return per_frame.mean()
    m = mask.to(per_frame.dtype)
    return (per_frame * m).sum() / m.sum().clamp(min=1.0)


def accdoa_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """MSE of single-ACCDOA `output` (B, T, K, 3) and target, over the unpadded frames of
    `mask` (B, T) (every frame when None: then plain MSE)."""
    return _masked_mean((output - target).square().mean(dim=(-1, -2)), mask)


def adpit_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """ADPIT loss of multi-ACC(D)DOA `output` (B, T, 3 tracks, K, V) against `target` (B, T, K,
    3 instances, V) from `adpit_target`: per (frame, class), the MSE over the 3 x V outputs to
    each duplication pattern of that class's instances allowed by its instance count (counted
    from the direction part), minimised over the patterns (a silent class: all-zero target);
    mean over classes, then over the unpadded frames of `mask` (B, T)."""
    pats = torch.as_tensor(ADPIT_PATTERNS, device=target.device)  # (13, 3)
    count = (target[..., :3].norm(dim=-1) > 0).sum(-1)  # (B, T, K) instances per class
    cand = target[..., pats, :]  # (B, T, K, 13, 3 tracks, V)
    out = output.permute(0, 1, 3, 2, 4)[..., None, :, :]  # (B, T, K, 1, 3, V)
    err = (out - cand).square().mean(dim=(-1, -2))  # (B, T, K, 13)
    allowed = torch.as_tensor(ADPIT_COUNTS, device=target.device) == count[..., None]
    allowed = allowed | (count[..., None] == 0)  # silent: every pattern is the zero target
    best = err.masked_fill(~allowed, math.inf).min(dim=-1).values  # (B, T, K)
    return _masked_mean(best.mean(dim=-1), mask)


def loss(kind: Target, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """The training loss of a target kind: `accdoa_loss` or `adpit_loss`."""
    fn = accdoa_loss if check_target(kind) == "accdoa" else adpit_loss
    return fn(output, target, mask)


def decode_multi_accdoa(y: np.ndarray, unify_deg: float = UNIFY_DEG) -> list[Row]:
    """(T, 3, K, 3 or 4) multi-ACC(D)DOA -> DCASE rows, track = output track. Per frame and
    class, the active tracks (direction longer than 0.5) that lie within `unify_deg` of another
    active track are merged into one row at the mean of their vectors and distances (all three
    when two or more pairs are close), as the DCASE 2022/2024 baselines' inference does.
    Distances (metres) are clipped at 0, as the 2024 baseline's `get_multi_accdoa_labels`."""
    rows = []
    active = np.linalg.norm(y[..., :3], axis=-1) > ACTIVE  # (T, 3, K)
    for t, k in zip(*np.nonzero(active.any(axis=1)), strict=True):
        on = [j for j in range(y.shape[1]) if active[t, j, k]]
        vecs = {j: y[t, j, k] for j in on}
        close = [(a, b) for a, b in itertools.combinations(on, 2)
                 if _angle(vecs[a][:3], vecs[b][:3]) < unify_deg]  # fmt: skip
        if len(close) >= 2:
            groups = [on]
        elif close:
            groups = [list(close[0])] + [[j] for j in on if j not in close[0]]
        else:
            groups = [[j] for j in on]
        for g in groups:
            v = np.mean([vecs[j] for j in g], axis=0)
            dist = max(0.0, float(v[3])) if len(v) > 3 else None
            rows.append(Row(int(t), int(k), int(g[0]), tuple(float(x) for x in v[:3]), dist))
    return rows


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    c = float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
    return math.degrees(math.acos(min(1.0, max(-1.0, c))))


def decode_accdoa(y: np.ndarray) -> list[Row]:
    """(T, K, 3) -> DCASE rows (track 0) for vectors longer than 0.5."""
    rows = []
    for t, k in zip(*np.nonzero(np.linalg.norm(y, axis=-1) > ACTIVE), strict=True):
        rows.append(Row(int(t), int(k), 0, tuple(float(v) for v in y[t, k])))
    return rows


def decode(y: np.ndarray, kind: Target) -> list[Row]:
    """Rows of one clip's output: `decode_accdoa` or `decode_multi_accdoa`."""
    return decode_accdoa(y) if check_target(kind) == "accdoa" else decode_multi_accdoa(y)
