"""SELD training (localization_tasks.seld.training) and the chance row: clips of different lengths
train together, audio or labels that end early are refused by name, every cross-validation fold
is scored, and the chance row is the truth's activity with directions at chance."""

from __future__ import annotations

import numpy as np
import pytest

from localization_tasks.seld import evaluate, training
from localization_tasks.seld.chance import chance_rows, distance_range
from localization_tasks.seld.features import Features
from localization_tasks.seld.labels import Row, polar_to_unit
from localization_tasks.seld.metrics import angular_distance_deg
from localization_tasks.seld.targets import accdoa_target
from localization_tasks.seld.task import TaskFormatError, task_rows, write_audio, write_labels
from tests.test_seld_evaluate import one_thread  # noqa: F401 (fixture)

SR = 24000


def _task(root, durations: dict[str, list[float]], meta_seld: dict | None = None, seed: int = 0,
          events: int = 10):  # fmt: skip
    """A label-only SELD task: {split: clip durations (s)}, one static event per clip (class
    i % 2, a random azimuth, frames 2 .. 2 + events), distances 1..3 m."""
    rng = np.random.default_rng(seed)
    labels, secs = {}, {}
    for split, ds in durations.items():
        labels[split], secs[split] = {}, {}
        for i, d in enumerate(ds):
            az = float(rng.uniform(-180, 180))
            n = min(events, int(round(d * 10)) - 2)
            labels[split][f"c{i}.wav"] = [
                Row(f, i % 2, 0, polar_to_unit(az, 0), float(rng.uniform(1, 3)), (az, 0.0))
                for f in range(2, 2 + n)
            ]
            secs[split][f"c{i}.wav"] = d
    folds = {"train": ["fold01"], "valid": ["fold02"], "test": ["fold03"]}
    seld = {"official_folds": folds, **(meta_seld or {})}
    task = root / "t"
    write_labels(task, {"task_name": "t", "sample_rates": [SR], "seld": seld}, ["a", "b"],
                 labels, secs)  # fmt: skip
    return task


def _oracle(task_dir, split, n_frames):
    """The single-ACCDOA target as the embedding (offset, as a real embedding is not centred)."""
    rows = task_rows(task_dir, split)
    return [accdoa_target(rows[n], f, 2).reshape(f, 6) + 3.0
            for n, f in zip(sorted(rows), n_frames, strict=True)]  # fmt: skip


@pytest.mark.usefixtures("one_thread")
def test_clips_of_different_lengths_train_together(tmp_path):
    """Clips of 1.2 to 3.1 s in padded batches of 4: trained on an oracle
    embedding, the head finds the events (it would not learn through a mask that hid the real
    frames, and np.stack of unequal clips used to refuse the task)."""
    rng = np.random.default_rng(1)
    lengths = {s: list(np.round(rng.uniform(1.2, 3.1, n), 1)) for s, n in
               (("fold01", 16), ("fold02", 4), ("fold03", 4))}  # fmt: skip
    task = _task(tmp_path, lengths)
    assert len({d for ds in lengths.values() for d in ds}) > 10
    cfg = training.SeldTrainConfig(head="mlp", epochs=12, patience=12, batch=4, lr=3e-3,
                                   target="accdoa")  # fmt: skip
    res = evaluate.train_and_test(task, "module", _oracle, cfg, tmp_path / "out", "oracle")
    assert res["target"] == "accdoa" and res["test_clips"] == 4
    assert res["F20"] >= 0.7 and res["LE_CD"] < 25, res


def test_audio_shorter_than_its_labels_is_refused_naming_the_clip(tmp_path):
    """seld_clips.csv gives c1.wav 2 s (20 frames), its audio lasts 1 s: refused, by name, for
    the CRNN's features and a module's alike (instead of padding the missing second)."""
    task = _task(tmp_path, {s: [1.0, 2.0] for s in ("fold01", "fold02", "fold03")})
    rng = np.random.default_rng(0)
    for name in ("c0.wav", "c1.wav"):
        write_audio(task, "fold01", name, rng.standard_normal((SR, 4)).astype(np.float32) * 0.1,
                    SR, [SR])  # fmt: skip
    n_frames = training.TaskData(task, "crnn", None).labels("fold01")[2]
    assert n_frames == [10, 20]
    for feats in (Features("crnn"), Features("module", "localization_tasks.seld.intensity_module")):
        with pytest.raises(ValueError, match=r"fold01/c1\.wav.*1\.000 s.*20 frames"):
            feats(task, "fold01", n_frames)
    assert len(Features("crnn")(task, "fold01", [10, 10])) == 2  # both cover 10 frames


