"""DCASE Task 3 sets convert as their release lays them out, or are refused before any audio is
written: expected directions, distances and refusals are written by hand below."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import soundfile as sf

from localization_tasks.seld.convert import convert
from localization_tasks.seld.labels import LabelFileError
from localization_tasks.seld.task import task_rows

SR = 24000
TEST, TRAIN = ("dev-test-sony", "fold4_room23_mix001"), ("dev-train-tau", "fold3_room4_mix002")
# STARSS23 as released for DCASE 2024: frame,class,source,azimuth,elevation,distance (cm).
# Clip 1 (fold 4, 3 s): femaleSpeech (0) at az 90, el 20, 150 cm in frames 0..2; knock (12) at
# az -45, el -10, 75 cm in frame 29 (the last whole frame of 3 s).
META_2024 = "0,0,0,90,20,150\n1,0,0,90,20,150\n2,0,0,90,20,150\n29,12,1,-45,-10,75\n"
# Clip 2 (fold 3, 2 s): clapping (2) behind, 300 cm, frame 4.
META_2024_TRAIN = "4,2,0,180,0,300\n"


def _wav(path, seconds, channels=4, sr=SR, x=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if x is None:
        rng = np.random.default_rng(len(path.name))
        x = (0.1 * rng.standard_normal((round(sr * seconds), channels))).astype(np.float32)
    sf.write(path, x, sr, subtype="FLOAT")
    return x


def _clip(root, where, text, seconds, audio="foa", **kw):
    subset, clip = where
    (root / "metadata_dev" / subset).mkdir(parents=True, exist_ok=True)
    (root / "metadata_dev" / subset / f"{clip}.csv").write_text(text)
    return _wav(root / f"{audio}_dev" / subset / f"{clip}.wav", seconds, **kw)


@pytest.fixture
def starss2024(tmp_path):
    root = tmp_path / "STARSS23"
    audio = {TEST[1]: _clip(root, TEST, META_2024, 3.0)}
    audio[TRAIN[1]] = _clip(root, TRAIN, META_2024_TRAIN, 2.0)
    return root, audio


def _nothing_written(out):
    return not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_starss23_2024_directions_and_distances_in_metres(tmp_path, starss2024):
    root, audio = starss2024
    task = convert(root, tmp_path / "tasks", "starss23-2024")
    assert task.name == "starss23-2024-foa-v1.0.0-full"
    events = json.loads((task / "fold04.json").read_text())[f"{TEST[1]}.wav"]
    speech = {"label": "femaleSpeech", "start": 100, "end": 200, "direction": [90.0, 20.0],
              "track": 0, "distance": 1.5}  # fmt: skip
    knock = {"label": "knock", "start": 2900, "end": 3000, "direction": [-45.0, -10.0],
             "track": 1, "distance": 0.75}  # fmt: skip
    assert speech in events and knock in events and len(events) == 4
    train = json.loads((task / "fold03.json").read_text())[f"{TRAIN[1]}.wav"]
    assert train == [{"label": "clapping", "start": 400, "end": 500, "direction": [180.0, 0.0],
                      "track": 0, "distance": 3.0}]  # fmt: skip
    # the rows read back: (az 90, el 20) is the unit vector (0, cos 20, sin 20), 1.5 m away
    row = task_rows(task, "fold04")[f"{TEST[1]}.wav"][0]
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    assert row.xyz == pytest.approx((0.0, c, s), abs=1e-12) and row.distance == 1.5
    meta = json.loads((task / "task_metadata.json").read_text())
    assert meta["sample_rates"] == [SR] and meta["seld"]["distance"] == "metres"
    assert meta["seld"]["official_folds"] == {"train": ["fold03"], "test": ["fold04"]}
    y, sr = sf.read(task / str(SR) / "fold04" / f"{TEST[1]}.wav", dtype="float32")
    assert sr == SR and np.array_equal(y, audio[TEST[1]])
    assert "fold04,fold4_room23_mix001.wav,3.0,30" in (task / "seld_clips.csv").read_text()


def test_the_release_decides_the_column_count(tmp_path, starss2024):
    """A 2024 file named as the 2022/2023 release (whose 6 columns would be cartesian) is
    refused, naming the file, line and the right --dataset; and the other way round."""
    root, _ = starss2024
    out = tmp_path / "tasks"
    with pytest.raises(
        LabelFileError, match=r"fold4_room23_mix001\.csv:1: 6 columns.*starss23-2024"
    ):
        convert(root, out, "starss23")
    (root / "metadata_dev" / TRAIN[0] / f"{TRAIN[1]}.csv").write_text("4,2,0,180,0\n")
    with pytest.raises(LabelFileError, match=r"fold3_room4_mix002\.csv:1: 5 columns.*starss23\b"):
        convert(root, out, "starss23-2024")
    assert _nothing_written(out)


@pytest.mark.parametrize("frame, ok", [(29, True), (30, False)])
def test_a_label_past_the_end_of_the_audio_is_refused(tmp_path, frame, ok):
    """3 s of audio has label frames 0..29; frame 30 belongs to other audio."""
    root = tmp_path / "STARSS23"
    _clip(root, TEST, f"0,0,0,0,0,100\n{frame},0,0,0,0,100\n", 3.0)
    out = tmp_path / "tasks"
    if ok:
        assert convert(root, out, "starss23-2024").is_dir()
        return
    with pytest.raises(LabelFileError) as e:
        convert(root, out, "starss23-2024")
    assert f"{TEST[1]}.csv: frame 30" in str(e.value) and f"{TEST[1]}.wav" in str(e.value)
    assert _nothing_written(out)


@pytest.mark.parametrize("audio, channels", [("foa", 2), ("mic", 6), ("foa", 1)])
def test_a_wrong_channel_count_is_refused_before_anything_is_written(tmp_path, audio, channels):
    root = tmp_path / "STARSS23"
    _clip(root, TRAIN, META_2024_TRAIN, 2.0, audio=audio)
    _clip(root, TEST, META_2024, 3.0, audio=audio, channels=channels)
    out = tmp_path / "tasks"
    with pytest.raises(ValueError, match=rf"{TEST[1]}\.wav: {channels} channels; .* has 4"):
        convert(root, out, "starss23-2024", audio=audio)
    assert _nothing_written(out)


def test_mixed_sample_rates_need_resample(tmp_path):
    """One clip at 24 kHz, one at 16 kHz: refused naming both; with resample=True both land at
    the asked rate, the 16 kHz one resampled (a 1 kHz tone stays at 1 kHz, the length scales)."""
    root = tmp_path / "STARSS23"
    a = _clip(root, TEST, META_2024, 3.0)
    t = np.arange(2 * 16000) / 16000
    tone = np.repeat(0.5 * np.sin(2 * np.pi * 1000 * t)[:, None], 4, axis=1).astype(np.float32)
    _clip(root, TRAIN, META_2024_TRAIN, 2.0, sr=16000, x=tone)
    out = tmp_path / "tasks"
    with pytest.raises(
        ValueError, match=rf"{TRAIN[1]}\.wav is 16000 Hz but .*{TEST[1]}\.wav is 24000"
    ):
        convert(root, out, "starss23-2024")
    assert _nothing_written(out)
    task = convert(root, out, "starss23-2024", sample_rates=[SR], resample=True)
    y, sr = sf.read(task / str(SR) / "fold03" / f"{TRAIN[1]}.wav", dtype="float32")
    assert sr == SR and y.shape == (2 * SR, 4)
    spectrum = np.abs(np.fft.rfft(y[:, 0]))
    assert np.fft.rfftfreq(len(y), 1 / SR)[np.argmax(spectrum)] == pytest.approx(1000, abs=1)
    same, _ = sf.read(task / str(SR) / "fold04" / f"{TEST[1]}.wav", dtype="float32")
    assert np.array_equal(same, a)
    assert "fold03,fold3_room4_mix002.wav,2.0,20" in (task / "seld_clips.csv").read_text()


def _flac_claiming(path, seconds, claimed_frames):
    """A 4-channel FLAC (named .wav: libsndfile reads the content) whose STREAMINFO claims
    `claimed_frames` samples: the 36-bit total at bytes 18..25 (FLAC format, STREAMINFO)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(0).standard_normal((round(SR * seconds), 4))
    sf.write(path, x, SR, format="FLAC", subtype="PCM_16")
    data = bytearray(path.read_bytes())
    (word,) = struct.unpack(">Q", data[18:26])
    word = (word & ~((1 << 36) - 1)) | claimed_frames
    data[18:26] = struct.pack(">Q", word)
    path.write_bytes(bytes(data))
    assert sf.info(path).frames == claimed_frames


