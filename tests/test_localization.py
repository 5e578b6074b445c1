"""Localization and T60 tasks: generator, metrics, baselines, evaluator (localization_tasks)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from hear_gram import dsp
from hear_gram.checkpoints import random_encoder, save_checkpoint
from hear_gram.synthetic_tasks import make_scene_task
from localization_tasks import embeddings, evaluate, metrics, probe, taskdata
from localization_tasks.baselines import chance, gcc_phat, intensity_vector
from localization_tasks.generate import generate_task, render_variants, variants
from naturalistic_hear.bank import SceneAssignmentError, SceneBank, assign_pools
from naturalistic_hear.mixing import render_components, render_spatial
from naturalistic_hear.noise import BuiltinNoise
from tests.fake_bank import FakeScene, FakeSceneBank

SR = 16000
# Broadband classes only: steady pure tones (hum, whistle) set up standing waves in a room, for
# which no intensity (or GCC) estimate points at the source.
BROADBAND = ("hiss", "clicks", "chirp")


def _generate(root, fmt, n_per_class, n_scenes, name):
    src = make_scene_task(
        root / "src",
        name=name,
        n_per_class=n_per_class,
        classes=BROADBAND,
        kfold=3,
        sample_rates=(SR,),
        duration_s=1.0,
    )
    bank = functools.partial(SceneBank, root / "cache", fmt, n_scenes=n_scenes)
    generate_task(src, root / "out", fmt, bank, BuiltinNoise(SR), seed=0, progress=False)
    return src, root / "out"


@pytest.fixture(scope="module")
def small_binaural(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp("loc-bin"), "binaural", 2, 6, "tinyb")


@pytest.fixture(scope="module")
def small_ambisonic(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp("loc-amb-small"), "ambisonic", 2, 6, "tinys")


@pytest.fixture(scope="module")
def ambisonic_task(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp("loc-amb"), "ambisonic", 24, 48, "tinya")


# --- generator ------------------------------------------------------------------------------


def test_targets_are_unit_vectors_of_manifest_directions(small_binaural):
    src, out = small_binaural
    names = [v.name("tinyb") for v in variants("binaural")]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    src_meta = json.loads((src / "task_metadata.json").read_text())
    first = None
    for v in variants("binaural"):
        task = out / v.name("tinyb")
        meta = json.loads((task / "task_metadata.json").read_text())
        assert meta["splits"] == src_meta["splits"] and meta["split_mode"] == src_meta["split_mode"]
        assert meta["localization"]["snr_bin"] == v.snr_bin
        man = pd.read_csv(task / "localization_manifest.csv")
        for split in meta["splits"]:
            labels = json.loads((task / f"{split}.json").read_text())
            assert sorted(labels) == sorted(json.loads((src / f"{split}.json").read_text()))
            for fn in labels:
                assert (task / str(SR) / split / fn).is_file()
                row = man[(man.split == split) & (man.filename == fn)].iloc[0]
                if v.target == "t60":
                    assert labels[fn] == pytest.approx([row.t60_s])
                    continue
                az, el = math.radians(row.azimuth_deg), math.radians(row.elevation_deg)
                # head frame: x front, y left, z up, azimuth counter-clockwise
                expected = [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]
                assert labels[fn] == pytest.approx(expected, abs=1e-9)
                assert np.linalg.norm(labels[fn]) == pytest.approx(1.0)
        if v.snr_range:
            lo, hi = v.snr_range
            assert man.snr_db.between(lo, hi).all()
        if v.target == "direction":
            labels = {s: json.loads((task / f"{s}.json").read_text()) for s in meta["splits"]}
            first = first or labels
            assert labels == first  # same scene per clip in every bin
    audio, rate = sf.read(out / "tinyb-loc-binaural-clean" / str(SR) / "fold00" / "clip0000.wav")
    assert rate == SR and audio.shape[1] == 2


def test_generation_is_deterministic(small_binaural, tmp_path):
    src, out = small_binaural
    bank = functools.partial(SceneBank, tmp_path / "cache", "binaural", n_scenes=6)
    generate_task(src, tmp_path / "again", "binaural", bank, BuiltinNoise(SR), progress=False)
    for task in ("tinyb-loc-binaural-snr05-10", "tinyb-t60-binaural"):
        for rel in ("fold01.json", "localization_manifest.csv", f"{SR}/fold01/clip0001.wav"):
            assert (out / task / rel).read_bytes() == (tmp_path / "again" / task / rel).read_bytes()


class _CountingLoudBank(FakeSceneBank):
    """Counts scene look-ups; source RIRs x 30 so that mixes need the headroom gain."""

    gets = 0

    def get(self, i):
        self.gets += 1
        scene, rir, noise_rirs = super().get(i)
        return scene, rir * 30.0, noise_rirs


@pytest.mark.parametrize("fmt", ["binaural", "ambisonic"])
def test_variants_render_the_scene_once_and_mix_it_per_bin(fmt, monkeypatch):
    """Regression: `render_variants` called `render_components` once per SNR bin, redoing the
    scene look-up and both convolutions each time. Now one rendering is mixed per bin, and each
    bin is still exactly `render_components` at its range."""
    bank = _CountingLoudBank(".", fmt, SR, n_scenes=6, length_s=0.3).build()
    noise = BuiltinNoise(SR)
    audio = np.random.default_rng(0).standard_normal(SR) * 0.1
    ident = (0, "tiny", "fold00", "a.wav")
    convolutions = []
    convolve_rir = dsp.convolve_rir

    def counting_convolve_rir(x, rir):
        convolutions.append(rir.shape)
        return convolve_rir(x, rir)

    monkeypatch.setattr(dsp, "convolve_rir", counting_convolve_rir)
    audios, rows = render_variants(audio, SR, bank, noise, *ident, fmt)
    assert bank.gets == 1 and len(convolutions) == 2  # source and summed noise, once

    spatial = render_spatial(audio, SR, bank, noise, *ident)
    clean = dsp.limit_peak(spatial.target, dsp.MAX_PEAK)[0].astype(np.float32)
    for v in variants(fmt):
        row = rows[v.suffix]
        assert row["azimuth_deg"] == spatial.row["source_azimuth_deg"]
        assert row["noise_file"] == spatial.row["noise_file"]
        if v.snr_range is None:  # clean direction and T60: the shared target, limited alone
            assert np.array_equal(audios[v.suffix], clean) and row["snr_db"] == math.inf
            continue
        ref = render_components(audio, SR, bank, noise, *ident, snr_range=v.snr_range)
        assert np.array_equal(audios[v.suffix], ref.mix)
        assert ref.row["headroom_gain"] < 1.0
        # the noisy mix's target component is the clean variant's target at the mix's level
        np.testing.assert_allclose(
            ref.target / ref.row["headroom_gain"], spatial.target, rtol=1e-12, atol=0
        )
        lo, hi = v.snr_range
        assert lo <= row["snr_db"] <= hi and row["snr_db"] == ref.row["snr_db"]
        assert row["achieved_snr_db"] == pytest.approx(row["snr_db"], abs=1e-9)


# --- metrics --------------------------------------------------------------------------------


def test_metrics_reference_values():
    t = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.8, 0.6, 0], [0, 0, 1.0]])
    p = np.array([[2.0, 0, 0], [1.0, 1.0, 0], [-0.8, 0.6, 0], [0, 0, -3.0]])
    assert metrics.angular_error_deg(p, t) == pytest.approx(
        [0, 45, 2 * math.degrees(math.acos(0.6)), 180]
    )
    assert metrics.azimuth_error_deg(np.array([[1, -0.01, 0]]), np.array([[1, 0.01, 0]]))[0] < 2
    confused, counted = metrics.front_back_confusions(p, t)
    # item 2 is a pure front-back mirror; item 1 is lateral (excluded), item 4 is on the y-z plane
    assert confused.tolist() == [False, False, True, False]
    assert counted.tolist() == [True, False, True, False]
    assert metrics.direction_metrics(p, t)["front_back_confusion_rate"] == pytest.approx(0.5)
    assert metrics.t60_metrics(np.array([0.5, 1.0]), np.array([0.4, 1.5]))[
        "median_abs_error_s"
    ] == pytest.approx(0.3)


def test_data_splits_follow_heareval():
    splits = taskdata.data_splits({"split_mode": "new_split_kfold", "splits": ["f2", "f0", "f1"]})
    assert splits[0] == {"train": ["f2"], "valid": ["f1"], "test": ["f0"]}
    assert [s["test"] for s in splits] == [["f0"], ["f1"], ["f2"]]
    assert taskdata.data_splits({"split_mode": "trainvaltest"})[0]["test"] == ["test"]


def test_random_chance_is_90_degrees():
    y = metrics.unit(np.random.default_rng(1).standard_normal((4000, 3)))
    pred = chance.predict("direction", y, 4000, "random", seed=2)
    assert metrics.angular_error_deg(pred, y).mean() == pytest.approx(90.0, abs=3.0)


# --- baselines ------------------------------------------------------------------------------


def test_baseline_modules_follow_the_hear_api():
    for mod, c in ((gcc_phat, 2), (intensity_vector, 4)):
        model = mod.load_model("", sample_rate=SR)
        assert isinstance(model.scene_embedding_size, int) and model.sample_rate == SR
        audio = torch.randn(3, SR // 2, c, generator=torch.Generator().manual_seed(0)) * 0.1
        scene = mod.get_scene_embeddings(audio, model)
        assert scene.shape == (3, model.scene_embedding_size) and torch.isfinite(scene).all()
        one = mod.get_scene_embeddings(audio[1:2], model)
        torch.testing.assert_close(one[0], scene[1], rtol=1e-4, atol=1e-5)  # batch independent
        emb, ts = mod.get_timestamp_embeddings(audio, model)
        assert emb.shape[:2] == ts.shape and emb.shape[2] == model.timestamp_embedding_size
        assert torch.diff(ts[0]).max() <= 50.0
        with pytest.raises(ValueError):
            mod.load_model("", nonsense=1)


def test_gcc_phat_sees_the_interaural_delay():
    model = gcc_phat.load_model("", sample_rate=SR)
    x = torch.randn(SR, generator=torch.Generator().manual_seed(0))
    delay = 8  # samples = 0.5 ms, left ear leads (source on the left)
    audio = torch.stack([x[delay:], x[:-delay]], dim=-1)[None]
    itd_ms = gcc_phat.get_scene_embeddings(audio, model)[0, -1]
    assert float(itd_ms) == pytest.approx(0.5, abs=0.07)


# --- acceptance: intensity baseline, chance, SNR trend --------------------------------------


@pytest.mark.slow
def test_intensity_baseline_beats_chance_and_degrades_with_noise(ambisonic_task, tmp_path):
    _, out = ambisonic_task
    opts = {"sample_rate": SR}
    result = evaluate.evaluate(
        "localization_tasks.baselines.intensity_vector",
        out,
        tmp_path,
        "",
        opts,
        grid="default",  # heareval's full probe grid: the "fast" one is too noisy per bin here
        progress=False,
    )
    entries = json.loads((result / "results.json").read_text())["tasks"]
    print("\nintensity_vector + MLP probe (pooled over 3 folds)\n" + evaluate.format_table(entries))
    by_bin = {e["snr_bin"]: e for e in entries if e["target"] == "direction"}
    assert by_bin["snr20-40"]["mean_angular_error_deg"] < 20.0
    # the error grows as the SNR falls: the 5-10 dB bin is the hardest, clearly above the
    # quiet ones (leak-free folds leave few training scenes here, so neighbouring bins may swap)
    errors = [
        by_bin[b]["mean_angular_error_deg"] for b in ("clean", "snr20-40", "snr10-20", "snr05-10")
    ]
    assert errors[-1] == max(errors) and errors[-1] > min(errors[:2]) + 3.0, errors
    t60 = next(e for e in entries if e["target"] == "t60")
    t60_pred = pd.read_csv(result / "predictions" / "tinya-t60-ambisonic.csv").pred_t60_s
    assert t60_pred.between(0.05, 5.0).all(), (t60_pred.min(), t60_pred.max())

    for mode in ("mean", "random"):
        chance_dir = evaluate.evaluate("chance", out, tmp_path, "", {"mode": mode}, progress=False)
        chance_entries = json.loads((chance_dir / "results.json").read_text())["tasks"]
        print(f"chance ({mode})\n" + evaluate.format_table(chance_entries))
        for e in chance_entries:
            if e["target"] == "direction":
                assert 65.0 < e["mean_angular_error_deg"] < 115.0
            else:
                # 24 training rooms only: not asked to beat chance here (the 600-clip task of
                # the report does); the log-T60 probe keeps its predictions in range above
                assert t60["median_abs_error_s"] < 1.5 * e["median_abs_error_s"]

    # Probe-free: the baseline's own direction output in the 20-40 dB bin.
    task = out / "tinya-loc-ambisonic-snr20-40"
    model = intensity_vector.load_model("", **opts)
    errors = []
    for split in ("fold00", "fold01", "fold02"):
        labels = json.loads((task / f"{split}.json").read_text())
        audio = np.stack([sf.read(task / str(SR) / split / f, dtype="float32")[0] for f in labels])
        d = intensity_vector.direction(
            intensity_vector.get_scene_embeddings(torch.from_numpy(audio), model)
        )
        errors += metrics.angular_error_deg(d.numpy(), np.array(list(labels.values()))).tolist()
    print(f"intensity direction, no probe, 20-40 dB: mean {np.mean(errors):.1f} deg")
    assert np.mean(errors) < 20.0


# --- evaluator end to end with GRAM modules and a baseline ----------------------------------


@pytest.mark.slow
def test_evaluator_end_to_end_with_hear_modules(small_binaural, small_ambisonic, tmp_path):
    _, bin_out = small_binaural
    _, amb_out = small_ambisonic
    ckpt = tmp_path / "ckpt"
    t_bin = save_checkpoint(ckpt / "t.safetensors", random_encoder("gram-t", depth=1), "released")
    t_amb = save_checkpoint(
        ckpt / "a.safetensors", random_encoder("gram-t-ambisonic", depth=1), "released"
    )
    cls = {"strategy": "cls", "sample_rate": SR}
    runs = [
        (
            "hear_gram.gram_t",
            str(t_bin),
            cls,
            bin_out,
            ["tinyb-loc-binaural-clean", "tinyb-t60-binaural"],
        ),
        ("hear_gram.gram_t_ambisonic", str(t_amb), cls, amb_out, ["tinys-loc-ambisonic-snr20-40"]),
        ("localization_tasks.baselines.gcc_phat", "", {"sample_rate": SR}, bin_out, None),
    ]
    for module, weights, opts, tasks_dir, tasks in runs:
        evaluate.main(
            [
                "--module",
                module,
                "--model",
                weights,
                "--model-options",
                json.dumps(opts),
                "--tasks-dir",
                str(tasks_dir),
                "--out",
                str(tmp_path / "res"),
                "--grid",
                "tiny",
                "--quiet",
            ]
            + sum((["--task", t] for t in tasks or []), [])
        )
        result = tmp_path / "res" / evaluate.module_tag(module, weights, opts)
        summary = json.loads((result / "results.json").read_text())
        expected = tasks or sorted(p.name for p in bin_out.iterdir())
        assert [e["task"] for e in summary["tasks"]] == expected
        for e in summary["tasks"]:
            key = "mean_angular_error_deg" if e["target"] == "direction" else "median_abs_error_s"
            assert math.isfinite(e[key]) and len(e["folds"]) == 3
        assert len(pd.read_csv(result / "results.csv")) == len(expected)
        for png in ("error_vs_snr.png", "azimuth_scatter.png"):
            assert (result / png).read_bytes()[:4] == b"\x89PNG"
        cached = tmp_path / "res" / "embeddings" / result.name / expected[0] / "fold00.npz"
        assert cached.is_file()


def test_a_rerun_reads_the_embedding_cache_instead_of_embedding_again(
    small_binaural, tmp_path, monkeypatch
):
    """Resuming: the second run must take every embedding from the cache. The module is made
    to fail when asked to embed, so a cache that is written but never read (or keyed so that it
    never matches) fails here; the old check reran a deterministic baseline, which gave the same
    results with or without the cache."""
    _, out = small_binaural
    opts = {"sample_rate": SR}
    argv = ["--module", "localization_tasks.baselines.gcc_phat", "--model-options",
            json.dumps(opts), "--tasks-dir", str(out), "--out", str(tmp_path / "res"), "--grid",
            "tiny", "--quiet", "--task", "tinyb-loc-binaural-clean"]  # fmt: skip
    evaluate.main(argv)
    result = tmp_path / "res" / evaluate.module_tag(gcc_phat.__name__, "", opts)
    before = (result / "results.json").read_text()

    def embed_again(*args, **kwargs):
        raise AssertionError("embedded again: the cache was not read")

    monkeypatch.setattr(gcc_phat, "get_scene_embeddings", embed_again)
    evaluate.main(argv)
    assert (result / "results.json").read_text() == before


def test_module_tag_follows_the_weights_content(tmp_path):
    """Regression: the tag used the path and size only, so weights retrained in place reused
    the old embeddings cache."""
    from hear_gram.checkpoints import random_encoder, save_checkpoint

    path = tmp_path / "w.safetensors"
    save_checkpoint(path, random_encoder("gram-t", depth=1, seed=0), "hear-gram")
    before = evaluate.module_tag("hear_gram.gram_t", str(path), {"strategy": "cls"})
    save_checkpoint(path, random_encoder("gram-t", depth=1, seed=1), "hear-gram")
    after = evaluate.module_tag("hear_gram.gram_t", str(path), {"strategy": "cls"})
    assert before != after
    assert after == evaluate.module_tag("hear_gram.gram_t", str(path), {"strategy": "cls"})
    assert after != evaluate.module_tag("hear_gram.gram_t", str(path), {"strategy": "mean"})


# --- leak-free folds ------------------------------------------------------------------------


def _by_split(man: pd.DataFrame, columns: list[str]) -> dict[str, set]:
    return {s: set(map(tuple, g[columns].astype(str).values)) for s, g in man.groupby("split")}


@pytest.mark.parametrize("fixture", ["small_binaural", "mixed"])
def test_no_room_or_source_position_in_two_folds(fixture, request):
    """Issue 9: every clip drew one of the bank's scenes whatever its fold, so a probe could
    recognise the rooms and positions of its test fold. Checked on the manifests alone: a room
    is its size, walls and T60; a source position its room, direction and distance."""
    out = request.getfixturevalue(fixture)[1]
    room = ["room_dim", "absorption", "t60_s"]
    position = room + ["azimuth_deg", "elevation_deg", "distance_m"]
    tasks = sorted(p for p in out.iterdir() if (p / "localization_manifest.csv").is_file())
    assert len(tasks) in (5, 10)
    for task in tasks:
        man = pd.read_csv(task / "localization_manifest.csv")
        meta = json.loads((task / "task_metadata.json").read_text())
        target = meta["localization"]["target"]
        groups = _by_split(man, room if target == "t60" else position)
        assert len(groups) == 3
        for a, b in itertools.combinations(groups, 2):
            assert not groups[a] & groups[b], (task.name, a, b)
        # Rooms too, for every task (the direction tasks share the T60 task's audio).
        rooms = _by_split(man, room)
        assert all(not rooms[a] & rooms[b] for a, b in itertools.combinations(rooms, 2))
        # The recorded assignment names each clip's pool.
        pools = meta["localization"]["scene_assignment"]["pools"]
        assert meta["localization"]["scene_assignment"]["disjoint_by"] == "room"
        for split, g in man.groupby("split"):
            ranges = pools[split]["ranges"]
            assert all(any(lo <= i < hi for lo, hi in ranges) for i in g.scene_index), split


def _scene(i, pool, az, t60=math.nan, room=()):
    return FakeScene(
        scene_id=f"{pool}-{i}", pool=pool, room_dim=room, absorption=math.nan, t60_s=t60,
        listener=(), head_azimuth_deg=0.0, source=(), source_azimuth_deg=az,
        source_elevation_deg=0.0, source_distance_m=2.0, noise_kind="localized", noises=(),
        noise_directions=((90.0, 0.0, 2.0),),
    )  # fmt: skip


class _OneRoomBank:
    """An external set in one room (as a SOFA file): scene i at azimuth `azimuths[i]`."""

    def __init__(self, azimuths):
        self.scenes = [_scene(i, "sofa", az) for i, az in enumerate(azimuths)]

    def __len__(self):
        return len(self.scenes)

    def get(self, i):
        return self.scenes[i], None, None


def test_pools_of_a_one_room_external_set_keep_positions_apart_and_drop_t60(caplog):
    splits = {"fold00": 10, "fold01": 10, "fold02": 20}
    # 8 scenes, 4 positions (each measured twice): whole positions go to one split
    pools = assign_pools(_OneRoomBank([0, 0, 90, 90, 180, 180, 270, 270]), splits, False)
    assert pools.disjoint_by == "source_position" and not pools.t60_known
    assert "rooms are shared" in caplog.text
    assert [len(p) for p in pools.pools.values()] == [2, 2, 4]  # fold02 has twice the clips
    assert sorted(i for p in pools.pools.values() for i in p) == list(range(8))
    assert {0, 1} <= set(pools.pools["fold00"])
    with pytest.raises(SceneAssignmentError, match="room-disjoint"):
        assign_pools(_OneRoomBank([0, 90, 180]), splits, need_rooms=True)
    with pytest.raises(SceneAssignmentError, match="2 distinct source positions"):
        assign_pools(_OneRoomBank([0, 0, 90, 90]), splits, need_rooms=False)


def test_an_external_set_without_t60_gives_direction_tasks_only(tmp_path):
    src = make_scene_task(tmp_path / "src", name="ext", n_per_class=1, classes=BROADBAND,
                          kfold=3, sample_rates=(SR,), duration_s=0.5)  # fmt: skip

    class OneRoom(FakeSceneBank):
        def _make(self, i):
            scene, rir, noises = super()._make(i)
            return dataclasses.replace(scene, pool="sofa", room_dim=(), t60_s=math.nan), rir, noises

    bank = functools.partial(OneRoom, tmp_path / "cache", "binaural", n_scenes=6)
    dirs = generate_task(src, tmp_path / "out", "binaural", bank, BuiltinNoise(SR), progress=False)
    assert [d.name for d in dirs] == [v.name("ext") for v in variants("binaural", t60=False)]
    man = pd.read_csv(dirs[0] / "localization_manifest.csv")
    pos = _by_split(man, ["room_id", "azimuth_deg", "elevation_deg", "distance_m"])
    assert all(not pos[a] & pos[b] for a, b in itertools.combinations(pos, 2))
    meta = json.loads((dirs[0] / "task_metadata.json").read_text())["localization"]
    assert meta["scene_assignment"]["disjoint_by"] == "source_position"


def test_one_target_writes_the_same_tasks_as_both_and_nothing_else(tmp_path):
    """`--target direction` / `--target t60` (the suite builds what its units read): the same
    files, byte for byte, as the run that writes both, and none of the other kind's."""
    src = make_scene_task(tmp_path / "src", name="one", n_per_class=1, classes=BROADBAND,
                          kfold=3, sample_rates=(SR,), duration_s=0.5)  # fmt: skip
    bank = functools.partial(FakeSceneBank, tmp_path / "cache", "binaural", n_scenes=6)
    outs = {}
    for targets in (("direction", "t60"), ("direction",), ("t60",)):
        out = tmp_path / "-".join(targets)
        generate_task(src, out, "binaural", bank, BuiltinNoise(SR), targets=targets,
                      progress=False)  # fmt: skip
        outs[targets] = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
                         if p.is_file() and "logs" not in p.parts}  # fmt: skip
    both = outs[("direction", "t60")]
    assert {f for f in both if "-t60-" in f} and {f for f in both if "-loc-" in f}
    assert outs[("direction",)] == {f: b for f, b in both.items() if "-loc-" in f}
    assert outs[("t60",)] == {f: b for f, b in both.items() if "-t60-" in f}
    with pytest.raises(ValueError, match="targets must be among"):
        generate_task(src, tmp_path / "x", "binaural", bank, BuiltinNoise(SR), targets=("doa",))

    class NoT60(FakeSceneBank):  # an external set whose T60 is unknown: no T60 task to make
        def _make(self, i):
            scene, rir, noises = super()._make(i)
            return dataclasses.replace(scene, t60_s=math.nan), rir, noises

    no_t60 = functools.partial(NoT60, tmp_path / "cache2", "binaural", n_scenes=6)
    with pytest.raises(ValueError, match="no T60 task can be made"):  # not an empty success
        generate_task(src, tmp_path / "y", "binaural", no_t60, BuiltinNoise(SR), targets=("t60",))


