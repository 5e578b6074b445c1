"""SELD task format: a STARSS23-format fixture converts to a HEAR-style task and back to the same
DCASE CSV files and audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from localization_tasks.seld.convert import convert
from localization_tasks.seld.labels import read_rows
from localization_tasks.seld.metrics import score_rows
from localization_tasks.seld.task import TaskFormatError, events_to_rows, export_dcase, task_rows

SR = 24000
# STARSS23 metadata: frame,class,source,azimuth,elevation (integer degrees), 100 ms frames.
# Clip 1 (fold 4, 3 s): a static female speaker (class 0) in frames 0..14 and a knock (class 12)
# moving from az -30 to -22 in frames 10..14 (overlapping the speech in 10..14).
CLIP1 = "".join(f"{f},0,0,45,10\n" for f in range(0, 10)) + "".join(
    f"{f},0,0,45,10\n{f},12,1,{-30 + 2 * (f - 10)},-5\n" for f in range(10, 15)
)
# Clip 2 (fold 3, 2 s): one clapping event (class 2) behind, frames 3..7.
CLIP2 = "".join(f"{f},2,0,180,0\n" for f in range(3, 8))


@pytest.fixture
def starss(tmp_path):
    root = tmp_path / "STARSS23"
    rng = np.random.default_rng(0)
    audio = {}
    for subset, clip, text, seconds in (
        ("dev-test-sony", "fold4_room23_mix001", CLIP1, 3.0),
        ("dev-train-tau", "fold3_room4_mix002", CLIP2, 2.0),
    ):
        (root / "metadata_dev" / subset).mkdir(parents=True, exist_ok=True)
        (root / "foa_dev" / subset).mkdir(parents=True, exist_ok=True)
        (root / "metadata_dev" / subset / f"{clip}.csv").write_text(text)
        x = (0.1 * rng.standard_normal((int(SR * seconds), 4))).astype(np.float32)
        sf.write(root / "foa_dev" / subset / f"{clip}.wav", x, SR, subtype="FLOAT")
        audio[clip] = x
    return root, audio


def test_starss23_round_trip(tmp_path, starss):
    root, audio = starss
    task = convert(root, tmp_path / "tasks", "starss23")
    meta = json.loads((task / "task_metadata.json").read_text())
    assert meta["splits"] == ["fold03", "fold04"]
    assert meta["seld"]["official_folds"] == {"train": ["fold03"], "test": ["fold04"]}
    ev = json.loads((task / "fold04.json").read_text())["fold4_room23_mix001.wav"]
    # the knock in frame 12: 1200..1300 ms, az -30 + 2 * 2 = -26, track 1
    assert {"label": "knock", "start": 1200, "end": 1300, "direction": [-26.0, -5.0],
            "track": 1} in ev  # fmt: skip
    out = export_dcase(task, tmp_path / "csv", "polar")
    assert sorted(p.name for p in out) == ["fold3_room4_mix002.csv", "fold4_room23_mix001.csv"]
    assert (tmp_path / "csv/fold04/fold4_room23_mix001.csv").read_text() == CLIP1
    assert (tmp_path / "csv/fold03/fold3_room4_mix002.csv").read_text() == CLIP2
    for split, clip in (("fold04", "fold4_room23_mix001"), ("fold03", "fold3_room4_mix002")):
        y, sr = sf.read(task / str(SR) / split / f"{clip}.wav", dtype="float32")
        assert sr == SR and np.array_equal(y, audio[clip])
    # and the exported labels score as a perfect prediction of the originals
    ref = read_rows(root / "metadata_dev/dev-test-sony/fold4_room23_mix001.csv")
    pred = task_rows(task, "fold04")["fold4_room23_mix001.wav"]
    res = score_rows({"a": (ref, pred)}, 13, average="micro")
    assert res["SELD"] == pytest.approx(0.0, abs=1e-9) and res["counts"]["TP"] == 3


def test_resampled_audio_keeps_duration(tmp_path, starss):
    root, _ = starss
    task = convert(root, tmp_path / "tasks", "starss23", sample_rates=[16000])
    info = sf.info(task / "16000" / "fold03" / "fold3_room4_mix002.wav")
    assert info.samplerate == 16000 and info.frames == 32000 and info.channels == 4
    clips = (task / "seld_clips.csv").read_text().splitlines()
    assert "fold03,fold3_room4_mix002.wav,2.0,20" in clips


def test_long_events_expand_to_frames_and_bad_events_are_refused():
    rows = events_to_rows(
        [{"label": "a", "start": 200, "end": 500, "direction": [90, 0]}], {"a": 0}, "t"
    )
    assert [r.frame for r in rows] == [2, 3, 4]
    assert rows[0].xyz == pytest.approx((0.0, 1.0, 0.0))
    for bad in (
        {"label": "b", "start": 0, "end": 100, "direction": [0, 0]},
        {"label": "a", "start": 0, "end": 100, "direction": [float("nan"), 0]},
        {"label": "a", "start": 500, "end": 100, "direction": [0, 0]},
        {"label": "a", "start": 0, "end": 1e12, "direction": [0, 0]},
    ):
        with pytest.raises(TaskFormatError):
            events_to_rows([bad], {"a": 0}, "t")


def test_onscreen_flags_round_trip_and_only_0_or_1_is_one():
    """A DCASE 2025 row's on-screen flag is written into its event and read back into
    Row.onscreen (rows without one, the 3-D releases', stay without); anything but the integers 0
    and 1 is refused, naming the event, rather than compared with a 0/1 flag by the scorer."""
    from localization_tasks.seld.labels import Row, polar_to_unit
    from localization_tasks.seld.task import rows_to_events

    rows = [Row(3, 1, 0, polar_to_unit(-40, 0), 2.5, (-40.0, 0.0), 0),
            Row(4, 1, 0, polar_to_unit(-40, 0), 2.5, (-40.0, 0.0), 1),
            Row(4, 0, 1, polar_to_unit(10, 20), None, (10.0, 20.0))]  # fmt: skip
    events = rows_to_events(rows, ["a", "b"])
    assert [e.get("onscreen") for e in events] == [0, 1, None] and "onscreen" not in events[2]
    back = events_to_rows(json.loads(json.dumps(events)), {"a": 0, "b": 1}, "t")
    assert back == rows and [r.onscreen for r in back] == [0, 1, None]
    for flag in (2, -1, True, 1.0, 0.5, "1", [1]):
        bad = {"label": "a", "start": 0, "end": 100, "direction": [0, 0], "onscreen": flag}
        with pytest.raises(TaskFormatError, match=r"t event 0: onscreen must be 0 or 1"):
            events_to_rows([bad], {"a": 0}, "t")
