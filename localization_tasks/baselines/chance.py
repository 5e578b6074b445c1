"""Chance predictors for the evaluator (`--module chance`, option mode "mean" or "random").

- mean: every test item gets the training set's mean direction, normalised (T60: the training
  median). Directions drawn uniformly on the sphere have a mean near 0, so its direction is
  arbitrary and the expected angular error is 90 deg.
- random: independent uniform unit vectors (Gaussian vectors normalised), seeded; expected angular
  error 90 deg (T60: uniform between the training minimum and maximum).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Mode = Literal["mean", "random"]
MODES = ("mean", "random")


def predict(
    target_kind: str, train_y: np.ndarray, n_test: int, mode: Mode = "mean", seed: int = 0
) -> np.ndarray:
    """(n_test, D) chance predictions from the training targets (M, D)."""
    if mode not in MODES:
        raise ValueError(f"chance mode must be one of {MODES}, got {mode!r}")
    rng = np.random.default_rng(seed)
    if target_kind == "direction":
        if mode == "mean":
            mean = train_y.mean(0)
            mean = mean / max(np.linalg.norm(mean), 1e-12)
            return np.tile(mean, (n_test, 1))
        v = rng.standard_normal((n_test, 3))
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    if mode == "mean":
        return np.full((n_test, 1), float(np.median(train_y)))
    return rng.uniform(train_y.min(), train_y.max(), (n_test, 1))
