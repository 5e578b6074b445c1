"""Event sources of synthetic SELD tasks: any HEAR scene/event task or folder of sounds gives the
class vocabulary, every event plays a sound of its own class, and no sound plays in two folds."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest
import soundfile as sf

from hear_gram.synthetic_tasks import make_event_task, make_scene_task
from localization_tasks.seld.sources import SourceError, from_folder, load_bank, trim_silence
from localization_tasks.seld.synth import SynthConfig, generate
from localization_tasks.seld.task import read_vocabulary, task_rows

SR = 16000
CFG = SynthConfig(clips_per_fold=3, folds=3, clip_s=2.0, sample_rate=SR, rir_s=0.2,
                  rooms_per_fold=1, moving_prob=0.0)  # fmt: skip


def test_scene_task_sources_label_the_events(tmp_path):
    """A 3-class scene task made by hear_gram.synthetic_tasks (3 clips per class): the SELD task's
    vocabulary is the scene task's, each event's class is its source clip's scene label, each
    fold's events come from that fold's share of the clips, and the shares are disjoint."""
    scene = make_scene_task(tmp_path / "hear", classes=("hum", "hiss", "clicks"), n_per_class=3,
                            duration_s=1.0, sample_rates=(SR,), kfold=3)  # fmt: skip
    bank = load_bank(scene, SR, CFG.folds)
    assert bank.classes == ("hum", "hiss", "clicks") and len(bank.sounds) == 9
    for f, g in itertools.combinations(range(3), 2):
        assert not bank.origins(f) & bank.origins(g)
    task = generate(tmp_path / "seld", CFG, bank=bank)
    assert read_vocabulary(task) == ["hum", "hiss", "clicks"]
    scene_label = {}
    for split in json.loads((scene / "task_metadata.json").read_text())["splits"]:
        for name, labels in json.loads((scene / f"{split}.json").read_text()).items():
            scene_label[f"{split}/{name}"] = labels[0]
    with open(task / "seld_manifest.csv") as f:
        manifest = list(csv.DictReader(f))
    assert manifest
    for ev in manifest:
        origin = ev["source"].split("@")[0]
        assert scene_label[origin] == bank.classes[int(ev["class"])], ev
        assert ev["source"] in bank.origins(int(ev["split"][-2:]) - 1)
        # a 1 s source clip cannot make a longer event
        assert float(ev["offset_s"]) - float(ev["onset_s"]) <= 1.0 + 1e-9
    meta = json.loads((task / "task_metadata.json").read_text())["seld"]["sources"]
    assert meta["kind"] == "hear-task" and meta["sounds"] == 9 and len(meta["sha256"]) == 64
    assert {r.cls for rows in task_rows(task, "fold01").values() for r in rows} <= {0, 1, 2}


def test_event_task_sources_are_the_isolated_events(tmp_path):
    """An event task: each usable sound is one labelled event, cut to its span (after trimming
    silence it is no longer than the event)."""
    ev_task = make_event_task(tmp_path / "hear", n_clips=12, duration_s=3.0, max_events=2,
                              sample_rates=(SR,))  # fmt: skip
    events = {}
    for split in ("train", "valid", "test"):
        for name, evs in json.loads((ev_task / f"{split}.json").read_text()).items():
            for e in evs:
                events[f"{split}/{name}@{e['start'] / 1000:.3f}"] = e
    bank = load_bank(ev_task, SR, 3)
    assert bank.classes == ("hum", "whistle", "hiss") and bank.sounds
    for s in bank.sounds:
        e = events[s.origin]
        assert bank.classes[s.cls] == e["label"]
        assert len(s.audio) <= (e["end"] - e["start"]) / 1000 * SR + 1


def _wav(path, x, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="FLOAT")


def test_folder_sources_and_their_limits(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("dog", "bell"):
        for i in range(3):
            x = np.concatenate(
                [np.zeros(SR // 2), 0.1 * rng.standard_normal(SR // 2), np.zeros(SR // 4)]
            )
            _wav(tmp_path / "snd" / c / f"{i}.wav", x)
    bank = from_folder(tmp_path / "snd", SR, 3)
    assert bank.classes == ("bell", "dog")
    # silence trimmed to the 0.5 s of noise (10 ms frames)
    assert all(abs(len(s.audio) - SR // 2) <= SR // 100 for s in bank.sounds)
    with pytest.raises(SourceError, match="dog"):
        from_folder(tmp_path / "snd", SR, 4)  # 3 sounds cannot cover 4 folds
    _wav(tmp_path / "snd" / "dog" / "bad.wav", np.full(SR, np.nan))
    with pytest.raises(SourceError, match="NaN"):
        from_folder(tmp_path / "snd", SR, 3)
    assert len(trim_silence(np.zeros(SR), SR)) == 0
