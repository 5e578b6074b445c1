"""naturalistic_hear: noise sources, clip rendering, task processing (resume, shards, workers), CLI.

Tiny synthetic HEAR tasks at 16 (and 22.05) kHz and the fake scene bank of tests/fake_bank.py.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hear_gram import synthetic_tasks as st
from naturalistic_hear import __main__ as cli
from naturalistic_hear import formats, mixing, taskio, workers
from naturalistic_hear import generate as gen
from naturalistic_hear.noise import BUILTIN_KINDS, BuiltinNoise, NoiseDir
from tests.fake_bank import FakeSceneBank

SR = 16000
SCENES = 6


def factory(cache: Path, fmt: str = "binaural", gain: float = 1.0):
    bank = LoudBank if gain != 1.0 else FakeSceneBank
    return functools.partial(bank, cache, fmt, n_scenes=SCENES, length_s=0.3)


class LoudBank(FakeSceneBank):
    """RIRs x 30: mixes far above full scale, to exercise the headroom gain."""

    def get(self, i):
        scene, rir, noise_rirs = super().get(i)
        return scene, rir * 30.0, noise_rirs


def exit_code(main, argv: list[str]) -> int:
    """A `hear_gram.cli` entry point's exit status: its return value, or argparse's exit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_manifest(task_out: Path) -> list[dict[str, str]]:
    with (task_out / gen.MANIFEST_NAME).open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    """A mono scene task (10 clips x 1 s, 16 kHz) and a stereo event task (5 clips x 4 s, two
    sample rates, float WAV) under one tasks folder."""
    root = tmp_path_factory.mktemp("in")
    st.make_scene_task(root, n_per_class=2, duration_s=1.0, sample_rates=(SR,), kfold=3)
    st.make_event_task(
        root, n_clips=5, duration_s=3.8, sample_rates=(SR, 22050), channels=2, subtype="FLOAT"
    )
    return root


@pytest.fixture(scope="module")
def scene_task(tasks) -> Path:
    return tasks / "hear-gram-demo-scene"


@pytest.fixture(scope="module")
def event_task(tasks) -> Path:
    return tasks / "hear-gram-demo-event"


def run(task: Path, out: Path, fmt="binaural", **kwargs) -> gen.TaskResult:
    kwargs.setdefault("progress", False)
    return gen.process_task(
        task, out, fmt, factory(out.parent / "cache", fmt), BuiltinNoise(SR), seed=3, **kwargs
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory, scene_task, event_task) -> Path:
    """Both tasks rendered binaurally in one uninterrupted serial run."""
    out = tmp_path_factory.mktemp("ref") / "out"
    for task in (scene_task, event_task):
        result = run(task, out)
        assert result.complete and result.skipped == 0
    return out


# --- noise sources --------------------------------------------------------------------------------


def test_builtin_noise_kinds_are_seeded_and_varied():
    source = BuiltinNoise(SR)
    names = set()
    for seed in range(40):
        noise, name = source.draw(np.random.default_rng(seed))
        again, _ = source.draw(np.random.default_rng(seed))
        assert np.array_equal(noise, again) and np.all(np.isfinite(noise))
        assert 2.0 * SR <= noise.shape[0] <= 12.0 * SR and noise.ndim == 1
        assert float(np.abs(noise).max()) == pytest.approx(0.5, rel=0.05)
        names.add(name)
    assert names == {f"builtin:{kind}" for kind in BUILTIN_KINDS}
    assert source.describe()["stand_in_for"] == "WHAMR! noise"
    assert source.at_rate(32000).sample_rate == 32000


