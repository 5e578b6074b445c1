"""SELD targets (localization_tasks.seld.targets) and heads: multi-ACCDDOA by hand, ADPIT's
track-permutation invariance with distances, decode(encode) round trips, the automatic choice of
target, and losses and heads that ignore the padding of shorter clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from localization_tasks.seld import targets, training
from localization_tasks.seld.heads import BiGRUHead
from localization_tasks.seld.labels import Row, polar_to_unit


def _row(frame: int, cls: int, track: int, az: float, dist: float | None = None) -> Row:
    return Row(frame, cls, track, polar_to_unit(az, 0), dist, (az, 0.0))


# frame 0: class 1 twice (A at 0 deg 2 m, B at 90 deg 3.5 m), class 0 once (C at 180 deg 1.25 m);
# frame 1: class 1 once (B alone)
ROWS = [_row(0, 1, 0, 0, 2.0), _row(0, 1, 1, 90, 3.5), _row(0, 0, 0, 180, 1.25),
        _row(1, 1, 1, 90, 3.5)]  # fmt: skip


def test_multi_accddoa_target_by_hand():
    """(T, K, 3 instances, x y z distance): the instances of a class in track order, unit
    directions and metres; an instance alone in its frame is instance 0 whatever its track id."""
    want = np.zeros((3, 2, 3, 4))
    want[0, 1, 0] = [1, 0, 0, 2.0]
    want[0, 1, 1] = [0, 1, 0, 3.5]
    want[0, 0, 0] = [-1, 0, 0, 1.25]
    want[1, 1, 0] = [0, 1, 0, 3.5]
    got = targets.encode(ROWS, 3, 2, "multi-accddoa")
    assert got.shape == (3, 2, 3, 4) and targets.output_shape("multi-accddoa", 3, 2) == (3, 3, 2, 4)
    np.testing.assert_allclose(got, want, atol=1e-7)
    np.testing.assert_allclose(targets.encode(ROWS, 3, 2, "multi-accdoa"), want[..., :3], atol=1e-7)
    with pytest.raises(ValueError, match="no distance"):
        targets.encode([_row(0, 0, 0, 10)], 1, 1, "multi-accddoa")


def _output(kind: str) -> torch.Tensor:
    """A random multi-track output (1 clip, 2 frames, 3 tracks, 2 classes, V)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 2, 3, 2, targets.values(kind), generator=g)


@pytest.mark.parametrize("kind", ["multi-accdoa", "multi-accddoa"])
def test_adpit_loss_is_invariant_to_permuting_one_class_tracks(kind):
    """Swapping (or rotating) the tracks of the class with two instances changes nothing: ADPIT
    scores the best assignment of tracks to instances, per class."""
    target = torch.from_numpy(targets.encode(ROWS, 2, 2, kind))[None]
    out = _output(kind)
    base = float(targets.loss(kind, out, target))
    for perm in ([1, 0, 2], [2, 0, 1]):
        moved = out.clone()
        moved[:, :, :, 1] = out[:, :, perm, 1]
        assert float(targets.loss(kind, moved, target)) == pytest.approx(base, rel=1e-6), perm
    assert base > 0.1  # a random output is far from the target


def test_adpit_loss_counts_the_distance():
    """A perfect multi-ACCDDOA output in the duplication pattern (A, B, B) scores 0; one track's
    distance 1 m off costs 1 of its class's 12 values in 1 of 2 classes: 1 / 24."""
    target = torch.from_numpy(targets.encode(ROWS, 1, 2, "multi-accddoa"))[None]
    a, b, c = target[0, 0, 1, 0], target[0, 0, 1, 1], target[0, 0, 0, 0]
    out = torch.zeros(1, 1, 3, 2, 4)
    out[0, 0, :, 1] = torch.stack([a, b, b])
    out[0, 0, :, 0] = torch.stack([c, c, c])
    assert float(targets.loss("multi-accddoa", out, target)) < 1e-12
    out[0, 0, 2, 1, 3] += 1.0
    assert float(targets.loss("multi-accddoa", out, target)) == pytest.approx(1 / 24, rel=1e-6)


def _as_output(y: np.ndarray) -> np.ndarray:
    """A target (T, K, 3 instances, V) as the output layout (T, 3 tracks, K, V)."""
    return y.transpose(0, 2, 1, 3)


def _seen(rows: list[Row]) -> list[tuple]:
    return sorted((r.frame, r.cls, round(r.azimuth_elevation[0], 3), r.distance) for r in rows)


