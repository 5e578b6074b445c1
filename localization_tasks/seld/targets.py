"""ACCDOA and multi-ACCDOA (ADPIT) targets of SELD rows, the ADPIT loss, and decoding back to
rows.

Single ACCDOA (Shimada et al., ICASSP 2021; DCASE 2022 baseline): per 100 ms frame and class a
vector whose length is the activity and whose direction is the DOA; a class is detected in a
frame when its vector is longer than 0.5 (two instances of one class in a frame keep the last one
in the target). Multi-ACCDOA with ADPIT (Shimada et al., ICASSP 2022; DCASE 2022 baseline
`seldnet_model.py` MSELoss_ADPIT): 3 output tracks x classes x 3; the loss of each (frame,
class) is the smallest MSE over the 13 track-duplication patterns of its 0-3 instances
(`adpit_loss`); decoding merges two active tracks of a class closer than 15 deg into their mean,
as the baseline's inference does (`decode_multi_accdoa`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from localization_tasks.seld.labels import Row

ACTIVE = 0.5
TRACKS = 3  # multi-ACCDOA output tracks (DCASE 2022 baseline)
UNIFY_DEG = 15.0  # multi-ACCDOA inference: merge same-class tracks closer than this (baseline)


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
            v = np.asarray(r.xyz, dtype=np.float32)
            y[r.frame, r.cls] = v / max(float(np.linalg.norm(v)), 1e-12)
    return y


def adpit_target(rows: list[Row], n_frames: int, n_classes: int) -> np.ndarray:
    """(T, K, 3, 3): the unit DOA vectors of up to 3 instances of each class in each frame, in
    track order (zeros for absent instances; a 4th simultaneous instance is dropped, as the
    baseline's ADPIT labels hold 3)."""
    y = np.zeros((n_frames, n_classes, TRACKS, 3), dtype=np.float32)
    n = np.zeros((n_frames, n_classes), dtype=np.int64)
    for r in sorted(rows, key=lambda r: (r.frame, r.cls, r.track)):
        if r.frame < n_frames and n[r.frame, r.cls] < TRACKS:
            v = np.asarray(r.xyz, dtype=np.float32)
            y[r.frame, r.cls, n[r.frame, r.cls]] = v / max(float(np.linalg.norm(v)), 1e-12)
            n[r.frame, r.cls] += 1
    return y


def adpit_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ADPIT loss of multi-ACCDOA `output` (B, T, 3 tracks, K, 3) against `target` (B, T, K, 3
    instances, 3) from `adpit_target`: per (frame, class), the MSE over the 3 x 3 outputs to each
    duplication pattern of that class's instances allowed by its instance count, minimised over
    the patterns (a silent class: all-zero target); mean over batch, frames and classes."""
    pats = torch.as_tensor(ADPIT_PATTERNS, device=target.device)  # (13, 3)
    count = (target.norm(dim=-1) > 0).sum(-1)  # (B, T, K) instances per class
    cand = target[..., pats, :]  # (B, T, K, 13, 3 tracks, 3)
    out = output.permute(0, 1, 3, 2, 4)[..., None, :, :]  # (B, T, K, 1, 3, 3)
    err = (out - cand).square().mean(dim=(-1, -2))  # (B, T, K, 13)
    allowed = torch.as_tensor(ADPIT_COUNTS, device=target.device) == count[..., None]
    allowed = allowed | (count[..., None] == 0)  # silent: every pattern is the zero target
    return err.masked_fill(~allowed, math.inf).min(dim=-1).values.mean()


def decode_multi_accdoa(y: np.ndarray, unify_deg: float = UNIFY_DEG) -> list[Row]:
    """(T, 3, K, 3) multi-ACCDOA -> DCASE rows, track = output track. Per frame and class, the
    active tracks (longer than 0.5) that lie within `unify_deg` of another active track are
    merged into one row at the mean of their vectors (all three when two or more pairs are
    close), as the DCASE 2022 baseline's inference does."""
    rows = []
    active = np.linalg.norm(y, axis=-1) > ACTIVE  # (T, 3, K)
    for t, k in zip(*np.nonzero(active.any(axis=1)), strict=True):
        on = [j for j in range(y.shape[1]) if active[t, j, k]]
        vecs = {j: y[t, j, k] for j in on}
        close = [(a, b) for a, b in itertools.combinations(on, 2)
                 if _angle(vecs[a], vecs[b]) < unify_deg]  # fmt: skip
        if len(close) >= 2:
            groups = [on]
        elif close:
            groups = [list(close[0])] + [[j] for j in on if j not in close[0]]
        else:
            groups = [[j] for j in on]
        for g in groups:
            v = np.mean([vecs[j] for j in g], axis=0)
            rows.append(Row(int(t), int(k), int(g[0]), tuple(float(x) for x in v)))
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


def decode(y: np.ndarray, multi: bool) -> list[Row]:
    """Rows of a (multi-)ACCDOA output: `decode_multi_accdoa` or `decode_accdoa`."""
    return decode_multi_accdoa(y) if multi else decode_accdoa(y)