def test_noise_dir_lists_sorted_files_and_resamples(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "b").mkdir()
    sf.write(tmp_path / "b" / "z.wav", rng.standard_normal((8000, 2)) * 0.1, 8000)
    sf.write(tmp_path / "a.flac", rng.standard_normal(4000) * 0.1, 8000)
    (tmp_path / "notes.txt").write_text("not audio")
    source = NoiseDir(tmp_path, SR)
    assert source.files == ("a.flac", "b/z.wav")
    noise = source.load("b/z.wav")
    assert noise.shape == (16000,) and noise.dtype == np.float64  # 1 s stereo -> mono 16 kHz
    drawn = {source.draw(np.random.default_rng(s))[1] for s in range(10)}
    assert drawn == set(source.files)
    other = source.at_rate(22050)
    assert other.files == source.files and other.load("a.flac").shape == (11025,)
    assert source.describe() == NoiseDir(tmp_path, 32000).describe()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no audio files"):
        NoiseDir(empty, SR)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        NoiseDir(tmp_path / "missing", SR)


# --- one clip ---------------------------------------------------------------------------------------


def _clip_args(bank_cls=FakeSceneBank, fmt="binaural", noise=None):
    bank = bank_cls(".", fmt, SR, n_scenes=SCENES, length_s=0.3).build()
    return bank, noise or BuiltinNoise(SR)


@pytest.mark.parametrize("fmt", ["binaural", "ambisonic"])
def test_achieved_snr_matches_the_manifest(fmt):
    bank, noise = _clip_args(fmt=fmt)
    audio = np.random.default_rng(0).standard_normal(2 * SR) * 0.05
    snrs = []
    for i in range(12):
        clip = mixing.render_components(audio, SR, bank, noise, 0, "t", "train", f"{i}.wav")
        row = clip.row
        # measured here on the parts: all channels, noise over its active part only
        p_target = np.mean(clip.target**2)
        p_noise = np.mean(clip.noise[:, clip.active] ** 2)
        assert abs(10 * math.log10(p_target / p_noise) - row["snr_db"]) < 0.1
        assert row["achieved_snr_db"] == pytest.approx(row["snr_db"], abs=1e-6)
        assert 5.0 <= row["snr_db"] <= 40.0 and row["format"] == fmt
        assert clip.mix.shape == (formats.CHANNELS[fmt], 2 * SR) and clip.mix.dtype == np.float32
        assert row["noise_length_samples"] == clip.active.sum()
        assert not np.any(clip.noise[:, : row["noise_offset_samples"]])  # nothing before it
        snrs.append(row["snr_db"])
    assert max(snrs) - min(snrs) > 10.0  # drawn, not constant


def test_render_scene_mix_is_a_pure_function_of_its_identity():
    bank, noise = _clip_args()
    audio = np.random.default_rng(1).standard_normal((SR, 2)) * 0.1  # stereo input: downmixed
    mix, row = mixing.render_scene_mix(audio, SR, bank, noise, 7, "task", "test", "a.wav")
    mix2, row2 = mixing.render_scene_mix(audio, SR, bank, noise, 7, "task", "test", "a.wav")
    assert np.array_equal(mix, mix2) and row == row2 and row["input_channels"] == 2
    others = [
        mixing.render_scene_mix(audio, SR, bank, noise, *ident)[0]
        for ident in [(8, "task", "test", "a.wav"), (7, "task", "test", "b.wav")]
    ]
    assert all(not np.array_equal(mix, other) for other in others)
    mono = mixing.render_scene_mix(audio.mean(axis=1), SR, bank, noise, 7, "task", "test", "a.wav")[
        0
    ]
    np.testing.assert_allclose(mono, mix, atol=1e-6)


def test_source_is_normalised_to_minus_14_dbfs():
    bank, noise = _clip_args()
    audio = np.random.default_rng(2).standard_normal(SR) * 0.3
    _, row = mixing.render_scene_mix(audio, SR, bank, noise, 0, "t", "s", "f.wav")
    rms_db = 20 * math.log10(np.sqrt(np.mean(audio**2)) * row["source_gain"])
    assert rms_db == pytest.approx(-14.0)


def test_loud_mixes_are_scaled_down_never_clipped():
    bank, noise = _clip_args(LoudBank)
    audio = np.random.default_rng(3).standard_normal(SR) * 0.1
    clip = mixing.render_components(audio, SR, bank, noise, 0, "t", "s", "f.wav")
    assert clip.row["headroom_gain"] < 0.2
    assert float(np.abs(clip.mix).max()) == pytest.approx(0.999, rel=1e-6)
    # scaling the whole mix keeps the SNR
    assert clip.row["achieved_snr_db"] == pytest.approx(clip.row["snr_db"], abs=1e-6)


