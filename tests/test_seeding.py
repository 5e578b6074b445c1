"""Seeded construction leaves the caller's random stream alone and repeats exactly."""

import torch

from hear_gram.checkpoints import random_encoder
from hear_gram.seeding import seeded


def test_seeded_values_are_those_of_manual_seed_and_the_caller_stream_is_restored():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    reference = torch.randn(4)  # what a plain reseed would draw

    torch.manual_seed(123)
    with seeded(0):
        inside = torch.randn(4)
    torch.testing.assert_close(inside, reference, rtol=0, atol=0)
    torch.testing.assert_close(torch.rand(3), expected_next, rtol=0, atol=0)


def test_random_encoder_is_repeatable_and_does_not_reseed_the_caller():
    torch.manual_seed(7)
    expected_next = torch.rand(2)
    torch.manual_seed(7)
    a = random_encoder("gram-t", depth=1, seed=3)
    torch.testing.assert_close(torch.rand(2), expected_next, rtol=0, atol=0)
    b = random_encoder("gram-t", depth=1, seed=3)
    c = random_encoder("gram-t", depth=1, seed=4)
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=k)
    assert not torch.equal(a.patch_embed.proj.weight, c.patch_embed.proj.weight)
