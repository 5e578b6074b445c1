"""Synthetic SELD tasks: deterministic, resumable, fold-disjoint rooms, and labels that agree with
the rendered sound field."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json

import numpy as np
import pytest
import soundfile as sf

from localization_tasks.seld.labels import polar_to_unit
from localization_tasks.seld.metrics import angular_distance_deg
from localization_tasks.seld.sources import from_folder
from localization_tasks.seld.synth import (
    SynthConfig,
    cell_of,
    fold_cells,
    fold_room,
    generate,
    render_seld_clip,
)
from localization_tasks.seld.task import export_dcase, task_rows
from naturalistic_hear import rooms

CFG = SynthConfig(clips_per_fold=2, folds=3, clip_s=2.0, sample_rate=16000, rir_s=0.3)


def test_clip_is_a_pure_function_of_seed_fold_index():
    a1, r1, m1 = render_seld_clip(CFG, 1, 1)
    render_seld_clip(CFG, 0, 0)  # other work in between changes nothing
    a2, r2, m2 = render_seld_clip(CFG, 1, 1)
    assert np.array_equal(a1, a2) and r1 == r2 and m1 == m2
    a3, _, _ = render_seld_clip(dataclasses.replace(CFG, seed=1), 1, 1)
    assert not np.array_equal(a1, a3)


def _onset_intensity(audio, rows, frame, sample_rate, distance_m):
    """FOA active intensity (mean of W times the ACN dipoles X, Y, Z = channels 3, 1, 2) over
    the first 4 ms of direct sound after an onset at `frame`: the direct path arrives
    distance / 343 s after the onset and the first reflection (floor, 1.5 m below the listener)
    at least ~6 ms later, so the window holds the direct sound only whatever the room's T60
    (a steady tone in a reverberant room points at its room modes, not at its source)."""
    start = frame * sample_rate // 10 + int(distance_m / 343.0 * sample_rate)
    w, y, z, x = audio[start : start + int(0.004 * sample_rate)].T
    return np.array([[np.mean(w * x), np.mean(w * y), np.mean(w * z)]])


def test_static_event_direction_matches_foa_intensity():
    """For a single static source the direct sound's FOA intensity points at the labelled
    direction; 10 deg is far below what a wrong axis, sign or azimuth convention gives."""
    cfg = dataclasses.replace(CFG, max_overlap=1, moving_prob=0.0, snr_db=(40.0, 40.0))
    errors = []
    for i in range(4):
        audio, rows, _ = render_seld_clip(cfg, 0, i)
        iv = _onset_intensity(audio, rows, rows[0].frame, cfg.sample_rate, rows[0].distance)
        label = np.array([polar_to_unit(*rows[0].azel)])
        errors.append(float(angular_distance_deg(iv, label)[0, 0]))
    assert max(errors) < 10, errors


def test_moving_event_labels_follow_the_path():
    """A moving event's labelled azimuth changes by 20-60 deg/s * 0.5 s per waypoint; the FOA
    intensity at its onset points at the first waypoint's label."""
    cfg = dataclasses.replace(CFG, max_overlap=1, moving_prob=1.0, clip_s=3.0, snr_db=(40.0, 40.0))
    audio, rows, rec = render_seld_clip(cfg, 0, 0)
    assert rec["events"][0]["moving"]
    steps = {round((b.azel[0] - a.azel[0] + 180) % 360 - 180, 1)
             for a, b in zip(rows, rows[1:], strict=False) if a.azel != b.azel}  # fmt: skip
    assert steps and all(9.5 <= abs(s) <= 30.5 for s in steps), steps
    first = rows[0]
    iv = _onset_intensity(audio, rows, first.frame, cfg.sample_rate, first.distance)
    a = angular_distance_deg(iv, np.array([first.xyz]))[0, 0]
    # the second waypoint's RIR takes over half-way through a 20 ms cross-fade at its boundary
    second = next(r for r in rows if r.azel != first.azel)
    iv2 = _onset_intensity(audio, rows, second.frame, cfg.sample_rate, second.distance)
    b = angular_distance_deg(iv2, np.array([second.xyz]))[0, 0]
    assert a < 10, (a, b)