def test_silent_source_still_gets_noise():
    bank, noise = _clip_args()
    mix, row = mixing.render_scene_mix(np.zeros(SR), SR, bank, noise, 0, "t", "s", "f.wav")
    assert row["source_gain"] == 1.0 and row["achieved_snr_db"] == -math.inf
    assert 0 < float(np.abs(mix).max()) <= 0.999


def test_split_rendering_is_render_components_at_any_snr():
    """One `render_spatial` mixed at several SNRs (`mix_spatial`) is `render_components` at each
    range, bit for bit: the localization generator renders a clip once for its four SNR bins."""
    bank, noise = _clip_args(LoudBank)  # mixes above full scale: the headroom gain is exercised
    audio = np.random.default_rng(4).standard_normal(SR) * 0.1
    ident = (0, "t", "s", "f.wav")
    spatial = mixing.render_spatial(audio, SR, bank, noise, *ident)
    assert "snr_db" not in spatial.row and spatial.noise.shape == spatial.target.shape
    ranges = [(5.0, 10.0), (10.0, 20.0), (20.0, 40.0), (5.0, 40.0)]
    quantiles = []
    for lo, hi in ranges:
        ref = mixing.render_components(audio, SR, bank, noise, *ident, snr_range=(lo, hi))
        part = mixing.mix_spatial(spatial, mixing.draw_snr_db(*ident, (lo, hi)))
        assert np.array_equal(part.mix, ref.mix) and np.array_equal(part.noise, ref.noise)
        assert part.row == ref.row and list(part.row) == list(mixing.MANIFEST_COLUMNS)
        assert part.row["headroom_gain"] < 1.0
        # the same target at every SNR, only scaled by that mix's headroom gain
        np.testing.assert_allclose(
            part.target / part.row["headroom_gain"], spatial.target, rtol=1e-12, atol=0
        )
        assert lo <= part.row["snr_db"] <= hi
        assert part.row["achieved_snr_db"] == pytest.approx(part.row["snr_db"], abs=1e-9)
        quantiles.append((part.row["snr_db"] - lo) / (hi - lo))
    assert quantiles == pytest.approx([quantiles[0]] * len(ranges))  # one draw, mapped per range
    with pytest.raises(ValueError, match="low <= high"):
        mixing.draw_snr_db(*ident, (9.0, 1.0))


def test_render_scene_mix_checks_its_inputs():
    bank, noise = _clip_args()
    with pytest.raises(ValueError, match="at_rate"):
        mixing.render_scene_mix(np.zeros(SR), SR, bank, BuiltinNoise(22050), 0, "t", "s", "f")
    with pytest.raises(ValueError, match="low <= high"):
        mixing.render_scene_mix(np.zeros(SR), SR, bank, noise, 0, "t", "s", "f", snr_range=(9, 1))


# --- whole tasks ---------------------------------------------------------------------------------


def test_labels_and_splits_are_copied_byte_for_byte(reference, tasks):
    for task in ("hear-gram-demo-scene", "hear-gram-demo-event"):
        src, dst = tasks / task, reference / task
        copied = [p.name for p in src.iterdir() if p.is_file() and p.name != "task_metadata.json"]
        assert "labelvocabulary.csv" in copied and len(copied) >= 4
        for name in copied:
            assert (dst / name).read_bytes() == (src / name).read_bytes(), name
        meta_in = json.loads((src / "task_metadata.json").read_text())
        meta_out = json.loads((dst / "task_metadata.json").read_text())
        block = meta_out.pop("naturalistic")
        assert meta_out == meta_in
        assert block["format"] == "binaural" and block["seed"] == 3
        assert block["generator"] == gen.GENERATOR_VERSION and block["scene_pool"] == "test"
        assert block["snr_db_range"] == [5.0, 40.0]
        assert block["noise_source"]["kind"] == "builtin"
        assert set(block["banks"]) == {str(sr) for sr in block["sample_rates"]}


