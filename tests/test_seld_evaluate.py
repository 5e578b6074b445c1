"""SELD evaluator: ACCDOA targets decode back to the labels, the CRNN's time pooling lands on the
100 ms label grid, multi-ACCDOA/ADPIT by hand, the classical reference against chance and zero end
to end, results of two evaluations merged, a truncated cache entry recomputed and rewritten, and
the random-weights probe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from localization_tasks.seld import evaluate, training
from localization_tasks.seld.features import Features, randomise_weights
from localization_tasks.seld.heads import CRNN
from localization_tasks.seld.labels import Row, polar_to_unit, read_rows
from localization_tasks.seld.metrics import score_rows
from localization_tasks.seld.synth import SynthConfig, generate
from localization_tasks.seld.targets import (
    ADPIT_PATTERNS,
    accdoa_target,
    adpit_loss,
    adpit_target,
    decode_accdoa,
    decode_multi_accdoa,
)
from localization_tasks.seld.task import task_rows, write_labels


@pytest.fixture
def one_thread():
    """Tiny heads train several times faster on one thread than with OpenMP spinning on two
    (conftest sets 2 for the big models)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def _unit(az: float) -> list[float]:
    return list(polar_to_unit(az, 0))


def test_adpit_loss_is_zero_only_for_a_track_permutation_of_the_truth():
    """One frame, 2 classes: class 0 has two instances A (az 0) and B (az 90), class 1 one
    instance C (az -90). The 13 patterns allow any 3-track sequence of A and B that uses both for
    class 0 and C C C for class 1; a silent class must output zeros."""
    rows = [Row(0, 0, 0, polar_to_unit(0, 0)), Row(0, 0, 1, polar_to_unit(90, 0)),
            Row(0, 1, 2, polar_to_unit(-90, 0))]  # fmt: skip
    target = torch.from_numpy(adpit_target(rows, 1, 3))[None]  # (1, 1, 3, 3, 3)
    a, b, c, z = _unit(0), _unit(90), _unit(-90), [0.0, 0.0, 0.0]

    def out(c0, c1, c2=(z, z, z)):  # tracks per class -> (1, 1, 3 tracks, 3 classes, 3)
        return torch.tensor([[[[c0[t], c1[t], c2[t]] for t in range(3)]]])

    assert len(ADPIT_PATTERNS) == 13
    for perm in ((b, a, a), (a, b, b), (b, b, a), (a, a, b)):  # duplications of the pair
        assert float(adpit_loss(out(perm, (c, c, c)), target)) < 1e-12, perm
    assert float(adpit_loss(out((a, a, a), (c, c, c)), target)) > 0.01  # B missing
    assert float(adpit_loss(out((b, a, a), (c, c, z)), target)) > 0.01  # C not duplicated
    assert float(adpit_loss(out((b, a, a), (c, c, c), (a, z, z)), target)) > 0.01  # silent class
    # three instances: every permutation is free, a duplication is not
    rows3 = [Row(0, 0, t, polar_to_unit(az, 0)) for t, az in enumerate((0, 90, -90))]
    t3 = torch.from_numpy(adpit_target(rows3, 1, 3))[None]
    assert float(adpit_loss(out((c, a, b), (z, z, z)), t3)) < 1e-12
    assert float(adpit_loss(out((a, a, b), (z, z, z)), t3)) > 0.01
    # by hand: (a, a, a) for {A, B}: best pattern AAB or ABA... error on one track |a - b|^2 = 2
    # over 9 outputs, class 1 exact, class 2 silent -> (2 / 9 + 0 + 0) / 3 classes
    got = float(adpit_loss(out((a, a, a), (c, c, c)), target))
    assert abs(got - 2 / 9 / 3) < 1e-6


def test_multi_accdoa_decoding_merges_close_tracks():
    """Tracks 0 and 1 of class 0 at az 0 and 10 deg (closer than 15): one row at their mean
    (az 5); track 2 at 90 deg stays separate. Class 1: tracks 0 and 2 at 0 and 40 deg: two rows.
    A track of length 0.4 is inactive."""
    y = np.zeros((1, 3, 2, 3), dtype=np.float32)
    y[0, 0, 0], y[0, 1, 0], y[0, 2, 0] = _unit(0), _unit(10), _unit(90)
    y[0, 0, 1], y[0, 2, 1], y[0, 1, 1] = _unit(0), _unit(40), np.multiply(0.4, _unit(-90))
    rows = decode_multi_accdoa(y)
    got = sorted((r.cls, round(r.azimuth_elevation[0], 3)) for r in rows)
    assert got == [(0, 5.0), (0, 90.0), (1, 0.0), (1, 40.0)]


