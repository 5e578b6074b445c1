"""The SELD models trained on a task: heads on HEAR-module embedding sequences (MLP, BiGRU) and
a SELDnet-style CRNN on log-mel + intensity features (DCASE FOA baseline recipe, small scale).

Dimension letters: B clips, T 100 ms frames, D embedding size, K classes, V values per track
(3: x, y, z; 4: and the distance).

Outputs are (multi-)ACC(D)DOA vectors (`localization_tasks.seld.targets`): the direction part
through tanh, a distance linear (metres; the DCASE 2024 baseline's output layer is linear).
`lengths` (B,) gives each clip's true frame count in a padded batch: the BiGRU then runs on the
packed sequences, so a clip's outputs do not depend on the padding after it (the backward
direction starts at the clip's own end).
"""

from __future__ import annotations

import torch
from torch import nn


def _accdoa_out(y: torch.Tensor, k: int, tracks: int, values: int) -> torch.Tensor:
    """(B, T, tracks * K * V) -> (B, T, K, 3) for single ACCDOA, (B, T, tracks, K, V) else; tanh
    on the direction, the distance as is."""
    y = y.unflatten(-1, (k, values)) if tracks == 1 else y.unflatten(-1, (tracks, k, values))
    return torch.cat([torch.tanh(y[..., :3]), y[..., 3:]], dim=-1)


class MLPHead(nn.Module):
    def __init__(self, d: int, k: int, tracks: int = 1, values: int = 3) -> None:
        super().__init__()
        self.k, self.tracks, self.values = k, tracks, values
        self.net = nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, values * k * tracks))  # fmt: skip

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # (B, T, D) -> (B, T, [tracks,] K, V); frame-wise, so padding cannot leak
        return _accdoa_out(self.net(x), self.k, self.tracks, self.values)


class BiGRUHead(nn.Module):
    def __init__(self, d: int, k: int, tracks: int = 1, values: int = 3) -> None:
        super().__init__()
        self.k, self.tracks, self.values = k, tracks, values
        self.gru = nn.GRU(d, 128, num_layers=2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(256, values * k * tracks)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # (B, T, D) -> (B, T, [tracks,] K, V)
        if lengths is None or bool((lengths == x.shape[1]).all()):
            h = self.gru(x)[0]
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            h = nn.utils.rnn.pad_packed_sequence(
                self.gru(packed)[0], batch_first=True, total_length=x.shape[1]
            )[0]
        return _accdoa_out(self.out(h), self.k, self.tracks, self.values)


class CRNN(nn.Module):
    """SELDnet-style CRNN on (B, 7, F, T_10ms) -> (B, T_10ms / 10, [tracks,] K, V)."""

    def __init__(self, channels: int, n_mels: int, k: int, tracks: int = 1, values: int = 3) -> None:  # fmt: skip
        super().__init__()
        blocks, c = [], channels
        for fp, tp in ((4, 5), (4, 2), (2, 1)):
            blocks += [nn.Conv2d(c, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d((fp, tp)), nn.Dropout(0.05)]  # fmt: skip
            c = 64
        self.conv = nn.Sequential(*blocks)
        self.head = BiGRUHead(64 * (n_mels // 32), k, tracks, values)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # lengths: in 100 ms frames. The convolutions see the zeros after a shorter clip at its
        # last frame (the DCASE baselines zero-pad their last batch the same way).
        h = self.conv(x)  # (B, 64, F / 32, T / 10)
        return self.head(h.flatten(1, 2).transpose(1, 2), lengths)
