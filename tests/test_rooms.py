"""Scene sampling, spatial RIRs and the scene bank, checked against acoustics (naturalistic_hear).

Expected directions are computed here from room coordinates with an explicit rotation, so a sign
error in the library's coordinate handling cannot hide behind its own conversions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import butter, correlate, correlation_lags, sosfiltfilt

import naturalistic_hear.bank as bank_module
import naturalistic_hear.rooms as rooms
from naturalistic_hear.bank import SceneBank
from naturalistic_hear.hrtf import HRTF, load_kemar, load_sofa
from naturalistic_hear.rooms import (
    DIFFUSE_NOISE_COUNTS,
    DISTANCE_RANGE,
    FLOOR_MARGIN,
    LISTENER_HEIGHT,
    SPEED_OF_SOUND,
    WALL_MARGIN,
    build_scene,
    head_to_unit_vector,
    render_rirs,
    room_pool,
    sample_scene,
)

C = SPEED_OF_SOUND


def expected_head_vector(scene, point) -> np.ndarray:
    """Unit vector of a room point seen from the listener, rotated into head coordinates."""
    psi = math.radians(scene.head_azimuth_deg)
    rot = np.array(
        [[math.cos(psi), math.sin(psi), 0], [-math.sin(psi), math.cos(psi), 0], [0, 0, 1]]
    )
    v = rot @ (np.asarray(point) - np.asarray(scene.listener))
    return v / np.linalg.norm(v)


def angle_deg(u, v) -> float:
    """Angle between two 3-vectors in deg, as atan2(|u x v|, u . v): accurate near 0 deg, where
    acos of the normalised dot product only resolves about 1e-6 deg (float64 rounding of a
    cosine of 1 - 1e-16 is an angle of 8e-7 deg), which made a 1e-6 deg bound fail on a
    direction that was exact."""
    return math.degrees(math.atan2(np.linalg.norm(np.cross(u, v)), np.dot(u, v)))


def schroeder_t60(x: np.ndarray, fs: int, band=(707.0, 1414.0), top=-5.0, bottom=-35.0) -> float:
    """T30: line fit of the Schroeder decay curve of the 1 kHz octave between top and bottom dB."""
    x = sosfiltfilt(butter(4, band, "bandpass", fs=fs, output="sos"), x.astype(np.float64))
    energy = np.cumsum(x[::-1] ** 2)[::-1]
    edc = 10 * np.log10(energy / energy[0] + 1e-30)
    i0, i1 = np.argmax(edc <= top), np.argmax(edc <= bottom)
    slope = np.polyfit(np.arange(i0, i1) / fs, edc[i0:i1], 1)[0]  # dB/s
    return -60.0 / slope


def first_reflection_gap_s(scene) -> float:
    """Delay of the earliest first-order wall reflection after the direct sound (s)."""
    src, lis = np.asarray(scene.source), np.asarray(scene.listener)
    paths = []
    for axis in range(3):
        for wall in (0.0, scene.room_dim[axis]):
            image = src.copy()
            image[axis] = 2 * wall - src[axis]
            paths.append(np.linalg.norm(image - lis))
    return (min(paths) - np.linalg.norm(src - lis)) / C


def anechoic_scene(offset, head_azimuth_deg=90.0):
    """Listener in a 12 x 12 x 8 m room with absorption 0.99; source at listener + offset (m)."""
    listener = (6.0, 6.0, LISTENER_HEIGHT)
    source = tuple(np.add(listener, offset))
    noise = tuple(np.add(listener, (0.0, 0.0, 2.0)))
    return build_scene(
        "test", 0, (12.0, 12.0, 8.0), 0.99, listener, head_azimuth_deg, source, (noise,)
    )


# --- HRTF -------------------------------------------------------------------------------------


def test_kemar_loads_with_left_ear_first():
    h = load_kemar()
    assert (h.hrirs.shape, h.sample_rate, h.hrirs.dtype) == ((710, 2, 512), 44100, np.float32)
    assert load_kemar() is h  # cached
    left = h.nearest(90.0, 0.0).astype(np.float64)  # +90 = left in head coordinates
    energy = (left**2).sum(axis=1)
    onset = [np.argmax(np.abs(e) >= 0.2 * np.abs(e).max()) for e in left]
    assert energy[0] > 4 * energy[1] and onset[0] < onset[1]
    np.testing.assert_array_equal(h.nearest(-90.0, 0.0), h.nearest(270.0, 0.0))


@pytest.mark.parametrize("rate", [16000, 48000])
def test_resampled_hrtf_keeps_its_transfer_function(rate):
    h = load_kemar()
    r = h.resampled(rate)
    assert r.taps == math.ceil(512 * rate / 44100) and r.sample_rate == rate
    freqs = np.array([300, 1000, 3000, 6000])  # 1 Hz bins with n = sample rate
    before = np.abs(np.fft.rfft(h.hrirs[200].astype(np.float64), 44100))[:, freqs]
    after = np.abs(np.fft.rfft(r.hrirs[200].astype(np.float64), rate))[:, freqs]
    np.testing.assert_allclose(20 * np.log10(after / before), 0.0, atol=0.1)


@pytest.mark.parametrize("swap_receivers", [False, True])
def test_load_sofa_roundtrip(tmp_path, swap_receivers):
    sofar = pytest.importorskip("sofar")
    kemar = load_kemar()
    pick = np.arange(0, 710, 7)
    sofa = sofar.Sofa("SimpleFreeFieldHRIR")
    sofa.Data_IR = kemar.hrirs[pick][:, ::-1] if swap_receivers else kemar.hrirs[pick]
    sofa.Data_SamplingRate = 44100
    sofa.SourcePosition = np.c_[kemar.directions[pick], np.full(len(pick), 1.4)]
    if swap_receivers:  # receiver 0 = right ear (y < 0): the loader must swap back
        sofa.ReceiverPosition = [[0, -0.09, 0], [0, 0.09, 0]]
    sofar.write_sofa(str(tmp_path / "kemar.sofa"), sofa)
    h = load_sofa(tmp_path / "kemar.sofa")
    assert h.name == "kemar" and h.sample_rate == 44100
    np.testing.assert_allclose(h.directions, kemar.directions[pick], atol=1e-9)
    np.testing.assert_array_equal(h.hrirs, kemar.hrirs[pick])


# --- scenes -----------------------------------------------------------------------------------


def test_sample_scene_is_a_pure_function_of_seed_pool_index():
    a = sample_scene("test", 7, seed=3)
    assert a == sample_scene("test", 7, seed=3) and a.scene_id == "test-00007"
    assert a != sample_scene("test", 7, seed=4) and a != sample_scene("test", 8, seed=3)
    assert type(a).from_dict(json.loads(json.dumps(a.to_dict()))) == a
    with pytest.raises(ValueError):
        sample_scene("valid", 0)


def test_pools_are_disjoint_by_construction_and_follow_the_scene_rules():
    scenes = {p: [sample_scene(p, i) for i in range(300)] for p in ("train", "test")}
    cells = {}
    for pool, items in scenes.items():
        assert all(room_pool(s.room_dim) == pool for s in items)
        # the checkerboard cell of (length, width): no cell, hence no room size, in both pools
        cells[pool] = {
            (math.floor(s.room_dim[0] / 0.5), math.floor(s.room_dim[1] / 0.5)) for s in items
        }
        kinds = [s.noise_kind for s in items]
        assert 0.4 < kinds.count("localized") / len(kinds) < 0.6
        for s in items:
            dims = np.asarray(s.room_dim)
            assert 3 <= dims[0] <= 10 and 3 <= dims[1] <= 8 and 2.5 <= dims[2] <= 4
            assert 0.15 < s.t60_s < 1.6 and 0 < s.absorption < 1
            lis = np.asarray(s.listener)
            assert lis[2] == LISTENER_HEIGHT and 0 <= s.head_azimuth_deg < 360
            assert np.all(lis[:2] >= WALL_MARGIN) and np.all(lis[:2] <= dims[:2] - WALL_MARGIN)
            count = len(s.noises)
            assert count == 1 if s.noise_kind == "localized" else count in DIFFUSE_NOISE_COUNTS
            assert len(s.noise_directions) == count
            for p, (az, el, dist) in [
                (s.source, (s.source_azimuth_deg, s.source_elevation_deg, s.source_distance_m)),
                *zip(s.noises, s.noise_directions, strict=True),
            ]:
                p = np.asarray(p)
                lo = np.array([WALL_MARGIN, WALL_MARGIN, FLOOR_MARGIN])
                assert np.all(p >= lo - 1e-9) and np.all(p <= dims - lo + 1e-9)
                assert DISTANCE_RANGE[0] <= dist <= DISTANCE_RANGE[1] + 1e-3
                assert dist == pytest.approx(np.linalg.norm(p - lis))
                assert angle_deg(head_to_unit_vector(az, el), expected_head_vector(s, p)) < 1e-6
    assert not cells["train"] & cells["test"]
    elevations = [s.source_elevation_deg for s in scenes["test"]]
    assert min(elevations) < -30 and max(elevations) > 30  # elevated sources do occur


# --- acoustics --------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 2, 3, 6])
def test_reverberation_time_matches_eyring(index):
    """Schroeder T30 (1 kHz octave) of the omni (W) response within 20 % of the Eyring T60."""
    scene = sample_scene("train", index)
    source, _ = render_rirs(scene, "ambisonic", 16000)
    assert schroeder_t60(source[0], 16000) == pytest.approx(scene.t60_s, rel=0.2)


def test_omni_energy_matches_a_high_order_image_source_model(monkeypatch):
    """Images + rescaled ray-traced tail carry the energy of the full specular response."""
    import pyroomacoustics as pra

    monkeypatch.setattr(rooms, "AIR_ABSORPTION", False)
    scene = sample_scene("test", 1)  # absorption 0.22: order 50 leaves < 1e-5 of the energy
    source, _ = rooms.render_rirs(scene, "ambisonic", 8000)
    room = pra.ShoeBox(
        list(scene.room_dim), fs=8000, materials=pra.Material(scene.absorption), max_order=50
    )
    room.add_source(list(scene.source))
    room.add_microphone(list(scene.listener))
    room.image_source_model()
    images = room.sources[0]
    dist = np.linalg.norm(images.images - np.asarray(scene.listener)[:, None], axis=0)
    reference = np.sum((images.damping[0] / dist) ** 2)  # pyroomacoustics' 1/r amplitude scale
    assert np.sum(source[0].astype(np.float64) ** 2) == pytest.approx(reference, rel=0.1)


@pytest.mark.parametrize("side", [+1, -1])
def test_binaural_direct_sound_has_the_right_ild_and_itd(side):
    """Head faces +y (room azimuth 90); a source at room -x is on the left (head azimuth +90)."""
    fs, dist = 48000, 2.0
    scene = anechoic_scene((-side * dist, 0.0, 0.0))
    assert scene.source_azimuth_deg == pytest.approx(90.0 if side > 0 else 270.0)
    source, _ = render_rirs(scene, "binaural", fs, length_s=0.1)
    arrival = dist / C * fs
    window = source[:, int(arrival) - 48 : int(arrival) + 144].astype(np.float64)  # -1 .. +3 ms
    ild = 10 * np.log10(np.sum(window[0] ** 2) / np.sum(window[1] ** 2))  # left over right, dB
    xcorr = correlate(window[0], window[1])
    lags = correlation_lags(window.shape[1], window.shape[1])
    near = np.abs(lags) <= fs // 1000
    lead_of_left_ms = -lags[near][np.argmax(xcorr[near])] / fs * 1000
    assert side * ild > 6.0
    assert 0.6 <= side * lead_of_left_ms <= 0.8
    # the two ears straddle the physical arrival time at the head centre
    onsets = [np.argmax(np.abs(e) >= 0.1 * np.abs(e).max()) for e in window]
    assert abs(np.mean(onsets) + int(arrival) - 48 - arrival) < 0.15e-3 * fs


def test_binaural_front_is_symmetric_and_tail_is_diffuse():
    fs = 16000
    front, _ = render_rirs(anechoic_scene((0.0, 2.0, 0.0)), "binaural", fs, length_s=0.05)
    direct = front[:, : int((2.0 / C + 0.003) * fs)]  # the first reflection comes 8 ms later
    assert np.allclose(direct[0], direct[1], atol=1e-6 * np.abs(direct).max())  # KEMAR is symmetric
    scene = sample_scene("test", 1)
    source, _ = render_rirs(scene, "binaural", fs)
    tail = source[:, int(0.1 * fs) : int(0.4 * fs)].astype(np.float64)
    left, right = np.sum(tail**2, axis=1)
    assert abs(10 * np.log10(left / right)) < 1.5
    coherence = np.max(np.abs(correlate(tail[0], tail[1]))[len(tail[0]) - 17 : len(tail[0]) + 16])
    assert coherence / math.sqrt(left * right) < 0.6  # decorrelated ears, not a copied tail


def test_ambisonic_direct_intensity_points_at_the_source():
    fs, checked, elevated = 32000, 0, 0
    for index in range(40):
        scene = sample_scene("test", index)
        gap = first_reflection_gap_s(scene)
        if gap < 1e-3:
            continue
        source, _ = render_rirs(scene, "ambisonic", fs, length_s=0.1)
        arrival = scene.source_distance_m / C * fs
        assert abs(np.argmax(np.abs(source[0])) - arrival) <= 1.0  # direct sound dominates
        start, stop = int(arrival) - 4, int(arrival + min(gap * fs - 6, 0.002 * fs))
        w, y, z, x = source[:, start:stop].astype(np.float64)  # ACN order
        intensity = np.array([w @ x, w @ y, w @ z])
        assert angle_deg(intensity, expected_head_vector(scene, scene.source)) < 5.0
        checked += 1
        elevated += abs(scene.source_elevation_deg) > 20
        if checked >= 6 and elevated >= 2:
            break
    assert checked >= 6 and elevated >= 2


def test_fuma_is_sn3d_reordered_with_w_over_sqrt2():
    scene = sample_scene("test", 5)
    sn3d, sn3d_noise = render_rirs(scene, "ambisonic", 8000, length_s=0.5)
    fuma, fuma_noise = render_rirs(
        scene, "ambisonic", 8000, ambisonic_convention="fuma", length_s=0.5
    )
    for a, b in [(sn3d, fuma), (sn3d_noise[0], fuma_noise[0])]:
        w, y, z, x = a
        np.testing.assert_allclose(b, np.stack([w / math.sqrt(2), x, y, z]), atol=1e-6)


@pytest.mark.parametrize("fmt, channels", [("binaural", 2), ("ambisonic", 4)])
def test_render_shapes_and_determinism(fmt, channels):
    scene = sample_scene("train", 4)
    source, noises = render_rirs(scene, fmt, 8000, length_s=0.75)
    assert source.shape == (channels, 6000) and source.dtype == np.float32
    assert noises.shape == (len(scene.noises), channels, 6000) and noises.dtype == np.float32
    assert np.all(np.isfinite(source)) and np.all(np.isfinite(noises))
    again, again_noises = render_rirs(scene, fmt, 8000, length_s=0.75)
    assert source.tobytes() == again.tobytes() and noises.tobytes() == again_noises.tobytes()


# --- scene bank -------------------------------------------------------------------------------


def bank_bytes(bank: SceneBank) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(bank.directory.glob("scene-*.npz"))}


def small_bank(root, **kw) -> SceneBank:
    args = dict(fmt="binaural", sample_rate=8000, n_scenes=3, length_s=0.25) | kw
    return SceneBank(root, **args)


def test_bank_is_identical_with_one_or_two_workers(tmp_path):
    one = small_bank(tmp_path / "a").build(workers=1, progress=False)
    two = small_bank(tmp_path / "b").build(workers=2, progress=False)
    assert one.directory.name == two.directory.name
    assert len(bank_bytes(one)) == 3 and bank_bytes(one) == bank_bytes(two)
    scene, source, noises = two.get(2)
    assert scene == sample_scene("test", 2) and len(two) == 3
    assert source.shape == (2, 2000) and noises.shape == (len(scene.noises), 2, 2000)
    json.dumps(one.describe())
    with pytest.raises(IndexError):
        one.get(3)


def _stored_npz(path: Path) -> None:
    """Rewrite a scene file in the older layout (members stored, not deflated)."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        members = [(m, zf.read(m)) for m in zf.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for info, data in members:
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, data)


