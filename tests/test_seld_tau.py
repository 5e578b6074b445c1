"""TAU Spatial Sound Events 2018/2019 (event-list metadata) convert to the SELD task format on the
100 ms grid; expected frames, classes, directions and tracks are worked out by hand below."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from localization_tasks.seld.convert import convert
from localization_tasks.seld.labels import LabelFileError
from tests.hostile import assert_clean_failure, run_cli, snapshot

SR = 8000
HEAD = "sound_event_recording,start_time,end_time,ele,azi,dist\n"
# DCASE 2019 class indices: knock 0, clearthroat 2, phone 3, keysDrop 4, speech 5, doorslam 9.

# TAU 2019 clip split1_ir0_ov2_1 (2 s = 20 frames):
#   clearthroat [0.05, 0.31) -> frames 0..3 (floor 0.5 .. ceil 3.1 - 1), track 0
#   clearthroat [0.25, 0.50) -> frames 2..4 (ends on a frame edge: frame 5 stays empty); shares
#                               frames 2, 3 with the first -> track 1; no distance given
#   knock [1.2, 1.95) -> frames 12..19, track 0
CLIP19A = (
    HEAD + "clearthroat113.wav,0.05,0.31,10,-40,2\n"
    "clearthroat007.wav,0.25,0.5,0,90,\n"
    "knock001.wav,1.2,1.95,-20,170,1.5\n"
)
# split2_ir1_ov1_3 (1 s): speech [0.3, 0.6) -> frames 3, 4, 5 (0.3 / 0.1 = 2.9999999999999996)
CLIP19B = HEAD + "speech12.wav,0.3,0.6,0,0,2\n"


def _wav(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).standard_normal((int(SR * seconds), 4)).astype(np.float32)
    sf.write(path, 0.1 * x, SR, subtype="FLOAT")


def _csv(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def tau2019(tmp_path):
    root = tmp_path / "TAU2019"
    for stem, text, seconds in (
        ("split1_ir0_ov2_1", CLIP19A, 2.0),
        ("split2_ir1_ov1_3", CLIP19B, 1.0),
    ):
        _csv(root / "metadata_dev" / f"{stem}.csv", text)
        _wav(root / "foa_dev" / f"{stem}.wav", seconds)
    return root


def _frames(task, split, clip):
    """{(frame, label, track): (azimuth, elevation, distance)} of one clip in the task."""
    events = json.loads((task / f"{split}.json").read_text())[clip]
    out = {}
    for e in events:
        assert e["end"] - e["start"] == 100 and e["start"] % 100 == 0
        key = (e["start"] // 100, e["label"], e["track"])
        assert key not in out
        out[key] = (*e["direction"], e.get("distance"))
    return out


def test_tau2019_frames_tracks_and_folds(tmp_path, tau2019):
    task = convert(tau2019, tmp_path / "tasks", "tau2019")
    assert task.name == "tau2019-foa-v1.0.0-full"
    expect = {(f, "clearthroat", 0): (-40.0, 10.0, 2.0) for f in range(0, 4)}
    expect |= {(f, "clearthroat", 1): (90.0, 0.0, None) for f in range(2, 5)}
    expect |= {(f, "knock", 0): (170.0, -20.0, 1.5) for f in range(12, 20)}
    assert _frames(task, "fold01", "split1_ir0_ov2_1.wav") == expect
    expect_b = {(f, "speech", 0): (0.0, 0.0, 2.0) for f in (3, 4, 5)}
    assert _frames(task, "fold02", "split2_ir1_ov1_3.wav") == expect_b
    vocab = (task / "labelvocabulary.csv").read_text().splitlines()
    assert vocab[1] == "0,knock" and vocab[3] == "2,clearthroat" and vocab[6] == "5,speech"
    assert len(vocab) == 12
    meta = json.loads((task / "task_metadata.json").read_text())
    assert meta["splits"] == ["fold01", "fold02"]
    seld = meta["seld"]
    assert seld["official_folds"] == {"test": ["fold01"], "valid": ["fold02"],
                                      "train": ["fold03", "fold04"]}  # fmt: skip
    cv = [(f["test"], f["valid"], f["train"]) for f in seld["cross_validation_folds"]]
    assert cv == [
        (["fold01"], ["fold02"], ["fold03", "fold04"]),
        (["fold02"], ["fold03"], ["fold04", "fold01"]),
        (["fold03"], ["fold04"], ["fold01", "fold02"]),
        (["fold04"], ["fold01"], ["fold02", "fold03"]),
    ]
    assert "fold01,split1_ir0_ov2_1.wav,2.0,20" in (task / "seld_clips.csv").read_text()
    y, sr = sf.read(task / str(SR) / "fold02" / "split2_ir1_ov1_3.wav")
    assert sr == SR and y.shape == (SR, 4)


def test_tau2018_overlap_subset_and_split_folds(tmp_path):
    root = tmp_path / "TAU2018"
    # train clip (1.5 s): doorslam [0.0, 0.1) -> frame 0 only; keysDrop [0.95, 1.5) -> 9..14
    _csv(root / "desc_ov1_split1" / "train_split1_ir0_ov1_1.csv",
         HEAD + "doorslam5.wav,0.0,0.1,-10,-170,3\nkeysDrop2.wav,0.95,1.5,40,20,5\n")  # fmt: skip
    # test clip (1 s): phone [0.42, 0.48) lies inside frame 4
    _csv(root / "desc_ov1_split1" / "test_split1_ir0_ov1_2.csv",
         HEAD + "phone1.wav,0.42,0.48,0,45,1\n")  # fmt: skip
    _wav(root / "wav_ov1_split1_30db" / "train_split1_ir0_ov1_1.wav", 1.5)
    _wav(root / "wav_ov1_split1_30db" / "test_split1_ir0_ov1_2.wav", 1.0)
    # another overlap subset, broken on purpose: --overlap 1 must not read it
    _csv(root / "desc_ov2_split1" / "train_split1_ir0_ov2_1.csv", "garbage\n")
    task = convert(root, tmp_path / "tasks", "tau2018", overlap=1)
    assert task.name == "tau2018-ov1-v1.0.0-full"
    train = _frames(task, "split1_train", "train_split1_ir0_ov1_1.wav")
    expect = {(0, "doorslam", 0): (-170.0, -10.0, 3.0)}
    expect |= {(f, "keysDrop", 0): (20.0, 40.0, 5.0) for f in range(9, 15)}
    assert train == expect
    test = _frames(task, "split1_test", "test_split1_ir0_ov1_2.wav")
    assert test == {(4, "phone", 0): (45.0, 0.0, 1.0)}
    meta = json.loads((task / "task_metadata.json").read_text())
    assert meta["splits"] == ["split1_test", "split1_train"]
    assert meta["seld"]["official_folds"] == {"train": ["split1_train"], "test": ["split1_test"]}
    assert meta["seld"]["overlap"] == 1
    with pytest.raises(FileNotFoundError, match="desc_ov3_split"):
        convert(root, tmp_path / "t3", "tau2018", overlap=3)


@pytest.mark.parametrize(
    "row, needle",
    [
        ("dog3.wav,0.1,0.2,0,0,1", "dog3.wav"),  # not a DCASE 2019 class
        ("knock1.wav,0.5,2.5,0,0,1", "after the audio"),  # ends beyond the 2 s clip
        ("knock1.wav,0.5,0.4,0,0,1", "not a span"),
        ("knock1.wav,0.5,0.6,0,400,1", "out of range"),
        ("knock1.wav,0.5,0.6,0,0", "fields"),
    ],
)
def test_bad_rows_are_refused_naming_the_file(tmp_path, tau2019, row, needle):
    bad = tau2019 / "metadata_dev" / "split1_ir0_ov2_1.csv"
    bad.write_text(CLIP19A + row + "\n")
    with pytest.raises(LabelFileError, match=needle) as e:
        convert(tau2019, tmp_path / "tasks", "tau2019")
    assert "split1_ir0_ov2_1.csv" in str(e.value)
    assert not (tmp_path / "tasks").exists() or not any((tmp_path / "tasks").rglob("*.wav"))


@pytest.mark.hostile("path")
def test_event_name_with_a_path_is_not_a_class(tmp_path, tau2019):
    bad = tau2019 / "metadata_dev" / "split1_ir0_ov2_1.csv"
    bad.write_text(HEAD + "../../../tmp/clearthroat1.wav,0.1,0.2,0,0,1\n")
    before = snapshot(tmp_path)
    with pytest.raises(LabelFileError, match=r"split1_ir0_ov2_1.csv:2: event '\.\./"):
        convert(tau2019, tmp_path / "tasks", "tau2019")
    assert snapshot(tmp_path) == before


@pytest.mark.hostile("nonfinite")
def test_nan_angle_fails_cleanly_from_the_cli(tmp_path, tau2019):
    bad = tau2019 / "metadata_dev" / "split2_ir1_ov1_3.csv"
    bad.write_text(HEAD + "speech12.wav,0.3,0.6,nan,0,2\n")
    out = tmp_path / "tasks"
    args = ["localization_tasks.seld.convert", "--dataset-dir", str(tau2019), "--dataset",
            "tau2019", "--out", str(out)]  # fmt: skip
    res = run_cli(args)
    assert_clean_failure(res, "split2_ir1_ov1_3.csv:2", "ele", "finite")
    # no task written; only the run log (OUT/logs, the hear_gram.cli convention)
    assert not out.exists() or {p.name for p in out.iterdir()} <= {"logs"}


def test_tau2018_real_uses_urbansound8k_classes(tmp_path):
    root = tmp_path / "TAU2018REAL"
    # two dog barks (UrbanSound8K class id 3 -> index 1) share frame 2: [0, 0.25) -> frames 0..2
    # on track 0, [0.2, 0.3) -> frame 2 on track 1
    rows = "100032-3-0-0.wav,0.0,0.25,0,-90,2\n7383-3-0-1.wav,0.2,0.3,10,0,2\n"
    _csv(root / "desc_ov2_split2" / "train_split2_ir0_ov2_5.csv", HEAD + rows)
    _wav(root / "wav_ov2_split2_30db" / "train_split2_ir0_ov2_5.wav", 1.0)
    task = convert(root, tmp_path / "tasks", "tau2018", overlap=2)
    expect = {(f, "dog_bark", 0): (-90.0, 0.0, 2.0) for f in (0, 1, 2)}
    expect[(2, "dog_bark", 1)] = (0.0, 10.0, 2.0)
    assert _frames(task, "split2_train", "train_split2_ir0_ov2_5.wav") == expect
    vocab = (task / "labelvocabulary.csv").read_text().splitlines()
    assert vocab[1:3] == ["0,car_horn", "1,dog_bark"] and len(vocab) == 9
    # class id 2 (children_playing) is not one of TAU 2018 REAL's classes
    _csv(
        root / "desc_ov2_split2" / "train_split2_ir0_ov2_5.csv",
        HEAD + rows + "5-2-0-0.wav,0,1,0,0,1\n",
    )
    with pytest.raises(LabelFileError, match=r"train_split2_ir0_ov2_5.csv:4: event '5-2-0-0"):
        convert(root, tmp_path / "tasks2", "tau2018", overlap=2)