def test_decode_of_encode_recovers_directions_and_distances():
    y = targets.encode(ROWS, 3, 2, "multi-accddoa")
    got = targets.decode(_as_output(y), "multi-accddoa")
    want = [(0, 0, 180.0, 1.25), (0, 1, 0.0, 2.0), (0, 1, 90.0, 3.5), (1, 1, 90.0, 3.5)]
    assert [(f, c, az, pytest.approx(d)) for f, c, az, d in _seen(got)] == want
    # an ADPIT-trained output duplicates: (A, B, B) decodes to A and B once each
    dup = _as_output(y).copy()
    dup[0, 2, 1] = dup[0, 1, 1]
    assert _seen(targets.decode(dup, "multi-accddoa")) == _seen(got)
    # a negative distance decodes to 0 (the DCASE 2024 baseline clips it)
    dup[1, 0, 1, 3] = -0.7
    assert [r.distance for r in targets.decode(dup, "multi-accddoa") if r.frame == 1] == [0.0]
    # without distances, the same directions and no distance
    plain = targets.decode(_as_output(targets.encode(ROWS, 3, 2, "multi-accdoa")), "multi-accdoa")
    assert [s[:3] for s in _seen(plain)] == [w[:3] for w in want]
    assert all(r.distance is None for r in plain)


def test_choose_target_follows_the_labels():
    """Distances everywhere -> multi-ACCDDOA; a class twice in one frame of one clip ->
    multi-ACCDOA; the same class in the same frame of two different clips is no polyphony."""
    assert targets.choose_target([ROWS, [_row(3, 0, 0, 10, 1.0)]]) == "multi-accddoa"
    assert targets.choose_target([ROWS, [_row(3, 0, 0, 10)]]) == "multi-accdoa"
    one = [[_row(0, 0, 0, 10)], [_row(0, 0, 0, 50)]]  # two clips, one instance each
    assert targets.choose_target(one) == "accdoa"


@pytest.mark.parametrize("kind", ["accdoa", "multi-accddoa"])
def test_loss_ignores_padded_frames(kind):
    """Two clips of 5 and 3 frames in one padded batch: the loss is the mean over the 8 real
    frames, whatever the model outputs in the 2 padded ones."""
    rng = np.random.default_rng(0)
    rows = [[_row(f, 0, 0, 30 * f, 1.0 + f) for f in range(n)] for n in (5, 3)]
    ys = [targets.encode(r, n, 1, kind) for r, n in zip(rows, (5, 3), strict=True)]
    xs = [rng.standard_normal((len(y), 4)).astype(np.float32) for y in ys]
    _, y, lengths = training._batch(xs, ys, [0, 1], crnn=False)
    mask = torch.arange(5)[None] < lengths[:, None]
    assert y.shape[:2] == (2, 5) and lengths.tolist() == [5, 3] and not y[1, 3:].any()
    out = torch.from_numpy(rng.standard_normal((2, 5, *targets.output_shape(kind, 1, 1)[1:])))
    got = float(targets.loss(kind, out.float(), y, mask))
    garbage = out.clone()
    garbage[1, 3:] = 100.0
    assert float(targets.loss(kind, garbage.float(), y, mask)) == pytest.approx(got, rel=1e-6)
    per_clip = [float(targets.loss(kind, out[i : i + 1, :n].float(), y[i : i + 1, :n]))
                for i, n in enumerate((5, 3))]  # fmt: skip
    assert got == pytest.approx((per_clip[0] * 5 + per_clip[1] * 3) / 8, rel=1e-5)


def test_bigru_head_output_of_a_padded_clip_equals_the_clip_alone():
    """The BiGRU runs packed: the shorter clip's outputs in a padded batch are its outputs alone
    (without packing, the backward direction would start in the padding)."""
    torch.manual_seed(0)
    head = BiGRUHead(4, 2, tracks=3, values=4).eval()
    x = torch.randn(2, 6, 4)
    x[1, 4:] = 0.0  # padding of a 4-frame clip
    with torch.no_grad():
        batched = head(x, torch.tensor([6, 4]))[1, :4]
        alone = head(x[1:, :4])[0]
        unpacked = head(x)[1, :4]
    assert batched.shape == (4, 3, 2, 4)
    torch.testing.assert_close(batched, alone)
    assert not torch.allclose(unpacked, alone, atol=1e-4)
    assert batched[..., :3].abs().max() <= 1.0  # tanh directions, linear distances
