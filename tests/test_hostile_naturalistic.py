"""Hostile-input matrix, Nat-HEAR generator: paths from task data, non-finite or
degenerate audio and noise, resumed runs with other settings, worker processes and concurrent
runs, and the command line's one-line errors.

Tiny tasks (5 clips x 0.5 s at 16 kHz) and the fake scene bank of tests/fake_bank.py; the command
line runs in this process (`cli.main`, bank factory patched) except for the kill -9 case, which
needs a real parent process to kill.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hear_gram import dsp, safeio
from hear_gram import synthetic_tasks as st
from naturalistic_hear import __main__ as cli
from naturalistic_hear import generate as gen
from naturalistic_hear import mixing, taskio, workers
from naturalistic_hear.external import ExternalRIRError, SoundSpacesBank, channels_first
from naturalistic_hear.noise import BuiltinNoise, NoiseDir
from tests import hostile
from tests.fake_bank import FakeSceneBank

SR = 16000
TASK = "hear-gram-demo-scene"


def factory(fmt: str = "binaural", **kwargs):
    kwargs = {"n_scenes": 4, "length_s": 0.2, **kwargs}
    return functools.partial(FakeSceneBank, ".", fmt, **kwargs)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    st.make_scene_task(root, n_per_class=1, duration_s=0.5, sample_rates=(SR,), kfold=3)
    return root / TASK


@pytest.fixture
def world(tmp_path, pristine):
    """tmp/tasks/<task> (a copy to damage), tmp/out, and files outside both that must survive:
    tmp/victim.wav (a valid 16 kHz WAV, so the old code read and overwrote it) and
    tmp/secret.txt."""
    task = tmp_path / "tasks" / TASK
    shutil.copytree(pristine, task)
    sf.write(tmp_path / "victim.wav", np.full(SR // 2, 0.25), SR, subtype="PCM_16")
    (tmp_path / "secret.txt").write_text("private key material\n")
    return tmp_path, task, tmp_path / "out"


LOG_CACHE = "nh-cache"  # --cache-dir of `args`: the tool's log goes there


def outside(root: Path) -> dict[str, str]:
    """Hashes of everything under root except the output folder and the tool's cache (log)."""
    return {k: v for k, v in hostile.snapshot(root).items()
            if not k.startswith(("out/", f"{LOG_CACHE}/"))}  # fmt: skip


def main(argv: list[str], capsys, monkeypatch, bank=None) -> hostile.Result:
    """`python -m naturalistic_hear ARGV` in this process (fake bank unless `bank` is False)."""
    if bank is not False:
        monkeypatch.setattr(cli, "bank_factory", lambda args: bank or factory(args.fmt))
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return hostile.Result(code, out, err)


def args(task: Path, out: Path, *extra) -> list:
    return ["--tasks-dir", task.parent, "--out", out, "--format", "binaural", "--task", task.name,
            "--quiet", "--cache-dir", out.parent / LOG_CACHE, *extra]  # fmt: skip


def add_clip(task: Path, split: str, name: str) -> None:
    labels = json.loads((task / f"{split}.json").read_text())
    labels[name] = ["hum"]
    (task / f"{split}.json").write_text(json.dumps(labels))


# --- path: names from data never escape, outputs never written through links --------------------


@pytest.mark.hostile("path")
@pytest.mark.parametrize(
    ("how", "needle"),
    [
        ("absolute", "not a plain relative name"),
        ("dotdot", "not a plain relative name"),
        ("subfolder", "names a sub-folder"),
        ("linked-audio", "leads outside"),
        ("split-name", "split name"),
        ("top-level-link", "leads outside"),
    ],
)
def test_task_names_cannot_leave_the_task(world, capsys, monkeypatch, how, needle):
    root, task, out = world
    folder = task / str(SR) / "fold00"
    if how == "absolute":  # the old code read the victim and overwrote it with the mix
        add_clip(task, "fold00", str(root / "victim.wav"))
    elif how == "dotdot":
        add_clip(task, "fold00", "../../../../victim.wav")
    elif how == "subfolder":
        (folder / "sub").mkdir()
        shutil.copy(folder / "clip0000.wav", folder / "sub" / "a.wav")
        add_clip(task, "fold00", "sub/a.wav")
    elif how == "linked-audio":
        (folder / "link.wav").symlink_to(root / "victim.wav")
        add_clip(task, "fold00", "link.wav")
    elif how == "split-name":  # the old code wrote OUT/<task>/16000/../../../escape/
        meta = json.loads((task / "task_metadata.json").read_text())
        meta["splits"].append("../../../escape")
        (task / "task_metadata.json").write_text(json.dumps(meta))
    elif how == "top-level-link":  # the old code copied the secret into the output task
        (task / "notes.txt").symlink_to(root / "secret.txt")
    before = outside(root)
    res = main(args(task, out), capsys, monkeypatch)
    hostile.assert_clean_failure(res, needle)
    assert outside(root) == before
    assert sf.read(root / "victim.wav")[0] == pytest.approx(0.25, abs=1e-4)
    for p in out.rglob("*") if out.exists() else ():
        assert not p.is_file() or b"private key" not in p.read_bytes()
    assert not (root / "escape").exists() and not (root / "tasks" / "escape").exists()


