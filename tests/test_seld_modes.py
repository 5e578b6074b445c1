"""listen-eval-kit single-source modes (localization_tasks.seld.modes): target encodings by
hand, each probe learns its target from an informative embedding, and the CLI end to end on a
plane-wave FOA task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from localization_tasks.seld import modes
from tests.hostile import assert_clean_failure, run_cli
from tests.test_seld_evaluate import one_thread  # noqa: F401 (fixture)


def _dirs(az, el):
    a, e = np.radians(np.asarray(az, float)), np.radians(np.asarray(el, float))
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], 1)


def test_encodings_by_hand():
    d = _dirs([179, -179, 0, 90], [0, 0, 89, -30])
    pol = modes.encode("polar-regression", d)
    # -179 and 179 deg are neighbours on the circle: (cos, sin) 2 sin(1 deg) apart
    assert np.linalg.norm(pol[0, :2] - pol[1, :2]) == pytest.approx(
        2 * np.sin(np.radians(1)), abs=1e-5
    )
    assert pol[3] == pytest.approx([0, 1, -1 / 3], abs=1e-6)
    cls = modes.encode("polar-classification", d)
    # bins: (az + 180) // 10 and (el + 90) // 20, elevation 90 in the top bin
    assert cls.tolist() == [[35, 4], [0, 4], [18, 8], [27, 3]]
    assert modes.encode("cartesian-z-regression", d)[:, 0] == pytest.approx(
        np.sin(np.radians([0, 0, 89, -30]))
    )
    # decoding the encoded targets gives the directions back (classification: bin centres)
    for mode in ("cartesian-regression", "polar-regression"):
        back = modes.decode(mode, np.arctanh(np.clip(modes.encode(mode, d), -0.999999, 0.999999)))
        assert np.degrees(np.arccos(np.clip(np.sum(back * d, 1), -1, 1))).max() < 0.5, mode
    onehot = np.zeros((1, modes.AZ_BINS + modes.EL_BINS))
    onehot[0, 27], onehot[0, modes.AZ_BINS + 3] = 1, 1
    assert modes.decode("polar-classification", onehot) == pytest.approx(
        _dirs([95], [-20]), abs=1e-9
    )


@pytest.mark.usefixtures("one_thread")
def test_each_probe_learns_its_target():
    """Embeddings = a random linear mix of (direction, distance) plus noise: every mode's probe
    does far better than chance on held-out items."""
    rng = np.random.default_rng(0)
    n = 300
    d = _dirs(rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-0.9, 0.9, n))))
    dist = rng.uniform(1, 5, n)
    x = np.concatenate([d, dist[:, None]], 1) @ rng.standard_normal((4, 32))
    x += 0.05 * rng.standard_normal(x.shape)
    tr, va, te = slice(0, 200), slice(200, 250), slice(250, n)
    got = {}
    for mode in modes.MODES:
        y = modes.encode(mode, d, dist)
        pred = modes.fit_predict(mode, (x[tr], y[tr]), (x[va], y[va]), x[te], max_epochs=150)
        got[mode] = modes.score(mode, pred, d[te], dist[te])
    assert got["cartesian-regression"]["mean_angular_error_deg"] < 20  # chance ~90
    assert got["polar-regression"]["mean_angular_error_deg"] < 20
    assert got["polar-classification"]["azimuth_bin_accuracy"] > 0.3  # chance 1/36
    assert got["cartesian-z-regression"]["mean_elevation_error_deg"] < 10  # chance ~30
    assert got["distance-regression"]["mean_abs_distance_error_m"] < 0.4  # chance ~1


def _plane_wave_task(root, n_per_fold=10, sr=16000):
    """A 3-fold FOA direction task: each clip a noise plane wave from a random direction (SN3D:
    W = s, Y, Z, X = s times y, z, x), with the manifest's distances."""
    rng = np.random.default_rng(1)
    task = root / "tasks" / "pw-loc-ambisonic-clean"
    rows = []
    for f in range(3):
        split, labels = f"fold{f:02d}", {}
        (task / str(sr) / split).mkdir(parents=True)
        for i in range(n_per_fold):
            d = _dirs([rng.uniform(-180, 180)], [rng.uniform(-60, 60)])[0]
            s = rng.standard_normal(sr // 4)
            audio = np.stack([s, s * d[1], s * d[2], s * d[0]], 1) * 0.1
            name = f"c{i}.wav"
            sf.write(task / str(sr) / split / name, audio, sr, subtype="FLOAT")
            labels[name] = d.tolist()
            rows.append({"split": split, "filename": name, "distance_m": 2.0})
        (task / f"{split}.json").write_text(json.dumps(labels))
    meta = {"task_name": task.name, "split_mode": "new_split_kfold", "splits": ["fold00", "fold01", "fold02"],
            "sample_duration": 0.25, "localization": {"target": "direction", "format": "ambisonic"}}  # fmt: skip
    (task / "task_metadata.json").write_text(json.dumps(meta))
    return task, rows


@pytest.mark.usefixtures("one_thread")
def test_cli_polar_regression_on_plane_waves(tmp_path, capsys):
    _plane_wave_task(tmp_path)
    modes.main(["--module", "localization_tasks.baselines.intensity_vector", "--model-options",
                '{"sample_rate": 16000}', "--tasks-dir", str(tmp_path / "tasks"), "--out",
                str(tmp_path / "out"), "--mode", "polar-regression"])  # fmt: skip
    assert "pw-loc-ambisonic-clean polar-regression" in capsys.readouterr().out
    (res,) = json.loads(next((tmp_path / "out").glob("*/modes-polar-regression.json")).read_text())
    # the intensity vector IS the direction of a plane wave: 30 items are enough to learn it
    assert res["n"] == 30 and res["mean_angular_error_deg"] < 45  # chance ~90


@pytest.mark.hostile("crash")
def test_cli_distance_mode_without_distances_fails_cleanly(tmp_path):
    _plane_wave_task(tmp_path, n_per_fold=1)
    res = run_cli(["localization_tasks.seld.modes", "--module", "localization_tasks.baselines.intensity_vector",
                   "--model-options", '{"sample_rate": 16000}', "--tasks-dir", str(tmp_path / "tasks"),
                   "--out", str(tmp_path / "out"), "--mode", "distance-regression"])  # fmt: skip
    assert_clean_failure(res, "localization_manifest.csv")
