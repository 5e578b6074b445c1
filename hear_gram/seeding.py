"""Seeded construction without reseeding the caller's random stream.

PyTorch modules draw their initial weights (and dropout masks) from torch's global generator, so a
seeded model has to be built with that generator seeded. `seeded` does so inside
`torch.random.fork_rng`: the values are those of ``torch.manual_seed(seed)`` followed by the same
calls, and the caller's generator state is restored afterwards, so building a random encoder in
the middle of someone's experiment never changes their later draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global CPU generator seeded to `seed`; restore the caller's
    state on exit. Modules are built on the CPU (and moved afterwards), so only the CPU generator
    is touched: no CUDA context is created and no device generator is reseeded."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield
