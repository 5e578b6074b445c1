"""Single-source localization in the modes of labhamlet/listen-eval-kit (arXiv 2602.03307).

    python -m localization_tasks.seld.modes --module M [--weights W] [--model-options J] \\
        --tasks-dir T --out O --mode polar-classification [--task NAME ...] [--seed 0]

Runs on the single-source direction tasks of `localization_tasks.generate` (labels: unit vectors
in the head frame; distances from `localization_manifest.csv`), with the task reading, folds and
cached scene embeddings of `localization_tasks.embeddings`, and a probe per mode:

    cartesian-regression     target the unit vector (x, y, z); tanh output, MSE
    cartesian-z-regression   elevation only: target z = sin(elevation); tanh output, MSE
    polar-regression         target (cos az, sin az, el / 90): the azimuth as a point on the
                             circle, so that -179 and 179 deg are neighbours; MSE
    polar-classification     azimuth in 36 bins of 10 deg and elevation in 9 bins of 20 deg, two
                             softmax heads, cross-entropy; decoded to the bin centres
    distance-regression      target the source distance (m), standardised; MSE

Metrics: the direction modes report `localization_tasks.metrics.direction_metrics` (mean and
median angular error, azimuth and elevation errors, front-back confusions) of the decoded
direction (cartesian-z: the elevation error only; polar-classification: also the azimuth and
elevation bin accuracies); distance: mean absolute and relative error. The probe: one hidden layer
of 256, Adam 1e-3, mini-batches of 64, embeddings standardised on the training split, early
stopping on the validation loss (patience 20, at most 300 epochs), seeded.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from hear_gram import cli
from hear_gram.safeio import child, write_bytes_atomic
from hear_gram.seeding import seeded
from localization_tasks import metrics
from localization_tasks.embeddings import Embedder, module_tag
from localization_tasks.taskdata import (
    TaskDataError,
    data_splits,
    find_tasks,
    read_labels,
    read_metadata,
)

log = logging.getLogger(__name__)
Mode = Literal[
    "cartesian-regression",
    "cartesian-z-regression",
    "polar-regression",
    "polar-classification",
    "distance-regression",
]
MODES: tuple[str, ...] = get_args(Mode)
AZ_BINS, EL_BINS = 36, 9  # 10 deg azimuth bins from -180, 20 deg elevation bins from -90


def _az_el(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    az, el = metrics.azimuth360_elevation_deg(direction)
    return np.asarray(az, dtype=np.float64), np.asarray(el, dtype=np.float64)


def encode(mode: Mode, direction: np.ndarray, distance: np.ndarray | None = None) -> np.ndarray:
    """Probe targets (M, D) of unit directions (M, 3) and distances (M,) in m. Classification:
    (M, 2) integer bins (azimuth, elevation)."""
    d = metrics.unit(direction)
    az, el = _az_el(d)
    if mode == "cartesian-regression":
        return d.astype(np.float32)
    if mode == "cartesian-z-regression":
        return d[:, 2:3].astype(np.float32)
    if mode == "polar-regression":
        a = np.radians(az)
        return np.stack([np.cos(a), np.sin(a), el / 90.0], 1).astype(np.float32)
    if mode == "polar-classification":
        az_bin = np.floor((az + 180.0) / (360.0 / AZ_BINS)).astype(np.int64) % AZ_BINS
        el_bin = np.clip(np.floor((el + 90.0) / (180.0 / EL_BINS)), 0, EL_BINS - 1)
        return np.stack([az_bin, el_bin.astype(np.int64)], 1)
    if mode == "distance-regression":
        if distance is None:
            raise ValueError("distance-regression needs source distances")
        return np.asarray(distance, dtype=np.float32)[:, None]
    raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


def out_dim(mode: Mode) -> int:
    return {"cartesian-regression": 3, "cartesian-z-regression": 1, "polar-regression": 3,
            "polar-classification": AZ_BINS + EL_BINS, "distance-regression": 1}[mode]  # fmt: skip


def loss(mode: Mode, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if mode == "polar-classification":
        ce = nn.functional.cross_entropy
        return ce(out[:, :AZ_BINS], target[:, 0]) + ce(out[:, AZ_BINS:], target[:, 1])
    if mode == "distance-regression":  # raw metres: no tanh
        return nn.functional.mse_loss(out, target)
    return nn.functional.mse_loss(torch.tanh(out), target)


def decode(mode: Mode, out: np.ndarray, scale: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Probe outputs (M, out_dim) -> (M, 3) unit directions, (M, 1) z, or (M, 1) distances in m
    (`scale`: the (mean, std) the distance targets were standardised with)."""
    if mode == "distance-regression":
        return out * scale[1] + scale[0]
    if mode == "polar-classification":
        az = -180.0 + (np.argmax(out[:, :AZ_BINS], 1) + 0.5) * (360.0 / AZ_BINS)
        el = -90.0 + (np.argmax(out[:, AZ_BINS:], 1) + 0.5) * (180.0 / EL_BINS)
        return _unit_from(az, el)
    y = np.tanh(out)
    if mode == "cartesian-z-regression":
        return y
    if mode == "polar-regression":
        az = np.degrees(np.arctan2(y[:, 1], y[:, 0]))
        return _unit_from(az, np.clip(y[:, 2], -1, 1) * 90.0)
    return metrics.unit(y)


