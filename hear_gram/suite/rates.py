"""A HEAR task at a sample rate it lacks, built once under OUT for the suite's dry and Nat-HEAR
units (`python -m hear_gram.suite.rates --task-dir TASK --rate HZ --out ROOT`).

heareval's embeddings runner reads `{task}/{model.sample_rate}/{split}/` only, and stops with a
bare `AssertionError: .../44100/fold00 is not a directory` when the task lacks that folder
(`heareval/embeddings/task_embeddings.py`, `AudioFileDataset`). When a unit's task lacks its
module's rate, `ensure_rate` writes the task again as OUT/build/rate<HZ>-<task>-<12 hex>/<task>/:
its top-level files copied (task_metadata.json, split JSONs, labelvocabulary.csv) and every file
the split JSONs name resampled from the task's highest-rate folder with `hear_gram.resample`
(bounded in memory for any rate pair; the filter `localization_tasks.embeddings` applies on the
fly), written as float WAV (no requantisation, no clipping of resampled peaks above 1). The
user's tasks folder is never written. The hex is a digest of the task's content
(`hear_gram.cache.task_digest`), the rate and the code of this file and of hear_gram/resample.py,
so a changed task is built again into a new folder; the build runs once, under a lock
(`hear_gram.suite.build.build_once`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hear_gram import cli
from hear_gram.safeio import child, refuse_symlink, subdir

if TYPE_CHECKING:
    from hear_gram.suite.config import Settings

PROG = "python -m hear_gram.suite.rates"


def rates_of(task_dir: Path) -> list[int]:
    """The sample-rate folders of a task (Hz, ascending)."""
    return sorted(int(p.name) for p in task_dir.iterdir() if p.is_dir() and p.name.isdigit())


def write_at_rate(src: Path, out: Path, rate: int) -> Path:
    """Write `src` (a HEAR task folder) as OUT/<its name>/ with a `rate` folder resampled from
    its highest-rate folder (module docstring); returns the new task folder."""
    import soundfile as sf
    import torch

    from hear_gram.heareval_compat import check_task
    from hear_gram.resample import check_file_rate, check_rate, check_resample_size, resample

    rate = check_rate(rate, "--rate")
    _, labels = check_task(src)
    found = rates_of(src)
    if not found:
        raise ValueError(f"{src}: no sample-rate folders to resample from")
    source = check_file_rate(found[-1], f"audio folder {src / str(found[-1])}")
    dst = child(subdir(out), src.name, "task")
    if dst.exists():  # a build cut short: its marker was never written (build_once), redo it
        refuse_symlink(dst)
        shutil.rmtree(dst)
    dst = subdir(out, src.name)
    for path in sorted(src.iterdir()):
        if path.is_file() and not path.is_symlink():
            shutil.copyfile(path, dst / path.name)
    for split, items in labels.items():
        in_dir = child(child(src, str(source), "rate"), split, "split name")
        out_dir = subdir(dst, str(rate), split)
        for name in items:
            path = child(in_dir, name, "file name")
            info = sf.info(path)
            if info.samplerate != source:
                raise ValueError(f"{path} is at {info.samplerate} Hz, but lies in the {source} folder")  # fmt: skip
            check_resample_size((info.channels, info.frames), source, rate, str(path))
            x, _ = sf.read(path, dtype="float32", always_2d=True)  # (N, C)
            y = resample(torch.from_numpy(x.T.copy()), source, rate).T.numpy()  # (N', C)
            sf.write(out_dir / name, y[:, 0] if y.shape[1] == 1 else y, rate, subtype="FLOAT")
    return dst


def ensure_rate(root: Path, task: str, rate: int, settings: Settings, log_file: Path) -> Path:
    """The folder holding `task` with a `rate` folder: `root` when the task has one, else its
    resampled build under OUT/build (made once)."""
    from hear_gram.cache import file_sha256, task_digest
    from hear_gram.resample import __file__ as resample_file
    from hear_gram.suite import build

    src = child(root, task, "task")
    if (src / str(rate)).is_dir():
        return root
    key = build.digest({"kind": "rate", "task": task_digest(src), "rate": rate,
                        "code": [file_sha256(Path(resample_file)), file_sha256(Path(__file__))]})  # fmt: skip
    out = child(settings.work, "build", "folder") / f"rate{rate}-{task}-{key[:12]}"
    cmd = [sys.executable, "-m", "hear_gram.suite.rates", "--task-dir", str(src),
           "--rate", str(rate), "--out", str(out)]  # fmt: skip
    record = {"kind": "rate", "task": task, "rate": rate, "source": str(src)}
    return build.build_once(out, cmd, settings, log_file, f"resample {task} to {rate} Hz", record)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, "Write a HEAR task again with a sample-rate folder it lacks (resampled).")
    p.add_argument("--task-dir", type=Path, required=True, help="the HEAR task folder")
    p.add_argument("--rate", type=cli.positive_int, required=True, help="Hz")
    p.add_argument("--out", type=Path, required=True, help="folder to write <task>/ into")
    return p


def body(args: argparse.Namespace) -> int:
    print(write_at_rate(args.task_dir, args.out, args.rate))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(PROG, build_parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