def test_an_absurd_header_length_is_refused_before_reading(tmp_path):
    """A FLAC claiming 2**36 - 1 samples (33 days): refused from its header; reading it whole
    would ask for a terabyte."""
    root = tmp_path / "STARSS23"
    _clip(root, TEST, META_2024, 3.0)
    _flac_claiming(root / "foa_dev" / TEST[0] / f"{TEST[1]}.wav", 3.0, (1 << 36) - 1)
    with pytest.raises(ValueError, match=rf"{TEST[1]}\.wav: its header declares 68719476735"):
        convert(root, tmp_path / "tasks", "starss23-2024")
    assert _nothing_written(tmp_path / "tasks")


def test_audio_shorter_than_its_header_is_refused_and_not_written(tmp_path):
    root = tmp_path / "STARSS23"
    _clip(root, TEST, META_2024, 3.0)
    _flac_claiming(root / "foa_dev" / TEST[0] / f"{TEST[1]}.wav", 1.0, 3 * SR)
    with pytest.raises(ValueError, match=rf"{TEST[1]}\.wav: .*{3 * SR}"):
        convert(root, tmp_path / "tasks", "starss23-2024")
    assert not list((tmp_path / "tasks").rglob("*.wav")) and not list(
        (tmp_path / "tasks").rglob(".*.tmp")
    )