def _unit_from(az: np.ndarray, el: np.ndarray) -> np.ndarray:
    a, e = np.radians(az), np.radians(el)
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], 1)


def score(mode: Mode, pred: np.ndarray, direction: np.ndarray, distance: np.ndarray | None) -> dict:
    """Metrics of decoded predictions against the true directions (M, 3) / distances (M,)."""
    if mode == "distance-regression":
        err = np.abs(pred[:, 0] - distance)
        return {"n": len(err), "mean_abs_distance_error_m": float(err.mean()),
                "mean_rel_distance_error": float(np.mean(err / distance))}  # fmt: skip
    if mode == "cartesian-z-regression":
        _, el = _az_el(direction)
        el_pred = np.degrees(np.arcsin(np.clip(pred[:, 0], -1, 1)))
        return {"n": len(el), "mean_elevation_error_deg": float(np.abs(el_pred - el).mean())}
    out = metrics.direction_metrics(pred, direction)
    if mode == "polar-classification":
        want, got = encode(mode, direction), encode(mode, pred)
        out["azimuth_bin_accuracy"] = float(np.mean(want[:, 0] == got[:, 0]))
        out["elevation_bin_accuracy"] = float(np.mean(want[:, 1] == got[:, 1]))
    return out


def fit_predict(mode: Mode, train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray],
                x_test: np.ndarray, seed: int = 0, max_epochs: int = 300) -> np.ndarray:  # fmt: skip
    """Train the probe on (embeddings, encoded targets) and return its test outputs (M, D),
    decoded with `decode` (distances back in metres)."""
    with seeded(seed):  # initialisation and dropout; the caller's stream is left as it was
        rng = np.random.default_rng(seed)
        mu, sd = train[0].mean(0), train[0].std(0) + 1e-6
        classify = mode == "polar-classification"
        y_scale = (0.0, 1.0)
        if mode == "distance-regression":
            y_scale = (float(train[1].mean()), float(train[1].std()) + 1e-6)

        def tensors(x, y=None):
            xt = torch.from_numpy(((x - mu) / sd).astype(np.float32))
            if y is None:
                return xt
            y = y if classify else (y - y_scale[0]) / y_scale[1]
            return xt, torch.from_numpy(np.asarray(y, dtype=np.int64 if classify else np.float32))

        (xt, yt), (xv, yv) = tensors(*train), tensors(*valid)
        model = nn.Sequential(nn.Linear(xt.shape[1], 256), nn.ReLU(), nn.Linear(256, out_dim(mode)))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        best, best_state, bad = math.inf, None, 0
        for _ in range(max_epochs):
            model.train()
            order = rng.permutation(len(xt))
            for s in range(0, len(order), 64):
                idx = torch.from_numpy(order[s : s + 64])
                batch_loss = loss(mode, model(xt[idx]), yt[idx])
                opt.zero_grad()
                batch_loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                v = float(loss(mode, model(xv), yv))
            if not math.isfinite(v):
                raise ValueError(f"{mode} probe: the validation loss became {v}")
            if v < best - 1e-6:
                best, best_state, bad = v, copy.deepcopy(model.state_dict()), 0
            else:
                bad += 1
                if bad >= 20:
                    break
        model.load_state_dict(best_state)
        with torch.no_grad():
            out = model(tensors(x_test)).numpy()
        return decode(mode, out, y_scale)