# --- T60 probe and mixed folders ------------------------------------------------------------


def test_t60_probe_predicts_only_possible_values_and_learns_a_cue():
    # full-batch steps: a larger learning rate than heareval's grid, so 300 epochs converge
    grid = probe.ProbeGrid(hidden_layers=(1,), hidden_dim=64, lrs=(1e-2,), max_epochs=300)
    rng = np.random.default_rng(0)
    t60 = rng.uniform(0.2, 1.5, (300, 1))
    cue = np.log(t60) + 0.05 * rng.standard_normal((300, 1))
    x = np.concatenate([cue, rng.standard_normal((300, 4))], axis=1)
    split = {"train": slice(0, 200), "valid": slice(200, 250), "test": slice(250, 300)}
    pred, hparams = probe.fit_predict(
        "t60", (x[split["train"]], t60[split["train"]]), (x[split["valid"]], t60[split["valid"]]),
        x[split["test"]], grid,
    )  # fmt: skip
    assert hparams["target"] == "standardised log T60"
    err = np.median(np.abs(pred - t60[split["test"]]))
    chance_err = np.median(np.abs(np.median(t60[split["train"]]) - t60[split["test"]]))
    assert err < 0.5 * chance_err, (err, chance_err)
    # Features far outside the training range: a linear output in seconds went negative or
    # past 5 s; the log-T60 output stays within the physical range.
    wild, _ = probe.fit_predict(
        "t60", (x[split["train"]], t60[split["train"]]), (x[split["valid"]], t60[split["valid"]]),
        np.concatenate([x[:5] * 100, -x[:5] * 100]), grid,
    )  # fmt: skip
    assert wild.min() >= probe.T60_MIN_S and wild.max() <= probe.T60_MAX_S
    with pytest.raises(ValueError, match="positive"):
        probe.fit_predict("t60", (x[:10], -t60[:10]), (x[:5], t60[:5]), x[:5], grid)


