"""Localization and T60 metrics: pure numpy functions, angles in degrees, T60 in s.

Directions are [x, y, z] in the head frame (x front, y left, z up; see
`localization_tasks.generate`). Predictions are renormalised to unit length before scoring (the
probe's tanh outputs are not unit vectors); a zero prediction counts as [1, 0, 0]; a NaN or Inf
prediction is an error (it must not become a plausible "front" guess).

- angular error: arccos(v . v_hat) of the unit target v and the renormalised prediction v_hat.
- azimuth error: |az - az_hat| wrapped to 0..180 deg (az = atan2(y, x)); elevation error:
  |el - el_hat| (el = asin(z)). Azimuth is ill-defined near the poles; the angular error is not.
- front-back confusion rate: the fraction of items whose prediction is closer to the target once
  mirrored across the interaural (y-z) plane, x_hat -> -x_hat; this happens exactly when x and
  x_hat have opposite signs. Targets within FRONT_BACK_MARGIN_DEG of that plane (|x| <
  sin 10 deg, nearly lateral sources, for which front and back are the same direction) are left
  out of the rate; `front_back_items` says how many items count.
- T60: absolute error |t - t_hat| in s, median (the paper's metric) and mean.
"""

from __future__ import annotations

import math

import numpy as np

FRONT_BACK_MARGIN_DEG = 10.0


def unit(v: np.ndarray) -> np.ndarray:
    """Rows of (M, 3) scaled to unit length; zero rows become [1, 0, 0]; NaN/Inf: ValueError."""
    v = np.asarray(v, dtype=np.float64)
    if not np.isfinite(v).all():
        raise ValueError("directions hold NaN or Inf values")
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    fallback = np.zeros_like(v)
    fallback[..., 0] = 1.0
    return np.where(norm > 1e-12, v / np.maximum(norm, 1e-12), fallback)


def angular_error_deg(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(M,) angle in deg between the directions of (M, 3) predictions and targets."""
    cos = np.sum(unit(pred) * unit(target), axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def azimuth360_elevation_deg(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth in [0, 360), elevation in [-90, 90]) in deg of (M, 3) vectors: the convention of
    the localization metrics (azimuth counter-clockwise from the front, `localization_tasks.generate`);
    `seld.labels.dcase_azimuth_elevation_deg` gives the DCASE (-180, 180] one for single rows."""
    u = unit(v)
    az = np.degrees(np.arctan2(u[..., 1], u[..., 0])) % 360.0
    return az, np.degrees(np.arcsin(np.clip(u[..., 2], -1.0, 1.0)))


def azimuth_error_deg(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    d = np.abs(azimuth360_elevation_deg(pred)[0] - azimuth360_elevation_deg(target)[0]) % 360.0
    return np.minimum(d, 360.0 - d)


def elevation_error_deg(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.abs(azimuth360_elevation_deg(pred)[1] - azimuth360_elevation_deg(target)[1])


def front_back_confusions(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confused (M,) bool, counted (M,) bool); see the module docstring."""
    p, t = unit(pred), unit(target)
    mirrored = p * np.array([-1.0, 1.0, 1.0])
    confused = angular_error_deg(mirrored, t) < angular_error_deg(p, t)
    counted = np.abs(t[..., 0]) >= math.sin(math.radians(FRONT_BACK_MARGIN_DEG))
    return confused & counted, counted


def direction_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Summary of (M, 3) predictions against (M, 3) unit targets."""
    err = angular_error_deg(pred, target)
    confused, counted = front_back_confusions(pred, target)
    n_fb = int(counted.sum())
    return {
        "n": int(len(err)),
        "mean_angular_error_deg": float(err.mean()),
        "median_angular_error_deg": float(np.median(err)),
        "mean_azimuth_error_deg": float(azimuth_error_deg(pred, target).mean()),
        "mean_elevation_error_deg": float(elevation_error_deg(pred, target).mean()),
        "front_back_confusion_rate": float(confused.sum() / n_fb) if n_fb else math.nan,
        "front_back_items": n_fb,
    }


def t60_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Summary of (M,) or (M, 1) T60 predictions against targets, in s."""
    if not (np.isfinite(pred).all() and np.isfinite(target).all()):
        raise ValueError("T60 predictions or targets hold NaN or Inf values")
    err = np.abs(np.ravel(pred) - np.ravel(target))
    return {
        "n": int(len(err)),
        "median_abs_error_s": float(np.median(err)),
        "mean_abs_error_s": float(err.mean()),
    }
