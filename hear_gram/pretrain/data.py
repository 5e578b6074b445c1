"""Pretraining data (REFERENCE §5-6): mono 10 s clips from a folder, scenes mixed in-batch on
the training device, log-mel, and random 200-frame crops.

Steps, each a small function or class:
- `AudioFolder`: files of a folder (any format soundfile reads, sorted), mono, 32 kHz, -14 dBFS,
  padded or cut to 10 s -> (N,) float32.
- `SceneMixer`: per batch, with probability lambda (clean-data ratio) the batch stays dry
  (duplicated to the format's channels); else each clip gets a random train-pool scene (source
  RIR, noise RIRs), a noise clip and an SNR uniform in 5-40 dB, one gain over all channels.
- `Featurizer`: log-mel (training log floor 1e-5), padded to 1024 frames, 16 random crops.
- `make_demo_corpus`: an offline corpus of synthetic 10 s clips.

Randomness is explicit: the mixer and the cropper draw from generators seeded with
(seed, step, rank), so a resumed run sees the same data as an uninterrupted one.

Dimension letters: B clips, C channels, K noise positions, N samples, L RIR taps, F mel bins,
T frames, R crops per clip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import Dataset

from hear_gram.dsp import SOURCE_DBFS, convolve_rir, prepare_noise, rms_normalize, snr_gain
from hear_gram.frontend import LogMelFrontend, resample
from hear_gram.synthetic_tasks import SCENE_CLASSES, SOUND_CLASSES, ClipSpec, Event, render_clip

log = logging.getLogger(__name__)

TRAIN_LOG_EPS = 1e-5  # log floor used in training (REFERENCE §2)


# --- source clips ------------------------------------------------------------------------------
def audio_files(root: str | Path) -> list[Path]:
    """Every file under `root` that soundfile can read, sorted (stable indices across runs)."""
    exts = {"." + e.lower() for e in sf.available_formats()}
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in exts)
    if not files:
        raise FileNotFoundError(f"no audio files ({sorted(exts)}) under {root}")
    return files


class AudioFolder(Dataset):
    """Clip i of a folder as mono (N,) float32 at `sample_rate` Hz, -14 dBFS, `seconds` long."""

    def __init__(self, root: str | Path, sample_rate: int = 32000, seconds: float = 10.0):
        self.files = audio_files(root)
        self.sample_rate, self.length = sample_rate, int(round(seconds * sample_rate))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        audio, sr = sf.read(self.files[i], dtype="float32", always_2d=True)  # (N, C)
        x = torch.from_numpy(audio.mean(axis=1))
        x = resample(x, sr, self.sample_rate)[: self.length]
        x = torch.nn.functional.pad(x, (0, self.length - x.shape[-1]))
        return rms_normalize(x, SOURCE_DBFS).float()


# --- scene mixing ------------------------------------------------------------------------------
class SceneMixer:
    """Mono clips (B, N) -> scene mixes (B, C, N) on the clips' device (REFERENCE §5-6).

    `bank` is a built `naturalistic_hear.bank.SceneBank` (pool "train"); `noise` a
    `NoiseSource` (`BuiltinNoise` or `NoiseDir`) at the clips' rate. With `bank=None` every batch
    stays dry (GRAM-Clean, lambda = 1).
    """

    def __init__(self, channels: int, clean_ratio: float, bank=None, noise=None, snr_db=(5, 40)):
        if not 0.0 <= clean_ratio <= 1.0:
            raise ValueError(f"clean ratio must be in [0, 1], got {clean_ratio}")
        if clean_ratio < 1.0 and (bank is None or noise is None):
            raise ValueError("a clean ratio below 1 needs a scene bank and a noise source")
        self.channels, self.clean_ratio = channels, clean_ratio
        self.bank, self.noise, self.snr_db = bank, noise, snr_db

    def __call__(self, clips: Tensor, rng: np.random.Generator) -> Tensor:
        if rng.random() < self.clean_ratio:
            return self.dry(clips)
        return torch.stack([self.mix_one(x, rng) for x in clips])

    def dry(self, clips: Tensor) -> Tensor:
        """(B, N) -> (B, C, N): the mono clip on every channel."""
        return clips[:, None].expand(-1, self.channels, -1).contiguous()

    def components(self, clip: Tensor, rng: np.random.Generator):
        """(N,) -> target (C, N) = source * RIR, noise (C, N) = sum_k noise * RIR_k, the noise's
        active samples (N,) and an SNR (dB) drawn uniformly in `snr_db`."""
        _, src_rir, noise_rirs = self.bank.get(int(rng.integers(len(self.bank))))
        n = clip.shape[-1]
        target = convolve_rir(clip, torch.tensor(src_rir))  # (C, N)
        raw, _ = self.noise.draw(rng)
        noise, _, active = prepare_noise(raw, self.bank.sample_rate, n, rng)
        noise_t = torch.from_numpy(noise).to(clip.device, torch.float32)
        noisy = convolve_rir(noise_t, torch.tensor(noise_rirs)).sum(0)  # (K, C, N) -> (C, N)
        active_t = torch.from_numpy(active).to(clip.device)
        return target, noisy, active_t, float(rng.uniform(*self.snr_db))

    def mix_one(self, clip: Tensor, rng: np.random.Generator) -> Tensor:
        """(N,) -> (C, N): target + g * noise, one gain g over all channels, the noise power
        measured where the noise clip lies (REFERENCE §5)."""
        target, noise, active, snr = self.components(clip, rng)
        return target + snr_gain(target, noise, snr, active) * noise


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
    return render_clip(spec, sample_rate)


def make_demo_corpus(root: str | Path, n_clips: int = 300, seed: int = 0) -> DemoCorpus:
    """Write `n_clips` 10 s mono WAVs of mixed synthetic sounds under `root` (skips existing)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_clips):
        path = root / f"clip-{i:05d}.wav"
        if not path.exists():
            tmp = path.with_name(path.stem + ".partial.wav")
            sf.write(tmp, demo_clip(seed, i), 32000, subtype="PCM_16")
            tmp.replace(path)
    return DemoCorpus(root, n_clips)