# --- probe units ----------------------------------------------------------------------------


def test_log_t60_round_trips_and_clips_to_the_physical_range():
    t60 = np.array([[0.2], [0.5], [1.5]])
    code = probe.LogT60.fit(t60)
    assert code.mu == pytest.approx(np.log([0.2, 0.5, 1.5]).mean())
    z = code.encode(t60)
    assert z.mean() == pytest.approx(0.0, abs=1e-12) and z.std() == pytest.approx(1.0)
    np.testing.assert_allclose(code.decode(z), t60, rtol=1e-12)
    assert code.decode(np.array([[1e6], [-1e6]])).ravel().tolist() == [
        probe.T60_MAX_S,
        probe.T60_MIN_S,
    ]
    for bad in ([[0.0], [1.0]], [[np.nan], [1.0]]):
        with pytest.raises(ValueError, match="finite and positive"):
            probe.LogT60.fit(np.array(bad))


def test_probe_scores_are_the_task_metrics():
    """Direction: mean angle between the vectors (90 and 180 deg here); T60: median absolute
    error in s after decoding both sides."""
    y = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    pred = np.array([[0, 2.0, 0], [0, -1.0, 0]])  # not unit length: renormalised first
    assert probe.score("direction", pred, y) == pytest.approx(135.0)
    assert probe.score("t60", np.array([[0.3], [1.0], [2.0]]), np.array([[0.5], [1.0], [1.0]])) == (
        pytest.approx(0.2)
    )