def test_audio_keeps_rates_durations_subtypes_and_is_binaural(reference, tasks):
    n_files = 0
    for src in sorted(tasks.rglob("*.wav")):
        rel = src.relative_to(tasks)
        dst_info, src_info = sf.info(reference / rel), sf.info(src)
        assert dst_info.frames == src_info.frames, rel
        assert dst_info.samplerate == src_info.samplerate
        assert dst_info.subtype == src_info.subtype and dst_info.channels == 2
        audio, _ = sf.read(reference / rel)
        assert float(np.abs(audio).max()) <= 0.999 + 1 / 32768
        n_files += 1
    assert n_files == 10 + 5 * 2


def test_manifest_rows(reference, event_task):
    rows = read_manifest(reference / "hear-gram-demo-event")
    assert len(rows) == 10 and list(rows[0]) == list(mixing.MANIFEST_COLUMNS)
    assert [taskio.row_key(r) for r in rows] == sorted(taskio.row_key(r) for r in rows)
    for row in rows:
        assert abs(float(row["achieved_snr_db"]) - float(row["snr_db"])) < 0.1
        assert row["format"] == "binaural" and row["input_channels"] == "2"
        assert len(json.loads(row["noise_directions"])) == int(row["n_noises"])
        assert row["noise_kind"] in ("localized", "diffuse")
    # the same clip at 16 and 22.05 kHz: same scene, SNR and noise kind (a pure function of the
    # clip's identity, not of the sample rate)
    by_rate = {}
    for row in rows:
        by_rate.setdefault((row["split"], row["filename"]), []).append(row)
    for pair in by_rate.values():
        assert [r["sample_rate"] for r in pair] == ["16000", "22050"]
        for field in ("scene_id", "snr_db", "noise_file", "head_azimuth_deg"):
            assert pair[0][field] == pair[1][field]


def test_written_file_is_the_rendered_mix(reference, scene_task):
    rows = read_manifest(reference / scene_task.name)
    row = rows[4]
    audio, _ = sf.read(scene_task / str(SR) / row["split"] / row["filename"])
    bank = FakeSceneBank(".", "binaural", SR, n_scenes=SCENES, length_s=0.3).build()
    clip = mixing.render_components(
        audio, SR, bank, BuiltinNoise(SR), 3, scene_task.name, row["split"], row["filename"]
    )
    written, _ = sf.read(reference / scene_task.name / str(SR) / row["split"] / row["filename"])
    np.testing.assert_allclose(written.T, clip.mix, atol=1.01 / 32768)
    assert float(row["snr_db"]) == clip.row["snr_db"]


def test_ambisonic_has_four_channels(tmp_path, scene_task):
    result = run(scene_task, tmp_path / "out", "ambisonic")
    files = sorted(result.out_dir.rglob("*.wav"))
    assert len(files) == 10 and all(sf.info(f).channels == 4 for f in files)
    meta = json.loads((result.out_dir / "task_metadata.json").read_text())
    assert meta["naturalistic"]["channels"] == 4
    with pytest.raises(ValueError, match="2-channel RIRs"):  # a binaural bank for Ambisonics
        gen.process_task(
            scene_task, tmp_path / "o2", "ambisonic", factory(tmp_path), BuiltinNoise(SR)
        )


def test_runs_are_deterministic(tmp_path, reference, scene_task, event_task):
    for task in (scene_task, event_task):
        run(task, tmp_path / "out")
    assert checksums(tmp_path / "out") == checksums(reference)
    again = run(scene_task, tmp_path / "out")  # a finished task is skipped
    assert again.rendered == 0 and again.skipped == 10 and again.complete