def test_deflated_bank_files_hold_exactly_the_rendered_arrays_and_are_smaller(tmp_path):
    """Lossless: scene i's arrays equal a fresh `render_rirs` bit for bit, from a deflated file
    and from one in the older stored layout; the deflated files take less than the arrays."""
    # 2 s RIRs, the generator's default: their tails after the room's decay are silent
    bank = small_bank(tmp_path / "a", length_s=2.0).build(progress=False)
    old = small_bank(tmp_path / "b", length_s=2.0).build(progress=False)
    for i in range(3):
        _stored_npz(old.path(i))
    raw = 0
    for i in range(3):
        scene, source, noises = bank.get(i)
        want_source, want_noises = render_rirs(sample_scene("test", i), "binaural", 8000,
                                               bank.hrtf, "acn-sn3d", 2.0)  # fmt: skip
        assert source.tobytes() == want_source.tobytes()
        assert noises.tobytes() == want_noises.tobytes()
        _, old_source, old_noises = old.get(i)
        assert old_source.tobytes() == source.tobytes() and old_noises.tobytes() == noises.tobytes()
        raw += source.nbytes + noises.nbytes
    assert sum(bank.path(i).stat().st_size for i in range(3)) < 0.9 * raw
    assert sum(old.path(i).stat().st_size for i in range(3)) > raw


