"""hear_gram.bench_suite: its disk accounting, per bucket and per phase, against a direct walk."""

from __future__ import annotations

import os
from pathlib import Path

from hear_gram import bench_suite
from hear_gram.bench_suite import BUCKETS, Mark, Watch, disk_usage, phases, stretches


def walk_bytes(root: Path, skip: Path | None = None) -> int:
    """Sizes of the regular files under `root` (links not followed), `skip`'s subtree left out."""
    total = 0
    for folder, dirs, files in os.walk(root):
        if skip is not None and Path(folder) == skip.parent:
            dirs[:] = [d for d in dirs if Path(folder, d) != skip]
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def direct(run: Path) -> dict[str, int]:
    """The buckets of `bench_suite.disk_usage`, each summed here by its own walk."""
    sub = {"build": walk_bytes(run / "build", skip=run / "build" / "scene-bank"),
           "scene_bank": walk_bytes(run / "build" / "scene-bank"),
           "embeddings": walk_bytes(run / "embeddings"), "units": walk_bytes(run / "units"),
           "report": walk_bytes(run / "report")}  # fmt: skip
    sub["other"] = walk_bytes(run) - sum(sub.values())
    sub["total"] = walk_bytes(run)
    return sub


def write(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * n)


# The files each phase of a fake run writes, in order: (phase kind, [(path, bytes)]).
PHASE_FILES = [
    ("start-up", [("logs/hear_gram-suite.log", 120)]),
    ("build", [("build/scene-bank/test-binaural-48000-abc/scene-00000.npz", 4000),
               ("build/scene-bank/test-binaural-48000-abc/bank.json", 40),
               ("build/localization-a-123/a-loc-binaural-clean/48000/fold00/clip0000.wav", 900),
               ("build/localization-a-123.done", 30)]),
    ("embed", [("embeddings/dry/a/t-1/w-2/hear_gram/a/fold00.embeddings.npy", 700),
               ("units/gram/dry/a/unit.log", 55)]),
    ("train", [("embeddings/dry/a/t-1/w-2/hear_gram/a/prediction-done.json", 17),
               ("units/gram/dry/a/result.json", 80)]),
    ("report", [("report/REPORT.md", 310), ("report/results.csv", 60)]),
]  # fmt: skip


def test_phase_accounting_equals_a_direct_walk_of_a_fake_run(tmp_path):
    """Each phase adds exactly the bytes it wrote, by bucket; their sum is the final folder as a
    direct os.walk sums it, by subfolder; links and the folders themselves count nothing."""
    run = tmp_path / "run"
    run.mkdir()
    outside = tmp_path / "outside.bin"
    write(outside, 10_000)
    (run / "link-to-outside").symlink_to(outside)  # neither followed nor counted
    marks = [Mark(0.0, PHASE_FILES[0][0], "", "launch", disk_usage(run))]
    wrote = {}
    for i, (kind, files) in enumerate(PHASE_FILES):
        for rel, n in files:
            write(run / rel, n)
        nxt = PHASE_FILES[i + 1][0] if i + 1 < len(PHASE_FILES) else "end"
        marks.append(Mark(float(i + 1), nxt, "", kind, disk_usage(run)))
        wrote[kind] = sum(n for _, n in files)
    got = phases(stretches(marks))
    assert {k: p["added"]["total"] for k, p in got.items()} == wrote
    assert all(p["seconds"] == 1.0 and p["count"] == 1 for p in got.values())
    end = direct(run)
    assert disk_usage(run) == end
    for b in (*BUCKETS, "total"):
        assert sum(p["added"][b] for p in got.values()) == end[b], b
    assert end["scene_bank"] == 4040 and end["build"] == 930 and end["other"] == 120
    assert got["build"]["added"]["scene_bank"] == 4040 and got["train"]["added"]["units"] == 80


def test_watch_marks_steps_from_unit_logs_and_ends_from_result_files(tmp_path):
    """Steps start where their command line appears in unit.log (a half-written line waits for
    the next poll); a unit ends at its result.json's mtime; a build at its marker's."""
    run = tmp_path / "run"
    unit = run / "units" / "gram" / "dry" / "a"
    unit.mkdir(parents=True)
    watch = Watch(run, t0=0.0)
    log = unit / "unit.log"
    log.write_text("\n$ /usr/bin/python -m hear_gram.embed hear_gram --task a\nsome output\n$ /u")
    watch.poll()
    assert [(m.kind, m.unit, m.label) for m in watch.marks[1:]] == [
        ("embed", "gram/dry/a", "hear_gram.embed")
    ]
    with log.open("a") as f:
        f.write("sr/bin/python -m hear_gram.predict /e/a --grid fast\n")
    write(unit / "result.json", 80)
    os.utime(unit / "result.json", (5.0, 5.0))
    watch.poll()
    assert [(m.kind, m.label) for m in watch.marks[2:]] == [
        ("suite", "result.json gram/dry/a"),  # mtime 5 s after t0: sorted before "now"
        ("train", "hear_gram.predict"),
    ]
    assert watch.marks[2].t == 5.0 and watch.marks[2].disk == disk_usage(run)
    assert watch.commands["gram/dry/a"][1] == ("hear_gram.predict", " /e/a --grid fast")
    watch.poll()  # nothing new: no new marks
    assert len(watch.marks) == 4


def test_bucket_of_top_level_files_is_other():
    assert bench_suite.bucket(Path("units")) == "other"  # a file named like a folder
    assert bench_suite.bucket(Path("build/scene-bank")) == "build"
    assert bench_suite.bucket(Path("report/REPORT.md")) == "report"


def test_a_set_up_folder_it_did_not_make_is_refused_and_kept(tmp_path, capsys):
    """The program replaces OUT's suite/ folder only when its marker says it made it."""
    theirs = tmp_path / "suite" / "precious.txt"
    write(theirs, 5)
    assert bench_suite.main(["--out", str(tmp_path / "suite.json")]) == 2
    err = capsys.readouterr().err
    assert "was not made by python -m hear_gram.bench_suite" in err
    assert theirs.read_bytes() == b"xxxxx"


def test_the_suites_build_step_is_its_own_phase_not_a_units_overhead(tmp_path):
    """The suite makes its builds first ("build: 2 to make first", then one line per build made):
    the stretch from that line to the last build's line is the builds phase (7 s here, written by
    hand), and the first unit's overhead does not carry it."""
    run = tmp_path / "run"
    run.mkdir()
    watch = Watch(run, 0.0)
    lines = [(1.0, "suite: 1 units planned, 1 in shard 0/1: 0 done, 0 failed before, 1 to run"),
             (2.0, "build: 2 to make first (one-off: not in the units' ETA)"),
             (5.0, "build: localization src binaural 16000 Hz (3 s)"),
             (9.0, "build: nat-binaural src (4 s)")]  # fmt: skip
    bench_suite.stdout_marks(watch, lines, 0)
    watch.add(12.0, "suite", "", "result.json m/dry/a")
    watch.add(12.5, "end", "", "exit")
    for m in watch.marks:
        m.disk = m.disk or {k: 0 for k in (*BUCKETS, "total")}
    parts = stretches(sorted(watch.marks, key=lambda m: m.t))
    assert phases(parts)["build"]["seconds"] == 7.0
    (row,) = bench_suite.units_table(run, watch, parts)
    assert row["wall_s"] == 11.0 and row["build_s"] == 7.0