def read_distances(task_dir: Path, split: str, files: list[str]) -> np.ndarray:
    """Source distances (m) of `files` from the task's localization_manifest.csv."""
    path = task_dir / "localization_manifest.csv"
    if not path.is_file():
        raise TaskDataError(f"{task_dir.name}: no localization_manifest.csv, so no distances")
    found: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r.get("split") == split and r.get("filename") in files:
                found.setdefault(r["filename"], float(r.get("distance_m", "nan")))
    d = np.array([found.get(name, math.nan) for name in files])
    bad = ~(np.isfinite(d) & (d > 0) & (d < 1e4))
    if bad.any():
        name = files[int(np.flatnonzero(bad)[0])]
        raise TaskDataError(f"{path}: no finite positive distance for {split}/{name}")
    return d


def evaluate_task(task_dir: Path, embed: Embedder, mode: Mode, seed: int = 0) -> dict:
    """Probe every fold of one direction task in `mode`; pooled and per-fold metrics."""
    meta = read_metadata(task_dir)
    if meta["localization"]["target"] != "direction":
        raise TaskDataError(f"{task_dir.name}: mode {mode} needs a direction task")
    labels = {s: read_labels(task_dir, s, "direction") for s in meta["splits"]}
    dist = None
    if mode == "distance-regression":
        dist = {s: read_distances(task_dir, s, labels[s][0]) for s in meta["splits"]}
    emb = {s: embed(task_dir, s, labels[s][0]) for s in meta["splits"]}
    preds, dirs, dists, folds = [], [], [], []
    for i, split in enumerate(data_splits(meta)):

        def cat(what, role, split=split):
            return np.concatenate([what[s] for s in split[role]])

        def targets(role, split=split):
            d = cat({s: labels[s][1] for s in labels}, role)
            return encode(mode, d, cat(dist, role) if dist else None)

        pred = fit_predict(mode, (cat(emb, "train"), targets("train")),
                           (cat(emb, "valid"), targets("valid")), cat(emb, "test"), seed + i)  # fmt: skip
        d_test = cat({s: labels[s][1] for s in labels}, "test")
        r_test = cat(dist, "test") if dist else None
        folds.append({"test": split["test"], **score(mode, pred, d_test, r_test)})
        preds.append(pred)
        dirs.append(d_test)
        dists.append(r_test)
    pooled = score(mode, np.concatenate(preds), np.concatenate(dirs),
                   np.concatenate(dists) if dist else None)  # fmt: skip
    return {"task": task_dir.name, "mode": mode, **pooled, "folds": folds}


PROG = "python -m localization_tasks.seld.modes"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    cli.add_module(p)
    cli.add_weights(p)
    cli.add_model_options(p)
    cli.add_tasks_dir(p)
    cli.add_out(p)
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--task", action="append", default=None, metavar="NAME")
    cli.add_seed(p)
    return p


def run(args: argparse.Namespace) -> None:
    tag = module_tag(args.module, args.weights, args.model_options)
    embed = Embedder(args.module, args.weights, args.model_options, args.out / "embeddings" / tag)
    results = [evaluate_task(t, embed, args.mode, args.seed)
               for t in find_tasks(args.tasks_dir, args.task)]  # fmt: skip
    out = child(args.out, tag, "module tag")
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / f"modes-{args.mode}.json", json.dumps(results, indent=1).encode())
    for r in results:
        shown = {k: v for k, v in r.items() if k not in ("folds", "task", "mode")}
        print(r["task"], r["mode"], json.dumps(shown))


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(PROG, build_parser, run, argv, log_dir=lambda a: a.out)


if __name__ == "__main__":
    sys.exit(main())
