"""Pretraining data (arXiv 2506.00934, data and pretraining): mono 10 s clips from a folder or WebDataset shards, the
random draws of each training item made in DataLoader workers, scenes mixed batch-wise on the
training device, log-mel, and random 200-frame crops.

Steps, each a small function or class:
- `open_audio`: a folder of audio files (any format soundfile reads, sorted) or WebDataset tar
  shards (`hear_gram.pretrain.shards.TarShards`), indexed.
- `AudioClips`: clip i, mono, 32 kHz, -14 dBFS, padded or cut to 10 s -> (N,) float32.
- `StepSampler`: step s -> the keys (s, slot, index) of this rank's batch, an epoch-wise
  permutation of the clips; starts at any step, so a resumed run reads what an uninterrupted one
  would have read.
- `TrainItems`: key -> clip plus its scene draws (in the workers: the noise synthesis or file read
  is the costly part): per batch, with probability lambda (clean-data ratio) the batch stays dry;
  else each clip gets a random train-pool scene, a noise clip placed in the 10 s and an SNR uniform
  in 5-40 dB.
- `SceneMixer`: a collated batch -> waveforms (B, C, N) on the training device: batched FFT
  convolution with the scenes' RIRs, one gain over all channels per clip.
- `Featurizer`: log-mel (training log floor 1e-5), padded to 1024 frames, 16 random crops.
- `make_demo_corpus`: an offline corpus of synthetic 10 s clips.

Randomness is explicit: every draw comes from a generator seeded with (seed, step, rank[, slot]),
so the data are a pure function of the step, whatever the number of workers, and a resumed run
sees the same data as an uninterrupted one.

Dimension letters: B clips, C channels, K noise positions, N samples, L RIR taps, F mel bins,
T frames, R crops per clip.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import Dataset

from hear_gram.dsp import SOURCE_DBFS, convolve_rir, prepare_noise, rms_normalize, snr_gains
from hear_gram.frontend import LogMelFrontend, resample
from hear_gram.synthetic_tasks import SCENE_CLASSES, SOUND_CLASSES, ClipSpec, Event, synthesize_clip

log = logging.getLogger(__name__)

# log floor used in training (labhamlet/GRAM-T src/model/GRAMT.py `_wav2fbank`)
TRAIN_LOG_EPS = 1e-5


def step_rng(*key: int) -> np.random.Generator:
    """The generator of one draw, e.g. key (seed, step, rank) or (seed, step, rank, slot)."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


# --- source clips ------------------------------------------------------------------------------
def audio_files(root: str | Path) -> list[Path]:
    """Every file under `root` that soundfile can read, sorted (stable indices across runs)."""
    exts = {"." + e.lower() for e in sf.available_formats()}
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in exts)
    if not files:
        raise FileNotFoundError(f"no audio files ({sorted(exts)}) under {root}")
    return files


class AudioFiles:
    """The audio files of a folder, by index (sorted paths)."""

    def __init__(self, root: str | Path) -> None:
        self.files = audio_files(root)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> tuple[np.ndarray, int]:
        """(N, C) float32 and the file's sample rate."""
        return sf.read(self.files[i], dtype="float32", always_2d=True)

    def key(self, i: int) -> str:
        return str(self.files[i])


def open_audio(spec: str | Path):
    """`spec` -> an indexed audio source: a folder of audio files, or WebDataset tar shards (a
    ``.tar`` file, a brace pattern ``shard-{000000..000099}.tar``, or a folder holding only
    ``*.tar``)."""
    from hear_gram.pretrain.shards import TarShards

    path = Path(spec)
    if path.is_dir():
        if any(path.glob("*.tar")) and not _has_audio(path):
            return TarShards([path])
        return AudioFiles(path)
    if str(spec).endswith(".tar") or "{" in str(spec):
        return TarShards([spec])
    raise FileNotFoundError(
        f"training audio {str(spec)!r} is neither a folder nor WebDataset .tar shards"
    )


def _has_audio(root: Path) -> bool:
    try:
        audio_files(root)
    except FileNotFoundError:
        return False
    return True


class AudioClips(Dataset):
    """Clip i of an audio source as mono (N,) float32 at `sample_rate` Hz, -14 dBFS, `seconds`
    long (arXiv 2506.00934: mono, level-normalised, 10 s)."""

    def __init__(self, source, sample_rate: int = 32000, seconds: float = 10.0) -> None:
        self.source = source
        self.sample_rate, self.length = sample_rate, int(round(seconds * sample_rate))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Tensor:
        audio, sr = self.source.read(i)  # (N, C)
        x = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=1)))
        x = resample(x, sr, self.sample_rate)[: self.length]
        x = torch.nn.functional.pad(x, (0, self.length - x.shape[-1]))
        return rms_normalize(x, SOURCE_DBFS).float()


