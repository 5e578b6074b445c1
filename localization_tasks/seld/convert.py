"""Convert a DCASE Task 3 dataset on disk into a HEAR-style SELD task (`localization_tasks.seld.task`).

    python -m localization_tasks.seld.convert --dataset-dir STARSS23 --dataset starss23 \\
        --out tasks [--audio foa] [--sample-rate 24000 --sample-rate 32000]

Reads `{audio}_dev/{subset}/{clip}.wav` and `metadata_dev/{subset}/{clip}.csv` (the layout of
STARSS22/23 and TAU-NIGENS 2020/2021; `{audio}` is `foa` or `mic`). The clip name's `foldN_` prefix
gives the HEAR split `foldNN`; the dataset's official train/valid/test folds go into
task_metadata.json (`seld.official_folds`). Labels are 100 ms frames, polar degrees (a 6-column
2024 metadata file carries distance: pass `--label-format polar-distance`).

`--dataset tau2019` (TAU Spatial Sound Events 2019: `metadata_dev/*.csv`, `{audio}_dev/*.wav`) and
`--dataset tau2018 --overlap O` (TAU 2018 ANSYN/REAL: `desc_ovO_splitK/`, `wav_ovO_splitK*/`) read
event lists with onsets and offsets instead and put them on the 100 ms grid
(`localization_tasks.seld.tau` documents the layouts, the frame rule and the folds).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf

from hear_gram import cli
from hear_gram.safeio import check_name, child
from localization_tasks.seld import tau
from localization_tasks.seld.labels import FORMATS, read_rows
from localization_tasks.seld.task import write_audio, write_labels

log = logging.getLogger(__name__)

# Official development folds (DCASE Task 3 descriptions of each year).
DATASETS: dict[str, dict] = {
    "starss23": {
        "classes": [
            "femaleSpeech", "maleSpeech", "clapping", "telephone", "laughter", "domesticSounds",
            "footsteps", "doorCupboard", "music", "musicInstrument", "waterTap", "bell", "knock",
        ],
        "folds": {"train": [3], "test": [4]},
    },
    "starss22": {"classes": None, "folds": {"train": [3], "test": [4]}},
    "tau-nigens-2021": {"classes": None, "folds": {"train": [1, 2, 3, 4], "valid": [5], "test": [6]}},  # noqa: E501
    "tau-nigens-2020": {"classes": None, "folds": {"train": [3, 4, 5, 6], "valid": [2], "test": [1]}},  # noqa: E501
}  # fmt: skip
DATASETS["starss22"]["classes"] = DATASETS["starss23"]["classes"]
_NIGENS = [
    "alarm", "crying baby", "crash", "barking dog", "female scream", "female speech",
    "footsteps", "knocking on door", "male scream", "male speech", "ringing phone", "piano",
]  # fmt: skip
DATASETS["tau-nigens-2021"]["classes"] = _NIGENS  # 12 classes
DATASETS["tau-nigens-2020"]["classes"] = [  # 14 classes: 2021's plus engine and fire
    "alarm", "crying baby", "crash", "barking dog", "running engine", "female scream",
    "female speech", "burning fire", "footsteps", "knocking on door", "male scream", "male speech",
    "ringing phone", "piano",
]  # fmt: skip
_FOLD = re.compile(r"^fold(\d+)_")
MAX_CLIPS = 100_000
TAU_DATASETS = ("tau2018", "tau2019")


def convert(
    dataset_dir: Path,
    out: Path,
    dataset: str,
    audio: str = "foa",
    sample_rates: Sequence[int] | None = None,
    label_format: str = "auto",
    task_name: str | None = None,
    overlap: int | None = None,
) -> Path:
    """Write the task; returns its directory. `sample_rates` defaults to the audio's own.
    `overlap` (1..3) picks the TAU 2018 subset and is required for it."""
    if dataset in TAU_DATASETS:
        return _convert_tau(dataset_dir, out, dataset, audio, sample_rates, task_name, overlap)
    if dataset not in DATASETS:
        choices = ", ".join([*DATASETS, *TAU_DATASETS])
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {choices}")
    spec = DATASETS[dataset]
    meta_root, audio_root = dataset_dir / "metadata_dev", dataset_dir / f"{audio}_dev"
    for d in (meta_root, audio_root):
        if not d.is_dir():
            raise FileNotFoundError(f"{d} is not a directory (expected the DCASE layout)")
    name = check_name(task_name or f"{dataset}-{audio}-v1.0.0-full", "task name")
    task_dir = child(out, name, "task name")
    labels: dict[str, dict] = {}
    durations: dict[str, dict] = {}
    n = 0
    for subset in sorted(p.name for p in meta_root.iterdir() if p.is_dir()):
        for csv_path in sorted(child(meta_root, subset, "subset").glob("*.csv")):
            n += 1
            if n > MAX_CLIPS:
                raise ValueError(f"over {MAX_CLIPS} clips in {meta_root}; refusing")
            m = _FOLD.match(csv_path.name)
            if not m:
                raise ValueError(f"{csv_path.name}: clip names must start with foldN_")
            split = f"fold{int(m.group(1)):02d}"
            wav = child(audio_root / subset, csv_path.stem + ".wav", "clip name")
            if not wav.is_file():
                raise FileNotFoundError(f"{wav} is missing (labels {csv_path})")
            rows = read_rows(csv_path, label_format)
            x, sr = sf.read(wav, dtype="float32", always_2d=True)
            if len(spec["classes"]) <= max((r.cls for r in rows), default=-1):
                raise ValueError(f"{csv_path}: class index beyond {dataset}'s classes")
            labels.setdefault(split, {})[wav.name] = rows
            durations.setdefault(split, {})[wav.name] = len(x) / sr
            write_audio(task_dir, split, wav.name, x, sr, sample_rates or [sr])
            rates = sample_rates or [sr]
    if not n:
        raise ValueError(f"no label files under {meta_root}")
    folds = {k: [f"fold{f:02d}" for f in v] for k, v in spec["folds"].items()}
    metadata = _metadata(name, rates, audio, dataset, {"official_folds": folds})
    write_labels(task_dir, metadata, spec["classes"], labels, durations)
    log.info("wrote %s: %d clips", task_dir, n)
    return task_dir


def _metadata(name: str, rates: Sequence[int], audio: str, dataset: str, extra: dict) -> dict:
    return {
        "task_name": name,
        "version": "v1.0.0",
        "embedding_type": "event",
        "prediction_type": "multilabel",
        "split_mode": "presplit_kfold",
        "sample_duration": None,
        "sample_rates": sorted(int(r) for r in rates),
        "evaluation": ["seld"],
        "seld": {
            "label_hop_ms": 100,
            "direction": "azimuth counter-clockwise from front, elevation up, degrees (DCASE)",
            "audio": audio,
            "source_dataset": dataset,
            **extra,
        },
    }


def _convert_tau(
    dataset_dir: Path,
    out: Path,
    dataset: str,
    audio: str,
    sample_rates: Sequence[int] | None,
    task_name: str | None,
    overlap: int | None,
) -> Path:
    """TAU 2018/2019 event lists -> the same task layout (`localization_tasks.seld.tau`)."""
    if dataset == "tau2018":
        if overlap not in (1, 2, 3):
            raise ValueError(f"tau2018 needs --overlap 1, 2 or 3 (got {overlap})")
        clips, seld = tau.tau2018_clips(dataset_dir, overlap)
        default = f"tau2018-ov{overlap}-v1.0.0-full"
    else:
        clips, seld = tau.tau2019_clips(dataset_dir, audio)
        default = f"tau2019-{audio}-v1.0.0-full"
    if len(clips) > MAX_CLIPS:
        raise ValueError(f"over {MAX_CLIPS} clips in {dataset_dir}; refusing")
    name = check_name(task_name or default, "task name")
    task_dir = child(out, name, "task name")
    labels: dict[str, dict] = {}
    durations: dict[str, dict] = {}
    vocabulary = tau.detect_vocabulary(clips[0].csv) if dataset == "tau2018" else "dcase2016"
    wavs = []
    # every label file is checked before any audio is written, so a bad row leaves no half task
    for clip in clips:
        wav = child(clip.wav.parent, clip.wav.name, "clip name")
        if not wav.is_file():
            raise FileNotFoundError(f"{wav} is missing (labels {clip.csv})")
        info = sf.info(wav)
        seconds = info.frames / info.samplerate
        events = tau.read_events(clip.csv, vocabulary)
        rows = tau.events_to_rows(events, seconds, str(clip.csv))
        labels.setdefault(clip.split, {})[wav.name] = rows
        durations.setdefault(clip.split, {})[wav.name] = seconds
        wavs.append((clip.split, wav))
    rates: Sequence[int] = ()
    for split, wav in wavs:
        x, sr = sf.read(wav, dtype="float32", always_2d=True)
        rates = sample_rates or [sr]
        write_audio(task_dir, split, wav.name, x, sr, rates)
    extra = {
        **seld,
        "frame_rule": "frames overlapping [start_time, end_time)",
        "class_names_from": vocabulary,
    }
    if overlap is not None and dataset == "tau2018":
        extra["overlap"] = overlap
    metadata = _metadata(name, rates, audio, dataset, extra)
    write_labels(task_dir, metadata, tau.VOCABULARIES[vocabulary], labels, durations)
    log.info("wrote %s: %d clips", task_dir, len(clips))
    return task_dir


PROG = "python -m localization_tasks.seld.convert"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--dataset-dir", type=Path, required=True, metavar="DIR")
    p.add_argument("--dataset", choices=sorted([*DATASETS, *TAU_DATASETS]), required=True)
    p.add_argument(
        "--overlap",
        type=int,
        choices=(1, 2, 3),
        default=None,
        help="TAU 2018: which overlap subset (desc_ovO_splitK) to convert",
    )
    cli.add_out(p, help="folder the task folder is written into")
    p.add_argument("--audio", choices=("foa", "mic"), default="foa")
    p.add_argument("--sample-rate", type=cli.positive_int, action="append", dest="sample_rates")
    p.add_argument("--label-format", choices=FORMATS, default="auto")
    p.add_argument("--task-name", default=None)
    return p


def run(args: argparse.Namespace) -> None:
    try:
        convert(args.dataset_dir, args.out, args.dataset, args.audio, args.sample_rates,
                args.label_format, args.task_name, args.overlap)  # fmt: skip
    except sf.LibsndfileError as e:  # an unreadable recording: a RuntimeError, expected here
        raise cli.CLIError(str(e)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (`hear_gram.cli` convention): expected failures end in one line
    `PROG: error: ...` and exit status 2, Ctrl-C in 130."""
    return cli.main(PROG, build_parser, run, argv, log_dir=lambda a: a.out)


if __name__ == "__main__":
    sys.exit(main())