def _plant(out_task: Path, where: str, target: Path) -> Path:
    place = {
        "rows": out_task / gen.ROWS_DIR / "rows-0-of-1.jsonl",
        "audio": out_task / str(SR) / "fold00" / "clip0000.wav",
        "metadata": out_task / "task_metadata.json",
        "rows-dir": out_task / gen.ROWS_DIR,
        "task-dir": out_task,
        "shard-lock": out_task / gen.SHARD_LOCK.format(k=0, n=1),
    }[where]
    place.parent.mkdir(parents=True, exist_ok=True)
    place.symlink_to(target)
    return place


@pytest.mark.hostile("path")
@pytest.mark.parametrize(
    "where", ["rows", "audio", "metadata", "rows-dir", "task-dir", "shard-lock"]
)
def test_links_planted_in_the_output_are_never_written_through(world, capsys, monkeypatch, where):
    """A link in OUT/<task> pointing outside --out: refused before anything is written through
    it (the old code appended manifest rows to whatever the rows file pointed at)."""
    root, task, out = world
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere if where in ("rows-dir", "task-dir") else root / "victim.wav"
    _plant(out / TASK, where, target)
    before = outside(root)
    res = main(args(task, out), capsys, monkeypatch)
    hostile.assert_clean_failure(res, "symbolic link" if where == "shard-lock" else "outside")
    assert outside(root) == before and not any(elsewhere.iterdir())


@pytest.mark.hostile("path")
def test_a_link_at_a_temporary_name_is_replaced_not_followed(world):
    """Temporary files are created O_EXCL | O_NOFOLLOW: a link planted at the next temporary name
    (predictable: it holds the pid) is removed, the victim untouched, and the run completes."""
    root, task, out = world
    folder = out / TASK / str(SR) / "fold00"
    folder.mkdir(parents=True)
    link = folder / f".clip0000.wav.{os.getpid()}{safeio.TMP_SUFFIX}"
    link.symlink_to(root / "victim.wav")
    before = outside(root)
    result = gen.process_task(task, out, "binaural", factory(), BuiltinNoise(SR), progress=False)
    assert result.complete and outside(root) == before
    written = folder / "clip0000.wav"
    assert not written.is_symlink() and sf.info(written).channels == 2 and not link.exists()


# --- nonfinite: NaN, silent or too short inputs fail, naming the file -----------------------------


def _noise_dir(root: Path, audio: np.ndarray, subtype: str = "FLOAT") -> Path:
    folder = root / "noise"
    folder.mkdir()
    sf.write(folder / "n.wav", audio, SR, subtype=subtype)
    return folder


@pytest.mark.hostile("nonfinite")
@pytest.mark.parametrize(
    ("how", "needles"),
    [
        ("nan-noise", ("n.wav", "nan")),
        ("silent-noise", ("n.wav", "silent")),
        ("one-sample-noise", ("n.wav", "shorter than 0.5 s")),
        ("nan-audio", ("clip0002.wav", "nan")),
        ("inf-audio", ("clip0002.wav", "infinite")),
    ],
)
def test_non_finite_or_degenerate_audio_fails_naming_the_file(
    world, capsys, monkeypatch, how, needles
):
    """The old code wrote constant -32768 (NaN noise), NaN files (NaN input) or erased the source
    with a 2.7e-6 headroom gain while the manifest said 8.3 dB (1-sample noise)."""
    root, task, out = world
    noise = np.random.default_rng(0).standard_normal(SR) * 0.1
    extra = []
    if how == "nan-noise":
        noise[100] = np.nan
    elif how == "silent-noise":
        noise[:] = 0.0
    elif how == "one-sample-noise":
        noise = noise[:1]
    else:
        clip = task / str(SR) / "fold02" / "clip0002.wav"
        audio, _ = sf.read(clip)
        audio[10] = np.nan if how == "nan-audio" else np.inf
        sf.write(clip, audio, SR, subtype="FLOAT")
    if how.endswith("noise"):
        extra = ["--noise-dir", _noise_dir(root, noise)]
    res = main(args(task, out, *extra), capsys, monkeypatch)
    hostile.assert_clean_failure(res, *needles)
    for wav in out.rglob("*.wav"):  # clips rendered before the failure are sound
        data, _ = sf.read(wav)
        assert np.isfinite(data).all() and np.abs(data).max() < 1.0