def _direction_data(seed: int, n: int = 240, noise: float = 0.1):
    """Unit vectors and features = a fixed random mixing of them + noise (learnable)."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, 3))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = y @ rng.standard_normal((3, 8)) + noise * rng.standard_normal((n, 8))
    return x, y


def test_direction_probe_learns_is_reproducible_and_leaves_the_global_rng_alone():
    grid = probe.ProbeGrid(hidden_layers=(1,), hidden_dim=32, lrs=(1e-2,), max_epochs=40)
    x, y = _direction_data(0)
    train, valid, test = slice(0, 160), slice(160, 200), slice(200, 240)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    args = ((x[train], y[train]), (x[valid], y[valid]), x[test], grid)
    pred, hparams = probe.fit_predict("direction", *args, seed=3)
    # The probe's seeds are its own: the caller's random stream is where it was.
    assert torch.equal(torch.get_rng_state(), state)
    err = metrics.angular_error_deg(pred, y[test]).mean()
    assert err < 30.0, err  # chance is 90 deg
    assert np.abs(pred).max() <= 1.0  # tanh output
    assert hparams["lr"] in grid.lrs and hparams["hidden_layers"] == 1
    again, _ = probe.fit_predict("direction", *args, seed=3)
    np.testing.assert_array_equal(again, pred)
    other, _ = probe.fit_predict("direction", *args, seed=4)
    assert not np.array_equal(other, pred)


@pytest.mark.parametrize("where", ["train", "valid", "test"])
def test_probe_refuses_non_finite_features(where):
    x, y = _direction_data(1, n=30)
    parts = {"train": x[:10].copy(), "valid": x[10:20].copy(), "test": x[20:].copy()}
    parts[where][0, 0] = np.nan
    with pytest.raises(ValueError, match=f"{where} features hold NaN"):
        probe.fit_predict("direction", (parts["train"], y[:10]), (parts["valid"], y[10:20]),
                          parts["test"], probe.GRIDS["tiny"])  # fmt: skip


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Both formats of one source task in one folder, as `localization_tasks.generate` writes."""
    root = tmp_path_factory.mktemp("loc-mixed")
    src = make_scene_task(root / "src", name="mix", n_per_class=2, classes=BROADBAND, kfold=3,
                          sample_rates=(SR,), duration_s=0.5)  # fmt: skip
    for fmt in ("binaural", "ambisonic"):
        bank = functools.partial(SceneBank, root / "cache", fmt, n_scenes=6)
        generate_task(src, root / "out", fmt, bank, BuiltinNoise(SR), progress=False)
    return src, root / "out"