def test_a_scene_file_that_would_inflate_past_its_settings_is_refused_before_loading(tmp_path):
    """A planted deflated file: 64 MB of zeros in a few kB. It is refused by its declared size,
    never inflated; so is a file with other members or one that is not a zip at all."""
    import zipfile

    bank = small_bank(tmp_path).build(progress=False)
    with zipfile.ZipFile(bank.path(0), "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("scene.npy", b"")
        zf.writestr("noises.npy", b"")
        with zf.open("source.npy", "w") as f:
            chunk = bytes(1 << 20)
            for _ in range(64):
                f.write(chunk)
    assert bank.path(0).stat().st_size < 200_000
    with pytest.raises(ValueError, match="not a scene file of this bank .* bytes inflated"):
        bank.get(0)
    with zipfile.ZipFile(bank.path(1), "w") as zf:
        zf.writestr("other.npy", b"")
    with pytest.raises(ValueError, match=r"members \['other.npy'\]"):
        bank.get(1)
    bank.path(2).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a scene file"):
        bank.get(2)


def test_interrupted_bank_build_resumes_to_the_same_files(tmp_path, monkeypatch):
    reference = bank_bytes(small_bank(tmp_path / "ref").build(progress=False))
    bank = small_bank(tmp_path / "run")
    real = bank_module.render_rirs

    def dies_on_scene_2(scene, *args):
        if scene.scene_id.endswith("00002"):
            raise KeyboardInterrupt
        return real(scene, *args)

    monkeypatch.setattr(bank_module, "render_rirs", dies_on_scene_2)
    with pytest.raises(KeyboardInterrupt):
        bank.build(progress=False)
    monkeypatch.undo()
    assert bank.missing() == [2]
    bank.path(0).unlink()  # a lost file
    (bank.directory / ".scene-00002.npz.4194305.tmp").write_bytes(b"partial")  # dead writer
    bank.build(progress=False)
    assert bank_bytes(bank) == reference
    assert not list(bank.directory.glob(".*.tmp"))


def test_bank_cache_key_covers_every_setting(tmp_path):
    base = small_bank(tmp_path)
    assert small_bank(tmp_path, n_scenes=5).directory == base.directory  # same scene files
    others = [
        small_bank(tmp_path, seed=1),
        small_bank(tmp_path, pool="train"),
        small_bank(tmp_path, sample_rate=16000),
        small_bank(tmp_path, length_s=0.5),
        small_bank(tmp_path, fmt="ambisonic"),
        small_bank(tmp_path, fmt="ambisonic", ambisonic_convention="fuma"),
        small_bank(
            tmp_path, hrtf=HRTF("kemar-copy", 44100, load_kemar().directions, -load_kemar().hrirs)
        ),
    ]
    dirs = {b.directory for b in others} | {base.directory}
    assert len(dirs) == len(others) + 1
