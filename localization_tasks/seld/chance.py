"""The chance row of a SELD evaluation: the true activity with random directions and distances.

Every reference row (frame, class, track) of a test clip is predicted as it is, with a direction
drawn uniformly on the sphere (a normalised Gaussian vector) and, when the training labels carry
distances, a distance drawn uniformly between the smallest and largest training distance (m).
Detection is thus perfect and localization is chance: a method's LE_CD and F20 are to be read
against this row, whose expected angular error is 90 deg. Draws are a pure function of (seed,
clip name), so the row is reproducible and independent of the clip order.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from localization_tasks.seld.labels import Row


def distance_range(train_refs: Sequence[list[Row]]) -> tuple[float, float] | None:
    """(min, max) distance (m) of the training rows; None when any row has no distance."""
    d = [r.distance for rows in train_refs for r in rows]
    if not d or any(x is None for x in d):
        return None
    return float(min(d)), float(max(d))  # type: ignore[type-var]


def chance_rows(ref: list[Row], name: str, seed: int, distances: tuple[float, float] | None) -> list[Row]:  # fmt: skip
    """The reference rows of clip `name` with random unit directions (and distances in
    `distances`, metres), drawn from a generator seeded by (seed, crc32 of the name)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    v = rng.standard_normal((len(ref), 3))
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    dist = rng.uniform(*distances, len(ref)) if distances is not None else [None] * len(ref)
    out = []
    for r, xyz, d in zip(ref, v, dist, strict=True):
        direction = (float(xyz[0]), float(xyz[1]), float(xyz[2]))
        out.append(Row(r.frame, r.cls, r.track, direction, None if d is None else float(d)))
    return out