def test_evaluate_on_a_mixed_folder_runs_each_module_on_its_formats(mixed, tmp_path, capsys):
    """Regression: a one-format baseline on the folder the generator writes crashed with
    `gcc_phat needs 2 channels, got audio (16, 240000, 4)`."""
    _, out = mixed
    names = {f: [v.name("mix") for v in variants(f)] for f in ("binaural", "ambisonic")}
    for module, fmt, other in (
        ("localization_tasks.baselines.gcc_phat", "binaural", "ambisonic"),
        ("localization_tasks.baselines.intensity_vector", "ambisonic", "binaural"),
    ):
        opts = json.dumps({"sample_rate": SR})
        evaluate.main(["--module", module, "--model-options", opts, "--tasks-dir", str(out),
                       "--out", str(tmp_path), "--grid", "tiny", "--quiet"])  # fmt: skip
        printed = capsys.readouterr().out
        result = tmp_path / evaluate.module_tag(module, "", {"sample_rate": SR})
        summary = json.loads((result / "results.json").read_text())
        assert sorted(e["task"] for e in summary["tasks"]) == sorted(names[fmt])
        assert sorted(s["task"] for s in summary["skipped"]) == sorted(names[other])
        assert all(f"skipped {n} ({other})" in printed for n in names[other])
        t60 = pd.read_csv(result / "predictions" / f"mix-t60-{fmt}.csv")
        assert t60.pred_t60_s.between(probe.T60_MIN_S, probe.T60_MAX_S).all()
    result = evaluate.evaluate("chance", out, tmp_path, progress=False)
    summary = json.loads((result / "results.json").read_text())
    assert len(summary["tasks"]) == 10 and summary["skipped"] == []