def test_nan_audio_is_refused(tmp_path):
    root = tmp_path / "STARSS23"
    x = np.zeros((3 * SR, 4), dtype=np.float32)
    x[2 * SR, 1] = np.nan
    _clip(root, TEST, META_2024, 3.0, x=x)
    with pytest.raises(ValueError, match=rf"{TEST[1]}\.wav: NaN or infinite samples"):
        convert(root, tmp_path / "tasks", "starss23-2024")


def test_a_perfect_prediction_of_a_converted_starss23_2024_set_scores_perfectly(
    tmp_path, starss2024, capsys
):
    """The converted task's labels, written as the DCASE 2024 baseline writes its predictions (7
    columns: cartesian + distance in metres), scored by `seld.score --metrics dcase2024` against
    the release's own metadata (6 columns, distances in cm): every reference entry a true
    positive, F 1 on each class present, AngE ~0 (the baseline's 1e-10 arccos term) and
    RelDistE 0. A cm/m slip on either side would make RelDistE 99 or 0.99."""
    from localization_tasks.seld import score
    from localization_tasks.seld.task import export_dcase

    root, _ = starss2024
    task = convert(root, tmp_path / "tasks", "starss23-2024")
    export_dcase(task, tmp_path / "pred", "cartesian-distance")
    refs = tmp_path / "ref"
    refs.mkdir()
    for subset, clip in (TEST, TRAIN):
        (refs / f"{clip}.csv").write_bytes(
            (root / "metadata_dev" / subset / f"{clip}.csv").read_bytes()
        )
    preds = tmp_path / "preds"
    preds.mkdir()
    for p in (tmp_path / "pred").rglob("*.csv"):
        (preds / p.name).write_bytes(p.read_bytes())
    assert len(list(preds.iterdir())) == 2
    # --clip-length 3: score every frame of the clips (the 2024 baseline, like its 2022 one,
    # counts frames up to a reference's highest index only, which would drop each clip's last)
    assert score.main(["--ref-dir", str(refs), "--pred-dir", str(preds), "--metrics", "dcase2024",
                       "--num-classes", "13", "--clip-length", "3"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    c = out["counts"]
    assert c["TP"] == c["ref_entries"] == 5 and c["FP"] == c["FN"] == 0
    assert out["AngE"] < 0.01 and out["DistE"] < 1e-9 and out["RelDistE"] == 0.0
    # (F has the baseline's eps in its denominator: 1 - 2e-16 for one entry)
    assert all(out["per_class"][k]["F"] == pytest.approx(1.0, abs=1e-9) for k in ("0", "2", "12"))


# --- DCASE 2025 Stereo SELD: stereo_dev, a header line, azimuth, distance (cm), on-screen -------

HEADER_2025 = "frame,class,source,azimuth,distance,onscreen\n"
# Clip 1 (fold 4, 5 s, the set's clip length): femaleSpeech (0) of person 1 at az 30, 150 cm,
# on screen, frames 0..1; femaleSpeech of person 2 at az -60, 220 cm, off screen, frame 1;
# knock (12) behind at az -120, 75 cm, off screen, frame 10; clapping (2) at az 170, 310 cm,
# off screen, frame 49 (the last of 5 s).
META_2025 = HEADER_2025 + (
    "0,0,1,30,150,1\n1,0,1,30,150,1\n1,0,2,-60,220,0\n10,12,0,-120,75,0\n49,2,0,170,310,0\n"
)
# Clip 2 (fold 3, 5 s): domesticSounds (5) at az 45, 200 cm, on screen, frame 4.
META_2025_TRAIN = HEADER_2025 + "4,5,0,45,200,1\n"


@pytest.fixture
def stereo2025(tmp_path):
    root = tmp_path / "DCASE2025_SELD_dataset"
    audio = {TEST[1]: _clip(root, TEST, META_2025, 5.0, audio="stereo", channels=2)}
    audio[TRAIN[1]] = _clip(root, TRAIN, META_2025_TRAIN, 5.0, audio="stereo", channels=2)
    return root, audio


def _event(label, frame, az, track, metres, onscreen):
    return {"label": label, "start": 100 * frame, "end": 100 * frame + 100,
            "direction": [az, 0.0], "track": track, "distance": metres, "onscreen": onscreen}  # fmt: skip


def test_stereo_seld_2025_events_carry_azimuth_metres_and_onscreen(tmp_path, stereo2025):
    root, audio = stereo2025
    task = convert(root, tmp_path / "tasks", "stereo-seld-2025")
    assert task.name == "stereo-seld-2025-v1.0.0-full"
    assert json.loads((task / "fold04.json").read_text())[f"{TEST[1]}.wav"] == [
        _event("femaleSpeech", 0, 30.0, 1, 1.5, 1),
        _event("femaleSpeech", 1, 30.0, 1, 1.5, 1),
        _event("femaleSpeech", 1, -60.0, 2, 2.2, 0),
        _event("knock", 10, -120.0, 0, 0.75, 0),
        _event("clapping", 49, 170.0, 0, 3.1, 0),
    ]
    train = json.loads((task / "fold03.json").read_text())[f"{TRAIN[1]}.wav"]
    assert train == [_event("domesticSounds", 4, 45.0, 0, 2.0, 1)]
    # read back: the flag and the metres reach the rows the scorers take
    rows = task_rows(task, "fold04")[f"{TEST[1]}.wav"]
    assert [(r.onscreen, r.distance, r.azimuth_elevation) for r in rows[2:4]] == [
        (0, 2.2, (-60.0, 0.0)), (0, 0.75, (-120.0, 0.0))]  # fmt: skip
    assert rows[0].xyz == pytest.approx((math.sqrt(3) / 2, 0.5, 0.0), abs=1e-12)  # az 30, el 0
    seld = json.loads((task / "task_metadata.json").read_text())["seld"]
    assert seld["audio"] == "stereo" and seld["source_dataset"] == "stereo-seld-2025"
    assert seld["official_folds"] == {"train": ["fold03"], "test": ["fold04"]}
    assert "elevation 0" in seld["direction"] and "onscreen" in seld
    y, sr = sf.read(task / str(SR) / "fold04" / f"{TEST[1]}.wav", dtype="float32")
    assert sr == SR and y.shape == (5 * SR, 2) and np.array_equal(y, audio[TEST[1]])
    assert f"fold04,{TEST[1]}.wav,5.0,50" in (task / "seld_clips.csv").read_text()


def test_a_perfect_prediction_of_a_converted_stereo_seld_2025_set_scores_perfectly(
    tmp_path, stereo2025, capsys
):
    """The converted task's labels exported in the 2025 format (header, azimuth, cm, on-screen:
    what the 2025 baseline writes), scored by `seld.score --metrics dcase2025 --req-onscreen`
    against the release's own metadata: every reference entry a TP, OnscreenAq 1, no angle or
    distance error. A flag lost or flipped on the way makes OnscreenAq < 1 (and, with
    --req-onscreen, spatial FPs); a cm/m slip makes RelDistE 99 or 0.99."""
    from localization_tasks.seld import score
    from localization_tasks.seld.task import export_dcase

    root, _ = stereo2025
    task = convert(root, tmp_path / "tasks", "stereo-seld-2025")
    export_dcase(task, tmp_path / "pred", "dcase2025")
    refs, preds = tmp_path / "ref", tmp_path / "preds"
    refs.mkdir()
    preds.mkdir()
    for subset, clip in (TEST, TRAIN):
        (refs / f"{clip}.csv").write_bytes(
            (root / "metadata_dev" / subset / f"{clip}.csv").read_bytes()
        )
    for p in (tmp_path / "pred").rglob("*.csv"):
        (preds / p.name).write_bytes(p.read_bytes())
    assert (preds / f"{TRAIN[1]}.csv").read_text() == META_2025_TRAIN  # the release's own text
    # --clip-length 5: every frame of the 5 s clips (the 2025 baseline counts frames up to the
    # reference's highest index only, which would drop frame 49 of clip 1 and frame 4 of clip 2)
    assert score.main(["--ref-dir", str(refs), "--pred-dir", str(preds), "--metrics", "dcase2025",
                       "--req-onscreen", "--num-classes", "13", "--clip-length", "5"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    c = out["counts"]
    assert c["TP"] == c["ref_entries"] == 6 and c["FP"] == c["FP_spatial"] == c["FN"] == 0
    # (OnscreenAq and F have the baseline's eps in their denominators: 1 - 2e-16)
    assert out["OnscreenAq"] == pytest.approx(1.0, abs=1e-9) and out["AngE"] == 0.0
    assert out["DistE"] == 0.0 and out["RelDistE"] == 0.0
    assert out["thresholds"]["req_onscreen"] is True
    f_of = {k: out["per_class"][k]["F"] for k in ("0", "2", "5", "12")}
    assert f_of == pytest.approx(dict.fromkeys(f_of, 1.0), abs=1e-9)


@pytest.mark.parametrize("frame, ok", [(49, True), (50, False)])
def test_a_2025_label_past_the_end_of_its_5_s_is_refused(tmp_path, frame, ok):
    root = tmp_path / "DCASE2025_SELD_dataset"
    _clip(root, TEST, HEADER_2025 + f"{frame},0,0,10,100,1\n", 5.0, audio="stereo", channels=2)
    out = tmp_path / "tasks"
    if ok:
        assert convert(root, out, "stereo-seld-2025").is_dir()
        return
    with pytest.raises(LabelFileError, match=rf"{TEST[1]}\.csv: frame 50 \(5\.0 s\) is past"):
        convert(root, out, "stereo-seld-2025")
    assert _nothing_written(out)


def test_the_2025_release_and_the_4_channel_ones_refuse_each_others_files(tmp_path):
    """The 2024 metadata also has 6 columns: under stereo-seld-2025 a file without the header
    (its first row would be skipped by the 2025 baseline) or with the 2024 column names is
    refused, and the 2025 header under starss23-2024; each naming the file, line 1 and the
    --dataset that reads it. Asking the 2025 set for FOA, or a 4-channel release of a folder
    holding stereo_dev, names the right option."""
    root = tmp_path / "DCASE2025_SELD_dataset"
    _clip(root, TEST, "1,0,0,30,150\n", 5.0, audio="stereo", channels=2)
    csv_path = root / "metadata_dev" / TEST[0] / f"{TEST[1]}.csv"
    out = tmp_path / "tasks"
    csv_path.write_text("1,0,0,30,150,1\n")
    with pytest.raises(LabelFileError, match=rf"{TEST[1]}\.csv:1: no header line.*starss23-2024"):
        convert(root, out, "stereo-seld-2025")
    csv_path.write_text("frame,class,source,azimuth,elevation,distance\n1,0,0,30,0,150\n")
    with pytest.raises(LabelFileError, match=r"\.csv:1: header .*elevation.* starts with frame,"):
        convert(root, out, "stereo-seld-2025")
    with pytest.raises(ValueError, match=r"stereo-seld-2025 is released with stereo audio"):
        convert(root, out, "stereo-seld-2025", audio="foa")
    with pytest.raises(FileNotFoundError, match=r"foa_dev is not .*--dataset stereo-seld-2025"):
        convert(root, out, "starss23-2024")
    csv_path.write_text(META_2025)
    _wav(root / "foa_dev" / TEST[0] / f"{TEST[1]}.wav", 5.0)
    with pytest.raises(LabelFileError, match=r"\.csv:1: the DCASE 2025 stereo header.*stereo-seld"):
        convert(root, out, "starss23-2024")
    assert _nothing_written(out)