# --- which clips, at which step ----------------------------------------------------------------
class StepSampler:
    """Batch sampler: step s -> [(s, slot, index)] for slot in range(`batch`), for this `rank` of
    `world`. The stream of clip indices over all ranks runs through one permutation of the
    `n_items` clips per epoch (seeded by (seed, epoch)); position p = (s * world + rank) * batch
    + slot. Endless; Lightning stops at max_steps. `start_step` resumes mid-epoch exactly."""

    def __init__(self, n_items: int, batch: int, seed: int, rank: int = 0, world: int = 1,
                 start_step: int = 0) -> None:  # fmt: skip
        if n_items < 1 or batch < 1:
            raise ValueError(f"need at least one clip and batch >= 1 (got {n_items}, {batch})")
        self.n_items, self.batch, self.seed = n_items, batch, seed
        self.rank, self.world, self.start_step = rank, world, start_step
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def index(self, step: int, slot: int) -> int:
        epoch, pos = divmod((step * self.world + self.rank) * self.batch + slot, self.n_items)
        if epoch != self._epoch:
            self._epoch, self._perm = (
                epoch,
                step_rng(self.seed, 11, epoch).permutation(self.n_items),
            )
        return int(self._perm[pos])

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for step in itertools.count(self.start_step):
            yield [(step, slot, self.index(step, slot)) for slot in range(self.batch)]


# --- the draws of one item ---------------------------------------------------------------------
class TrainItems(Dataset):
    """Key (step, slot, index) -> {"clip": (N,)} for a dry batch, else also "noise" (N,) (the
    noise clip placed in the 10 s), "active" (N,) bool (where it lies), "scene" (int, a bank
    index) and "snr" (dB). Whether the batch is dry is drawn once per (seed, step, rank), with
    probability `clean_ratio` (lambda); the rest per (seed, step, rank, slot)."""

    def __init__(self, clips: AudioClips, seed: int, rank: int, clean_ratio: float,
                 noise=None, n_scenes: int = 0, snr_db: tuple[float, float] = (5.0, 40.0)) -> None:  # fmt: skip
        if not 0.0 <= clean_ratio <= 1.0:
            raise ValueError(f"clean ratio must be in [0, 1], got {clean_ratio}")
        if clean_ratio < 1.0 and (noise is None or n_scenes < 1):
            raise ValueError("a clean ratio below 1 needs scenes (a bank) and a noise source")
        self.clips, self.seed, self.rank, self.clean_ratio = clips, seed, rank, clean_ratio
        self.noise, self.n_scenes, self.snr_db = noise, n_scenes, snr_db

    def is_dry(self, step: int) -> bool:
        return bool(step_rng(self.seed, step, self.rank).random() < self.clean_ratio)

    def __getitem__(self, key: tuple[int, int, int]) -> dict:
        step, slot, index = key
        clip = self.clips[index]
        if self.is_dry(step):
            return {"clip": clip}
        rng = step_rng(self.seed, step, self.rank, slot)
        scene = int(rng.integers(self.n_scenes))
        raw, _ = self.noise.draw(rng)
        noise, _, active = prepare_noise(raw, self.clips.sample_rate, clip.shape[-1], rng)
        return {
            "clip": clip,
            "noise": torch.from_numpy(noise).float(),
            "active": torch.from_numpy(active),
            "scene": scene,
            "snr": float(rng.uniform(*self.snr_db)),
        }