def test_fold_rooms_are_disjoint_by_construction():
    """Many rooms of every fold, for several fold counts: no (length, width) cell is shared by two
    folds, each room lies strictly inside a cell of its fold, the test fold uses the "test" pool's
    cells (rooms.room_pool), and all folds span short and long rooms alike."""
    for folds in (3, 5, 20):
        cfg = dataclasses.replace(CFG, folds=folds)
        cells = fold_cells(folds)
        for f, g in itertools.combinations(range(folds), 2):
            assert not set(cells[f]) & set(cells[g]), (folds, f, g)
        for f in range(folds):
            rs = [fold_room(cfg, f, r) for r in range(30 if folds == 3 else 3)]
            for r in rs:
                assert cell_of(r.room_dim) == r.cell and r.cell in cells[f]
                assert (rooms.room_pool(r.room_dim) == "test") == (f == folds - 1)
        if folds == 3:
            lengths = [[fold_room(cfg, f, r).room_dim[0] for r in range(30)] for f in range(3)]
            assert all(min(x) < 5 and max(x) > 7 for x in lengths), lengths


def _manifest(task):
    with open(task / "seld_manifest.csv") as f:
        return list(csv.DictReader(f))


def test_generate_resumes_and_folds_have_their_own_rooms(tmp_path):
    task = generate(tmp_path, CFG)
    labels = (task / "fold01.json").read_bytes()
    wav = task / "16000" / "fold02" / "fold02_clip00001.wav"
    stamp = wav.stat().st_mtime_ns
    assert generate(tmp_path, CFG) == task  # resume: nothing re-rendered
    assert wav.stat().st_mtime_ns == stamp and (task / "fold01.json").read_bytes() == labels
    info = sf.info(wav)
    assert (info.channels, info.frames) == (4, 32000)
    manifest = _manifest(task)
    meta = json.loads((task / "task_metadata.json").read_text())["seld"]["fold_rooms"]
    splits = ("fold01", "fold02", "fold03")
    ids = {s: {r["room"] for r in manifest if r["split"] == s} for s in splits}
    dims = {s: {r["room_dim"] for r in manifest if r["split"] == s} for s in splits}
    cells = {s: {cell_of(json.loads(d)) for d in dims[s]} for s in splits}
    for s in splits:  # the manifest's rooms are the ones the metadata assigns to the fold
        assert ids[s] and ids[s] <= {r["room"] for r in meta[s]["rooms"]}
        assert cells[s] <= {tuple(c) for c in meta[s]["cells"]}
    for s, t in itertools.combinations(splits, 2):
        assert not ids[s] & ids[t] and not dims[s] & dims[t] and not cells[s] & cells[t], (s, t)
    for split in splits:
        for rows in task_rows(task, split).values():
            per_frame = np.bincount([r.frame for r in rows])
            assert per_frame.max() <= CFG.max_overlap and max(r.frame for r in rows) < 20
    assert len(export_dcase(task, tmp_path / "csv")) == 6
    with pytest.raises(ValueError, match="other settings"):
        generate(tmp_path, dataclasses.replace(CFG, seed=5))


def test_binaural_clip_level_difference_follows_the_labelled_side(tmp_path):
    """Binaural (KEMAR) path: a broadband static source labelled on the left (sin az > 0.5) is
    louder in the left ear over its direct sound, one on the right in the right ear (an ear or
    azimuth sign swap flips this). The sources are white-noise files given as a folder bank."""
    rng = np.random.default_rng(1)
    for i in range(3):
        p = tmp_path / "snd" / "noise" / f"{i}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, 0.1 * rng.standard_normal(2 * 16000), 16000, subtype="FLOAT")
    cfg = dataclasses.replace(CFG, fmt="binaural", max_overlap=1, moving_prob=0.0,
                              snr_db=(40.0, 40.0))  # fmt: skip
    bank = from_folder(tmp_path / "snd", cfg.sample_rate, cfg.folds)
    sides = []
    for i in range(8):
        audio, rows, _ = render_seld_clip(cfg, 0, i, bank)
        assert audio.shape == (32000, 2)
        az = rows[0].azel[0]
        if abs(np.sin(np.radians(az))) < 0.5:
            continue
        start = rows[0].frame * 1600 + int(rows[0].distance / 343.0 * 16000)
        left, right = audio[start : start + 64].T  # 4 ms of direct sound
        ild = 10 * np.log10(np.sum(left**2) / np.sum(right**2))
        sides.append((az, ild))
        assert np.sign(ild) == np.sign(np.sin(np.radians(az))) and abs(ild) > 3, (az, ild)
    assert len(sides) >= 3 and {np.sign(a) for a, _ in sides} == {-1.0, 1.0}, sides