class _ShortNoise:
    """A noise source giving `n` samples: what NoiseDir's header check keeps out of a folder."""

    sample_rate = SR

    def __init__(self, n: int) -> None:
        self.n = n

    def draw(self, rng):
        return rng.standard_normal(self.n), f"short:{self.n}"


@pytest.mark.hostile("nonfinite")
def test_short_noise_is_refused_by_the_mixer_itself():
    bank = FakeSceneBank(".", "binaural", SR, n_scenes=2, length_s=0.2).build()
    audio = np.random.default_rng(0).standard_normal(SR) * 0.1
    with pytest.raises(ValueError, match=r"short:1 has 1 samples.*fewer than the 8000"):
        mixing.render_scene_mix(audio, SR, bank, _ShortNoise(1), 0, "t", "s", "f.wav")
    # exactly NOISE_MIN_S is enough, and the source keeps its level (headroom near 1)
    mix, row = mixing.render_scene_mix(audio, SR, bank, _ShortNoise(SR // 2), 0, "t", "s", "f.wav")
    assert row["headroom_gain"] > 0.1 and np.isfinite(mix).all()
    # a clip shorter than NOISE_MIN_S needs only its own length of noise
    mixing.render_scene_mix(audio[:1000], SR, bank, _ShortNoise(1000), 0, "t", "s", "f.wav")


@pytest.mark.hostile("nonfinite")
@pytest.mark.parametrize("snr", [("nan", "40"), ("5", "inf"), ("nan", "nan"), ("5", "1e300")])
def test_non_finite_snr_ranges_are_refused_before_writing(world, capsys, monkeypatch, snr):
    root, task, out = world
    res = main(args(task, out, "--snr-db", *snr), capsys, monkeypatch)
    hostile.assert_clean_failure(res, "--snr-db", "finite")
    assert not out.exists()
    with pytest.raises(ValueError, match="finite|within"):
        range_ = tuple(float(v) for v in snr)
        gen.process_task(task, out, "binaural", factory(), BuiltinNoise(SR), snr_range=range_)
    assert not out.exists()  # refused before the metadata (the old code wrote NaN into it)


@pytest.mark.hostile("nonfinite")
def test_dsp_gains_refuse_nan_instead_of_propagating_it():
    nan_audio = np.array([0.1, np.nan, 0.2])
    for call in (
        lambda: dsp.power(nan_audio),
        lambda: dsp.rms_gain(nan_audio),  # used to return 1.0 (NaN > 0 is False)
        lambda: dsp.normalize_peak(nan_audio, 0.5),
        lambda: dsp.limit_peak(np.array([[0.5, np.inf]])),  # used to return a NaN gain
        lambda: dsp.gain_for_snr(1.0, math.nan, 10.0),
        lambda: dsp.gain_for_snr(1.0, 1.0, math.nan),
        lambda: dsp.measured_snr_db(np.ones(3), nan_audio),
        lambda: dsp.snr_gain(nan_audio, np.ones(3), 10.0),
    ):
        with pytest.raises(dsp.NonFiniteError):
            call()
    assert dsp.gain_for_snr(1.0, 1.0, 10.0) == pytest.approx(10 ** (-0.5))  # finite still works


@pytest.mark.hostile("nonfinite")
def test_nan_rirs_are_refused_at_load():
    rir = np.zeros((2, 100), dtype=np.float32)
    rir[0, 3] = np.nan
    with pytest.raises(ExternalRIRError, match="x.npy: the RIR holds NaN"):
        channels_first(rir, "binaural", "x.npy")


@pytest.mark.hostile("nonfinite")
def test_manifests_never_hold_nan(world, tmp_path):
    """External banks leave the scene fields they do not know NaN; the manifest writes null."""
    root, task, out = world
    bank = functools.partial(SoundSpacesBank, _soundspaces(tmp_path / "ss"), "binaural")
    result = gen.process_task(task, out, "binaural", bank, BuiltinNoise(SR), progress=False)
    text = (result.out_dir / gen.MANIFEST_NAME).read_text()
    assert "NaN" not in text and "null" in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 5 and all(json.loads(r["t60_s"]) is None for r in rows)
    assert all(math.isfinite(float(r["achieved_snr_db"])) for r in rows)


# --- stale: a resumed run with other settings is refused, its output left as it was ---------------


def _noise_folder(root: Path, name: str, seconds: float) -> Path:
    folder = root / name / "tt"  # same folder name and file names, other content
    folder.mkdir(parents=True)
    sf.write(
        folder / "n.wav", np.random.default_rng(1).standard_normal(int(seconds * SR)) * 0.1, SR
    )
    return folder


@pytest.mark.hostile("stale")
@pytest.mark.parametrize(
    "change", ["seed", "format", "snr", "noise-dir", "rirs", "n-scenes", "convention"]
)
def test_resume_with_other_settings_is_refused(world, change):
    root, task, out = world
    noise_a, noise_b = _noise_folder(root, "a", 1.0), _noise_folder(root, "b", 1.5)
    base = {"fmt": "binaural", "bank": {}, "noise": noise_a, "seed": 0, "snr": (5.0, 40.0)}
    changed = dict(base)
    changed.update(
        {
            "seed": {"seed": 1},
            "format": {"fmt": "ambisonic"},
            "snr": {"snr": (5.0, 30.0)},
            "noise-dir": {"noise": noise_b},
            "rirs": {"bank": {"length_s": 0.3}},  # another bank
            "n-scenes": {"bank": {"n_scenes": 5}},
            "convention": {"bank": {"ambisonic_convention": "fuma"}},
        }[change]
    )

    def run(s):
        return gen.process_task(
            task, out, s["fmt"], factory(s["fmt"], **s["bank"]), NoiseDir(s["noise"], SR),
            seed=s["seed"], snr_range=s["snr"], progress=False,
        )  # fmt: skip

    assert run(base).complete
    before = hostile.snapshot(out)
    with pytest.raises(taskio.TaskError, match="different content"):
        run(changed)
    assert hostile.snapshot(out) == before
    assert run(base).rendered == 0  # the same settings still resume


@pytest.mark.hostile("stale")
def test_every_cli_setting_reaches_the_recorded_bank_description(tmp_path):
    """task_metadata.json records each bank's describe(); a resume is refused when it differs.
    Each rendering option of the command line must therefore change describe()."""
    import sofar

    hrtf = tmp_path / "h.sofa"
    sofa = sofar.Sofa("SimpleFreeFieldHRIR")
    az = np.arange(0.0, 360.0, 30.0)
    sofa.SourcePosition = np.stack([az, np.zeros_like(az), np.ones_like(az)], 1)
    ir = np.zeros((az.size, 2, 64))
    ir[:, 0, 2], ir[:, 1, 5] = 1.0, 0.5
    sofa.Data_IR, sofa.Data_SamplingRate = ir, SR
    sofar.write_sofa(str(hrtf), sofa)
    rirs = _soundspaces(tmp_path / "ss")

    def describe(*extra, fmt="binaural"):
        argv = ["--tasks-dir", ".", "--out", "o", "--format", fmt, "--cache-dir", str(tmp_path)]
        bank = cli.bank_factory(cli.build_parser().parse_args([*argv, *extra]))(SR)
        return json.dumps(bank.describe(), sort_keys=True)

    base = describe("--n-scenes", "3")
    assert describe("--n-scenes", "4") != base
    assert describe("--n-scenes", "3", "--hrtf", str(hrtf)) != base
    assert describe("--rirs", f"soundspaces:{rirs}") != base
    assert describe("--n-scenes", "3", "--seed", "1") != base
    amb = describe("--n-scenes", "3", fmt="ambisonic")
    assert amb != base and describe("--n-scenes", "3", "--ambisonic-convention", "fuma",
                                    fmt="ambisonic") != amb  # fmt: skip


# --- process: workers die with their parent; concurrent runs; bounded workers --------------------


def _soundspaces(root: Path) -> Path:
    """One region (a source and a noise), binaural and Ambisonic impulse RIRs at 32 kHz."""
    root.mkdir(parents=True)
    paths = {}
    for name in ("s", "n"):
        for fmt, channels in (("binaural", 2), ("ambisonic", 4)):
            rir = np.zeros((channels, 800), dtype=np.float32)
            rir[:, 100 if name == "s" else 300] = 0.5
            np.save(root / f"{name}_{fmt}.npy", rir)
            paths[(name, fmt)] = f"{name}_{fmt}.npy"

    def emitter(name):
        rir = {f"{fmt}_rir_path": paths[(name, fmt)] for fmt in ("binaural", "ambisonic")}
        return {"name": name, "rir": rir, "azimuth": 30.0, "elevation": 0.0}

    region = {"region": {"scene": {"source": emitter("s"), "noise": [emitter("n")]}}}
    (root / "house.json").write_text(json.dumps({"sampled_regions": [region]}))
    return root


def _session(sid: int) -> list[tuple[int, str]]:
    """(pid, state) of the live (non-zombie) processes of session `sid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append((int(entry.name), fields[0]))
    return found


@pytest.mark.hostile("process")
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_die_when_their_parent_is_killed(tmp_path):
    """kill -9 of a `--workers 2` run: its spawn workers (and multiprocessing's resource tracker)
    used to live on, reparented to PID 1. Now every process of the run's session is gone within
    a few seconds."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("--workers 2 is capped at 1 on a single core: no pool to test")
    tasks = tmp_path / "tasks"
    st.make_scene_task(tasks, n_per_class=40, duration_s=0.5, sample_rates=(SR,), kfold=3)
    out = tmp_path / f"out-{uuid.uuid4().hex}"
    argv = ["--tasks-dir", tasks, "--out", out, "--format", "binaural", "--task", TASK,
            "--rirs", f"soundspaces:{_soundspaces(tmp_path / 'ss')}", "--workers", "2", "--quiet",
            "--cache-dir", tmp_path / "c"]  # fmt: skip
    with (tmp_path / "log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "naturalistic_hear", *map(str, argv)],
            env=hostile._env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(out.rglob("clip*.wav")):  # a worker has rendered: the pool is running
            assert proc.poll() is None, (tmp_path / "log").read_text()[-2000:]
            assert time.monotonic() < deadline, "no clip rendered in 120 s"
            time.sleep(0.02)
        members = _session(proc.pid)
        assert proc.poll() is None, "the run finished before it could be killed"
        assert len(members) >= 3, members  # the parent and its two workers (and the tracker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while _session(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _session(proc.pid) == [], "processes of the killed run survive"
    finally:
        for pid, _ in _session(proc.pid):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


@pytest.mark.hostile("process")
def test_a_second_run_of_the_same_shard_is_refused(world, capsys, monkeypatch):
    root, task, out = world
    out_task = out / TASK
    out_task.mkdir(parents=True)
    with workers.locked(out_task / gen.SHARD_LOCK.format(k=0, n=1), wait=False):
        res = main(args(task, out), capsys, monkeypatch)
        hostile.assert_clean_failure(res, "another run holds", f"pid {os.getpid()}")
        assert not any(out_task.rglob("*.wav"))
    assert main(args(task, out), capsys, monkeypatch).returncode == 0  # free again
    assert not list(out_task.glob(".naturalistic*lock"))  # no lock files left in the output


@pytest.mark.hostile("process")
def test_different_shards_at_once_give_the_serial_result(world, tmp_path):
    root, task, out = world

    def run(dest, shard):
        return gen.process_task(
            task, dest, "binaural", factory(), BuiltinNoise(SR), shard=shard, progress=False
        )

    run(tmp_path / "serial", (0, 1))
    errors = []

    def shard(k):
        try:
            run(out, (k, 3))
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=shard, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert run(out, (0, 1)).complete  # whichever shard was last, the task is complete
    assert hostile.snapshot(out) == hostile.snapshot(tmp_path / "serial")


@pytest.mark.hostile("process")
def test_workers_are_bounded(world, capsys, monkeypatch, caplog):
    root, task, out = world
    for bad in ("0", "-3", "two"):
        res = main(args(task, out, "--workers", bad), capsys, monkeypatch)
        hostile.assert_clean_failure(res, "--workers")
    monkeypatch.setattr(workers, "cpu_count", lambda: 1)  # capped to 1: renders in this process
    with caplog.at_level("WARNING", logger="naturalistic_hear.generate"):
        assert main(args(task, out, "--workers", "1000000"), capsys, monkeypatch).returncode == 0
    assert "workers: 1000000 capped at 1" in caplog.text
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        workers.check_workers(0)


# --- crash: wrong kinds of paths and broken tasks end with one clear line ------------------------


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    "how",
    ["hrtf-extension", "hrtf-dir", "hrtf-missing", "sofa-dir", "split-json-dir", "audio-dir",
     "noise-file", "tasks-file", "out-file", "repeated-split", "broken-sofa"],
)  # fmt: skip
def test_wrong_kinds_of_paths_are_named(world, capsys, monkeypatch, how):
    root, task, out = world
    bank = None
    extra: list = []
    if how == "hrtf-extension":  # sofar swapped the extension and blamed "h.sofa"
        (root / "h.h5").write_bytes(b"\x89HDF")
        extra, bank, needles = ["--hrtf", root / "h.h5"], False, (str(root / "h.h5"), ".sofa")
    elif how == "hrtf-dir":
        (root / "d.sofa").mkdir()
        extra, bank, needles = ["--hrtf", root / "d.sofa"], False, ("d.sofa", "is a directory")
    elif how == "hrtf-missing":
        extra, bank, needles = ["--hrtf", root / "m.sofa"], False, ("m.sofa", "does not exist")
    elif how == "broken-sofa":
        (root / "b.sofa").write_text("not netCDF")
        extra, bank, needles = ["--hrtf", root / "b.sofa"], False, ("b.sofa", "not a readable")
    elif how == "sofa-dir":
        extra, bank, needles = ["--rirs", f"sofa:{root}"], False, ("is a directory",)
    elif how == "split-json-dir":
        (task / "fold01.json").unlink()
        (task / "fold01.json").mkdir()
        needles = ("fold01.json", "is a directory")
    elif how == "audio-dir":
        (task / str(SR) / "fold01" / "clip0001.wav").unlink()
        (task / str(SR) / "fold01" / "clip0001.wav").mkdir()
        needles = ("clip0001.wav", "is a directory")
    elif how == "noise-file":
        extra, needles = ["--noise-dir", root / "secret.txt"], ("secret.txt", "not a folder")
    elif how == "tasks-file":
        res = main(["--tasks-dir", root / "secret.txt", "--out", out, "--format", "binaural",
                    "--cache-dir", root / LOG_CACHE], capsys, monkeypatch)  # fmt: skip
        hostile.assert_clean_failure(res, "secret.txt", "is not a directory")
        return
    elif how == "out-file":
        out.write_text("a file")
        needles = (str(out),)
    elif how == "repeated-split":
        meta = json.loads((task / "task_metadata.json").read_text())
        meta["splits"].append(meta["splits"][0])
        (task / "task_metadata.json").write_text(json.dumps(meta))
        needles = ("repeated split",)
    res = main(args(task, out, *extra), capsys, monkeypatch, bank=bank)
    hostile.assert_clean_failure(res, *needles)
    if how == "hrtf-extension":
        assert "h.sofa does not exist" not in res.last_line


# --- bomb: rates read from files are bounded before resampling -----------------------------------


@pytest.mark.hostile("bomb")
def test_a_noise_file_claiming_a_tiny_rate_is_refused_before_resampling(world):
    """A header claiming 1 Hz: its 300 000 samples (600 kB) upsampled to 16 kHz would be 4.8e9
    samples (19 GB). Refused from its header when the folder is listed, naming the file, in a
    process capped at 1.5 GB (the unbounded code died there of MemoryError, with a traceback)."""
    root, task, out = world
    folder = root / "noise"
    folder.mkdir()
    sf.write(folder / "tiny-rate.wav", np.full(300_000, 0.1), 1, subtype="PCM_16")
    argv = args(task, out, "--noise-dir", folder, "--n-scenes", "2", "--cache-dir", root / "c")
    res = hostile.run_limited(["naturalistic_hear", *map(str, argv)], mem_mb=1536, timeout=300)
    hostile.assert_clean_failure(res, "tiny-rate.wav", "1 Hz")
