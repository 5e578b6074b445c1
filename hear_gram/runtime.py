"""The HEAR runtime: audio in, GRAM embeddings out, following the HEAR 2021 API literally.

Pipeline (arXiv 2506.00934; upstream labhamlet/GRAM-T ``hear_api/runtime.py``): validate and lay
out the audio as (B, C, N) before anything moves to its device; adapt channels to the model (mono
duplicated, W of a 4-channel file for binaural models); resample to 32 kHz; log-mel features of
all N // 320 + 1 centred frames (as torchaudio's ``MelSpectrogram(center=True)`` upstream),
computed per 2 s chunk on slices of the reflect-padded clip (identical to a whole-clip STFT,
bounded memory); ceil(frames / 200) chunks, the last zero-padded in the log-mel domain; each chunk
layer-normed on its own and encoded, at most ``max_chunks`` per forward; pooled per strategy.
``raw`` returns exactly upstream's steps: ceil(frames / 8) (patch) or ceil(frames / 2) (time),
which is what upstream's trim of ``int(steps_per_chunk * pad / 200)`` padded steps leaves.

Deliberate numeric differences from upstream (``RuntimeGRAMT.encode``), and only these:
  1. No phantom chunk: upstream pads ``200 - frames % 200`` frames, a whole all-zero chunk when
     frames % 200 == 0 (e.g. a 3.99 s clip, 400 frames), and stacks it into ``mean``/``cls``
     outputs and scene embeddings. Here there are ceil(frames / 200) chunks. (``raw`` is
     unaffected: upstream's trim removes that chunk's steps.)
  2. ``mean`` averages a chunk's real time steps only; upstream also averages the tokens of the
     zero-padded frames of the last chunk.
Non-numeric fixes: the declared embedding sizes match what is returned (upstream declares 768 and
returns 6144 for ``raw``); timestamps are the centres of the time steps in ms (upstream: evenly
spaced starts); no ``.cuda()``: outputs follow the input's device; JSON ``true`` options are read
as true.

Ambisonic input is first-order Ambisonics in ACN order (W, Y, Z, X), the order the released model
was trained on (see ``hear_gram.frontend``).

Dimension letters: B clips, C channels, N samples, K chunks per clip, G chunks in one forward,
L tokens, D width, Fg x Tg patch grid, S time steps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from hear_gram.config import GramConfig
from hear_gram.encoder import GramEncoder, cast_matmuls
from hear_gram.frontend import AMBISONIC_ORDER, LogMelFrontend, frame_count, resample

log = logging.getLogger(__name__)

Strategy = Literal["raw", "mean", "cls"]
Precision = Literal["fp32", "bf16", "fp16"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Input rates hear-validator accepts; 32000 (the model's own) is accepted too for direct use.
INPUT_RATES = (16000, 22050, 32000, 44100, 48000)


def _as_bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "1", "yes", "false", "0", "no"):
        return v.lower() in ("true", "1", "yes")
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise ValueError(f"model option {name}={v!r} is not a boolean (use true or false)")


def _as_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not (
        isinstance(v, int) or (isinstance(v, str) and v.strip().lstrip("-").isdigit())
    ):
        raise ValueError(f"model option {name}={v!r} is not an integer")
    return int(v)


def check_option_names(options: dict[str, Any], valid: Sequence[str]) -> None:
    """An unknown model option is an error that lists the valid ones (HEAR modules share it)."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown model option(s) {unknown}; valid options: {list(valid)}")


def parse_sample_rate(value: Any) -> int:
    """The `sample_rate` model option: one of INPUT_RATES (Hz), given as int or string."""
    rate = _as_int("sample_rate", value)
    if rate not in INPUT_RATES:
        raise ValueError(f"sample_rate must be one of {INPUT_RATES}, got {rate}")
    return rate


def check_dtype(dtype: torch.dtype) -> None:
    """HEAR audio is floating point in [-1, 1]: float16/bfloat16/float64 are converted to float32;
    integer, bool and complex audio is refused (the scale of an integer array is a guess)."""
    if dtype.is_complex:
        raise ValueError(
            f"audio has complex dtype {dtype}: pass the real waveform (e.g. audio.real) as float"
        )
    if dtype == torch.bool:
        raise ValueError("audio has dtype torch.bool: pass float samples in [-1, 1]")
    if not dtype.is_floating_point:
        try:
            bits, signed = torch.iinfo(dtype).bits, torch.iinfo(dtype).min < 0
        except TypeError:  # quantized and other exotic dtypes
            raise ValueError(f"audio has dtype {dtype}: pass float samples in [-1, 1]") from None
        half = 2 ** (bits - 1)
        how = (
            f"audio.float() / {half} for signed {bits}-bit PCM"
            if signed
            else f"(audio.float() - {half}) / {half} for unsigned {bits}-bit PCM"
        )
        raise ValueError(
            f"audio has integer dtype {dtype}: pass float samples in [-1, 1], e.g. {how}"
        )