# --- scene mixing ------------------------------------------------------------------------------
class SceneMixer:
    """A collated `TrainItems` batch -> waveforms (B, C, N) on the clips' device (arXiv 2506.00934, data and pretraining).

    A dry batch: the mono clip on every channel. Otherwise target = clip * source RIR and noise =
    noise clip * (sum of the scene's K noise RIRs: one clip from K directions, as
    ``naturalistic_hear.mixing``), both by one batched FFT convolution on the device, mixed with
    one gain over all channels per clip, the noise power measured where the noise clip lies.
    `bank`: a built `naturalistic_hear.bank.SceneBank` (pool "train"), or None (GRAM-Clean).
    """

    def __init__(self, channels: int, bank=None) -> None:
        self.channels, self.bank = channels, bank

    def __call__(self, batch: dict) -> Tensor:
        clips = batch["clip"]
        if "noise" not in batch:
            return self.dry(clips)
        target, noise = self.components(batch)
        snr = torch.as_tensor(batch["snr"], device=clips.device)
        gains = snr_gains(target, noise, snr, batch["active"].to(clips.device))  # (B,)
        return target + gains[:, None, None] * noise

    def dry(self, clips: Tensor) -> Tensor:
        """(B, N) -> (B, C, N): the mono clip on every channel."""
        return clips[:, None].expand(-1, self.channels, -1).contiguous()

    def components(self, batch: dict) -> tuple[Tensor, Tensor]:
        """Spatial target and noise, each (B, C, N), before the SNR gain."""
        if self.bank is None:
            raise ValueError("this batch asks for scenes but the mixer has no scene bank")
        clips = batch["clip"]
        source, noise = self.rirs([int(i) for i in batch["scene"]], clips.device)
        target = convolve_rir(clips, source)  # (B, N) * (B, C, L) -> (B, C, N)
        return target, convolve_rir(batch["noise"].to(clips.device), noise)

    def rirs(self, scenes: list[int], device) -> tuple[Tensor, Tensor]:
        """Source RIRs (B, C, L) and summed noise RIRs (B, C, L), zero-padded to the longest."""
        pairs = [self.bank.get(i)[1:] for i in scenes]
        taps = max(src.shape[-1] for src, _ in pairs)

        def stack(arrays: list[np.ndarray]) -> Tensor:
            padded = [np.pad(a, ((0, 0), (0, taps - a.shape[-1]))) for a in arrays]
            return torch.from_numpy(np.stack(padded)).to(device, torch.float32)

        return stack([s for s, _ in pairs]), stack([n.sum(axis=0) for _, n in pairs])


# --- features and crops ------------------------------------------------------------------------
class Featurizer(torch.nn.Module):
    """Waveforms (B, C, N) -> crops (B*R, C', F, chunk) of the log-mel padded to `frames`."""

    def __init__(self, features, ambisonic: bool, frames: int = 1024, crops: int = 16) -> None:
        super().__init__()
        self.frontend = LogMelFrontend(replace(features, log_eps=TRAIN_LOG_EPS), ambisonic)
        self.frames, self.crops, self.chunk = frames, crops, features.chunk_frames

    def forward(self, audio: Tensor, generator: torch.Generator) -> Tensor:
        spec = self.frontend(audio)[..., : self.frames]  # (B, C', F, T)
        # Zero padding in the log-mel domain, as the HEAR runtime pads its last chunk.
        spec = torch.nn.functional.pad(spec, (0, self.frames - spec.shape[-1]))
        b = spec.shape[0]
        starts = torch.randint(
            0, self.frames - self.chunk + 1, (b, self.crops), generator=generator
        )
        idx = starts.to(spec.device)[..., None] + torch.arange(self.chunk, device=spec.device)
        crops = [spec[i][..., idx[i]] for i in range(b)]  # (C', F, R, chunk) each
        return torch.stack(crops).permute(0, 3, 1, 2, 4).flatten(0, 1)  # (B*R, C', F, chunk)


# --- offline demo corpus -----------------------------------------------------------------------
@dataclass(frozen=True)
class DemoCorpus:
    root: Path
    n_clips: int


def demo_clip(seed: int, index: int, sample_rate: int = 32000, seconds: float = 10.0):
    """Clip `index`: 2-6 overlapping synthetic sounds (hum, whistle, hiss, clicks, chirp) at random
    times and levels over low background noise; a pure function of (seed, index)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7, index]))
    events = []
    for _ in range(int(rng.integers(2, 7))):
        label = SCENE_CLASSES[int(rng.integers(len(SCENE_CLASSES)))]
        length = float(rng.uniform(0.5, seconds))
        start = float(rng.uniform(0.0, seconds - length))
        params = SOUND_CLASSES[label].draw(rng)
        events.append(Event(label, start, start + length, params, float(rng.uniform(-12, 0))))
    spec = ClipSpec(
        tuple(events), seconds, 0.5, float(rng.uniform(20, 40)), (0.0,), int(rng.integers(2**32))
    )
    return synthesize_clip(spec, sample_rate)


def make_demo_corpus(root: str | Path, n_clips: int = 300, seed: int = 0) -> DemoCorpus:
    """Write `n_clips` 10 s mono WAVs of mixed synthetic sounds under `root` (skips existing)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_clips):
        path = root / f"clip-{i:05d}.wav"
        if not path.exists():
            # per-process name: DDP ranks may write the same corpus at once
            tmp = path.with_name(f"{path.stem}.partial-{os.getpid()}.wav")
            sf.write(tmp, demo_clip(seed, i), 32000, subtype="PCM_16")
            tmp.replace(path)
    return DemoCorpus(root, n_clips)
