"""naturalistic_hear.taskio: the task-folder protocol both generators share (rows log with
torn-line repair, manifest cells, static files, in-memory audio encoding)."""

from __future__ import annotations

import functools
import json
import math
import struct
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

from hear_gram.synthetic_tasks import make_scene_task
from localization_tasks import generate as loc
from naturalistic_hear import taskio
from naturalistic_hear.noise import BuiltinNoise
from tests.fake_bank import FakeSceneBank
from tests.hostile import snapshot

SR = 16000


def _row(i: int) -> dict:
    return {"sample_rate": SR, "split": "fold00", "filename": f"c{i}.wav", "value": i}


# --- rows log ------------------------------------------------------------------------------------


def test_a_torn_last_line_does_not_swallow_the_next_row(tmp_path):
    """An interrupted write leaves half a row without its newline; the next run's first row
    must still be read back (appended to the torn line, both were lost)."""
    log = tmp_path / "rows.jsonl"
    with taskio.open_rows(log) as f:
        taskio.append_row(f, _row(0))
    log.write_bytes(log.read_bytes() + json.dumps(_row(1)).encode()[:20])  # torn, no newline
    with taskio.open_rows(log) as f:
        taskio.append_row(f, _row(2))
    assert [r["value"] for r in taskio.read_rows(log)] == [0, 2]


def test_rows_without_a_key_or_not_objects_are_skipped(tmp_path):
    log = tmp_path / "rows.jsonl"
    lines = [json.dumps(_row(0)), "[1, 2]", '"text"', json.dumps({"split": "x"}),
             json.dumps({**_row(3), "sample_rate": "many"}), json.dumps(_row(5))]  # fmt: skip
    log.write_text("\n".join(lines) + "\n")
    assert [r["value"] for r in taskio.read_rows(log)] == [0, 5]
    assert list(taskio.read_rows(tmp_path / "missing.jsonl")) == []
    (tmp_path / "link.jsonl").symlink_to(log)
    assert list(taskio.read_rows(tmp_path / "link.jsonl")) == []  # not ours: never read


class _Interrupted(Exception):
    pass


@dataclass(frozen=True)
class _StopAfter:
    """Built-in noise that raises once `budget[0]` clips have drawn (one draw per clip): a run
    interrupted between two clips. `budget` is shared by `at_rate` copies."""

    budget: list
    sample_rate: int = SR

    def at_rate(self, sample_rate: int) -> _StopAfter:
        return _StopAfter(self.budget, sample_rate)

    def describe(self) -> dict:
        return BuiltinNoise(SR).describe()

    def draw(self, rng):
        if self.budget[0] == 0:
            raise _Interrupted
        self.budget[0] -= 1
        return BuiltinNoise(self.sample_rate).draw(rng)


def test_localization_resume_survives_a_torn_rows_line(tmp_path):
    """Regression: localization_tasks.generate appended to its rows log without ending a torn
    line, so the first row of the next run was lost and that clip rendered again after a
    second interruption. Three interrupted runs must render each clip once and end
    byte-identical to one uninterrupted run."""
    src = make_scene_task(tmp_path / "src", name="t", n_per_class=1, classes=("hiss", "clicks",
                          "chirp"), kfold=3, sample_rates=(SR,), duration_s=0.3)  # fmt: skip
    bank = functools.partial(FakeSceneBank, tmp_path / "c", "binaural", n_scenes=6, length_s=0.1)

    def run(out, budget):
        noise = _StopAfter(budget)
        try:
            loc.generate_task(src, out, "binaural", bank, noise, progress=False)
        except _Interrupted:
            pass

    clean = tmp_path / "clean"
    run(clean, [99])
    out = tmp_path / "out"
    run(out, [1])  # clip 1 done, then interrupted
    rows = out / "t-loc-binaural-clean" / loc.ROWS_NAME  # the first variant holds the log
    rows.write_bytes(rows.read_bytes() + b'{"sample_rate": 16000, "spl')  # torn by the kill
    run(out, [1])  # clip 2 done (its row appended after the torn line), interrupted
    budget = [99]
    run(out, budget)
    assert 99 - budget[0] == 1, "clips rendered again after the torn line"
    assert snapshot(out) == snapshot(clean)


# --- cells, static files, audio ------------------------------------------------------------------


def test_cells_never_hold_nan():
    assert taskio.cell("a,b") == "a,b"
    assert taskio.cell(math.nan) == "null"
    assert taskio.cell([1.0, math.nan, (2.0, math.nan)]) == "[1.0, null, [2.0, null]]"
    assert taskio.cell(0.1) == "0.1" and json.loads(taskio.cell(1 / 3)) == 1 / 3
    assert taskio.cell(math.inf) == "Infinity"  # the noise-free clips' SNR, read back by json


def test_static_files_refuse_other_content(tmp_path):
    path = tmp_path / "task_metadata.json"
    taskio.write_static(path, b"{}\n")
    taskio.write_static(path, b"{}\n")  # the same content: a resumed run goes on
    with pytest.raises(taskio.TaskError, match="different content"):
        taskio.write_static(path, b'{"seed": 1}\n')
    with pytest.raises(taskio.TaskError, match=r"different settings \(seed: 0 -> 1\)"):
        taskio.write_static(path, b"[]\n", lambda old, new: "seed: 0 -> 1")
    assert path.read_bytes() == b"{}\n"


def test_float_wavs_encode_the_same_bytes_every_time(tmp_path):
    """libsndfile stamps float WAVs with the time of writing (PEAK chunk); zeroed, equal audio
    gives equal files, and the audio reads back exactly."""
    mix = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 800)).astype(np.float32)
    data = taskio.encode_audio(mix, SR, "WAV", "FLOAT")
    (tmp_path / "a.wav").write_bytes(data)
    np.testing.assert_array_equal(sf.read(tmp_path / "a.wav", dtype="float32")[0], mix.T)
    pos = data.index(b"PEAK")
    assert struct.unpack("<I", data[pos + 12 : pos + 16]) == (0,)
    sf.write(tmp_path / "b.wav", mix.T, SR, subtype="FLOAT")  # stamped by libsndfile
    taskio.zero_peak_timestamp(tmp_path / "b.wav")
    assert (tmp_path / "b.wav").read_bytes() == data


def test_output_subtype_keeps_pcm_and_float_and_widens_the_rest(tmp_path):
    cases = {"PCM_16": ("WAV", "PCM_16"), "FLOAT": ("WAV", "FLOAT"), "PCM_U8": ("WAV", "FLOAT")}
    for subtype, expected in cases.items():
        path = tmp_path / f"{subtype}.wav"
        sf.write(path, np.zeros(16), SR, subtype=subtype)
        assert taskio.output_subtype(sf.info(path)) == expected
