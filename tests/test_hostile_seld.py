"""Hostile inputs to the SELD tools (scorer, evaluator, converter, synthesizer): malformed or
absurd label files, task files, audio headers and options end in one line naming the file, exit
2; names from data never escape; links planted on an output path are never written through;
caches follow their inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from localization_tasks.seld import convert, evaluate, synth
from localization_tasks.seld.features import Features, check_timestamp_embeddings
from localization_tasks.seld.labels import Row, polar_to_unit
from localization_tasks.seld.task import write_labels
from tests.hostile import assert_clean_failure, run_cli, snapshot

SCORE = ["localization_tasks.seld.score"]


def _dirs(tmp_path, ref: str, pred: str, pred_name: str = "a.csv"):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref" / "a.csv").write_text(ref)
    (tmp_path / "pred" / pred_name).write_text(pred)
    return ["--ref-dir", str(tmp_path / "ref"), "--pred-dir", str(tmp_path / "pred")]


@pytest.mark.hostile("nonfinite")
def test_score_refuses_nan_direction(tmp_path):
    res = run_cli(SCORE + _dirs(tmp_path, "0,0,0,0,0\n", "0,0,0,nan,0,0\n"))
    assert_clean_failure(res, "a.csv:1", "finite")


@pytest.mark.hostile("bomb")
def test_score_refuses_absurd_frame_index(tmp_path):
    res = run_cli(SCORE + _dirs(tmp_path, "0,0,0,0,0\n", "999999999999,0,0,1,0,0\n"))
    assert_clean_failure(res, "frame")


@pytest.mark.hostile("crash")
def test_score_refuses_prediction_without_reference(tmp_path):
    res = run_cli(SCORE + _dirs(tmp_path, "0,0,0,0,0\n", "0,0,0,1,0,0\n", pred_name="b.csv"))
    assert_clean_failure(res, "without a reference", "b.csv")


# --- the evaluator ------------------------------------------------------------------------------

EVALUATE = ["localization_tasks.seld.evaluate"]


def _task(root: Path, events: dict | None = None, seld: dict | None = None) -> Path:
    """A label-only SELD task (train fold01, valid fold02, test fold03; one clip each): enough for
    every check the evaluator runs before it reads audio."""
    task = root / "tasks" / "t"
    rows = [Row(f, 0, 0, polar_to_unit(30, 0), None, (30, 0)) for f in range(5)]
    labels = {s: {"c.wav": rows} for s in ("fold01", "fold02", "fold03")}
    durations = {s: {"c.wav": 1.0} for s in labels}
    folds = {"train": ["fold01"], "valid": ["fold02"], "test": ["fold03"]}
    meta = {"task_name": "t", "seld": {"official_folds": folds} if seld is None else seld}
    write_labels(task, meta, ["a"], labels, durations)
    if events is not None:
        (task / "fold01.json").write_text(json.dumps(events))
    return task


def _evaluate_fails(capsys, argv: list[str], *needles: str) -> None:
    """In-process main(): exit 2 with one `...: error:` line naming the needles (an unexpected
    exception would propagate and fail the test)."""
    try:
        code = evaluate.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[-1].startswith("python -m localization_tasks.seld.evaluate: error:")
    for n in needles:
        assert n.lower() in err[-1].lower(), (n, err[-1])


def _args(tmp_path, *extra: str) -> list[str]:
    return ["--tasks-dir", str(tmp_path / "tasks"), "--out", str(tmp_path / "out"),
            "--baseline", "zero", "--quiet", *extra]  # fmt: skip


@pytest.mark.hostile("crash")
def test_evaluate_refuses_missing_tasks_dir(tmp_path):
    res = run_cli(EVALUATE + _args(tmp_path))
    assert_clean_failure(res, "--tasks-dir", "not a directory")


@pytest.mark.hostile("path")
def test_evaluate_refuses_clip_name_escaping_the_task(tmp_path):
    """A clip name `../../x.wav` in a split file must not be read or written outside; the task
    and everything beside it stay unchanged."""
    _task(tmp_path, events={"../../x.wav": []})
    before = snapshot(tmp_path / "tasks")
    res = run_cli(EVALUATE + _args(tmp_path))
    assert_clean_failure(res, "../../x.wav")
    assert snapshot(tmp_path / "tasks") == before and not (tmp_path / "x.wav").exists()


@pytest.mark.hostile("nonfinite")
def test_evaluate_refuses_nan_direction(tmp_path, capsys):
    bad = {"c.wav": [{"label": "a", "start": 0, "end": 100, "direction": [float("nan"), 0]}]}
    _task(tmp_path, events=bad)
    _evaluate_fails(capsys, _args(tmp_path), "fold01.json", "NaN")


@pytest.mark.hostile("crash")
def test_evaluate_refuses_task_without_official_folds(tmp_path, capsys):
    _task(tmp_path, seld={"folds": {"train": ["fold01"], "test": ["fold03"]}})
    _evaluate_fails(capsys, _args(tmp_path), "official_folds")


@pytest.mark.hostile("crash")
def test_evaluate_without_valid_split_needs_two_training_clips(tmp_path, capsys):
    """No validation split (as STARSS23, TAU 2018): one training clip cannot be split."""
    _task(tmp_path, seld={"official_folds": {"train": ["fold01"], "test": ["fold03"]}})
    _evaluate_fails(capsys, _args(tmp_path), "no validation split", "at least 2")


@pytest.mark.hostile("path")
def test_evaluate_refuses_split_name_escaping(tmp_path, capsys):
    folds = {"train": ["../../fold01"], "valid": ["fold02"], "test": ["fold03"]}
    _task(tmp_path, seld={"official_folds": folds})
    _evaluate_fails(capsys, _args(tmp_path), "../../fold01")


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--epochs", "0"], "epochs"),
        (["--lr", "nan"], "lr"),
        (["--module", "no_such_module_xyz"], "no_such_module_xyz"),
        (["--module", "localization_tasks.seld.intensity_module", "--model-options", "{"], "JSON"),
        (["--module", "localization_tasks.seld.intensity_module", "--name", "../up"], "../up"),
    ],
)
def test_evaluate_refuses_bad_options(tmp_path, capsys, extra, needle):
    _task(tmp_path)
    _evaluate_fails(capsys, _args(tmp_path, *extra), needle)


@pytest.mark.hostile("nonfinite")
def test_evaluate_refuses_nonfinite_embeddings():
    ts = np.array([50.0, 150.0])
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_timestamp_embeddings(np.array([[0.0], [np.nan]]), ts, "m")
    with pytest.raises(ValueError, match="not increasing"):
        check_timestamp_embeddings(np.zeros((2, 1)), ts[::-1].copy(), "m")


@pytest.mark.hostile("stale")
def test_embedding_cache_key_follows_the_weights_file(tmp_path):
    """Same module, path and options, new weights in the file: a new cache key (else the cache
    would serve the old model's embeddings)."""
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"one")
    a = Features("module", "m", str(w), {}, tmp_path).tag()
    w.write_bytes(b"two")
    b = Features("module", "m", str(w), {}, tmp_path).tag()
    w.write_bytes(b"one")
    assert a != b and Features("module", "m", str(w), {}, tmp_path).tag() == a


