"""The SELD models trained on a task: heads on HEAR-module embedding sequences (MLP, BiGRU) and
a SELDnet-style CRNN on log-mel + intensity features (DCASE FOA baseline recipe, small scale).
Outputs are tanh (multi-)ACCDOA vectors (`localization_tasks.seld.targets`)."""

from __future__ import annotations

import torch
from torch import nn


def _unflatten(y: torch.Tensor, k: int, tracks: int) -> torch.Tensor:
    """(B, T, tracks * K * 3) -> (B, T, K, 3) for single ACCDOA, (B, T, tracks, K, 3) else."""
    return y.unflatten(-1, (k, 3)) if tracks == 1 else y.unflatten(-1, (tracks, k, 3))


class MLPHead(nn.Module):
    def __init__(self, d: int, k: int, tracks: int = 1) -> None:
        super().__init__()
        self.k, self.tracks = k, tracks
        self.net = nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, 3 * k * tracks), nn.Tanh())  # fmt: skip

    def forward(self, x):  # (B, T, D) -> (B, T, [tracks,] K, 3)
        return _unflatten(self.net(x), self.k, self.tracks)


class BiGRUHead(nn.Module):
    def __init__(self, d: int, k: int, tracks: int = 1) -> None:
        super().__init__()
        self.k, self.tracks = k, tracks
        self.gru = nn.GRU(d, 128, num_layers=2, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(nn.Linear(256, 3 * k * tracks), nn.Tanh())

    def forward(self, x):  # (B, T, D) -> (B, T, [tracks,] K, 3)
        return _unflatten(self.out(self.gru(x)[0]), self.k, self.tracks)


class CRNN(nn.Module):
    """SELDnet-style CRNN on (B, 7, F, T_10ms) -> (B, T_10ms / 10, K, 3)."""

    def __init__(self, channels: int, n_mels: int, k: int, tracks: int = 1) -> None:
        super().__init__()
        blocks, c = [], channels
        for fp, tp in ((4, 5), (4, 2), (2, 1)):
            blocks += [nn.Conv2d(c, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d((fp, tp)), nn.Dropout(0.05)]  # fmt: skip
            c = 64
        self.conv = nn.Sequential(*blocks)
        self.head = BiGRUHead(64 * (n_mels // 32), k, tracks)

    def forward(self, x):
        h = self.conv(x)  # (B, 64, F / 32, T / 10)
        return self.head(h.flatten(1, 2).transpose(1, 2))
