"""Shared fixtures: tiny GRAM checkpoints written once per test session."""

from __future__ import annotations

import pytest
import torch

from hear_gram.checkpoints import random_encoder, save_checkpoint

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ckpts")


@pytest.fixture(scope="session")
def gram_t_file(ckpt_dir):
    """GRAM-T binaural, released layout, full width, 2 layers."""
    return save_checkpoint(ckpt_dir / "gram-t.safetensors", random_encoder("gram-t", depth=2), "released")


@pytest.fixture(scope="session")
def gram_t_time_file(ckpt_dir):
    return save_checkpoint(
        ckpt_dir / "gram-t-time.safetensors", random_encoder("gram-t-time", depth=1), "released"
    )


@pytest.fixture(scope="session")
def gram_t_ambi_file(ckpt_dir):
    return save_checkpoint(
        ckpt_dir / "gram-t-ambi.safetensors", random_encoder("gram-t-ambisonic", depth=1), "released"
    )


@pytest.fixture(scope="session")
def gram_m_file(ckpt_dir):
    return save_checkpoint(ckpt_dir / "gram-m.safetensors", random_encoder("gram-m", depth=2), "released")


def noise(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1
