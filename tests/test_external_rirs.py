"""naturalistic_hear.external: SoundSpaces scene folders and SOFA files as scene banks, and
`python -m naturalistic_hear --rirs soundspaces:DIR | sofa:FILE` end to end."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
import soundfile as sf

from hear_gram import synthetic_tasks
from naturalistic_hear import __main__ as cli
from naturalistic_hear.external import ExternalRIRError, SofaBank, SoundSpacesBank, fit_rir

RIR_RATE = 32000  # Hz, SoundSpaces
DELAY = 320  # samples at RIR_RATE (10 ms): lands on a whole sample at 16 and 48 kHz
GAINS = {"binaural": (1.0, 0.5), "ambisonic": (1.0, 0.5, 0.25, 0.125)}
CHANNEL_LAG = 32  # samples at RIR_RATE between successive channels' impulses


def impulses(fmt: str, delay: int = DELAY, length: int = 4000) -> np.ndarray:
    """(C, L) at 32 kHz: channel c has an impulse of GAINS[fmt][c] at delay + c * CHANNEL_LAG."""
    rir = np.zeros((len(GAINS[fmt]), length), dtype=np.float32)
    for c, g in enumerate(GAINS[fmt]):
        rir[c, delay + c * CHANNEL_LAG] = g
    return rir


def emitter(name: str, paths: dict[str, str], **meta) -> dict:
    return {"name": name, "rir": paths, **meta}


@pytest.fixture
def soundspaces(tmp_path):
    """root/houseA.json (2 regions: paths relative to root, and absolute) and
    root/sub/houseB.json (1 region: a path relative to the JSON, a foreign absolute path found
    by its basename); binaural RIRs stored (C, L), Ambisonic ones (L, C)."""
    root = tmp_path / "soundspaces"
    (root / "rirs").mkdir(parents=True)
    (root / "sub" / "near").mkdir(parents=True)

    def rirs(name: str, folder: str = "rirs", delay: int = DELAY) -> dict[str, str]:
        np.save(root / folder / f"{name}_b.npy", impulses("binaural", delay))
        np.save(root / folder / f"{name}_a.npy", impulses("ambisonic", delay).T)
        return {"binaural_rir_path": f"{folder}/{name}_b.npy", "ambisonic_rir_path": f"{folder}/{name}_a.npy"}  # fmt: skip

    def absolute(paths: dict[str, str]) -> dict[str, str]:
        return {k: str(root / v) for k, v in paths.items()}

    house_a = {
        "sampled_regions": [
            {"region": {"scene": {
                "source": emitter("s0", rirs("a0"), azimuth=90.0, elevation=10.0, position=[1, 2, 1.5]),
                "noise": [emitter("n0", rirs("a0n0", delay=640), azimuth=-90.0, elevation=0.0)],
            }}},
            {"region": {"scene": {
                "source": emitter("s1", absolute(rirs("a1"))),
                "noise": [emitter(f"n{k}", absolute(rirs(f"a1n{k}"))) for k in range(3)],
            }}},
        ]
    }  # fmt: skip
    rirs("b0", folder="sub/near")
    house_b = {
        "sampled_regions": [
            {"region": {"scene": {
                "source": emitter("s0", {"binaural_rir_path": "near/b0_b.npy", "ambisonic_rir_path": "near/b0_a.npy"}),
                "noise": [emitter("n0", {k: f"/cluster/gram/rirs/{v.split('/')[-1]}" for k, v in rirs("b0n0").items()})],
            }}},
        ]
    }  # fmt: skip
    (root / "houseA.json").write_text(json.dumps(house_a))
    (root / "sub" / "houseB.json").write_text(json.dumps(house_b))
    return root


# --- fit_rir -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [16000, 32000, 48000])
def test_fit_rir_moves_the_impulse_and_keeps_the_gain(rate):
    out = fit_rir(impulses("ambisonic"), RIR_RATE, rate, rate // 10)
    assert out.shape == (4, rate // 10) and out.dtype == np.float32
    for c, g in enumerate(GAINS["ambisonic"]):
        assert out[c].argmax() == (DELAY + c * CHANNEL_LAG) * rate // RIR_RATE
        assert out[c].sum() == pytest.approx(g, rel=2e-3)  # DC gain: same transfer function
    padded = fit_rir(impulses("binaural", delay=10, length=100), RIR_RATE, RIR_RATE, 300)
    assert padded.shape == (2, 300) and not padded[:, 100:].any()


# --- SoundSpaces ---------------------------------------------------------------------------------


def test_soundspaces_entries_shapes_and_metadata(soundspaces):
    bank = SoundSpacesBank(soundspaces, "binaural", 16000, length_s=0.1).build()
    assert len(bank) == 3
    expected = [
        ("houseA#0", 1, "localized"),
        ("houseA#1", 3, "diffuse"),
        ("sub/houseB#0", 1, "localized"),
    ]
    for i, (scene_id, k, kind) in enumerate(expected):
        scene, source, noises = bank.get(i)
        assert (scene.scene_id, scene.noise_kind, len(scene.noise_directions)) == (
            scene_id,
            kind,
            k,
        )
        assert source.shape == (2, 1600) and noises.shape == (k, 2, 1600)
        assert source.dtype == noises.dtype == np.float32
        # Left ear at 10 ms, right ear 1 ms later at half the gain, resampled 32 -> 16 kHz.
        assert [source[0].argmax(), source[1].argmax()] == [160, 176]
        assert source.sum(axis=1) == pytest.approx([1.0, 0.5], rel=2e-3)
    scene, _, noises = bank.get(0)
    assert (scene.source_azimuth_deg, scene.source_elevation_deg) == (90.0, 10.0)
    assert math.isnan(scene.source_distance_m) and scene.source == (1.0, 2.0, 1.5)
    assert scene.noise_directions[0][:2] == (270.0, 0.0)  # -90 deg: to the right
    assert noises[0, 0].argmax() == 320
    assert scene.room_dim == () and scene.listener == () and math.isnan(scene.t60_s)
    unknown, _, _ = bank.get(1)
    assert math.isnan(unknown.source_azimuth_deg) and unknown.noises == ((), (), ())


def test_soundspaces_ambisonic_reads_time_major_arrays(soundspaces):
    bank = SoundSpacesBank(soundspaces, "ambisonic", 48000, length_s=0.05)
    _, source, noises = bank.get(2)  # get() builds the index on first use
    assert source.shape == (4, 2400) and noises.shape == (1, 4, 2400)
    assert [int(source[c].argmax()) for c in range(4)] == [480 + 48 * c for c in range(4)]


def test_soundspaces_describe_is_deterministic_and_tracks_content(soundspaces):
    a = SoundSpacesBank(soundspaces, "binaural", 16000).describe()
    b = SoundSpacesBank(soundspaces, "binaural", 16000).describe()
    assert a == b and json.loads(json.dumps(a)) == a
    assert (a["kind"], a["format"], a["sample_rate"], a["rir_sample_rate"]) == (
        "soundspaces",
        "binaural",
        16000,
        32000,
    )
    assert a["path"] == str(soundspaces.resolve()) and a["n_scenes"] == 3
    doc = json.loads((soundspaces / "houseA.json").read_text())
    doc["sampled_regions"].pop()
    (soundspaces / "houseA.json").write_text(json.dumps(doc))
    c = SoundSpacesBank(soundspaces, "binaural", 16000).describe()
    assert c["checksum"] != a["checksum"] and c["n_scenes"] == 2


def test_soundspaces_errors_name_the_file(soundspaces):
    (soundspaces / "rirs" / "a0n0_b.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"houseA\.json.*noise\[0\].*a0n0_b\.npy"):
        SoundSpacesBank(soundspaces, "binaural", 16000).build()

    np.save(soundspaces / "rirs" / "a0n0_b.npy", impulses("ambisonic"))  # 4 channels
    bank = SoundSpacesBank(soundspaces, "binaural", 16000).build()
    with pytest.raises(ExternalRIRError, match=r"a0n0_b\.npy.*4 channels; binaural needs 2"):
        bank.get(0)

    (soundspaces / "sub" / "houseB.json").write_text('{"sampled_regions": [')
    with pytest.raises(ExternalRIRError, match=r"houseB\.json: malformed JSON"):
        SoundSpacesBank(soundspaces, "binaural", 16000).build()
    (soundspaces / "sub" / "houseB.json").write_text('{"sampled_regions": [{"region": {}}]}')
    with pytest.raises(
        ExternalRIRError, match=r"houseB\.json: sampled_regions\[0\]\.region has no key 'scene'"
    ):
        SoundSpacesBank(soundspaces, "binaural", 16000).build()


# --- SOFA ----------------------------------------------------------------------------------------

SOFA_RATE = 48000
LISTENER = np.array([2.0, 2.0, 1.5])
# Source offsets from the listener in room coordinates; the listener faces +y, so room +y is the
# front, room -x the left. (offset, head azimuth, head elevation)
OFFSETS = [
    ((0.0, 2.0, 0.0), 0.0, 0.0),
    ((-3.0, 0.0, 0.0), 90.0, 0.0),
    ((0.0, -2.0, 0.0), 180.0, 0.0),
    ((3.0, 0.0, 0.0), 270.0, 0.0),
    ((0.0, 0.0, 1.0), 0.0, 90.0),  # straight up: azimuth of (0, 0) is 0
    ((-2.0, 2.0, 0.0), 45.0, 0.0),
]


def write_sofa(path, receivers: int, right_ear_first: bool = False, delay: int = 0):
    """SingleRoomSRIR: one impulse per measurement and receiver at the direct-path delay (whole
    samples at 48 kHz), receiver c CHANNEL_LAG samples later and at gain 0.5 ** c."""
    import sofar

    sofa = sofar.Sofa("SingleRoomSRIR")
    m, n = len(OFFSETS), 2400
    ir = np.zeros((m, receivers, n))
    for i, (offset, _, _) in enumerate(OFFSETS):
        d = round(np.linalg.norm(offset) / 343.0 * SOFA_RATE / 3) * 3  # multiple of 3: 16 kHz
        for c in range(receivers):
            ir[i, c, d + 3 * CHANNEL_LAG * c] = 0.5**c
    sofa.Data_IR = ir
    sofa.Data_SamplingRate = SOFA_RATE
    sofa.Data_Delay = np.array([[0] * (receivers - 1) + [delay]])
    sofa.SourcePosition = LISTENER + np.array([o for o, _, _ in OFFSETS])
    sofa.ListenerPosition = np.tile(LISTENER, (m, 1))
    sofa.ListenerView = np.tile([0.0, 1.0, 0.0], (m, 1))
    sofa.ListenerUp = np.tile([0.0, 0.0, 1.0], (m, 1))
    sofa.MeasurementDate = np.zeros(m)
    ears_y = [-0.09, 0.09] if right_ear_first else [0.09, -0.09]
    sofa.ReceiverPosition = (
        np.array([[0.0, y, 0.0] for y in ears_y])[..., None]
        if receivers == 2
        else np.zeros((receivers, 3, 1))
    )
    sofa.ReceiverPosition_Type, sofa.ReceiverPosition_Units = "cartesian", "metre"
    sofa.ReceiverView = np.zeros((receivers, 3, 1))
    sofa.ReceiverUp = np.zeros((receivers, 3, 1))
    # sofar 1.3 cannot write string variables with numpy 2.4; the descriptions are optional.
    sofa.delete("ReceiverDescriptions")
    sofa.delete("EmitterDescriptions")
    sofar.write_sofa(str(path), sofa)
    return path


@pytest.fixture
def sofa_file(tmp_path):
    return write_sofa(tmp_path / "srir.sofa", receivers=4)


def test_sofa_entries_directions_and_resampling(sofa_file):
    bank = SofaBank(sofa_file, "ambisonic", 16000, length_s=0.1).build()
    assert len(bank) == len(OFFSETS)
    sources = set()
    for i in range(len(bank)):
        scene, source, noises = bank.get(i)
        m = int(scene.scene_id.rsplit("-m", 1)[1])
        sources.add(m)
        offset, az, el = OFFSETS[m]
        assert scene.source_azimuth_deg == pytest.approx(az, abs=1e-9)
        assert scene.source_elevation_deg == pytest.approx(el, abs=1e-9)
        assert scene.source_distance_m == pytest.approx(np.linalg.norm(offset))
        assert scene.head_azimuth_deg == pytest.approx(90.0) and scene.listener == tuple(LISTENER)
        k = len(scene.noise_directions)
        assert k == 1 if scene.noise_kind == "localized" else k in (3, 4, 5)
        assert source.shape == (4, 1600) and noises.shape == (k, 4, 1600)
        assert scene.source not in scene.noises  # noise from other measurements
        d = round(np.linalg.norm(offset) / 343.0 * 16000)
        assert [int(source[c].argmax()) for c in range(4)] == [
            d + CHANNEL_LAG * c for c in range(4)
        ]
        assert source.sum(axis=1) == pytest.approx([1, 0.5, 0.25, 0.125], rel=2e-3)
    assert sources == set(range(len(OFFSETS)))  # the default size uses each measurement once


def test_sofa_is_a_pure_function_of_seed_and_index(sofa_file):
    big = SofaBank(sofa_file, "ambisonic", 16000, n_scenes=40, length_s=0.05)
    small = SofaBank(sofa_file, "ambisonic", 16000, n_scenes=3, length_s=0.05)
    other = SofaBank(sofa_file, "ambisonic", 16000, n_scenes=40, seed=1, length_s=0.05)
    for i in range(3):
        a, b = big.get(i), small.get(i)
        assert a[0] == b[0] and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    scenes = [big.get(i)[0] for i in range(40)]
    assert {s.noise_kind for s in scenes} == {"localized", "diffuse"}
    assert [s.scene_id for s in scenes] != [other.get(i)[0].scene_id for i in range(40)]
    d = big.describe()
    assert (d["kind"], d["convention"], d["n_measurements"], d["n_scenes"]) == (
        "sofa",
        "SingleRoomSRIR",
        6,
        40,
    )
    assert d["rir_sample_rate"] == SOFA_RATE and len(d["checksum"]) == 64
    assert json.loads(json.dumps(d)) == d


def test_sofa_binaural_ear_order_delay_and_receiver_errors(tmp_path, sofa_file):
    path = write_sofa(tmp_path / "brir.sofa", receivers=2, right_ear_first=True, delay=6)
    _, source, _ = SofaBank(path, "binaural", 16000, length_s=0.1).get(0)
    # Receiver 0 sits at -y (right ear): swapped, so the late, quiet, delayed one comes first.
    lag = [int(source[c].argmax()) - int(source[1].argmax()) for c in range(2)]
    assert lag == [CHANNEL_LAG + 2, 0] and source.sum(axis=1) == pytest.approx([0.5, 1], rel=2e-3)
    with pytest.raises(ExternalRIRError, match=r"brir\.sofa: 2 receivers; ambisonic needs 4"):
        SofaBank(path, "ambisonic", 16000).build()
    with pytest.raises(ExternalRIRError, match=r"srir\.sofa: 4 receivers; binaural needs 2"):
        SofaBank(sofa_file, "binaural", 16000).build()
    (tmp_path / "bad.sofa").write_bytes(b"not netcdf")
    with pytest.raises(ExternalRIRError, match=r"bad\.sofa: not a readable SOFA file"):
        SofaBank(tmp_path / "bad.sofa", "binaural", 16000).build()


def test_sofa_mimo_emitters_are_measurements(tmp_path):
    """SingleRoomMIMOSRIR stores Data.IR as (M, R, N, E): emitter e of measurement m is entry
    m * E + e, placed by EmitterPosition in the source's frame (SourceView +y: local x -> room y,
    local y -> room -x)."""
    import sofar

    sofa = sofar.Sofa("SingleRoomMIMOSRIR")
    m, r, n, e = 2, 2, 64, 3
    ir = np.zeros((m, r, n, e))
    for k in range(e):
        ir[:, :, 3 * (k + 1), k] = 1.0  # emitter k: impulse at 3 (k + 1) samples
    sofa.Data_IR, sofa.Data_SamplingRate = ir, SOFA_RATE
    sofa.Data_Delay = np.zeros((m, r, e))
    sofa.ListenerPosition = np.zeros((m, 3))
    sofa.ListenerView = np.array([[1.0, 0, 0], [0, 1.0, 0]])  # the head turns left by 90 deg
    sofa.ListenerUp = np.tile([0.0, 0, 1], (m, 1))
    sofa.SourcePosition = np.tile([1.0, 0, 0], (m, 1))
    sofa.SourceView, sofa.SourceUp = np.tile([0.0, 1, 0], (m, 1)), np.tile([0.0, 0, 1], (m, 1))
    sofa.EmitterPosition = np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]])[..., None]
    sofa.EmitterPosition_Type, sofa.EmitterPosition_Units = "cartesian", "metre"
    sofa.EmitterView = sofa.EmitterUp = np.zeros((e, 3, 1))
    sofa.ReceiverPosition = np.array([[0, 0.09, 0], [0, -0.09, 0]])[..., None]
    sofa.ReceiverPosition_Type, sofa.ReceiverPosition_Units = "cartesian", "metre"
    sofa.ReceiverView = sofa.ReceiverUp = np.zeros((r, 3, 1))
    sofa.MeasurementDate = np.zeros(m)
    sofa.delete("ReceiverDescriptions")
    sofa.delete("EmitterDescriptions")
    sofar.write_sofa(str(tmp_path / "mimo.sofa"), sofa)

    bank = SofaBank(tmp_path / "mimo.sofa", "binaural", SOFA_RATE, length_s=0.001)
    room = {0: (1.0, 2.0, 0.0), 1: (-1.0, 0.0, 0.0), 2: (1.0, 0.0, 2.0)}
    azimuths = {(0, 0): 63.435, (0, 1): 180.0, (0, 2): 0.0, (1, 0): 333.435, (1, 1): 90.0}
    assert len(bank) == m * e
    for i in range(len(bank)):
        scene, source, _ = bank.get(i)
        k = int(scene.scene_id.rsplit("-m", 1)[1])
        measurement, emitter = divmod(k, e)
        assert scene.source == pytest.approx(room[emitter])
        assert source[0].argmax() == 3 * (emitter + 1)
        if (measurement, emitter) in azimuths:
            assert scene.source_azimuth_deg == pytest.approx(
                azimuths[measurement, emitter], abs=1e-3
            )


# --- command line --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["soundspaces", "sofa"])
def test_cli_renders_with_external_rirs(tmp_path, soundspaces, sofa_file, kind):
    fmt, channels, location = {
        "soundspaces": ("binaural", 2, soundspaces),
        "sofa": ("ambisonic", 4, sofa_file),
    }[kind]
    dry = tmp_path / "tasks"
    task = synthetic_tasks.make_scene_task(dry, n_per_class=2, kfold=3, sample_rates=(16000,))
    out = tmp_path / "out"
    cli.main(["--tasks-dir", str(dry), "--out", str(out), "--format", fmt, "--task", task.name,
              "--rirs", f"{kind}:{location}", "--quiet", "--cache-dir", str(tmp_path / "c")])  # fmt: skip
    wavs = sorted((out / task.name / "16000").rglob("*.wav"))
    assert len(wavs) == 10 and all(sf.info(str(w)).channels == channels for w in wavs)
    block = json.loads((out / task.name / "task_metadata.json").read_text())["naturalistic"]
    bank = block["banks"]["16000"]
    assert (block["format"], bank["kind"], bank["path"]) == (fmt, kind, str(location.resolve()))
    assert bank["sample_rate"] == 16000 and len(bank["checksum"]) == 64
    with (out / task.name / "naturalistic_manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    prefix = {"soundspaces": ("houseA#", "sub/houseB#"), "sofa": ("sofa-",)}[kind]
    assert len(rows) == 10 and all(r["scene_id"].startswith(prefix) for r in rows)
    assert all(r["pool"] == kind for r in rows)


def test_cli_external_rirs_errors(tmp_path, soundspaces, sofa_file, capsys):
    """One line `<prog>: error: ...` and exit status 2 for each bad --rirs."""
    task = synthetic_tasks.make_scene_task(tmp_path / "tasks", n_per_class=1, kfold=3)
    base = ["--tasks-dir", str(task.parent), "--task", task.name, "--out", str(tmp_path / "out"),
            "--format", "binaural", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    cases = [
        (["--rirs", f"sofa:{tmp_path / 'x.sofa'}"], "x.sofa is not a file"),
        (["--rirs", f"soundspaces:{tmp_path / 'nowhere'}"], "nowhere does not exist"),
        (["--rirs", f"soundspaces:{sofa_file}"], "is a file, not a folder"),
        (["--rirs", f"soundspaces:{soundspaces}", "--n-scenes", "3"], "--n-scenes does not apply"),
        (["--rirs", "sofa:"], "needs a path"),
        (["--rirs", f"sofa:{sofa_file}", "--hrtf", str(sofa_file)], "--hrtf applies to --rirs"),
        (["--rirs", f"sofa:{sofa_file}", "--quiet"], r"srir\.sofa: 4 receivers; binaural needs 2"),
    ]
    for extra, pattern in cases:
        assert cli.main([*base, *extra]) == 2, extra  # all refused after parsing
        err = capsys.readouterr().err
        assert "Traceback" not in err, (extra, err)
        assert re.search("^python -m naturalistic_hear: error: .*" + pattern, err.splitlines()[-1])
