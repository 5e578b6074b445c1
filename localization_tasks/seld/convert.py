"""Convert a DCASE Task 3 dataset on disk into a HEAR-style SELD task (`localization_tasks.seld.task`).

    python -m localization_tasks.seld.convert --dataset-dir STARSS23 --dataset starss23-2024 \\
        --out tasks [--audio foa|mic|stereo] [--sample-rate 24000 --sample-rate 32000] [--resample]

Reads `{audio}_dev/{subset}/{clip}.wav` and `metadata_dev/{subset}/{clip}.csv` (the layout of
STARSS22/23, TAU-NIGENS 2020/2021 and the DCASE 2025 Stereo SELD set; `{audio}` is `foa` or `mic`,
`stereo` for the 2025 set). The clip name's `foldN_` prefix gives the HEAR split `foldNN`; the
dataset's official train/valid/test folds go into task_metadata.json (`seld.official_folds`).
Labels are 100 ms frames.

The dataset named by `--dataset` decides how its metadata is read, as that year's DCASE baseline
reads it (`cls_feature_class.py`, `load_output_format_file`):

    tau-nigens-2020, tau-nigens-2021, starss22, starss23 (the DCASE 2022/2023 release):
        frame,class,source,azimuth,elevation                 5 columns, degrees
    starss23-2024 (STARSS23 as released for DCASE 2024, with distances):
        frame,class,source,azimuth,elevation,distance        6 columns, distance in cm
    stereo-seld-2025 (the DCASE 2025 Task 3 Stereo SELD set: 5 s stereo clips cut from STARSS23):
        a header line, then
        frame,class,source,azimuth,distance,onscreen         6 columns, distance in cm

(sharathadavanne/seld-dcase2020 and seld-dcase2021 read 5 columns as polar and 6 as cartesian
output; partha2409/DCASE2024_seld_baseline reads 6 columns as polar plus a distance in cm, which
its scorer divides by 100.) A file with the other year's column count is refused, naming the
file and line, rather than read as something else. Distances become metres here, once, and are
written into the task's events as `distance` (m).

The 2025 set as partha2409/DCASE2025_seld_baseline lays it out and reads it (its README's
directory tree, `extract_features.py`, `utils.load_labels`, `parameters.py`): `stereo_dev/` and
`metadata_dev/` with subsets `dev-train-{sony,tau}` and `dev-test-{sony,tau}`, clips of 5 s
(`label_sequence_length` 50 frames) loaded at 24 kHz, trained on fold 3 and tested on fold 4 (its
`dev_train_folds` also name fold 1, the synthetic data a user may add as `dev-train-synth`: such
clips become split fold01, outside the official folds). Its loader skips line 1 unread, so a file
without the header line is refused (its first row would be lost), as is a header naming other
columns (the 2024 layout also has 6). A stereo pair does not resolve elevation (nor front from
back: the 2025 metrics fold azimuths to the front), so the labels have none and events carry
`direction` [azimuth, 0.0], the 0 a placeholder, not a measurement; each event also carries
`onscreen` (1: inside the video's field of view), which the 2025 scorer reads (`OnscreenAq`,
`--req-onscreen`). The task's `seld.audio` is `stereo`: the channels are a mid-side decoding of
the FOA recordings (the DCASE 2025 Task 3 description), not ear signals, so not `binaural`.

Every clip is checked before any audio is written: its audio's header (`soundfile.info`: channel
count 4 for FOA and MIC, 2 for stereo, a sample rate, a length of at most MAX_CLIP_S), no label frame past the
audio's end, and one sample rate across the dataset (mixed rates are refused unless `--resample`
asks to resample every clip to `--sample-rate`, default the rate most clips have). Audio is then
read in blocks (`task.read_audio`: no more samples than the header declared, none NaN) and
written as float32 WAV, resampled with `hear_gram.resample` where a rate differs.

`--dataset tau2019` (TAU Spatial Sound Events 2019: `metadata_dev/*.csv`, `{audio}_dev/*.wav`) and
`--dataset tau2018 --overlap O` (TAU 2018 ANSYN/REAL: `desc_ovO_splitK/`, `wav_ovO_splitK*/`) read
event lists with onsets and offsets instead and put them on the 100 ms grid
(`localization_tasks.seld.tau` documents the layouts, the frame rule and the folds).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from hear_gram import cli
from hear_gram.resample import check_file_rate, check_rate, check_resample_size
from hear_gram.safeio import check_name, child
from localization_tasks.seld import tau
from localization_tasks.seld.labels import (
    FRAME_S,
    STEREO_HEADER,
    LabelFileError,
    Row,
    is_header,
    read_rows,
)
from localization_tasks.seld.task import (
    output_folder,
    read_audio,
    write_audio,
    write_labels,
)

log = logging.getLogger(__name__)

_STARSS = (
    "femaleSpeech", "maleSpeech", "clapping", "telephone", "laughter", "domesticSounds",
    "footsteps", "doorCupboard", "music", "musicInstrument", "waterTap", "bell", "knock",
)  # fmt: skip
_NIGENS_2021 = (  # 12 classes
    "alarm", "crying baby", "crash", "barking dog", "female scream", "female speech",
    "footsteps", "knocking on door", "male scream", "male speech", "ringing phone", "piano",
)  # fmt: skip
_NIGENS_2020 = (  # 14 classes: 2021's plus engine and fire
    "alarm", "crying baby", "crash", "barking dog", "running engine", "female scream",
    "female speech", "burning fire", "footsteps", "knocking on door", "male scream", "male speech",
    "ringing phone", "piano",
)  # fmt: skip


@dataclass(frozen=True)
class DcaseSet:
    """A frame-labelled DCASE Task 3 development set: its classes, official folds (DCASE Task 3
    description of its year), the column count of its metadata (5: polar; 6: polar and a
    distance in cm, or with `header` the DCASE 2025 stereo layout after a header line) and the
    audio formats it is released in (`{audio}_dev` folders; the first is the default)."""

    classes: tuple[str, ...]
    folds: dict[str, tuple[int, ...]]
    columns: int
    audio: tuple[str, ...] = ("foa", "mic")
    header: bool = False

    @property
    def layout(self) -> str:
        if self.header:
            return f"a header line, then {STEREO_HEADER} (distance in cm)"
        return _LAYOUT[self.columns]


DATASETS: dict[str, DcaseSet] = {
    "tau-nigens-2020": DcaseSet(_NIGENS_2020, {"train": (3, 4, 5, 6), "valid": (2,), "test": (1,)}, 5),  # noqa: E501
    "tau-nigens-2021": DcaseSet(_NIGENS_2021, {"train": (1, 2, 3, 4), "valid": (5,), "test": (6,)}, 5),  # noqa: E501
    "starss22": DcaseSet(_STARSS, {"train": (3,), "test": (4,)}, 5),
    "starss23": DcaseSet(_STARSS, {"train": (3,), "test": (4,)}, 5),
    "starss23-2024": DcaseSet(_STARSS, {"train": (3,), "test": (4,)}, 6),
    "stereo-seld-2025": DcaseSet(_STARSS, {"train": (3,), "test": (4,)}, 6, ("stereo",), header=True),  # noqa: E501
}  # fmt: skip
_LAYOUT = {
    5: "frame,class,source,azimuth,elevation",
    6: "frame,class,source,azimuth,elevation,distance (cm)",
}
# FOA: 4 ambisonic channels (ACN/SN3D); MIC: the 4 capsules of the tetrahedral array (DCASE
# Task 3 dataset descriptions, every year); stereo: left, right (DCASE 2025).
CHANNELS = {"foa": 4, "mic": 4, "stereo": 2}
# DCASE Task 3 clips last 30 s to a few minutes (TAU 2018: 30 s, TAU 2019 and TAU-NIGENS: 60 s,
# STARSS: 30 s to ~5 min); a header declaring over an hour is corrupt or forged, refused before a
# sample is read.
MAX_CLIP_S = 3600.0
_FOLD = re.compile(r"^fold(\d+)_")
MAX_CLIPS = 100_000
TAU_DATASETS = ("tau2018", "tau2019")
TAU_AUDIO = ("foa", "mic")
# seld.direction and seld.onscreen of a stereo task (module docstring)
_STEREO_META = {
    "direction": "azimuth counter-clockwise from front, degrees (DCASE); elevation 0: stereo "
    "labels have none",
    "onscreen": "1: inside the video's field of view, 0: outside (DCASE 2025 metadata)",
}


@dataclass(frozen=True)
class Clip:
    """One clip, checked: its HEAR split, audio file, label file, label rows and the audio's
    header (rate in Hz, samples per channel, channels)."""

    split: str
    wav: Path
    labels: Path
    rows: list[Row]
    sample_rate: int
    frames: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def label_frames(seconds: float) -> int:
    """100 ms label frames of a clip of `seconds` (the last one may be partial)."""
    return math.ceil(round(seconds / FRAME_S, 6))


def audio_header(wav: Path, audio: str) -> tuple[int, int, int]:
    """(sample rate in Hz, samples per channel, channels) of a clip from its header
    (`soundfile.info`), checked before any sample is read: readable, a plausible sample rate,
    CHANNELS[audio] channels, 1 sample to MAX_CLIP_S seconds."""
    try:
        info = sf.info(str(wav))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise ValueError(f"{wav}: not a readable audio file ({cli.one_line(e)})") from None
    sr = check_file_rate(info.samplerate, str(wav))
    if info.channels != CHANNELS[audio]:
        raise ValueError(
            f"{wav}: {info.channels} channels; {audio.upper()} audio has {CHANNELS[audio]}"
        )
    if not 0 < info.frames <= MAX_CLIP_S * sr:
        raise ValueError(
            f"{wav}: its header declares {info.frames} samples ({info.frames / sr:.1f} s); a "
            f"clip holds 1 sample to {MAX_CLIP_S:g} s (a corrupt or forged header?)"
        )
    return sr, info.frames, info.channels


def _read_metadata(path: Path, dataset: str) -> list[Row]:
    """The rows of one metadata CSV in the layout of `dataset`'s year, distances in metres. The
    first line decides whether the file is of that release: its column count, and whether it is
    the DCASE 2025 header (required by the 2025 set, refused by the others)."""
    spec = DATASETS[dataset]
    with open(path, encoding="utf-8", errors="replace") as f:
        first = next((ln for ln in iter(lambda: f.readline(4096), "") if ln.strip()), "")
    fields = [x.strip().lower() for x in first.lstrip("\ufeff").split(",")]
    header = bool(first) and is_header(fields[0])
    stereo_header = header and ",".join(fields) == STEREO_HEADER
    if spec.header:
        if first and not header:
            other = [k for k, s in DATASETS.items() if s.columns == len(fields) and not s.header]
            hint = f" ({len(fields)} columns without one: --dataset {' or '.join(other)}?)"
            raise LabelFileError(
                f"{path}:1: no header line; {dataset} metadata starts with {STEREO_HEADER}"
                f"{hint if other else ''}"
            )
        if header and not stereo_header:
            raise LabelFileError(
                f"{path}:1: header {first.strip()[:120]!r}; {dataset} metadata starts with "
                f"{STEREO_HEADER}"
            )
        return read_rows(path, "dcase2025")  # distance in cm, read as metres; onscreen 0/1
    if stereo_header:
        other = [k for k, s in DATASETS.items() if s.header]
        raise LabelFileError(
            f"{path}:1: the DCASE 2025 stereo header ({STEREO_HEADER}); {dataset} metadata has "
            f"{spec.columns} columns ({spec.layout}); --dataset {' or '.join(other)} reads it"
        )
    n = len(fields)
    if first and n != spec.columns:
        other = [k for k, s in DATASETS.items() if s.columns == n and not s.header]
        hint = f"; --dataset {' or '.join(other)} reads {n}" if other else ""
        raise LabelFileError(
            f"{path}:1: {n} columns; {dataset} metadata has {spec.columns} ({spec.layout}){hint}"
        )
    if spec.columns == 5:
        return read_rows(path, "polar")
    return read_rows(path, "dcase2024")  # 6 columns: polar + distance in cm, read as metres


def _check_frames(rows: Sequence[Row], clip_labels: Path, wav: Path, seconds: float) -> None:
    """Refuse a label frame at or past the end of the audio (the DCASE baselines drop such
    frames silently; here they mean labels and audio that do not belong together)."""
    n = label_frames(seconds)
    late = max((r.frame for r in rows), default=-1)
    if late >= n:
        raise LabelFileError(
            f"{clip_labels}: frame {late} ({late * FRAME_S:.1f} s) is past the end of {wav} "
            f"({seconds:g} s: frames 0..{n - 1})"
        )


def _folder_hint(dataset_dir: Path, dataset: str) -> str:
    """What the dataset folder holds when its `{audio}_dev` is missing, and what reads that: the
    usual slip is the 2025 stereo set named as a 4-channel release, or the other way round."""
    found = [a for a in CHANNELS if (dataset_dir / f"{a}_dev").is_dir()]
    if not found:
        return ""
    readers = [k for k, s in DATASETS.items() if found[0] in s.audio]
    if dataset in readers:
        return f"; it has {found[0]}_dev: --audio {found[0]}"
    return f"; it has {found[0]}_dev, which --dataset {' or '.join(readers)} reads"


def _dcase_clips(dataset_dir: Path, dataset: str, audio: str) -> list[Clip]:
    spec = DATASETS[dataset]
    meta_root, audio_root = dataset_dir / "metadata_dev", dataset_dir / f"{audio}_dev"
    for d in (meta_root, audio_root):
        if not d.is_dir():
            hint = _folder_hint(dataset_dir, dataset) if d == audio_root else ""
            raise FileNotFoundError(f"{d} is not a directory (expected the DCASE layout{hint})")
    clips: list[Clip] = []
    for subset in sorted(p.name for p in meta_root.iterdir() if p.is_dir()):
        for csv_path in sorted(child(meta_root, subset, "subset").glob("*.csv")):
            if len(clips) >= MAX_CLIPS:
                raise ValueError(f"over {MAX_CLIPS} clips in {meta_root}; refusing")
            m = _FOLD.match(csv_path.name)
            if not m:
                raise ValueError(f"{csv_path}: clip names must start with foldN_")
            wav = child(child(audio_root, subset, "subset"), csv_path.stem + ".wav", "clip name")
            if not wav.is_file():
                raise FileNotFoundError(f"{wav} is missing (labels {csv_path})")
            rows = _read_metadata(csv_path, dataset)
            bad = next((r for r in rows if r.cls >= len(spec.classes)), None)
            if bad is not None:
                raise LabelFileError(
                    f"{csv_path}: class {bad.cls} in frame {bad.frame}; {dataset} has classes "
                    f"0..{len(spec.classes) - 1}"
                )
            sr, frames, channels = audio_header(wav, audio)
            _check_frames(rows, csv_path, wav, frames / sr)
            split = f"fold{int(m.group(1)):02d}"
            clips.append(Clip(split, wav, csv_path, rows, sr, frames, channels))
    if not clips:
        raise ValueError(f"no label files under {meta_root}")
    return clips


def _tau_clips(dataset_dir: Path, dataset: str, audio: str, overlap: int | None) -> tuple:
    """(clips, seld metadata, vocabulary name) of TAU 2018/2019."""
    if dataset == "tau2018":
        if overlap not in (1, 2, 3):
            raise ValueError(f"tau2018 needs --overlap 1, 2 or 3 (got {overlap})")
        found, seld = tau.tau2018_clips(dataset_dir, overlap)
    else:
        found, seld = tau.tau2019_clips(dataset_dir, audio)
    if len(found) > MAX_CLIPS:
        raise ValueError(f"over {MAX_CLIPS} clips in {dataset_dir}; refusing")
    vocabulary = tau.detect_vocabulary(found[0].csv) if dataset == "tau2018" else "dcase2016"
    clips = []
    for c in found:
        wav = child(c.wav.parent, c.wav.name, "clip name")
        if not wav.is_file():
            raise FileNotFoundError(f"{wav} is missing (labels {c.csv})")
        sr, frames, channels = audio_header(wav, audio)
        # events_to_rows refuses an event ending after the audio (TAU times are seconds)
        rows = tau.events_to_rows(tau.read_events(c.csv, vocabulary), frames / sr, str(c.csv))
        clips.append(Clip(c.split, wav, c.csv, rows, sr, frames, channels))
    return clips, seld, vocabulary


def release_audio(dataset: str, audio: str | None) -> str:
    """The audio format to convert: `audio` when `dataset` is released in it, by default the
    dataset's first (`DcaseSet.audio`: FOA for the 4-channel sets, stereo for 2025)."""
    formats = DATASETS[dataset].audio if dataset in DATASETS else TAU_AUDIO
    if audio is None:
        return formats[0]
    if audio not in formats:
        raise ValueError(
            f"{dataset} is released with {' and '.join(formats)} audio "
            f"({', '.join(f + '_dev' for f in formats)}), not {audio}"
        )
    return audio