@dataclass(frozen=True)
class EmbeddingOptions:
    """``--model-options`` of the HEAR runner, validated.

    strategy: ``raw`` (all frequency tokens of each time step, concatenated; the paper's choice),
        ``mean`` (mean of a chunk's tokens, one embedding per 2 s chunk) or ``cls`` (a chunk's CLS
        token); ``"layer=N"`` is shorthand for ``raw`` at layer N.
    layer: take the output of the first N blocks (then the final norm), 1..depth; None = all.
    precision: ``fp32``; ``bf16`` (fast on CPUs with AVX-512 BF16/AMX, and on GPUs); ``fp16`` (GPU).
    sample_rate: rate of the audio the caller passes, Hz; resampled to 32 kHz inside.
    max_chunks: most 2 s chunks per forward pass (bounds memory on long audio).
    allow_pickle: let legacy pickled checkpoints load (runs code from the file).
    """

    strategy: Strategy = "raw"
    layer: int | None = None
    precision: Precision = "fp32"
    sample_rate: int = 48000
    max_chunks: int = 32
    allow_pickle: bool = False

    @classmethod
    def parse(cls, options: dict[str, Any]) -> EmbeddingOptions:
        check_option_names(options, [f.name for f in fields(cls)])
        o = dict(options)
        strategy = str(o.get("strategy", "raw"))
        if strategy.startswith("layer="):
            if "layer" in o:
                raise ValueError(
                    "give the layer either as strategy 'layer=N' or as layer, not both"
                )
            o["layer"], strategy = strategy.split("=", 1)[1], "raw"
        if strategy not in ("raw", "mean", "cls"):
            raise ValueError(f"strategy must be raw, mean, cls or layer=N, got {strategy!r}")
        precision = str(o.get("precision", "fp32")).lower()
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {list(DTYPES)}, got {precision!r}")
        rate = parse_sample_rate(o.get("sample_rate", 48000))
        max_chunks = _as_int("max_chunks", o.get("max_chunks", 32))
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1, got {max_chunks}")
        layer = o.get("layer")
        return cls(
            strategy=strategy,  # type: ignore[arg-type]
            layer=None if layer in (None, "", "null", "none") else _as_int("layer", layer),
            precision=precision,  # type: ignore[arg-type]
            sample_rate=rate,
            max_chunks=max_chunks,
            allow_pickle=_as_bool("allow_pickle", o.get("allow_pickle", False)),
        )