# --- embeddings cache -----------------------------------------------------------------------


def _gcc_embedder(cache):
    return embeddings.Embedder("localization_tasks.baselines.gcc_phat", "", {"sample_rate": SR},
                             cache / "gcc_phat-test")  # fmt: skip


def _fresh(task, split, files):
    model = gcc_phat.load_model("", sample_rate=SR)
    audio = np.stack([sf.read(task / str(SR) / split / f, dtype="float32")[0] for f in files])
    return gcc_phat.get_scene_embeddings(torch.from_numpy(audio), model).numpy()


def test_cache_follows_the_task_content_and_rebuilds_when_corrupt(small_binaural, tmp_path):
    _, out = small_binaural
    task = tmp_path / "task"
    shutil.copytree(out / "tinyb-loc-binaural-clean", task)
    files, _ = taskdata.read_labels(task, "fold00", "direction")
    first = _gcc_embedder(tmp_path)(task, "fold00", files)
    np.testing.assert_allclose(first, _fresh(task, "fold00", files), rtol=1e-5, atol=1e-6)
    # The task is regenerated: one clip is now another clip (same name, same split file).
    wav = task / str(SR) / "fold00" / files[0]
    other = task / str(SR) / "fold01" / sorted(os.listdir(task / str(SR) / "fold01"))[0]
    shutil.copy(other, wav)
    again = _gcc_embedder(tmp_path)(task, "fold00", files)
    np.testing.assert_allclose(again, _fresh(task, "fold00", files), rtol=1e-5, atol=1e-6)
    assert not np.allclose(again[0], first[0])
    # A corrupt cache file is recomputed and rewritten, not a crash nor stale numbers.
    cached = tmp_path / "gcc_phat-test" / "task" / "fold00.npz"
    cached.write_bytes(b"PK\x03\x04 not a zip")
    np.testing.assert_allclose(_gcc_embedder(tmp_path)(task, "fold00", files), again, rtol=1e-6)
    with np.load(cached) as f:
        np.testing.assert_allclose(f["embeddings"], again, rtol=1e-6)


def test_nan_directions_are_an_error_not_a_front_guess():
    with pytest.raises(ValueError, match="NaN"):
        metrics.angular_error_deg(np.array([[math.nan, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