@pytest.mark.parametrize("damage", ["truncated", "mono", "event-truncated"])
def test_rerun_redoes_a_damaged_file_listed_as_done(tmp_path, reference, scene_task, event_task,
                                                    damage):  # fmt: skip
    """A finished task whose output WAV was truncated (or replaced by a whole but mono file)
    since: a rerun renders that file again, byte-identical to a fresh render, and only it."""
    task = event_task if damage.startswith("event") else scene_task
    out = tmp_path / "out"
    run(task, out)
    victim = sorted((out / task.name / str(SR)).rglob("*.wav"))[1]
    data = victim.read_bytes()
    if damage == "mono":
        audio, _ = sf.read(victim, dtype="int16" if "scene" in task.name else "float32")
        sf.write(victim, audio[:, 0], SR, subtype=sf.info(victim).subtype)
    else:
        victim.write_bytes(data[: len(data) - 6])  # the last frames lost: header unchanged
    again = run(task, out)
    assert again.rendered == 1 and again.complete
    assert victim.read_bytes() == data
    ref = {k: v for k, v in checksums(reference).items() if k.startswith(task.name)}
    assert checksums(out) == ref


def test_shards_with_different_worker_counts_give_identical_files(tmp_path, reference, event_task):
    out = tmp_path / "out"
    first = run(event_task, out, shard=(0, 2), workers=1)
    assert first.rendered == 5 and not first.complete
    assert not (first.out_dir / gen.MANIFEST_NAME).exists()
    second = run(event_task, out, shard=(1, 2), workers=2)
    assert second.rendered == 5 and second.complete
    ref = {k: v for k, v in checksums(reference).items() if k.startswith(event_task.name)}
    assert checksums(out) == ref