@pytest.mark.hostile("path")
def test_synth_refuses_source_clip_name_escaping(tmp_path, capsys):
    """A HEAR task given as --sources whose split file names `../../x.wav`: refused, one line."""
    src = tmp_path / "src"
    (src / "16000" / "s").mkdir(parents=True)
    (src / "task_metadata.json").write_text(json.dumps({"splits": ["s"]}))
    (src / "labelvocabulary.csv").write_text("idx,label\n0,a\n")
    (src / "s.json").write_text(json.dumps({"../../x.wav": ["a"]}))
    code = synth.main(["--out", str(tmp_path / "out"), "--sources", str(src), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "../../x.wav" in err[0] and err[0].startswith("python -m localization_tasks.seld.synth")


# --- malformed task files: each entry point that reads them ends in one line naming the file -----


def _fails(capsys, main, prog: str, argv: list, *needles: str) -> str:
    """In-process main(argv): exit 2 and one stderr line `PROG: error: ...` holding every needle
    (an unexpected exception propagates and fails the test)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, (code, err)
    assert err[0].startswith(f"{prog}: error:"), err
    for n in needles:
        assert n.lower() in err[0].lower(), (n, err[0])
    return err[0]


DEEP = b"[" * 5000 + b"]" * 5000
# (file, bytes, what the line must say besides the file's name)
TASK_FILES = [
    ("seld_clips.csv", b"", "header"),
    ("seld_clips.csv", b"split,file,duration_s,n_frames\nfold01,c.wav,1.0,ten\n", "'ten'"),
    ("seld_clips.csv", b"split,file,duration_s,n_frames\nfold01,c.wav,1.0,10,9\n", ":2: 5 fields"),
    ("seld_clips.csv", b"split,file,n_frames\nfold01,c.wav,10\nfold01,c.wav,12\n", "twice"),
    ("seld_clips.csv", b'split,file,n_frames\nfold01,"' + b"x" * 200_000 + b'",1\n', "not CSV"),
    ("seld_clips.csv", b"split,file,n_frames\nfold01,c\xe9.wav,10\n", "not UTF-8"),
    ("seld_clips.csv", b"split,file,n_frames\nfold01,c.wav\x00,10\n", "NUL"),
    ("labelvocabulary.csv", b"", "header"),
    ("labelvocabulary.csv", b"idx,label\n0,a\n1,a\n", ":3:"),
    ("labelvocabulary.csv", b"idx,label\nzero,a\n", "'zero'"),
    ("labelvocabulary.csv", b"idx,label\n0,a\n2,b\n", "outside 0..1"),
    ("labelvocabulary.csv", b"\xef\xbb\xbfidx,name\n0,a\n", "header"),
    ("labelvocabulary.csv", b"idx,label\n0,\xff\n", "not UTF-8"),
    ("fold01.json", DEEP, "nests deeper"),
    ("fold01.json", b"", "not JSON"),
    ("fold01.json", b"\xef\xbb\xbf{}", "at least one"),
    ("fold01.json", b"[]", "map file names"),
    ("fold01.json", b'{"c.wav": {"label": "a"}}', "must be a list"),
    (
        "fold01.json",
        b'{"c.wav": [{"label": "a", "start": "0", "end": 100, "direction": [0, 0]}]}',
        "start",
    ),  # fmt: skip
    (
        "fold01.json",
        b'{"c.wav": [{"label": "a", "start": 0, "end": 100, "direction": "up"}]}',
        "direction",
    ),  # fmt: skip
    ("task_metadata.json", DEEP, "nests deeper"),
    ("task_metadata.json", b"", "not JSON"),
    ("task_metadata.json", b'{"splits": "fold01"}', "splits"),
]


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(("file", "data", "needle"), TASK_FILES,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(TASK_FILES)])  # fmt: skip
def test_evaluate_refuses_malformed_task_files_naming_them(tmp_path, capsys, file, data, needle):
    task = _task(tmp_path)
    (task / file).write_bytes(data)
    _fails(capsys, evaluate.main, evaluate.PROG, _args(tmp_path), file, needle)


def test_a_byte_order_mark_is_skipped_not_glued_to_a_column(tmp_path, capsys):
    """Every task file saved with a UTF-8 BOM (as some editors do) evaluates exactly as without
    it: the BOM is not read as part of the `idx` or `split` column name."""
    task = _task(tmp_path)
    assert evaluate.main(_args(tmp_path)) == 0
    plain = json.loads((tmp_path / "out" / "results.json").read_text())
    for name in ("labelvocabulary.csv", "seld_clips.csv", "fold01.json", "task_metadata.json"):
        (task / name).write_bytes(b"\xef\xbb\xbf" + (task / name).read_bytes())
    assert evaluate.main(_args(tmp_path)) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == plain


def _source_task(root: Path) -> Path:
    """A HEAR scene task with 3 one-label clips (one per synthetic fold) as --sources."""
    src = root / "src"
    (src / "16000" / "s").mkdir(parents=True)
    (src / "task_metadata.json").write_text(json.dumps({"splits": ["s"]}))
    (src / "labelvocabulary.csv").write_text("idx,label\n0,a\n")
    (src / "s.json").write_text(json.dumps({f"{i}.wav": ["a"] for i in range(3)}))
    for i in range(3):
        sf.write(src / "16000" / "s" / f"{i}.wav", np.full(16000, 0.1 * (i + 1)), 16000)
    return src


SOURCE_FILES = [
    ("labelvocabulary.csv", b"idx,label\n0,a\n1,a\n", ":3:"),
    ("labelvocabulary.csv", b"idx,label\n0,a\x00\n", "NUL"),
    ("labelvocabulary.csv", b"\xef\xbb\xbfidx\n0\n", "header"),
    ("s.json", DEEP, "nests deeper"),
    ("s.json", b"", "not usable JSON"),
    ("s.json", b'{"0.wav": "a"}', "must be a list"),
    ("s.json", b'{"0.wav": [{"label": "a", "start": "0", "end": 5}]}', "finite"),
    ("task_metadata.json", b'{"splits": [1]}', "splits"),
    ("task_metadata.json", DEEP, "nests deeper"),
]


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(("file", "data", "needle"), SOURCE_FILES,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(SOURCE_FILES)])  # fmt: skip
def test_synth_refuses_malformed_source_task_files_naming_them(
    tmp_path, capsys, file, data, needle
):  # noqa: E501
    src = _source_task(tmp_path)
    (src / file).write_bytes(data)
    argv = ["--out", tmp_path / "out", "--sources", src, "--sample-rate", "16000", "--quiet"]
    _fails(capsys, synth.main, synth.PROG, argv, file, needle)
    assert not list((tmp_path / "out").rglob("*.wav"))


# --- the converter and the synthesizer never write through a link on their output path -------

SR8 = 8000
TASK24 = "starss23-2024-foa-v1.0.0-full"
TASK_SYNTH = "synth-seld-ambisonic-ov2-v1.0.0"


def _starss(root: Path) -> Path:
    """One STARSS23 (DCASE 2024 release) clip, fold 4, 1 s of 4-channel audio at 8 kHz."""
    (root / "metadata_dev" / "dev-test-sony").mkdir(parents=True)
    (root / "foa_dev" / "dev-test-sony").mkdir(parents=True)
    (root / "metadata_dev" / "dev-test-sony" / "fold4_room1_mix001.csv").write_text(
        "3,0,0,10,0,200\n"
    )
    x = np.full((SR8, 4), 0.25, dtype=np.float32)
    sf.write(root / "foa_dev" / "dev-test-sony" / "fold4_room1_mix001.wav", x, SR8, subtype="FLOAT")
    return root


def _convert_argv(tmp_path: Path, out: Path) -> list:
    return ["--dataset-dir", tmp_path / "STARSS23", "--dataset", "starss23-2024", "--out", out,
            "--quiet"]  # fmt: skip


def _synth_argv(out: Path) -> list:
    return ["--out", out, "--clips-per-fold", "1", "--clip-s", "1", "--sample-rate", str(SR8),
            "--rir-s", "0.1", "--quiet"]  # fmt: skip


# where the link is planted (below OUT) and what it points at: a folder outside OUT, or ("in") a
# folder beside it inside OUT, refused too: the task's audio must not land in another folder
LEVELS = {
    "convert": [("{task}", "out"), ("{task}/8000", "out"), ("{task}/8000/fold04", "out"),
                ("{task}", "in"), ("{task}/8000", "in")],
    "synth": [("{task}", "out"), ("{task}/.parts", "out"), ("{task}/8000", "out"),
              ("{task}/8000/fold02", "out"), ("{task}/8000", "in")],
}  # fmt: skip
CASES = [(tool, where, to) for tool, levels in LEVELS.items() for where, to in levels]


@pytest.mark.hostile("path")
@pytest.mark.parametrize(("tool", "where", "to"), CASES,
                         ids=[f"{t}:{w.format(task='T')}->{to}" for t, w, to in CASES])  # fmt: skip
def test_a_link_planted_on_the_output_path_is_refused(tmp_path, capsys, tool, where, to):
    """A symbolic link at the task folder, a sample-rate folder, a fold folder (or the synth's
    .parts): one line naming it, exit 2, and nothing written outside OUT nor into the folder the
    link points at."""
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    task = TASK24 if tool == "convert" else TASK_SYNTH
    link = out / where.format(task=task)
    link.parent.mkdir(parents=True, exist_ok=True)
    target = outside if to == "out" else link.parent / "elsewhere"
    target.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    before, inside_before = snapshot(outside), snapshot(target)
    if tool == "convert":
        _starss(tmp_path / "STARSS23")
        argv, main, prog = _convert_argv(tmp_path, out), convert.main, convert.PROG
    else:
        argv, main, prog = _synth_argv(out), synth.main, synth.PROG
    line = _fails(capsys, main, prog, argv, link.name)
    assert "symbolic link" in line or "leads outside" in line
    assert snapshot(outside) == before and snapshot(target) == inside_before
    assert not [p for p in out.rglob("*.wav") if not p.is_symlink()]


@pytest.mark.hostile("path")
@pytest.mark.parametrize("tool", ["convert", "synth"])
def test_out_inside_a_linked_parent_writes_only_below_the_resolved_out(tmp_path, capsys, tool):
    """--out BASE/link/out with link -> BASE/real: the user's own path is followed as the shell
    follows it (a symlinked scratch folder is common), every file lands below real/out, and
    nothing else under BASE changes."""
    base = tmp_path / "base"
    (base / "real").mkdir(parents=True)
    (base / "link").symlink_to(base / "real", target_is_directory=True)
    (base / "keep.txt").write_text("mine")
    if tool == "convert":
        _starss(tmp_path / "STARSS23")
        code = convert.main([str(a) for a in _convert_argv(tmp_path, base / "link" / "out")])
    else:
        code = synth.main([str(a) for a in _synth_argv(base / "link" / "out")])
    assert code == 0, capsys.readouterr().err
    real_out = (base / "real" / "out").resolve()
    written = [p for p in base.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix == ".wav" for p in written)
    assert all(p.resolve() == (base / "keep.txt").resolve() or real_out in p.resolve().parents
               for p in written)  # fmt: skip
    assert (base / "keep.txt").read_text() == "mine" and (base / "link").is_symlink()


@pytest.mark.hostile("path")
def test_synth_resume_refuses_a_link_planted_at_a_finished_clip(tmp_path, capsys):
    """A finished task whose clip audio was replaced by a link to a file outside: the resumed
    run does not take the link for a finished clip (it would leave the task pointing outside);
    it renders the clip again and refuses to write through the link, naming it. The victim is
    untouched."""
    out = tmp_path / "out"
    assert synth.main([str(a) for a in _synth_argv(out)]) == 0
    clip = out / TASK_SYNTH / "8000" / "fold02" / "fold02_clip00000.wav"
    victim = tmp_path / "victim.wav"
    victim.write_bytes(clip.read_bytes())  # a valid clip: only the link gives it away
    clip.unlink()
    clip.symlink_to(victim)
    before = victim.read_bytes()
    _fails(capsys, synth.main, synth.PROG, _synth_argv(out), "fold02_clip00000.wav", "outside")
    assert victim.read_bytes() == before and clip.is_symlink()


# --- the converter refuses data that does not belong together, before writing any audio -------


def _forge_flac_length(path: Path, frames: int) -> None:
    """Rewrite `path` as a FLAC whose STREAMINFO (bytes 18..25: 36-bit sample count) claims
    `frames` samples per channel, whatever it holds."""
    x, sr = sf.read(path, dtype="float32")
    sf.write(path, x, sr, format="FLAC", subtype="PCM_16")
    data = bytearray(path.read_bytes())
    word = int.from_bytes(data[18:26], "big")
    data[18:26] = ((word & ~((1 << 36) - 1)) | frames).to_bytes(8, "big")
    path.write_bytes(bytes(data))


CONVERT_CASES = {
    # case: (what is done to the one-clip dataset, --dataset, what the line names)
    "2024-file-as-2023": (None, "starss23", ("fold4_room1_mix001.csv:1", "starss23-2024")),
    "label-past-the-end": ("csv:10,0,0,10,0,200", "starss23-2024", ("frame 10", "mix001.wav")),
    "two-channel-foa": ("channels:2", "starss23-2024", ("mix001.wav", "2 channels")),
    "mixed-rates": ("second-clip:16000", "starss23-2024", ("16000 Hz", "--resample")),
    "forged-length": ("flac:68719476735", "starss23-2024", ("mix001.wav", "header declares")),
}


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.hostile("bomb" if c == "forged-length" else "crash"))
     for c in CONVERT_CASES],
)  # fmt: skip
def test_convert_refuses_mismatched_data_in_one_line(tmp_path, capsys, case):
    how, dataset, needles = CONVERT_CASES[case]
    root = _starss(tmp_path / "STARSS23")
    clip = root / "foa_dev" / "dev-test-sony" / "fold4_room1_mix001.wav"
    kind, _, value = (how or "").partition(":")
    if kind == "csv":
        (root / "metadata_dev" / "dev-test-sony" / "fold4_room1_mix001.csv").write_text(
            value + "\n"
        )
    elif kind == "channels":
        sf.write(clip, np.zeros((SR8, int(value)), np.float32), SR8, subtype="FLOAT")
    elif kind == "second-clip":
        (root / "metadata_dev" / "dev-test-sony" / "fold4_room1_mix002.csv").write_text("")
        x = np.zeros((int(value), 4), np.float32)
        sf.write(clip.with_name("fold4_room1_mix002.wav"), x, int(value), subtype="FLOAT")
    elif kind == "flac":
        _forge_flac_length(clip, int(value))
    argv = _convert_argv(tmp_path, tmp_path / "out")
    argv[3] = dataset
    _fails(capsys, convert.main, convert.PROG, argv, *needles)
    assert not list((tmp_path / "out").rglob("*.wav"))


# --- the DCASE 2025 stereo set: 2 channels, a header line, then 6 columns ---------------------

STEREO_HEADER = "frame,class,source,azimuth,distance,onscreen"
STEREO_CSV = f"{STEREO_HEADER}\n3,0,0,10,200,1\n"
STEREO_TASK = "stereo-seld-2025-v1.0.0-full"


def _stereo(root: Path, csv_text: str = STEREO_CSV, channels: int = 2) -> Path:
    """One DCASE 2025 Stereo SELD clip, fold 4: 1 s at 8 kHz, `channels` channels."""
    for top in ("metadata_dev", "stereo_dev"):
        (root / top / "dev-test-sony").mkdir(parents=True)
    (root / "metadata_dev" / "dev-test-sony" / "fold4_room1_mix001.csv").write_bytes(
        csv_text.encode()
    )
    x = np.full((SR8, channels), 0.25, dtype=np.float32)
    wav = root / "stereo_dev" / "dev-test-sony" / "fold4_room1_mix001.wav"
    sf.write(wav, x, SR8, subtype="FLOAT")
    return root


def _stereo_argv(tmp_path: Path) -> list:
    return ["--dataset-dir", tmp_path / "stereo", "--dataset", "stereo-seld-2025", "--out",
            tmp_path / "out", "--quiet"]  # fmt: skip


STEREO_CASES = {
    # case: (channels, metadata, what the line names)
    "four-channels": (4, STEREO_CSV, ("mix001.wav", "4 channels", "stereo audio has 2")),
    "one-channel": (1, STEREO_CSV, ("mix001.wav", "1 channels", "stereo audio has 2")),
    # the 2024 layout has 6 columns too: without the header its first row would be skipped
    "6-columns-no-header": (2, "3,0,0,10,0,200\n",
                            ("mix001.csv:1", "no header line", "--dataset starss23-2024")),
    "2024-header-only": (2, "frame,class,source,azimuth,elevation,distance\n",
                         ("mix001.csv:1", "elevation", f"starts with {STEREO_HEADER}")),
    "5-columns-after-header": (2, f"{STEREO_HEADER}\n3,0,0,10,200\n",
                               ("mix001.csv:2", "5 columns")),
    "onscreen-2": (2, f"{STEREO_HEADER}\n3,0,0,10,200,2\n", ("mix001.csv:2", "onscreen 2")),
    "past-the-end": (2, f"{STEREO_HEADER}\n10,0,0,10,200,1\n", ("frame 10", "mix001.wav")),
}  # fmt: skip


@pytest.mark.hostile("crash")
@pytest.mark.parametrize("case", list(STEREO_CASES))
def test_convert_stereo_refuses_wrong_channels_and_layouts_in_one_line(tmp_path, capsys, case):
    channels, text, needles = STEREO_CASES[case]
    _stereo(tmp_path / "stereo", text, channels)
    _fails(capsys, convert.main, convert.PROG, _stereo_argv(tmp_path), *needles)
    assert not list((tmp_path / "out").rglob("*.wav"))


@pytest.mark.hostile("crash")
@pytest.mark.parametrize("text", [f"{STEREO_HEADER}\n", f"\ufeff{STEREO_HEADER}\r\n\r\n"],
                         ids=["plain", "bom-crlf"])  # fmt: skip
def test_convert_stereo_reads_a_header_only_file_as_a_clip_without_events(tmp_path, capsys, text):
    """A header and no rows is a clip in which nothing sounds (the 2025 baseline reads it as no
    labels): converted with an empty event list and its 10 frames, the header never taken for a
    row nor the file refused."""
    _stereo(tmp_path / "stereo", text)
    assert convert.main([str(a) for a in _stereo_argv(tmp_path)]) == 0, capsys.readouterr().err
    task = tmp_path / "out" / STEREO_TASK
    assert json.loads((task / "fold04.json").read_text()) == {"fold4_room1_mix001.wav": []}
    assert "fold04,fold4_room1_mix001.wav,1.0,10" in (task / "seld_clips.csv").read_text()
    y, sr = sf.read(task / str(SR8) / "fold04" / "fold4_room1_mix001.wav")
    assert sr == SR8 and y.shape == (SR8, 2)