def output_rates(
    clips: Sequence[Clip], requested: Sequence[int] | None, resample: bool
) -> list[int]:
    """The task's sample rates (Hz). Clips of different rates are refused unless `resample`:
    a DCASE set is recorded at one rate, so a second one means files of another set (or a
    converted copy) mixed in. Default: the rate of most clips (the higher on a tie)."""
    first: dict[int, Path] = {}
    for c in clips:
        first.setdefault(c.sample_rate, c.wav)
    if len(first) > 1 and not resample:
        (a, wa), (b, wb) = sorted(first.items())[:2]
        raise ValueError(
            f"{wa} is {a} Hz but {wb} is {b} Hz; pass --resample (and --sample-rate) to resample "
            "every clip to one rate"
        )
    if requested:
        return sorted({check_rate(r, "--sample-rate") for r in requested})
    counts = Counter(c.sample_rate for c in clips)
    return [max(counts, key=lambda r: (counts[r], r))]


def convert(
    dataset_dir: Path,
    out: Path,
    dataset: str,
    audio: str | None = None,
    sample_rates: Sequence[int] | None = None,
    task_name: str | None = None,
    overlap: int | None = None,
    resample: bool = False,
    progress: bool = False,
) -> Path:
    """Write the task; returns its directory. `audio` defaults to the dataset's own format
    (`release_audio`); `sample_rates` to the audio's own rate; `resample` allows clips of
    different rates (resampled to `sample_rates`). `overlap` (1..3) picks the TAU 2018 subset and
    is required for it. Nothing is written until every clip has passed its checks (module
    docstring)."""
    if audio is not None and audio not in CHANNELS:
        raise ValueError(f"unknown audio format {audio!r}; choose one of {', '.join(CHANNELS)}")
    if dataset not in DATASETS and dataset not in TAU_DATASETS:
        choices = ", ".join([*DATASETS, *TAU_DATASETS])
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {choices}")
    audio = release_audio(dataset, audio)
    if dataset in TAU_DATASETS:
        clips, seld, vocabulary = _tau_clips(dataset_dir, dataset, audio, overlap)
        default = f"tau2018-ov{overlap}-v1.0.0-full" if dataset == "tau2018" else (
            f"tau2019-{audio}-v1.0.0-full")  # fmt: skip
        classes: Sequence[str] = tau.VOCABULARIES[vocabulary]
        seld = {**seld, "frame_rule": "frames overlapping [start_time, end_time)",
                "class_names_from": vocabulary}  # fmt: skip
        if dataset == "tau2018":
            seld["overlap"] = overlap
    else:
        clips = _dcase_clips(dataset_dir, dataset, audio)
        spec = DATASETS[dataset]
        # the audio format is in the name only where the release has more than one
        default = f"{dataset}-{audio}-v1.0.0-full" if len(spec.audio) > 1 else (
            f"{dataset}-v1.0.0-full")  # fmt: skip
        classes = spec.classes
        folds = {k: [f"fold{f:02d}" for f in v] for k, v in spec.folds.items()}
        seld = {"official_folds": folds, "metadata_layout": spec.layout}
        if audio == "stereo":
            seld.update(_STEREO_META)
    name = check_name(task_name or default, "task name")
    rates = output_rates(clips, sample_rates, resample)
    for c in clips:  # the resampled sizes too, before any work
        for r in rates:
            check_resample_size((c.channels, c.frames), c.sample_rate, r, str(c.wav))
    # every check passed: now the task folder, every audio folder, then the audio
    task_dir = output_folder(out, name)
    for split in sorted({c.split for c in clips}):
        for r in rates:
            output_folder(task_dir, str(r), split)
    labels: dict[str, dict] = {}
    durations: dict[str, dict] = {}
    for c in tqdm(clips, desc=name, unit="clip", disable=not progress):
        x = read_audio(c.wav, c.frames)
        write_audio(task_dir, c.split, c.wav.name, x, c.sample_rate, rates)
        labels.setdefault(c.split, {})[c.wav.name] = c.rows
        durations.setdefault(c.split, {})[c.wav.name] = c.seconds
    metadata = _metadata(name, rates, audio, dataset, seld)
    write_labels(task_dir, metadata, classes, labels, durations)
    log.info("wrote %s: %d clips", task_dir, len(clips))
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
            "distance": "metres",
            "audio": audio,
            "source_dataset": dataset,
            **extra,
        },
    }