def test_interrupted_run_resumes_to_the_same_files(tmp_path, reference, scene_task, monkeypatch):
    out = tmp_path / "out"
    calls = {"n": 0}
    original = workers.Renderer.__call__

    def crash_on_fifth(self, clip):
        calls["n"] += 1
        row = original(self, clip)
        if calls["n"] == 5:  # killed after writing the audio, before recording its row
            raise KeyboardInterrupt
        return row

    monkeypatch.setattr(workers.Renderer, "__call__", crash_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        run(scene_task, out)
    monkeypatch.undo()
    task_out = out / scene_task.name
    assert len(list(task_out.rglob("*.wav"))) == 5 and not (task_out / gen.MANIFEST_NAME).exists()
    # debris of a kill: a half-written temporary file and a torn last row
    (task_out / str(SR) / "fold00" / ".clip0000.wav.999.tmp").write_bytes(b"RIFF")
    rows_file = next((task_out / gen.ROWS_DIR).glob("*.jsonl"))
    rows_file.write_text(rows_file.read_text() + '{"task": "hear-gr')
    resumed = run(scene_task, out)
    assert resumed.complete and resumed.skipped == 4 and resumed.rendered == 6
    ref = {k: v for k, v in checksums(reference).items() if k.startswith(scene_task.name)}
    assert checksums(out) == ref


def test_other_settings_into_the_same_output_are_refused(tmp_path, scene_task):
    run(scene_task, tmp_path / "out", sample_rates=[SR])
    with pytest.raises(taskio.TaskError, match="different content"):
        gen.process_task(
            scene_task, tmp_path / "out", "binaural", factory(tmp_path), BuiltinNoise(SR), seed=4
        )


def _break(task: Path, how: str) -> str:
    """Damage a copy of a task; returns a pattern of the expected error message."""
    if how == "metadata":
        (task / "task_metadata.json").unlink()
        return "missing task metadata"
    if how == "metadata-json":
        (task / "task_metadata.json").write_text("{not json")
        return "not valid JSON"
    if how == "vocabulary":
        (task / "labelvocabulary.csv").unlink()
        return "missing labelvocabulary.csv"
    if how == "split-json":
        (task / "fold01.json").unlink()
        return "split file of split 'fold01'"
    if how == "audio":
        shutil.rmtree(task / str(SR))
        return "no audio folders"
    if how == "split-folder":
        shutil.rmtree(task / str(SR) / "fold02")
        return "missing audio folder 16000/fold02"
    if how == "file":
        (task / str(SR) / "fold00" / "clip0005.wav").unlink()
        return "missing audio file .*clip0005.wav"
    if how == "unreadable":
        (task / str(SR) / "fold01" / "clip0001.wav").write_bytes(b"not a wav file at all")
        return "unreadable audio file .*clip0001.wav"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "metadata",
        "metadata-json",
        "vocabulary",
        "split-json",
        "audio",
        "split-folder",
        "file",
        "unreadable",
    ],
)
def test_malformed_task_dirs_give_clear_errors(tmp_path, scene_task, how):
    task = tmp_path / scene_task.name
    shutil.copytree(scene_task, task)
    pattern = _break(task, how)
    with pytest.raises(taskio.TaskError, match=pattern):
        run(task, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_sample_rate_and_bad_shard(tmp_path, scene_task):
    with pytest.raises(taskio.TaskError, match=r"no audio folder for \[48000\] Hz"):
        run(scene_task, tmp_path / "out", sample_rates=[48000])
    with pytest.raises(ValueError, match="0 <= K < N"):
        run(scene_task, tmp_path / "out", shard=(2, 2))


# --- command line ----------------------------------------------------------------------------------


def test_cli_renders_the_nat_hear_tasks_present(tmp_path, monkeypatch):
    tasks = tmp_path / "tasks"
    st.make_scene_task(
        tasks, name="esc50-v2.0.0-full", n_per_class=1, duration_s=0.5, sample_rates=(SR,), kfold=3
    )
    st.make_scene_task(tasks, name="not-nat-hear", n_per_class=1, duration_s=0.5, kfold=3)
    monkeypatch.setattr(cli, "bank_factory", lambda args: factory(tmp_path / "cache", args.fmt))
    first = ["--tasks-dir", str(tasks), "--out", str(tmp_path / "out"), "--format", "binaural",
             "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert cli.main(first) == 0
    assert (tmp_path / "cache" / "logs" / "naturalistic_hear.log").is_file()
    second = ["--tasks-dir", str(tasks), "--out", str(tmp_path / "out2"), "--format", "binaural",
              "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    # --workers: the old name of --jobs
    assert cli.main([*second, "--shard", "0/1", "--workers", "1", "--snr-db", "5", "40"]) == 0
    # the task only: the log is not in the tasks folder (heareval takes every folder for a task)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["esc50-v2.0.0-full"]
    assert checksums(tmp_path / "out") == checksums(tmp_path / "out2")
    rows = read_manifest(tmp_path / "out" / "esc50-v2.0.0-full")
    assert len(rows) == 5


def test_cli_errors(tmp_path, scene_task, capsys):
    """Expected failures end with one line `<prog>: error: ...` and exit status 2."""
    base = ["--tasks-dir", str(scene_task.parent), "--out", str(tmp_path / "out")]
    base += ["--format", "binaural", "--cache-dir", str(tmp_path / "cache")]
    task = ["--task", scene_task.name]
    cases = [
        ([], "none of the Nat-HEAR tasks.*hear-gram-demo-scene"),
        ([*task, "--rirs", "sofa:x.sofa"], "sofa:FILE: x.sofa is not a file"),
        ([*task, "--rirs", f"sofa:{tmp_path}"], "is a directory, not a file"),
        (["--shard", "2/2"], "0 <= K < N"),
        (["--task", "nope"], "no task folder"),
        ([*task, "--ambisonic-convention", "fuma"], "--ambisonic-convention applies to --format"),
        ([*task, "--workers", "0"], "--jobs/--workers: must be >= 1"),
        ([*task, "--jobs", "0"], "--jobs/--workers: must be >= 1"),
        ([*task, "--snr-db", "nan", "40"], "--snr-db: must be a finite number"),
        ([*task, "--snr-db", "5", "inf"], "--snr-db: must be a finite number"),
        ([*task, "--snr-db", "40", "5"], "needs LO <= HI"),
        ([*task, "--n-scenes", "0"], "--n-scenes: must be >= 1"),
    ]
    for extra, pattern in cases:
        code = exit_code(cli.main, [*base, *extra])
        err = capsys.readouterr().err
        assert code == 2, (extra, err)
        lines = err.strip().splitlines()
        assert "Traceback" not in err and re.search(pattern, lines[-1]), (extra, err)
        assert lines[-1].startswith("python -m naturalistic_hear: error: ")
    assert not (tmp_path / "out").exists()


def test_cli_passes_the_ambisonic_convention_to_the_bank(tmp_path):
    args = cli.build_parser().parse_args(
        ["--tasks-dir", ".", "--out", "o", "--format", "ambisonic", "--ambisonic-convention", "fuma",
         "--cache-dir", str(tmp_path)]
    )  # fmt: skip
    bank = cli.bank_factory(args)(16000)
    assert bank.describe()["ambisonic_convention"] == "fuma"


# --- with the real pieces ------------------------------------------------------------------------


def test_noise_dir_through_a_task(tmp_path, scene_task):
    noise_dir = tmp_path / "wham_noise" / "tt"
    noise_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("n1.wav", "n2.wav"):
        sf.write(noise_dir / name, rng.standard_normal((6000, 2)) * 0.1, 8000)  # 0.75 s, stereo
    noise = NoiseDir(noise_dir, 8000)
    result = gen.process_task(scene_task, tmp_path / "out", "binaural", factory(tmp_path), noise)
    # The same clips with the noise 100 dB down: the same scenes and noise placement (their own
    # random streams), so these files are the reverberant sources alone, to 1e-5.
    quiet = gen.process_task(scene_task, tmp_path / "quiet", "binaural", factory(tmp_path), noise,
                             snr_range=(100.0, 100.0))  # fmt: skip
    rows = read_manifest(result.out_dir)
    quiet_rows = {r["filename"]: r for r in read_manifest(quiet.out_dir)}
    assert {r["noise_file"] for r in rows} == {"n1.wav", "n2.wav"}
    for row in rows:  # 0.75 s of noise in a 1 s clip: placed at a random offset
        assert row["noise_length_samples"] == str(12000)
        offset = int(row["noise_offset_samples"])
        assert 0 <= offset <= SR - 12000
        # The SNR measured here from the written files, with numpy alone: source power over the
        # whole clip and both ears, noise power over both ears where the noise clip lies.
        rel = Path(str(SR), row["split"], row["filename"])
        mix = sf.read(result.out_dir / rel, dtype="float64")[0]
        quiet_row = quiet_rows[row["filename"]]
        source = sf.read(quiet.out_dir / rel, dtype="float64")[0] * (
            float(row["headroom_gain"]) / float(quiet_row["headroom_gain"])
        )
        noise_part = (mix - source)[offset : offset + 12000]
        snr = 10 * np.log10(np.mean(source**2) / np.mean(noise_part**2))
        assert abs(snr - float(row["snr_db"])) < 0.05, (snr, row["snr_db"])
    meta = json.loads((result.out_dir / "task_metadata.json").read_text())["naturalistic"]
    assert meta["noise_source"] == {**NoiseDir(noise_dir, SR).describe(), "folder": "tt"}


def test_real_scene_bank(tmp_path, scene_task):
    """The generator against naturalistic_hear.bank.SceneBank (2 simulated scenes)."""
    bank_module = pytest.importorskip("naturalistic_hear.bank")
    make_bank = functools.partial(
        bank_module.SceneBank, tmp_path / "cache", "ambisonic", n_scenes=2
    )
    result = gen.process_task(
        scene_task, tmp_path / "out", "ambisonic", make_bank, BuiltinNoise(SR)
    )
    assert result.complete
    rows = read_manifest(result.out_dir)
    assert {r["scene_id"] for r in rows} <= {"test-00000", "test-00001"}
    assert all(r["pool"] == "test" and r["format"] == "ambisonic" for r in rows)
    for row in rows:
        assert abs(float(row["achieved_snr_db"]) - float(row["snr_db"])) < 0.1
        info = sf.info(result.out_dir / str(SR) / row["split"] / row["filename"])
        assert info.channels == 4 and info.frames == SR
    meta = json.loads((result.out_dir / "task_metadata.json").read_text())["naturalistic"]
    assert meta["banks"][str(SR)]["ambisonic_convention"] == "acn-sn3d"