def _runs(out) -> dict[str, dict]:
    """The runs of O/results.json by method (one seed)."""
    return {r["method"]: r for r in json.loads((out / "results.json").read_text())["runs"]}


@pytest.mark.parametrize("target", ["accdoa", "auto"])
def test_reference_head_beats_zero_and_chance_end_to_end(tmp_path, capsys, one_thread, target):
    """A tiny synthetic FOA task (3 folds x 4 clips, one event at a time, distances in the labels)
    through the CLI without --module: the rows are chance, zero and the classical reference
    (intensity vectors + the `mlp` head), which localizes within 20 deg where chance never does
    (chance: F 0 with perfect activity, so LR > 0 where zero has 0) and scores a better SELD than
    zero. `auto` picks multi-ACCDDOA for a task with distances and writes 7-column
    predictions whose distances read back; `accdoa` 6-column ones."""
    cfg = SynthConfig(clips_per_fold=4, folds=3, clip_s=2.0, sample_rate=24000, rir_s=0.3,
                      max_overlap=1, rooms_per_fold=2)  # fmt: skip
    generate(tmp_path / "tasks", cfg)
    evaluate.main(["--tasks-dir", str(tmp_path / "tasks"), "--out", str(tmp_path / "out"),
                   "--head", "mlp", "--baseline", "zero", "--epochs", "30", "--patience", "30",
                   "--batch", "1", "--lr", "3e-3", "--seeds", "1", "--target", target])  # fmt: skip
    table = capsys.readouterr().out
    assert "| intensity+mlp |" in table and "| chance |" in table
    res = _runs(tmp_path / "out")
    assert set(res) == {"chance", "zero", "intensity+mlp"}
    iv, chance = res["intensity+mlp"], res["chance"]
    kind = "multi-accddoa" if target == "auto" else "accdoa"
    assert iv["target"] == chance["target"] == kind
    assert res["zero"]["SELD"] == 1.0 and iv["SELD"] < 0.95 and chance["SELD"] < 1.0
    # metrics auto: a distance-aware head on a task with distances is scored with the DCASE 2024
    # metrics (F, LR, distance errors), directions alone with the DCASE 2022 ones (F20, LR_CD)
    f, lr = ("F", "LR") if kind == "multi-accddoa" else ("F20", "LR_CD")
    assert iv["metrics"] == ("dcase2024" if kind == "multi-accddoa" else "dcase2022")
    assert iv[f] > 0.1 and chance[f] < 0.05 and chance[lr] > 0
    if kind == "multi-accddoa":  # chance draws distances over the training range: RelDistE > 0
        assert 0 <= iv["RelDistE"] and 0 < chance["RelDistE"] and iv["DistE"] is not None
        # every figure of the test files carries its jackknife interval around the estimate
        lo, hi = iv["SELD_jackknife"]
        assert lo < hi
    preds = list((tmp_path / "out" / "intensity+mlp").glob("*/seed0/fold03/pred/*.csv"))
    assert len(preds) == 4 and any(p.read_text() for p in preds)
    lines = [ln for p in preds for ln in p.read_text().splitlines()]
    assert {len(ln.split(",")) for ln in lines} == {7 if kind == "multi-accddoa" else 6}
    if kind == "multi-accddoa":
        rows = [r for p in preds for r in read_rows(p)]
        assert all(r.distance is not None and r.distance >= 0 for r in rows)