def test_labels_past_the_clip_are_refused_naming_the_clip(tmp_path):
    task = _task(tmp_path, {s: [2.0, 2.0] for s in ("fold01", "fold02", "fold03")})
    lines = (task / "seld_clips.csv").read_text().splitlines()
    lines = [ln.replace(",20", ",8") if ln.startswith("fold02,c1.wav") else ln for ln in lines]
    (task / "seld_clips.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskFormatError, match=r"fold02/c1\.wav: labels reach frame 11.* 8 frames"):
        training.TaskData(task, "zero", None).labels("fold02")


def test_every_cross_validation_fold_is_scored(tmp_path):
    """A task listing 3 cross-validation folds (as TAU 2018/2019 do): one run scores each fold's
    test split, writes its predictions, and reports the folds' mean and sd."""
    splits = {f"fold0{i}": [2.0, 2.0, 2.0] for i in (1, 2, 3)}
    cv = [{"train": [a], "valid": [b], "test": [c]}
          for a, b, c in (("fold01", "fold02", "fold03"), ("fold02", "fold03", "fold01"),
                          ("fold03", "fold01", "fold02"))]  # fmt: skip
    task = _task(tmp_path, splits, {"cross_validation_folds": cv})
    assert training.task_fold_sets(task) == [
        {"train": f["train"], "valid": f["valid"], "test": f["test"]} for f in cv
    ]
    res = evaluate.train_and_test(task, "chance", None, training.SeldTrainConfig(seed=4),
                                  tmp_path / "out")  # fmt: skip
    assert [f["test"] for f in res["folds"]] == [["fold03"], ["fold01"], ["fold02"]]
    key = "AngE" if res["metrics"] == "dcase2024" else "LE_CD"
    le = [f[key] for f in res["folds"]]
    assert len(set(le)) == 3 and res[key] == pytest.approx(np.mean(le))
    assert res[f"{key}_fold_sd"] == pytest.approx(np.std(le, ddof=1))
    assert res["test_clips"] == 9
    for s in ("fold01", "fold02", "fold03"):
        assert len(list((tmp_path / "out" / "chance" / "t" / "seed4" / s / "pred").iterdir())) == 3


def test_chance_rows_keep_the_activity_and_draw_directions_and_distances():
    """Same (frame, class, track) as the reference; directions uniform on the sphere (mean
    angular error to any fixed truth ~90 deg), distances within the training range;
    reproducible per (seed, clip) and different across seeds and clips."""
    ref = [Row(f, f % 3, f % 2, polar_to_unit(40, 10), 2.0) for f in range(3000)]
    pred = chance_rows(ref, "a.wav", 0, (1.0, 4.0))
    assert [(r.frame, r.cls, r.track) for r in pred] == [(r.frame, r.cls, r.track) for r in ref]
    err = angular_distance_deg(np.array([r.xyz for r in ref[:1]]), np.array([r.xyz for r in pred]))
    assert abs(float(err.mean()) - 90.0) < 3.0
    d = np.array([r.distance for r in pred])
    assert d.min() >= 1.0 and d.max() <= 4.0 and abs(d.mean() - 2.5) < 0.1
    assert chance_rows(ref, "a.wav", 0, (1.0, 4.0)) == pred
    assert chance_rows(ref, "a.wav", 1, (1.0, 4.0))[0].xyz != pred[0].xyz
    assert chance_rows(ref, "b.wav", 0, (1.0, 4.0))[0].xyz != pred[0].xyz
    assert all(r.distance is None for r in chance_rows(ref[:5], "a.wav", 0, None))
    assert distance_range([ref[:3], [Row(0, 0, 0, (1, 0, 0), 0.5)]]) == (0.5, 2.0)
    assert distance_range([ref[:3], [Row(0, 0, 0, (1, 0, 0))]]) is None
