"""SELD evaluator pieces: ACCDOA targets decode back to the labels, and the CRNN's time pooling
lands exactly on the 100 ms label grid."""

from __future__ import annotations

import numpy as np
import torch

from localization_tasks.seld.evaluate import CRNN, accdoa_target, decode_accdoa
from localization_tasks.seld.labels import Row, polar_to_unit
from localization_tasks.seld.metrics import score_rows


def test_accdoa_round_trip_scores_perfect():
    """Two classes, one moving; encode then decode gives the same frames, classes and
    directions, so the metric scores it perfect (hand: ER 0, F 1, LE 0, LR 1)."""
    ref = [Row(f, 0, 0, polar_to_unit(10 * f, 5)) for f in range(12)]
    ref += [Row(f, 2, 1, polar_to_unit(-90, 0)) for f in range(4, 9)]
    y = accdoa_target(ref, 15, 3)
    assert y.shape == (15, 3, 3) and np.allclose(np.linalg.norm(y[4, [0, 2]], axis=-1), 1.0)
    assert not y[12:].any() and not y[:, 1].any()
    pred = decode_accdoa(y * 0.6)  # vectors of length 0.6 > 0.5 stay active
    assert sorted((r.frame, r.cls) for r in pred) == sorted((r.frame, r.cls) for r in ref)
    # micro: class 1 never occurs, and macro would average its F 0 / LE 180 in (as DCASE does)
    res = score_rows({"a": (ref, pred)}, 3, average="micro", n_frames={"a": 15})
    assert res["ER20"] == 0.0 and res["LE_CD"] < 1e-3 and res["F20"] > 1 - 1e-9  # float32 targets
    assert decode_accdoa(y * 0.4) == []  # shorter than 0.5: inactive


def test_crnn_outputs_one_step_per_label_frame():
    model = CRNN(7, 64, 4).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 7, 64, 300))  # 3 s of 10 ms frames
    assert out.shape == (2, 30, 4, 3) and out.abs().max() <= 1.0