PROG = "python -m localization_tasks.seld.convert"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--dataset-dir", type=Path, required=True, metavar="DIR")
    p.add_argument(
        "--dataset",
        choices=sorted([*DATASETS, *TAU_DATASETS]),
        required=True,
        help="which set and release: it decides the metadata layout (starss23: the DCASE "
        "2022/2023 release, 5 columns; starss23-2024: with distances in cm, 6 columns; "
        "stereo-seld-2025: the DCASE 2025 stereo set, a header, azimuth, cm, on-screen)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        choices=(1, 2, 3),
        default=None,
        help="TAU 2018: which overlap subset (desc_ovO_splitK) to convert",
    )
    cli.add_out(p, help="folder the task folder is written into")
    p.add_argument(
        "--audio",
        choices=tuple(CHANNELS),
        default=None,
        help="which {audio}_dev folder (default: the release's own: foa; stereo for "
        "stereo-seld-2025)",
    )
    p.add_argument("--sample-rate", type=cli.positive_int, action="append", dest="sample_rates")
    p.add_argument(
        "--resample",
        action="store_true",
        help="allow clips of different sample rates: resample every clip to --sample-rate "
        "(default: the rate most clips have)",
    )
    p.add_argument("--task-name", default=None)
    return p


def run(args: argparse.Namespace) -> None:
    try:
        convert(args.dataset_dir, args.out, args.dataset, args.audio, args.sample_rates,
                args.task_name, args.overlap, args.resample, progress=not args.quiet)  # fmt: skip
    except sf.LibsndfileError as e:  # an unreadable recording: a RuntimeError, expected here
        raise cli.CLIError(str(e)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (`hear_gram.cli` convention): expected failures end in one line
    `PROG: error: ...` and exit status 2, Ctrl-C in 130."""
    return cli.main(PROG, build_parser, run, argv, log_dir=lambda a: a.out)


if __name__ == "__main__":
    sys.exit(main())