class GramRuntime(nn.Module):
    """What ``load_model`` returns: a GRAM encoder, its front-end and the HEAR attributes."""

    def __init__(self, encoder: GramEncoder, options: EmbeddingOptions, source: str = "") -> None:
        super().__init__()
        cfg = encoder.cfg
        if options.layer is not None and not 1 <= options.layer <= cfg.depth:
            raise ValueError(
                f"layer must be in 1..{cfg.depth} for this checkpoint, got {options.layer}"
            )
        self.cfg: GramConfig = cfg
        self.options = options
        self.source = source
        self.encoder = encoder.eval()
        if options.precision != "fp32":
            cast_matmuls(self.encoder, DTYPES[options.precision])
        self.frontend = LogMelFrontend(cfg.features, ambisonic=cfg.is_ambisonic)
        # HEAR attributes: plain Python ints that match the returned shapes.
        self.sample_rate: int = options.sample_rate
        size = cfg.raw_dim if options.strategy == "raw" else cfg.width
        self.scene_embedding_size: int = int(size)
        self.timestamp_embedding_size: int = int(size)
        self._warned_mono = False  # the mono-to-Ambisonic warning is logged once per runtime

    # --- input handling -----------------------------------------------------------------------
    def layout(self, audio: Tensor) -> Tensor:
        """Validate audio and lay it out: (B, N) mono, (B, N, C) (heareval's multi-channel WAVs)
        or (B, C, N) -> float32 (B, C, N) on the input's device.

        Refused, before any work or any move of the model: non-tensors, tensors on the ``meta``
        device (no data), integer, bool and complex dtypes (HEAR audio is float in [-1, 1]; the
        message says how to convert PCM integers), empty or oddly shaped batches, NaN or Inf.
        """
        if not isinstance(audio, Tensor):
            raise TypeError(f"audio must be a torch.Tensor, got {type(audio).__name__}")
        if audio.device.type == "meta":
            raise ValueError(
                "audio is a 'meta' tensor (shape only, no samples): pass real audio on a CPU or "
                "GPU device"
            )
        check_dtype(audio.dtype)
        if audio.ndim not in (2, 3):
            raise ValueError(
                f"audio must be (B, N), (B, N, C) or (B, C, N), got {audio.ndim} dims {tuple(audio.shape)}"
            )
        if audio.shape[0] == 0:
            raise ValueError("empty batch: audio has 0 clips")
        if audio.ndim == 2:
            audio = audio.unsqueeze(1)
        elif audio.shape[2] <= 8 and audio.shape[1] > audio.shape[2]:
            audio = audio.transpose(1, 2)  # (B, N, C): channels last, as soundfile reads them
        elif audio.shape[1] > 8:
            raise ValueError(
                f"cannot tell channels from samples in {tuple(audio.shape)}: at most 8 channels"
            )
        if audio.shape[-1] == 0:
            raise ValueError("audio has 0 samples")
        if not bool(torch.isfinite(audio).all()):
            raise ValueError("audio contains NaN or Inf values")
        return audio.float()

    def adapt_channels(self, audio: Tensor) -> tuple[Tensor, int]:
        """(B, C, N) -> (audio to featurise, how many times to repeat its features)."""
        c, want = audio.shape[1], self.cfg.in_channels
        if self.cfg.is_ambisonic:  # needs W, Y, Z, X
            if c == 4:
                return audio, 1
            if c == 1:  # as upstream: a mono clip is placed on all four channels
                if not self._warned_mono:
                    self._warned_mono = True
                    log.warning(
                        "%s: mono audio given to the Ambisonic model is copied to all four "
                        "channels (W, Y, Z, X); it carries no direction, so direction-dependent "
                        "features (intensity channels) are those of a sound with no spatial "
                        "information. Pass %s for spatial embeddings.",
                        self.source or "GRAM-T Ambisonic",
                        AMBISONIC_ORDER,
                    )
                return audio.expand(-1, 4, -1), 1
            raise ValueError(
                f"the Ambisonic model needs 4-channel {AMBISONIC_ORDER} (reorder W, X, Y, Z "
                f"files to W, Y, Z, X) or mono audio, got {c} channels; for binaural audio use "
                "hear_gram.gram_t"
            )
        if c == 4:  # first-order Ambisonics into a binaural/mono model: use the W channel
            audio, c = audio[:, :1], 1
        if want == 1:
            return (audio.mean(dim=1, keepdim=True) if c == 2 else audio), 1
        if c == 1:
            return audio, 2  # mono: the same log-mel on left and right
        if c == 2:
            return audio, 1
        raise ValueError(f"the binaural model takes 1, 2 or 4 channels, got {c}")

    def follow(self, device: torch.device) -> None:
        """Move the model to ``device`` (as hear-baseline: the model follows the audio). A move
        that fails is undone, so one bad call cannot leave the model unusable for the next."""
        here = self.encoder.cls_token.device
        if here == device:
            return
        try:
            self.to(device)
        except Exception as err:
            self.to(here)
            raise ValueError(
                f"cannot run the model on the audio's device {device}: {err}; pass the audio on "
                f"a usable device (the model stays on {here})"
            ) from err

    # --- embedding ----------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Audio -> (embeddings (B, S, E) float32 on the input's device, timestamps (B, S) in ms)."""
        x = self.layout(audio)  # validate first: a refused input must not move the model
        device = x.device
        if self.options.precision == "fp16" and device.type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
        x, repeat = self.adapt_channels(x)
        self.follow(device)
        x = resample(x, self.options.sample_rate, self.cfg.features.sample_rate)
        n_frames = frame_count(x.shape[-1], self.cfg.features.hop_length)
        padded = self.frontend.pad(x)  # (B, C, N + n_fft), reflect-padded as torch.stft
        del x  # long clips: keep one copy of the resampled audio, not two
        per_chunk = self._chunk_outputs(padded, repeat, n_frames)  # (B, K, ...)
        if self.options.strategy == "raw":
            emb = rearrange(per_chunk, "b k s e -> b (k s) e")[
                :, : math.ceil(n_frames / self.cfg.patch_t)
            ]
            step = self.cfg.patch_t
        else:
            emb, step = per_chunk, self.cfg.features.chunk_frames
        return emb.float().to(device), self.timestamps(emb.shape[0], emb.shape[1], step, device)

    def timestamps(self, b: int, s: int, frames_per_step: int, device: torch.device) -> Tensor:
        """Centres of the time steps in ms: a step covers frames [i*fps, (i+1)*fps), frame j is
        centred at j * hop."""
        hop_ms = 1000.0 * self.cfg.features.hop_length / self.cfg.features.sample_rate
        centres = (
            torch.arange(s, dtype=torch.float64) * frames_per_step + (frames_per_step - 1) / 2
        ) * hop_ms
        return centres.float().to(device).expand(b, s).contiguous()

    def _chunk_outputs(self, padded: Tensor, repeat: int, n_frames: int) -> Tensor:
        """Encode all K chunks of all B clips, at most ``max_chunks`` per forward pass, from the
        reflect-padded audio (B, C, N'); -> pooled outputs (B, K, ...)."""
        fc = self.cfg.features
        b, t = padded.shape[0], fc.chunk_frames
        k = math.ceil(n_frames / t)  # no phantom chunk when n_frames % t == 0
        seg = (t - 1) * fc.hop_length + fc.n_fft  # samples behind one chunk's frames
        # Frame j reads padded[j*hop : j*hop + n_fft]; the last real frame, j = N // hop, ends
        # at or before N + n_fft, the reflect-padded length, so every real frame is computed from
        # real (or reflected) samples. The zeros appended here only feed the masked frames of the
        # last chunk's tail.
        need = (k - 1) * t * fc.hop_length + seg
        if padded.shape[-1] < need:
            padded = nn.functional.pad(padded, (0, need - padded.shape[-1]))
        windows = padded.unfold(-1, seg, t * fc.hop_length)  # (B, C, K, seg) view, no copy
        valid = torch.tensor([min(t, n_frames - i * t) for i in range(k)])  # real frames per chunk
        flat = [(i, j) for i in range(b) for j in range(k)]
        out = None
        for start in range(0, len(flat), self.options.max_chunks):
            idx = flat[start : start + self.options.max_chunks]
            bi, ki = torch.tensor([i for i, _ in idx]), torch.tensor([j for _, j in idx])
            feats = self.frontend(windows[bi, :, ki], center=False)  # (G, C', F, T)
            if repeat > 1:
                feats = feats.repeat(1, repeat, 1, 1)
            frame = torch.arange(t, device=feats.device)
            feats = feats * (frame < valid[ki].to(feats.device)[:, None]).view(-1, 1, 1, t)
            pooled = self.pool(self.encoder(feats, self.options.layer), valid[ki])
            if out is None:  # preallocated: long audio holds one copy of the outputs
                out = pooled.new_empty(b * k, *pooled.shape[1:])
            out[start : start + len(idx)] = pooled
        return out.view(b, k, *out.shape[1:])

    def pool(self, tokens: Tensor, valid_frames: Tensor) -> Tensor:
        """(G, L, D) -> raw (G, Tg, Fg*D) | mean (G, D) over real steps | cls (G, D)."""
        fg, tg = self.cfg.grid
        if self.options.strategy == "cls":
            return tokens[:, 0]
        patches = rearrange(tokens[:, 1:], "g (f t) d -> g t f d", f=fg, t=tg)
        if self.options.strategy == "raw":
            return patches.flatten(2)
        real = torch.ceil(valid_frames / self.cfg.patch_t).to(tokens.device)  # real steps per chunk
        mask = (torch.arange(tg, device=tokens.device)[None] < real[:, None]).float()  # (G, Tg)
        summed = torch.einsum("gtfd,gt->gd", patches, mask)
        return summed / (mask.sum(1, keepdim=True) * fg)

    def timestamp_embeddings(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        return self.embed(audio)

    def scene_embeddings(self, audio: Tensor) -> Tensor:
        """Mean over time of the timestamp embeddings (the paper's scene embedding)."""
        emb, _ = self.embed(audio)
        return emb.mean(dim=1)
