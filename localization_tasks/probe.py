"""A HEAR-style MLP probe (after hear-eval-kit 2021 `task_predictions`), in plain torch.

Per split: features z-scored with the training set's mean and std (a deviation from heareval,
which feeds embeddings as they are: the baseline features mix units); for each point of a small
grid (hidden width 1024, 1 or 2 hidden layers of Linear -> Dropout -> ReLU, lr), Adam on the
training fold, evaluated on the validation fold every epoch, early stopping after `patience`
epochs without improvement, best epoch kept; the grid point with the best validation score wins.
Directions: tanh output, MSE loss, score = mean angular error of the renormalised outputs (lower
is better). T60: the probe regresses the standardised log-T60, z = (log T60 - mu) / sigma (mu,
sigma from the training targets), with an L1 loss (its optimum is the median, the metric's
statistic), and predicts T60 = exp(mu + sigma z) clipped to [T60_MIN_S, T60_MAX_S]: only positive,
physically possible reverberation times (a linear output in seconds gave negative T60s and 5 s
for targets under 1.5 s), and relative errors weigh the same at 0.2 s and at 1.5 s. Score =
median absolute error in s.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from localization_tasks import metrics

Target = Literal["direction", "t60"]
T60_MIN_S, T60_MAX_S = 0.05, 5.0  # s, the physically plausible range of room T60s


@dataclass(frozen=True)
class LogT60:
    """Standardised log-T60 target: `encode` T60s (M, 1) in s -> z, `decode` z -> T60 in s."""

    mu: float
    sigma: float

    @classmethod
    def fit(cls, t60_s: np.ndarray) -> LogT60:
        t = np.asarray(t60_s, dtype=np.float64)
        if not (np.isfinite(t).all() and (t > 0).all()):
            raise ValueError("T60 targets must be finite and positive")
        log_t = np.log(t)
        return cls(float(log_t.mean()), float(max(log_t.std(), 1e-3)))

    def encode(self, t60_s: np.ndarray) -> np.ndarray:
        return (np.log(np.asarray(t60_s, dtype=np.float64)) - self.mu) / self.sigma

    def decode(self, z: np.ndarray) -> np.ndarray:
        log_t = self.mu + self.sigma * np.asarray(z, dtype=np.float64)
        return np.clip(np.exp(np.clip(log_t, -20.0, 20.0)), T60_MIN_S, T60_MAX_S)


@dataclass(frozen=True)
class ProbeGrid:
    hidden_layers: Sequence[int] = (1, 2)
    hidden_dim: int = 1024
    dropout: float = 0.1
    lrs: Sequence[float] = (1e-3, 1e-4)
    max_epochs: int = 500
    patience: int = 20
    batch_size: int = 1024


GRIDS = {
    "default": ProbeGrid(),
    "fast": ProbeGrid(hidden_layers=(1,), lrs=(1e-3,), max_epochs=200, patience=20),
    # smoke tests only: a narrow probe with few epochs
    "tiny": ProbeGrid(hidden_layers=(1,), hidden_dim=64, lrs=(1e-3,), max_epochs=40, patience=5),
}


class MLP(nn.Module):
    def __init__(self, d_in: int, d_out: int, layers: int, hidden: int, dropout: float, tanh: bool):
        super().__init__()
        blocks: list[nn.Module] = []
        d = d_in
        for _ in range(layers):
            blocks += [nn.Linear(d, hidden), nn.Dropout(dropout), nn.ReLU()]
            d = hidden
        blocks.append(nn.Linear(d, d_out))
        if tanh:
            blocks.append(nn.Tanh())
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def score(target_kind: Target, pred: np.ndarray, y: np.ndarray, t60: LogT60 | None = None) -> float:
    """Validation score (lower is better); T60 outputs are decoded with `t60` first."""
    if target_kind == "direction":
        return float(metrics.angular_error_deg(pred, y).mean())
    if t60 is not None:
        pred, y = t60.decode(pred), t60.decode(y)
    return float(np.median(np.abs(pred - y)))


def _train_one(
    target_kind: Target,
    x: dict[str, torch.Tensor],
    y: dict[str, torch.Tensor],
    layers: int,
    lr: float,
    grid: ProbeGrid,
    seed: int,
    t60: LogT60 | None = None,
) -> tuple[float, nn.Module]:
    """One grid point. Seeds torch's global generator (initialisation, dropout): callers run it
    inside `torch.random.fork_rng`, so the caller's random stream is left as it was."""
    torch.manual_seed(seed)
    direction = target_kind == "direction"
    model = MLP(
        x["train"].shape[1], y["train"].shape[1], layers, grid.hidden_dim, grid.dropout, direction
    )
    loss_fn = nn.MSELoss() if direction else nn.L1Loss()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, bad = np.inf, copy.deepcopy(model.state_dict()), 0
    n = len(x["train"])
    for _ in range(grid.max_epochs):
        model.train()
        for idx in torch.randperm(n, generator=gen).split(grid.batch_size):
            opt.zero_grad()
            loss_fn(model(x["train"][idx]), y["train"][idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            s = score(target_kind, model(x["valid"]).numpy(), y["valid"].numpy(), t60)
        if s < best:
            best, best_state, bad = s, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= grid.patience:
                break
    model.load_state_dict(best_state)
    return best, model.eval()


def fit_predict(
    target_kind: Target,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    test_x: np.ndarray,
    grid: ProbeGrid,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """Train on `train` (X (M, E), Y (M, D)), select on `valid`, predict `test_x`.

    Returns predictions (M_test, D) (directions not yet renormalised; T60s in s, within
    [T60_MIN_S, T60_MAX_S]) and the chosen hyper-parameters with their validation score."""
    for name, a in (("train", train[0]), ("valid", valid[0]), ("test", test_x)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} features hold NaN or Inf values")
    t60 = LogT60.fit(train[1]) if target_kind == "t60" else None
    mean = train[0].mean(0)
    std = train[0].std(0) + 1e-8

    def prep(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((a - mean) / std, dtype=torch.float32)

    x = {"train": prep(train[0]), "valid": prep(valid[0])}
    y = {
        k: torch.as_tensor(v[1] if t60 is None else t60.encode(v[1]), dtype=torch.float32)
        for k, v in (("train", train), ("valid", valid))
    }
    results = []
    with torch.random.fork_rng(devices=[]):  # the probe's seeds never reach the caller's stream
        for i, (layers, lr) in enumerate(itertools.product(grid.hidden_layers, grid.lrs)):
            val, model = _train_one(target_kind, x, y, layers, lr, grid, seed + i, t60)
            results.append(
                (val, i, {"hidden_layers": layers, "lr": lr, "validation_score": val}, model)
            )
    val, _, hparams, model = min(results, key=lambda r: (r[0], r[1]))
    with torch.no_grad():
        pred = model(prep(test_x)).numpy().astype(np.float64)
    if t60 is not None:
        pred = t60.decode(pred)
        hparams = dict(hparams, target="standardised log T60", log_t60_mu=t60.mu,
                       log_t60_sigma=t60.sigma)  # fmt: skip
    return pred, hparams