def test_binaural_crnn_features_carry_the_interaural_phase():
    """Binaural CRNN input: 2 log-mels + mel-scaled cos and sin of the interaural phase
    difference. Identical ears: cos IPD = the mel filter's weight sum (phase 0 everywhere), sin 0;
    right ear = left ear delayed by one sample: sin IPD > 0 (left leads) and cos < the weight sum."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(24000).astype(np.float32)
    feats = Features("crnn")
    same = feats._crnn([np.stack([x, x], 1)], 24000)[0]
    late = feats._crnn([np.stack([x, np.roll(x, 1)], 1)], 24000)[0]
    assert same.shape[:2] == (4, 64)
    assert np.allclose(same[0], same[1]) and np.abs(same[3]).max() < 1e-4
    # phase 2 pi f / 24 kHz grows with frequency: positive sine in every band (mean over time;
    # the lowest bands' phase is too small to beat the noise frame by frame)
    assert (late[3, 4:40].mean(axis=1) > 0.01).all()
    assert (late[2, :, 5:-5] <= same[2, :, 5:-5] + 1e-4).all()


def test_binaural_task_is_scored_in_stereo(tmp_path):
    """`--scoring auto` scores a binaural task with DCASE 2025 stereo scoring, a FOA task in 3-D;
    the labels of a binaural task scored as predictions are perfect either way."""
    cfg = SynthConfig(clips_per_fold=1, folds=3, clip_s=1.0, sample_rate=16000, rir_s=0.2,
                      max_overlap=1, fmt="binaural", rooms_per_fold=1)  # fmt: skip
    task = generate(tmp_path / "tasks", cfg)
    res = evaluate.train_and_test(task, "zero", None, training.SeldTrainConfig(), tmp_path / "out")
    # labels with distances: the DCASE 2025 stereo metrics (no combined score; zero has F 0 and
    # no pairs, so no angular or distance error)
    assert res["stereo"] is True and res["metrics"] == "dcase2025"
    assert res["F"] == 0.0 and res["AngE"] is None and "SELD" not in res
    res3 = evaluate.train_and_test(task, "zero", None, training.SeldTrainConfig(scoring="3d"),
                                   tmp_path / "out")  # fmt: skip
    assert res3["stereo"] is False and res3["metrics"] == "dcase2024" and res3["SELD"] == 1.0
    files = {n: (r, r) for n, r in task_rows(task, "fold03").items()}
    for stereo in (True, False):
        assert score_rows(files, 4, average="micro", stereo=stereo)["SELD"] < 1e-6
    # the labels as predictions are perfect in the 2024 and 2025 metrics too, distances included
    for stereo, metrics in ((True, "dcase2025"), (False, "dcase2024")):
        perfect = training.seld_score(files, None, 4, stereo, metrics)
        c = perfect["counts"]
        assert c["TP"] == c["ref_entries"] > 0 and c["FP"] == c["FN"] == 0
        # (the 2024 baseline puts identical directions 0.0008 deg apart: its arccos clip term)
        assert perfect["AngE"] < 0.01 and perfect["RelDistE"] == 0.0
        # macro F averages every class 0..3, absent ones at 0 (both baselines): each class
        # present in the clip scores F 1
        present = {r.cls for ref, _ in files.values() for r in ref}
        assert all(perfect["per_class"][str(k)]["F"] == 1.0 for k in present)


def test_test_fold_gets_the_training_standardisation(tmp_path, one_thread):
    """Regression: embeddings are standardised with training statistics, and the TEST fold must be
    too. An oracle embedding (the ACCDOA target, offset by 1000 so that raw and standardised
    inputs differ wildly) makes the head near perfect only when it is."""
    rng = np.random.default_rng(0)
    labels, durations = {}, {}
    for s in ("fold01", "fold02", "fold03"):
        labels[s], durations[s] = {}, {}
        for i in range(16 if s == "fold01" else 4):
            az, cls = float(rng.uniform(-180, 180)), i % 2  # both classes in every fold
            labels[s][f"c{i}.wav"] = [Row(f, cls, 0, polar_to_unit(az, 0), None, (az, 0.0))
                                      for f in range(5, 15)]  # fmt: skip
            durations[s][f"c{i}.wav"] = 2.0
    folds = {"train": ["fold01"], "valid": ["fold02"], "test": ["fold03"]}
    task = tmp_path / "t"
    write_labels(task, {"task_name": "t", "seld": {"official_folds": folds}}, ["a", "b"], labels,
                 durations)  # fmt: skip

    def oracle(task_dir, split, n_frames):
        rows = task_rows(task_dir, split)
        return [accdoa_target(rows[n], f, 2).reshape(f, 6) + 1000.0
                for n, f in zip(sorted(rows), n_frames, strict=True)]  # fmt: skip

    cfg = training.SeldTrainConfig(head="mlp", epochs=30, patience=30, batch=2, lr=3e-3)
    res = evaluate.train_and_test(task, "module", oracle, cfg, tmp_path / "out", "oracle")
    # measured: F 0.9, LE 12.9 deg, ER 0.25; raw test inputs: F 0, LE 88 deg, ER 2
    assert res["F20"] >= 0.75 and res["LE_CD"] < 20 and res["ER20"] < 0.5, res


def test_hold_out_takes_every_fifth_training_clip_when_there_is_no_valid_split(tmp_path):
    cols = tuple([f"{c}{i}" for i in range(12)] for c in "nrfxy")  # names, refs, frames, xs, ys
    train, valid = training.hold_out(cols, tmp_path)
    assert valid[0] == ["n4", "n9"] and valid[3] == ["x4", "x9"]  # by hand: i % 5 == 4
    assert sorted(train[0] + valid[0], key=lambda n: int(n[1:])) == cols[0]
    small_train, small_valid = training.hold_out(tuple(c[:3] for c in cols), tmp_path)
    assert small_valid[0] == ["n2"] and small_train[0] == ["n0", "n1"]


def _label_only_task(root):
    """Train fold01 (4 clips), valid fold02, test fold03 (2 clips each); no audio: enough for the
    chance and zero rows."""
    rng = np.random.default_rng(3)
    labels, durations = {}, {}
    for s, n in (("fold01", 4), ("fold02", 2), ("fold03", 2)):
        labels[s] = {f"c{i}.wav": [Row(f, i % 2, 0, polar_to_unit(az, 0), None, (az, 0.0))
                                   for f in range(3, 12)]
                     for i, az in enumerate(rng.uniform(-180, 180, n))}  # fmt: skip
        durations[s] = dict.fromkeys(labels[s], 1.5)
    folds = {"train": ["fold01"], "valid": ["fold02"], "test": ["fold03"]}
    write_labels(root / "tasks" / "t", {"task_name": "t", "seld": {"official_folds": folds}},
                 ["a", "b"], labels, durations)  # fmt: skip


def test_a_second_evaluation_merges_into_the_results(tmp_path, capsys):
    """Two evaluations into one --out: the second's runs are added by (task, method, seed), the
    first's kept unchanged, a rerun of a key replaces it (no duplicate); the summary gives the
    mean and sd over every seed now present. A results.json that is not ours is refused, not
    overwritten."""
    _label_only_task(tmp_path)
    out = tmp_path / "out"
    base = ["--tasks-dir", str(tmp_path / "tasks"), "--out", str(out), "--reference", "none",
            "--quiet"]  # fmt: skip
    assert evaluate.main([*base, "--baseline", "zero", "--seeds", "2"]) == 0
    first = json.loads((out / "results.json").read_text())["runs"]
    assert {(r["method"], r["seed"]) for r in first} == {("chance", 0), ("chance", 1),
                                                          ("zero", 0), ("zero", 1)}  # fmt: skip
    assert evaluate.main([*base, "--baseline", "zero", "--seed", "1", "--seeds", "2"]) == 0
    table = capsys.readouterr().out
    data = json.loads((out / "results.json").read_text())
    runs = {(r["method"], r["seed"]): r for r in data["runs"]}
    assert len(data["runs"]) == 6 and set(runs) == {(m, s) for m in ("chance", "zero")
                                                    for s in (0, 1, 2)}  # fmt: skip
    assert runs[("chance", 0)] == first[0]  # untouched by the second evaluation
    summary = {s["method"]: s for s in data["summary"]}
    le = [runs[("chance", s)]["LE_CD"] for s in (0, 1, 2)]
    assert summary["chance"]["seeds"] == [0, 1, 2]
    assert summary["chance"]["LE_CD"] == pytest.approx(np.mean(le))
    assert summary["chance"]["LE_CD_sd"] == pytest.approx(np.std(le, ddof=1))
    assert summary["chance"]["LE_CD_sd"] > 0
    assert summary["zero"]["SELD"] == 1.0 and summary["zero"]["SELD_sd"] == 0.0
    assert f"{np.mean(le):.1f} ± {np.std(le, ddof=1):.1f}" in table
    assert len((out / "results.csv").read_text().splitlines()) == 7
    assert len((out / "summary.csv").read_text().splitlines()) == 3
    (out / "results.json").write_text('{"something": "else"}')
    assert evaluate.main([*base, "--baseline", "zero", "--seeds", "1"]) == 2
    assert "not a results file" in capsys.readouterr().err
    assert (out / "results.json").read_text() == '{"something": "else"}'


@pytest.mark.usefixtures("one_thread")
def test_binaural_reference_cache_survives_a_truncated_entry(tmp_path, capsys):
    """A binaural task's classical reference is GCC-PHAT + head, its embeddings cached under
    O/embeddings. Truncate the cached entry and rerun: the same scores (the entry recomputed,
    not read half), and the entry rewritten whole (its arrays as before)."""
    cfg = SynthConfig(clips_per_fold=2, folds=3, clip_s=1.0, sample_rate=24000, rir_s=0.2,
                      max_overlap=1, fmt="binaural", rooms_per_fold=1)  # fmt: skip
    generate(tmp_path / "tasks", cfg)
    argv = ["--tasks-dir", str(tmp_path / "tasks"), "--out", str(tmp_path / "out"), "--head",
            "mlp", "--epochs", "2", "--seeds", "1", "--quiet"]  # fmt: skip
    assert evaluate.main(argv) == 0
    first = _runs(tmp_path / "out")
    assert set(first) == {"chance", "gcc-phat+mlp"} and first["gcc-phat+mlp"]["stereo"] is True
    entries = sorted((tmp_path / "out" / "embeddings").rglob("*.npz"))
    assert [e.name for e in entries] == ["fold01.npz", "fold02.npz", "fold03.npz"]
    with np.load(entries[0]) as f:
        before = {k: f[k] for k in f.files}
    data = entries[0].read_bytes()
    entries[0].write_bytes(data[: len(data) // 2])
    assert evaluate.main(argv) == 0
    again = _runs(tmp_path / "out")
    assert first["gcc-phat+mlp"]["metrics"] == "dcase2025"  # binaural, labels with distances
    for key in ("F", "AngE", "DistE", "RelDistE"):
        assert again["gcc-phat+mlp"][key] == first["gcc-phat+mlp"][key], key
    with np.load(entries[0]) as f:
        assert set(f.files) == set(before)
        for k in before:
            np.testing.assert_array_equal(f[k], before[k])
    capsys.readouterr()


def test_random_weights_are_redrawn_seeded_and_buffers_kept():
    """`randomise_weights`: every learned parameter is re-drawn (layers by their own
    reset_parameters, a bare parameter from a normal of sd 0.02), buffers stay, the same seed
    gives the same weights and another seed other random ones; the probe's cache tag differs from the
    trained module's."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.norm = torch.nn.Linear(4, 8), torch.nn.LayerNorm(8)
            self.gru = torch.nn.GRU(8, 4)
            self.token = torch.nn.Parameter(torch.zeros(1, 8))
            self.register_buffer("window", torch.hann_window(16))

    def trained():
        net = Net()
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(0.5)
        return net

    a, b, c = (randomise_weights(trained(), s) for s in (1, 1, 2))
    for (name, pa), pb, pc in zip(
        a.named_parameters(), b.parameters(), c.parameters(), strict=True
    ):
        assert not torch.all(pa == 0.5) and torch.equal(pa, pb), name
        assert name.startswith("norm") or not torch.equal(pa, pc), name  # LayerNorm: ones, zeros
    assert 0.005 < float(a.token.detach().std()) < 0.04
    assert torch.equal(a.norm.weight.detach(), torch.ones(8))
    assert torch.equal(a.window, torch.hann_window(16))
    module = "localization_tasks.seld.intensity_module"
    assert Features("module", module, "", {}, None, random_init=1).tag() not in (
        Features("module", module).tag(),
        Features("module", module, "", {}, None, random_init=2).tag(),
    )


@pytest.mark.parametrize(
    "audio, stereo, reference",
    [("stereo", True, "gcc-phat+bigru"), ("binaural", True, "gcc-phat+bigru"),
     ("foa", False, "intensity+bigru")],
)  # fmt: skip
def test_stereo_tasks_are_scored_and_referenced_as_two_channel_ones(tmp_path, audio, stereo,
                                                                    reference):  # fmt: skip
    """A converted DCASE 2025 task (seld.audio "stereo") gets, as a binaural one does, the 2025
    stereo scoring under --scoring auto and GCC-PHAT on its 2 channels as classical reference;
    --scoring 3d still overrides."""
    rows = [Row(0, 0, 0, polar_to_unit(30, 0), 1.5, (30.0, 0.0), 1)]
    task = tmp_path / "t"
    meta = {"task_name": "t", "seld": {"audio": audio}}
    write_labels(task, meta, ["a"], {"fold01": {"c.wav": rows}}, {"fold01": {"c.wav": 1.0}})
    assert training.stereo_scoring(task, training.SeldTrainConfig()) is stereo
    assert training.stereo_scoring(task, training.SeldTrainConfig(scoring="3d")) is False
    method = evaluate.reference_method(task, "bigru")
    assert method.name == reference and method.options == {}
