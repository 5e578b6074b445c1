"""hear_gram.synthetic_tasks: layout as heareval reads it, determinism, durations, rates."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hear_gram import synthetic_tasks as st


def _read_json(path: Path):
    return json.loads(path.read_text())


def _vocabulary(task_dir: Path) -> list[str]:
    with (task_dir / "labelvocabulary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["idx"]) for r in rows] == list(range(len(rows)))
    return [r["label"] for r in rows]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def scene_task(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    return st.make_scene_task(
        root, n_per_class=3, duration_s=0.5, sample_rates=(16000, 22050), kfold=3
    )


@pytest.fixture(scope="module")
def event_task(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    return st.make_event_task(root, n_clips=10, duration_s=4.0, sample_rates=(16000,))


def test_scene_metadata_describes_the_files_as_heareval_reads_them(scene_task):
    """Each metadata key checked against the files it describes and against heareval's own
    code (its score table, its fold splitting), not against the literals the writer uses: a key
    that ignores an argument (the fixture's kfold=3 and 0.5 s are not the defaults) or names a
    metric heareval does not have fails here."""
    from heareval.predictions.task_predictions import get_splits_from_metadata
    from heareval.score import available_scores

    metadata = _read_json(scene_task / "task_metadata.json")
    assert metadata["task_name"] == scene_task.name
    split_files = sorted(p.stem for p in scene_task.glob("*.json") if p.stem != "task_metadata")
    assert sorted(metadata["splits"]) == split_files
    assert metadata["nfolds"] == len(split_files)
    # heareval's k-fold splitting: every fold is the test fold once.
    splits = get_splits_from_metadata(metadata)
    assert sorted(s["test"][0] for s in splits) == split_files
    for name in metadata["evaluation"]:
        assert name in available_scores, name
    labels = [_read_json(scene_task / f"{s}.json") for s in split_files]
    per_clip = [v for split in labels for v in split.values()]
    # Scene task: a list of label strings per clip; multiclass: exactly one per clip.
    assert metadata["embedding_type"] == "scene" and all(isinstance(v, list) for v in per_clip)
    assert (metadata["prediction_type"] == "multiclass") == all(len(v) == 1 for v in per_clip)
    assert sorted({label for v in per_clip for label in v}) == sorted(_vocabulary(scene_task))
    for sr in metadata["synthetic"]["sample_rates"]:
        durations = {
            sf.info(scene_task / str(sr) / s / f).duration
            for s, split in zip(split_files, labels, strict=True)
            for f in split
        }
        assert durations == {metadata["sample_duration"]}, (sr, durations)


def test_scene_splits_are_stratified_and_complete(scene_task):
    vocabulary = _vocabulary(scene_task)
    seen = set()
    for fold in ("fold00", "fold01", "fold02"):
        labels = _read_json(scene_task / f"{fold}.json")
        # 3 clips per class over 3 folds: every class once per fold.
        assert sorted(label for [label] in labels.values()) == sorted(vocabulary)
        assert seen.isdisjoint(labels)
        seen |= set(labels)
    assert len(seen) == 3 * len(vocabulary)


@pytest.mark.parametrize("sample_rate", [16000, 22050])
def test_scene_audio_rates_and_durations(scene_task, sample_rate):
    for fold in ("fold00", "fold01", "fold02"):
        for filename in _read_json(scene_task / f"{fold}.json"):
            info = sf.info(scene_task / str(sample_rate) / fold / filename)
            assert info.samplerate == sample_rate
            assert info.frames == round(0.5 * sample_rate)
            assert info.channels == 1
            assert info.subtype == "PCM_16"


def test_event_metadata_and_labels(event_task):
    metadata = _read_json(event_task / "task_metadata.json")
    assert metadata["embedding_type"] == "event"
    assert metadata["prediction_type"] == "multilabel"
    assert metadata["split_mode"] == "trainvaltest"
    assert metadata["splits"] == ["train", "valid", "test"]
    assert metadata["evaluation"] == ["event_onset_200ms_fms", "segment_1s_er"]
    grid = metadata["evaluation_params"]["event_postprocessing_grid"]
    assert set(grid) == {"median_filter_ms", "min_duration"}
    vocabulary = _vocabulary(event_task)
    sizes = {}
    for split in metadata["splits"]:
        labels = _read_json(event_task / f"{split}.json")
        sizes[split] = len(labels)
        for filename, events in labels.items():
            assert 1 <= len(events) <= 3
            assert sf.info(event_task / "16000" / split / filename).duration == 4.0
            previous_end = 0.0
            for event in events:
                assert event["label"] in vocabulary
                # ms, in order, non-overlapping, at least 200 ms of background in between.
                assert previous_end + 200 - 1e-6 <= event["start"] < event["end"] <= 3800 + 1e-6
                assert 400 - 1e-6 <= event["end"] - event["start"] <= 1000 + 1e-6
                previous_end = event["end"]
    assert sizes == {"train": 6, "valid": 2, "test": 2}


def test_metadata_is_what_heareval_reads(scene_task, event_task):
    from heareval.predictions.task_predictions import (
        get_splits_from_metadata,
        label_vocab_nlabels,
    )
    from heareval.score import available_scores

    scene_splits = get_splits_from_metadata(_read_json(scene_task / "task_metadata.json"))
    assert scene_splits[0] == {"train": ["fold02"], "valid": ["fold01"], "test": ["fold00"]}
    assert len(scene_splits) == 3
    for task in (scene_task, event_task):
        metadata = _read_json(task / "task_metadata.json")
        assert all(metric in available_scores for metric in metadata["evaluation"])
        _, nlabels = label_vocab_nlabels(task)
        assert nlabels == len(_vocabulary(task))
    assert get_splits_from_metadata(_read_json(event_task / "task_metadata.json")) == [
        {"train": ["train"], "valid": ["valid"], "test": ["test"]}
    ]


def test_same_seed_gives_identical_bytes(tmp_path):
    for root in (tmp_path / "a", tmp_path / "b"):
        st.make_scene_task(root, n_per_class=2, duration_s=0.25, sample_rates=(16000,), kfold=3)
        st.make_event_task(root, n_clips=5, duration_s=4.0, sample_rates=(16000,))
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    # 10 + 5 clips, 3 + 3 split files, a metadata file and a vocabulary per task.
    assert len(a) == (10 + 5) + (3 + 3) + 2 * 2
    assert a == b


def test_different_seed_gives_different_audio(tmp_path):
    kwargs = {"n_per_class": 2, "duration_s": 0.25, "sample_rates": (16000,), "kfold": 3}
    a = _files(st.make_scene_task(tmp_path / "a", seed=0, **kwargs))
    b = _files(st.make_scene_task(tmp_path / "b", seed=1, **kwargs))
    assert a.keys() == b.keys()
    wavs = [name for name in a if name.endswith(".wav")]
    assert all(a[name] != b[name] for name in wavs)
    # Same layout and labels: only the audio depends on the seed for scene tasks.
    assert a["fold00.json"] == b["fold00.json"]


def test_clips_of_a_class_are_not_identical(scene_task):
    labels = _read_json(scene_task / "fold00.json") | _read_json(scene_task / "fold01.json")
    hums = [f for f, [label] in labels.items() if label == "hum"]
    folds = {
        f: fold for fold in ("fold00", "fold01") for f in _read_json(scene_task / f"{fold}.json")
    }
    a, b = (sf.read(scene_task / "16000" / folds[f] / f)[0] for f in hums[:2])
    assert not np.allclose(a, b)


def _centroid_hz(x: np.ndarray, sample_rate: int) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sample_rate)
    return float((freqs * power).sum() / power.sum())


def test_classes_differ_in_spectrum():
    """Reference values of the class designs: spectral centroids of noise-free renders."""
    centroids = {label: [] for label in st.SCENE_CLASSES}
    for label in st.SCENE_CLASSES:
        for index in range(4):
            spec = st.scene_clip_spec(label, 1.0, 1, seed=0, index=index)
            spec = dataclasses.replace(spec, snr_db=200.0)
            centroids[label].append(_centroid_hz(st.synthesize_clip(spec, 16000), 16000))
    assert max(centroids["hum"]) < 800
    assert 1700 < min(centroids["whistle"]) and max(centroids["whistle"]) < 3100
    assert min(centroids["hiss"]) > 3500
    assert min(centroids["clicks"]) > 2500  # broadband bursts
    assert 1000 < min(centroids["chirp"]) and max(centroids["chirp"]) < 3500


def test_rendering_is_consistent_across_sample_rates():
    spec = st.scene_clip_spec("whistle", 1.0, 1, seed=3, index=0)
    spec = dataclasses.replace(spec, snr_db=200.0)
    c16, c48 = (_centroid_hz(st.synthesize_clip(spec, sr), sr) for sr in (16000, 48000))
    assert abs(c16 - c48) < 0.01 * c16


def test_multichannel_float(tmp_path):
    task = st.make_scene_task(
        tmp_path,
        n_per_class=1,
        duration_s=0.25,
        sample_rates=(16000,),
        channels=2,
        kfold=3,
        subtype="FLOAT",
    )
    filename = next(iter(_read_json(task / "fold00.json")))
    audio, sample_rate = sf.read(task / "16000" / "fold00" / filename)
    assert audio.shape == (4000, 2) and sample_rate == 16000
    assert sf.info(task / "16000" / "fold00" / filename).subtype == "FLOAT"
    # Two noisy, differently scaled copies of one source.
    assert not np.allclose(audio[:, 0], audio[:, 1])
    assert np.corrcoef(audio[:, 0], audio[:, 1])[0, 1] > 0.9
    assert np.abs(audio).max() <= 0.7 + 1e-6


@pytest.mark.parametrize(
    "kwargs",
    [
        {"classes": ("hum", "banjo")},
        {"classes": ("hum",)},
        {"sample_rates": (8000,)},
        {"channels": 0},
        {"kfold": 2},
    ],
)
def test_invalid_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        st.make_scene_task(tmp_path, **kwargs)


def test_cli(tmp_path):
    st.main(["--out", str(tmp_path), "--kind", "event", "--sample-rate", "16000", "--seed", "4"])
    assert [p.name for p in tmp_path.iterdir()] == ["hear-gram-demo-event"]
    metadata = _read_json(tmp_path / "hear-gram-demo-event" / "task_metadata.json")
    assert metadata["synthetic"]["seed"] == 4
    assert metadata["synthetic"]["sample_rates"] == [16000]


def test_event_clip_too_short(tmp_path):
    with pytest.raises(ValueError, match="max_events"):
        st.make_event_task(tmp_path, duration_s=3.0, max_events=3)
    # Two events always fit in 3 s.
    st.make_event_task(tmp_path, n_clips=3, duration_s=3.0, max_events=2, sample_rates=(16000,))
