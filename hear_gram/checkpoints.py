"""Checkpoints: read released, upstream and own weight files safely, infer their architecture, load
strictly; a registry of known weights (``checkpoints.json``) and a command-line tool.

Layouts are recognised by their keys, whatever the file's name (`LAYOUTS`):
- ``runtime``: what upstream's HEAR runtime module saves (labhamlet/GRAM-T ``hear_api/runtime.py``
  ``RuntimeGRAMT``, GRAM-M's ``RuntimeGRAMM``), the layout of the released Hugging Face
  ``model.safetensors``: ``model.<GRAMT/GRAMM key>`` (encoder, decoder, ``mask_token``, the
  model's own ``melspec.*``) plus top-level ``mel_spec.melspec.{spectrogram.window,
  mel_scale.fb}`` (its ``FeatureExtractor``);
- ``hub-wrapper``: the same under ``encoder.`` (``huggingface/gramt_binaural.py`` ``MyModel``);
- ``bare``: a GRAMT/GRAMM state dict without prefix;
- ``lightning``: upstream PyTorch Lightning ``.ckpt``, ``{"state_dict": <bare keys>}``;
- ``hear-gram`` / ``hear-gram-lightning``: hear-gram's own safetensors (``GramConfig`` in the
  metadata) and ``hear_gram.pretrain``'s training checkpoint (config in its ``hear_gram`` entry).
Decoder keys are set aside; mel buffers, wherever they sit, must equal hear-gram's front-end.

Registry entries are released weights (``"source": "huggingface"``, downloaded by ``fetch`` into
``cache_dir()``) or files a command of this repository makes (``"source": "local"``, e.g.
``gram-demo-cpu`` from ``make pretrain-demo``, under ``work/``).

A weights file is data from anyone: its format is read from its first bytes (never its name);
nothing in it can run code (safetensors, or ``torch.load(weights_only=True)``; a PyTorch pickle that
needs more is refused unless the caller opts in with ``allow_pickle=True``); a stored config is
checked against sane bounds and against the tensors present before any model is built; tensors
must be finite floating point.

    python -m hear_gram.checkpoints list
    python -m hear_gram.checkpoints info PATH|NAME
    python -m hear_gram.checkpoints random --model gram-t [--depth N] [--with-decoder] --out PATH
    python -m hear_gram.checkpoints fetch NAME
    python -m hear_gram.checkpoints convert IN OUT [--allow-pickle]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import pickle
import re
import struct
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor
from torch.overrides import TorchFunctionMode

from hear_gram.config import PRESETS, GramConfig, check_int, preset
from hear_gram.encoder import GramEncoder, build_encoder
from hear_gram.frontend import LogMelFrontend
from naturalistic_hear.paths import UnsafePathError, check_name, write_bytes_atomic

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).resolve().parent.parent / "checkpoints.json"
OWN_FORMAT = "hear-gram/1"
# The entry hear_gram.pretrain adds to its Lightning checkpoints (format, config, encoder prefix).
LIGHTNING_KEY = "hear_gram"
RELEASED_PREFIX = "model."  # RuntimeGRAMT.model (the GRAMT module)
RUNTIME_FRONTEND = "mel_spec."  # RuntimeGRAMT.mel_spec (its FeatureExtractor), top level
HUB_PREFIX = "encoder."  # MyModel.encoder (the RuntimeGRAMT) in huggingface/gramt_binaural.py
ENCODER_PREFIXES = ("patch_embed.", "cls_token", "encoder.", "encoder_pos_embed", "encoder_v.")
DECODER_PREFIXES = (
    "decoder_embed.", "decoder_blocks.", "decoder_v.", "decoder_norm.", "decoder_pos_embed",
    "mask_token", "spec_pred.",
)  # fmt: skip
# The mel buffers upstream modules carry (a torchaudio MelSpectrogram, or the Ambisonic
# FeatureExtractor, both with ``spectrogram.window`` and ``mel_scale.fb``): GRAMT's own
# ``melspec`` and the runtime's ``mel_spec.melspec``. Name -> our front-end's buffer.
FRONTEND_KEYS = {
    "melspec.spectrogram.window": "window",
    "melspec.mel_scale.fb": "fb",
    "mel_spec.melspec.spectrogram.window": "window",
    "mel_spec.melspec.mel_scale.fb": "fb",
}
FRONTEND_PREFIXES = ("mel_spec.", "melspec.")
# Present in upstream GRAM-M checkpoints but never used by its forward pass.
UNUSED_UPSTREAM_PREFIXES = ("encoder_norm.",)
LAYOUTS = {
    "runtime": "upstream HEAR runtime state dict (RuntimeGRAMT/RuntimeGRAMM): model.* + "
    "mel_spec.melspec.*, as the released model.safetensors",
    "hub-wrapper": "upstream hub wrapper state dict (MyModel, huggingface/gramt_binaural.py): "
    "encoder.model.* + encoder.mel_spec.*",
    "bare": "bare GRAMT/GRAMM state dict (no prefix)",
    "lightning": "upstream PyTorch Lightning checkpoint (state_dict of the GRAMT/GRAMM module)",
    "hear-gram": "hear-gram safetensors (config in the metadata)",
    "hear-gram-lightning": "hear_gram.pretrain Lightning checkpoint (config in its hear_gram entry)",
    "hear-gram-legacy": "early hear-gram 'released' file (model.* incl. model.mel_spec.*)",
}
# Floating dtypes a weight may have; others (int8 quantised, complex, bool) are refused, not cast.
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# Magic number every legacy (non-zip) torch.save file starts with, after the pickle protocol.
_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


class CheckpointError(ValueError):
    """A weights file that cannot be loaded as asked; the message says why and what to do."""


@dataclass
class LoadReport:
    """What was found in a file: its layout, the architecture, and the keys set aside."""

    path: str
    layout: str
    config: GramConfig
    n_encoder_keys: int
    decoder_keys: list[str] = field(default_factory=list)
    frontend_keys: list[str] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)


# --- reading files ----------------------------------------------------------------------------
def read_state(
    path: str | os.PathLike, allow_pickle: bool = False
) -> tuple[dict[str, Tensor], dict, str]:
    """(state dict on CPU with GRAMT/GRAMM key names, metadata, layout) of a weights file, without
    executing its contents. Runtime and hub-wrapper prefixes are removed; the runtime's own
    front-end buffers keep their ``mel_spec.`` prefix."""
    path = _existing_file(path)
    kind = sniff(path)
    if kind == "safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from err
        if meta.get("format") == OWN_FORMAT:
            if "config" not in meta:
                raise CheckpointError(f"{path} is a hear-gram file without its config metadata")
            return state, meta, "hear-gram"
        return _named(state, meta)
    obj = _torch_load(path, kind, allow_pickle)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        sd = _tensor_dict(obj["state_dict"], path)
        own = obj.get(LIGHTNING_KEY)
        if isinstance(own, Mapping) and own.get("format") == OWN_FORMAT:
            # hear_gram.pretrain's own training checkpoint: the encoder under a prefix, the
            # config beside it (decoder and optimiser state stay in the file, unused here)
            prefix, config = own.get("encoder_prefix"), own.get("config")
            if not isinstance(prefix, str) or not isinstance(config, str):
                raise CheckpointError(
                    f"{path}: its {LIGHTNING_KEY!r} entry needs string 'encoder_prefix' and "
                    f"'config', got {type(prefix).__name__} and {type(config).__name__}"
                )
            state = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
            return state, {"config": config}, "hear-gram-lightning"
        state, inner = unwrap(sd)
        return state, {}, "lightning" if inner == "bare" else f"lightning/{inner}"
    if isinstance(obj, Mapping):
        return _named(_tensor_dict(obj, path), {})
    raise CheckpointError(
        f"{path} holds a {type(obj).__name__}, not a state dict or a Lightning checkpoint"
    )


def _named(state: dict[str, Tensor], meta: dict) -> tuple[dict[str, Tensor], dict, str]:
    state, layout = unwrap(state)
    return state, meta, layout


def _tensor_dict(obj: Mapping, path: Path) -> dict[str, Tensor]:
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not named tensors: {_few(bad)}")
    return dict(obj)


def unwrap(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """(GRAMT/GRAMM-named state, layout) of a flat state dict, recognised by its keys.

    The hub wrapper is the runtime under ``encoder.``; the runtime is GRAMT under ``model.`` with
    its front-end under ``mel_spec.``. A bare GRAMT also has ``encoder.*`` keys (its ViT), so the
    hub wrapper is recognised only when every key is ``encoder.model.*`` or ``encoder.mel_spec.*``.
    """
    keys = list(state)
    layout = "bare"
    hub = (HUB_PREFIX + RELEASED_PREFIX, HUB_PREFIX + RUNTIME_FRONTEND)
    if keys and all(k.startswith(hub) for k in keys) and any(k.startswith(hub[0]) for k in keys):
        state, layout = {k[len(HUB_PREFIX) :]: v for k, v in state.items()}, "hub-wrapper"
        keys = list(state)
    runtime = (RELEASED_PREFIX, RUNTIME_FRONTEND)
    if (
        keys
        and all(k.startswith(runtime) for k in keys)
        and any(k.startswith("model.") for k in keys)
    ):
        layout = "runtime" if layout == "bare" else layout
        out: dict[str, Tensor] = {}
        for k, v in state.items():
            name = k[len(RELEASED_PREFIX) :] if k.startswith(RELEASED_PREFIX) else k
            if k.startswith(RELEASED_PREFIX + RUNTIME_FRONTEND):
                layout = "hear-gram-legacy"  # hear-gram once wrote the runtime's buffers here
            if name in out:
                raise CheckpointError(f"key {name!r} appears twice (as {k!r} and before)")
            out[name] = v
        return out, layout
    if layout == "hub-wrapper":
        raise CheckpointError(
            "keys under encoder.model. without the runtime layout inside: " + _few(keys)
        )
    return dict(state), layout


def sniff(path: Path) -> str:
    """The file's format from its first bytes: 'safetensors', 'torch-zip' or 'torch-legacy'.

    Names lie (an extension-less download, a renamed file): reading the bytes keeps a corrupt
    file from being reported as a pickle that needs ``allow_pickle``."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted download or save?")
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if len(head) >= 14 and head[0] == 0x80 and head[2:4] == b"\x8a\x0a":
        if head[4:14] == _TORCH_LEGACY_MAGIC:
            return "torch-legacy"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    raise CheckpointError(
        f"{path} is not a weights file hear-gram reads: neither safetensors nor a PyTorch "
        f"checkpoint (first bytes {head[:16]!r}; {size} bytes)"
    )


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a directory, not a weights file")
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    return path


def stored_config(path: str | os.PathLike) -> GramConfig | None:
    """The config a hear-gram safetensors file carries in its metadata, read without loading its
    tensors; None for other layouts."""
    path = _existing_file(path)
    if sniff(path) != "safetensors":
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from err
    if meta.get("format") != OWN_FORMAT:
        return None
    return parse_config(meta.get("config"), path)


def parse_config(text: object, path: str | os.PathLike) -> GramConfig:
    """A stored ``GramConfig`` (JSON text), every field checked against its type and bounds."""
    try:
        if not isinstance(text, str):
            raise ValueError(f"expected JSON text, got {type(text).__name__}")
        return GramConfig.from_dict(json.loads(text))
    except (ValueError, TypeError) as err:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: the stored config is invalid: {err}") from err


def _torch_load(path: Path, kind: str, allow_pickle: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch says "Weights only load failed" for any unreadable pickle; only a file that
        # names a Python global it would have to import can be helped by allow_pickle
        if "GLOBAL " not in str(err):  # "Unsupported global: GLOBAL x" / "unsupported GLOBAL x"
            raise CheckpointError(f"{path} is a corrupt {kind} checkpoint ({_line(err)})") from err
        if not allow_pickle:
            raise CheckpointError(
                f"{path} contains pickled Python objects that torch.load(weights_only=True) "
                f"refuses ({_line(err, 'GLOBAL ')}). Loading it would run code from "
                "the file. If you trust it, pass allow_pickle=True (model option "
                '{"allow_pickle": true}), or convert it once: python -m hear_gram.checkpoints '
                "convert IN OUT.safetensors --allow-pickle"
            ) from err
        log.warning("loading %s with full pickle support (allow_pickle=True)", path)
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError) as err:
        raise CheckpointError(
            f"{path} is a corrupt or truncated {kind} checkpoint ({_line(err)})"
        ) from err


def _line(err: BaseException, marker: str | None = None) -> str:
    """One line of an exception's message (the one with ``marker`` if given), at most 200 chars."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()] or [type(err).__name__]
    picked = next((ln for ln in lines if marker and marker in ln), lines[0])
    return picked[:200]


# --- sorting keys -----------------------------------------------------------------------------
def split_state(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, list[str]]]:
    """Encoder tensors, and the other keys by kind (decoder, frontend, ignored).

    A key of no known kind is an error: silently dropping weights is how upstream's
    ``strict=False`` loading hid mismatches.
    """
    enc: dict[str, Tensor] = {}
    other: dict[str, list[str]] = {"decoder": [], "frontend": [], "ignored": []}
    unknown = []
    for k, v in state.items():
        if k.startswith(ENCODER_PREFIXES):
            enc[k] = v
        elif k.startswith(DECODER_PREFIXES):
            other["decoder"].append(k)
        elif k in FRONTEND_KEYS:
            other["frontend"].append(k)
        elif k.startswith(UNUSED_UPSTREAM_PREFIXES):
            other["ignored"].append(k)
        else:
            unknown.append(k)
    if unknown:
        raise CheckpointError(
            f"unexpected keys of no known kind: {_few(unknown)}. Known encoder prefixes: "
            f"{ENCODER_PREFIXES}; decoder: {DECODER_PREFIXES}; front-end: {sorted(FRONTEND_KEYS)}"
        )
    if not enc:
        raise CheckpointError(f"no GRAM encoder keys in the file; first keys: {_few(list(state))}")
    return enc, other


def _few(keys: list[str], n: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" ... (+{len(keys) - n} more)" if len(keys) > n else "")


def check_tensors(state: Mapping[str, Tensor], keys: list[str] | None = None) -> None:
    """Every tensor (of ``keys``, default all) is floating point and finite.

    NaN weights load "strictly" and give NaN embeddings that later look like plausible numbers;
    int8 or complex tensors would be silently cast. The error names the tensor."""
    for k in sorted(state if keys is None else keys):
        t = state[k]
        if t.dtype not in FLOAT_DTYPES:
            raise CheckpointError(
                f"tensor {k} has dtype {t.dtype}: hear-gram loads floating-point weights only "
                f"({', '.join(str(d) for d in FLOAT_DTYPES)}); quantised, integer, complex or "
                "boolean weights are refused, not converted"
            )
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise CheckpointError(
                f"tensor {k} holds {bad} non-finite value(s) (NaN or Inf) of {t.numel()}: "
                "the file is corrupt or its training diverged"
            )


def _layer_count(state: Mapping[str, Tensor], pattern: str) -> int:
    idx = sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})
    if idx != list(range(len(idx))):
        raise CheckpointError(f"layer indices are not contiguous from 0: {idx[:20]}")
    return len(idx)


def infer_config(state: Mapping[str, Tensor]) -> GramConfig:
    """Rebuild the architecture from tensor shapes alone (depth, width, patch, channels, mixer).

    Attention heads are not visible in the weights; as in every ViT size upstream used, the head
    width is 64 (heads = width / 64). hear-gram's own files store the config and skip this.
    """
    try:
        return _infer_config(state)
    except CheckpointError:
        raise
    except (KeyError, ValueError, IndexError, TypeError, ZeroDivisionError) as err:
        detail = f"missing {err}" if isinstance(err, KeyError) else str(err)
        raise CheckpointError(
            f"cannot read a GRAM architecture from the tensors: {detail}"
        ) from err


def _infer_config(state: Mapping[str, Tensor]) -> GramConfig:
    if "patch_embed.proj.weight" not in state or "cls_token" not in state:
        raise CheckpointError("missing patch_embed.proj.weight or cls_token: not a GRAM encoder")
    width, in_ch, pf, pt = state["patch_embed.proj.weight"].shape
    common = dict(in_channels=in_ch, patch_f=pf, patch_t=pt, width=width)
    if any(k.startswith("encoder.layers.") for k in state):
        depth = _layer_count(state, r"encoder\.layers\.encoder_layer_(\d+)\.")
        mlp = state["encoder.layers.encoder_layer_0.mlp.0.weight"].shape[0]
        return GramConfig(
            backbone="transformer", depth=depth, heads=max(1, width // 64), mlp_dim=mlp, **common
        )
    if any(k.startswith("encoder_v.layers.") for k in state):
        depth = _layer_count(state, r"encoder_v\.layers\.(\d+)\.")
        p = "encoder_v.layers.0.mixer."
        d_conv = state[p + "conv1d.weight"].shape[-1]
        if p + "dt_bias" in state:  # Mamba-2
            d_inner, nheads = state[p + "norm.weight"].numel(), state[p + "A_log"].numel()
            conv_ch = state[p + "conv1d.weight"].shape[0]
            return GramConfig(
                backbone="mamba", mixer="mamba2", depth=depth, d_state=(conv_ch - d_inner) // 2,
                d_conv=d_conv, expand=d_inner // width, headdim=d_inner // nheads, **common,
            )  # fmt: skip
        d_inner, d_state = state[p + "A_log"].shape
        return GramConfig(
            backbone="mamba", mixer="mamba1", depth=depth, d_state=d_state, d_conv=d_conv,
            expand=d_inner // width, dt_rank=_dt_rank(state[p + "dt_proj.weight"].shape[1], width), **common,
        )  # fmt: skip
    raise CheckpointError("found neither encoder.layers.* (GRAM-T) nor encoder_v.layers.* (GRAM-M)")


def _dt_rank(rank: int, width: int) -> int | None:
    """None when the file uses Mamba's default rank ceil(width / 16), as the presets do."""
    return None if rank == math.ceil(width / 16) else rank


# Fields the tensors determine; a stored config must agree with them.
SHAPE_FIELDS = ("backbone", "in_channels", "patch_f", "patch_t", "depth", "width")


def check_config(cfg: GramConfig, state: Mapping[str, Tensor]) -> None:
    """``cfg`` describes exactly the tensors of ``state``, checked without allocating a model: the
    architecture is built on the ``meta`` device (shapes only) and compared key by key."""
    inferred = infer_config(state)
    diff = [
        f"{f} {getattr(cfg, f)} (file's tensors: {getattr(inferred, f)})"
        for f in SHAPE_FIELDS
        if getattr(cfg, f) != getattr(inferred, f)
    ]
    if diff:
        raise CheckpointError(f"the stored config does not match the tensors: {'; '.join(diff)}")
    compare_keys(expected_shapes(cfg), state)


def expected_shapes(cfg: GramConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the encoder ``cfg`` describes, from a model built on the ``meta`` device:
    no memory is allocated whatever the sizes, and the shapes are the real model's by
    construction (no second description of the architecture to drift)."""
    try:
        with torch.device("meta"), _SkipInitOnMeta():
            encoder = build_encoder(cfg)
    except ValueError as err:
        raise CheckpointError(f"the config describes no valid GRAM encoder: {err}") from err
    return {k: tuple(v.shape) for k, v in encoder.state_dict().items()}


class _SkipInitOnMeta(TorchFunctionMode):
    """Skips ``torch.nn.init`` calls on meta tensors: values do not exist there, and the meta
    kernels of some initialisers import torch._dynamo (seconds) for nothing."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            t = args[0] if args else kwargs.get("tensor")
            if isinstance(t, Tensor) and t.is_meta:
                return t
        return func(*args, **kwargs)


def compare_keys(expected: Mapping[str, tuple], state: Mapping[str, Tensor]) -> None:
    """An error naming every missing, unexpected and mis-shaped key, if there is any."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v)
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            "weights do not match the architecture "
            f"(missing: {_few(missing) or 'none'}; unexpected: {_few(unexpected) or 'none'}; "
            f"shape mismatches: {'; '.join(shapes[:8]) or 'none'})"
        )


# --- loading ----------------------------------------------------------------------------------
def check_frontend(state: Mapping[str, Tensor], keys: list[str], cfg: GramConfig) -> None:
    """The upstream files carry the mel window and filter bank they were trained with: they must
    equal hear-gram's front-end, else the features (and embeddings) would silently differ.

    A buffer stored in half precision is compared with ours rounded to the same dtype, so a
    fp16 file of the right features passes and a wrong one is reported with its largest error."""
    ours = LogMelFrontend(cfg.features, ambisonic=cfg.in_channels == 7)
    expected = {"window": ours.window, "fb": ours.fb}
    for k in keys:
        theirs, mine = state[k], expected[FRONTEND_KEYS[k]]
        if tuple(theirs.shape) != tuple(mine.shape):
            raise CheckpointError(
                f"the file's {k} has shape {tuple(theirs.shape)} but hear-gram's front-end for "
                f"this config has {tuple(mine.shape)}: these weights were trained on other features "
                f"(n_fft {cfg.features.n_fft}, n_mels {cfg.features.n_mels} expected)"
            )
        mine = mine.to(theirs.dtype).float()
        err = float((theirs.float() - mine).abs().max())
        tol = 1e-5 + 4 * torch.finfo(theirs.dtype).eps * float(mine.abs().max())
        if not err <= tol:
            raise CheckpointError(
                f"the file's {k} ({theirs.dtype}) differs from hear-gram's front-end by up to "
                f"{err:.3g} (tolerance {tol:.3g} for {theirs.dtype}): these weights were trained "
                "on other features"
            )


def load_strict(encoder: GramEncoder, state: Mapping[str, Tensor]) -> None:
    """load_state_dict(strict=True), with an error that names every missing, unexpected and
    mis-shaped key."""
    expected = encoder.state_dict()
    compare_keys({k: tuple(v.shape) for k, v in expected.items()}, state)
    encoder.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def load_encoder(
    path: str | os.PathLike, allow_pickle: bool = False
) -> tuple[GramEncoder, LoadReport]:
    """Load any supported weights file into a GRAM encoder, in eval mode on the CPU.

    Everything cheap is checked before the model is built: key kinds, dtypes, finiteness, the
    stored config's bounds and its agreement with the tensors, the mel buffers."""
    state, meta, layout = read_state(path, allow_pickle)
    stored = parse_config(meta["config"], path) if "config" in meta else None
    enc_state, other = split_state(state)
    check_tensors(state, [*enc_state, *other["frontend"]])
    cfg = stored or infer_config(enc_state)
    check_config(cfg, enc_state)
    check_frontend(state, other["frontend"], cfg)
    encoder = build_encoder(cfg)
    load_strict(encoder, enc_state)
    report = LoadReport(
        str(path),
        layout,
        cfg,
        len(enc_state),
        other["decoder"],
        other["frontend"],
        other["ignored"],
    )
    return encoder.eval(), report


# --- saving -----------------------------------------------------------------------------------
def upstream_decoder_state(mae) -> dict[str, Tensor]:
    """The decoder of a ``hear_gram.pretrain.model.GramMAE`` under upstream's names.

    Upstream GRAMT (labhamlet/GRAM-T ``src/model/GRAMT.py``) holds ``decoder_embed``,
    ``mask_token``, ``decoder_blocks.{i}`` (``MWMHABlock``, ``src/model/layers/mwmae.py``:
    ``norm1``, ``wmha.qkv``, ``wmha.attn_heads.{h}.relative_position_bias_table`` (2w - 1, 1)
    and ``relative_position_index`` (w, w) for windowed heads, ``wmha.proj``, ``norm2``,
    ``mlp.fc1``, ``mlp.fc2``), ``decoder_pos_embed``, ``decoder_norm`` and ``spec_pred.0``;
    GRAMM names the blocks ``decoder_v``. Our blocks compute the same function under shorter names."""
    blocks = "decoder_blocks" if mae.cfg.backbone == "transformer" else "decoder_v"
    out = {
        "decoder_embed.weight": mae.decoder_embed.weight,
        "decoder_embed.bias": mae.decoder_embed.bias,
        "mask_token": mae.mask_token,
        "decoder_pos_embed": mae.decoder_pos_embed,
        "decoder_norm.weight": mae.decoder_norm.weight,
        "decoder_norm.bias": mae.decoder_norm.bias,
        "spec_pred.0.weight": mae.spec_pred.weight,
        "spec_pred.0.bias": mae.spec_pred.bias,
    }
    for i, blk in enumerate(mae.decoder_blocks):
        p = f"{blocks}.{i}."
        mods = {"norm1": blk.norm1, "wmha.qkv": blk.attn.qkv, "wmha.proj": blk.attn.proj,
                "norm2": blk.norm2, "mlp.fc1": blk.mlp[0], "mlp.fc2": blk.mlp[2]}  # fmt: skip
        for name, m in mods.items():
            out[p + name + ".weight"], out[p + name + ".bias"] = m.weight, m.bias
        for h, head in enumerate(blk.attn.heads):
            if head.window:
                q = f"{p}wmha.attn_heads.{h}."
                out[q + "relative_position_bias_table"] = head.rel_bias[:, None]
                out[q + "relative_position_index"] = head.rel_index
    return {k: v.detach() for k, v in out.items()}


def released_state(encoder: GramEncoder, decoder: Mapping[str, Tensor] | None = None) -> dict:
    """``encoder`` (and an upstream-named ``decoder``) in upstream's runtime layout: GRAMT/GRAMM
    keys under ``model.`` (with the model's own ``melspec`` buffers and, for GRAM-M, its unused
    ``encoder_norm``), the runtime's ``mel_spec.melspec`` buffers at the top level."""
    cfg = encoder.cfg
    fe = LogMelFrontend(cfg.features, ambisonic=cfg.in_channels == 7)
    inner = dict(encoder.state_dict())
    if cfg.backbone == "mamba":  # GRAMM builds a LayerNorm it never applies (default init)
        inner["encoder_norm.weight"] = torch.ones(cfg.width)
        inner["encoder_norm.bias"] = torch.zeros(cfg.width)
    inner.update(decoder or {})
    mel = {"melspec.spectrogram.window": fe.window, "melspec.mel_scale.fb": fe.fb}
    inner.update(mel)
    state = {RELEASED_PREFIX + k: v for k, v in inner.items()}
    state.update({RUNTIME_FRONTEND + k: v.clone() for k, v in mel.items()})
    return state


def save_checkpoint(
    path: str | os.PathLike,
    encoder: GramEncoder,
    layout: str = "hear-gram",
    decoder: Mapping[str, Tensor] | None = None,
) -> Path:
    """Write ``encoder`` as hear-gram's own safetensors (config in the metadata) or in upstream's
    runtime layout, the released files' (``released``: see `released_state`; ``decoder``, from
    `upstream_decoder_state`, adds upstream's decoder keys)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a directory; give a file path to write")
    if layout == "hear-gram":
        if decoder:
            raise CheckpointError("decoder weights go in the released layout only")
        state = dict(encoder.state_dict())
        meta = {"format": OWN_FORMAT, "config": encoder.cfg.to_json()}
    elif layout == "released":
        state = released_state(encoder, decoder)
        meta = {"format": "pt"}
    else:
        raise ValueError(f"layout must be 'hear-gram' or 'released', got {layout!r}")
    keep = {k: v.dtype for k, v in state.items() if not v.is_floating_point()}  # index buffers
    state = {
        k: v.detach().to(keep.get(k, torch.float32)).contiguous().cpu() for k, v in state.items()
    }
    data = safetensors_bytes(state, metadata=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    # atomic and never through a planted link: an interrupted save leaves no half-written file
    write_bytes_atomic(path, data, tmp_suffix=".partial")
    return path


def random_encoder(model: str, depth: int | None = None, seed: int = 0) -> GramEncoder:
    """A randomly initialised encoder of a named preset (for tests and pipelines), seeded."""
    cfg = preset(model, **({"depth": depth} if depth is not None else {}))
    torch.manual_seed(seed)
    return build_encoder(cfg).eval()


def random_decoder(cfg: GramConfig, seed: int = 0) -> dict[str, Tensor]:
    """A randomly initialised upstream-shaped decoder (8 blocks, width 512, 8 heads, the paper's
    windows) under upstream's names, seeded apart from the encoder."""
    from hear_gram.pretrain.model import GramMAE

    torch.manual_seed(seed + 1)
    return upstream_decoder_state(GramMAE(cfg))


# --- registry ---------------------------------------------------------------------------------
# An entry's ``source`` says where its file comes from, and which keys it must have:
# "huggingface": downloaded by ``fetch`` into ``cache_dir()``;
# "local": made by a command of this repository (``made_by``, e.g. ``make pretrain-demo``) at
# ``path``, relative to the repository root; never downloaded, never committed.
SOURCE_KEYS = {"huggingface": ("repo_id", "file"), "local": ("path", "made_by")}


def registry() -> dict[str, dict]:
    """The entries of ``checkpoints.json`` by name, each checked for a known source and its keys."""
    try:
        entries = json.loads(REGISTRY_PATH.read_text())["checkpoints"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        detail = f"no {err} entry" if isinstance(err, KeyError) else str(err)
        raise CheckpointError(
            f"the registry {REGISTRY_PATH} is unreadable or malformed ({detail}); it must be a "
            'JSON object with a "checkpoints" object of named entries'
        ) from err
    if not isinstance(entries, dict):
        raise CheckpointError(f'{REGISTRY_PATH}: "checkpoints" must be an object of named entries')
    for name, entry in entries.items():
        _check_entry(name, entry)
    return entries


def _check_entry(name: str, entry: object) -> None:
    if not isinstance(entry, dict):
        raise CheckpointError(f"{REGISTRY_PATH} entry {name!r} is not a JSON object")
    source = entry.get("source")
    if source not in SOURCE_KEYS:
        raise CheckpointError(
            f"{REGISTRY_PATH} entry {name!r} has source {source!r}; valid kinds: {sorted(SOURCE_KEYS)}"
        )
    missing = [k for k in SOURCE_KEYS[source] if not isinstance(entry.get(k), str) or not entry[k]]
    if missing:
        raise CheckpointError(
            f"{REGISTRY_PATH} entry {name!r} ({source}) lacks {', '.join(missing)}"
        )


def cache_dir() -> Path:
    return Path(os.environ.get("HEAR_GRAM_HOME", Path.home() / ".cache" / "hear_gram"))


def _entry(name: str, source: str | None = None) -> dict:
    """Registry entry ``name``; with ``source``, an error unless it is of that kind."""
    reg = registry()
    if name not in reg:
        raise CheckpointError(f"unknown checkpoint {name!r}; known: {sorted(reg)}")
    entry = reg[name]
    if source is not None and entry["source"] != source:
        raise CheckpointError(
            f"checkpoint {name!r} is a {entry['source']} entry, not {source}: {_origin(name, entry)}"
        )
    return entry


def _origin(name: str, entry: Mapping) -> str:
    if entry["source"] == "local":
        return f"made by `{entry['made_by']}` at {local_path(name)}, never downloaded"
    return f"downloaded by `python -m hear_gram.checkpoints fetch {name}` into {cached_path(name)}"


def cached_path(name: str) -> Path:
    """Where ``fetch`` puts the file of Hugging Face entry ``name`` (whether or not it is there)."""
    entry = _entry(name, "huggingface")
    # both names come from checkpoints.json: a download must not land outside the cache
    try:
        return cache_dir() / check_name(name, "registry name") / check_name(entry["file"], "file")
    except UnsafePathError as err:
        raise CheckpointError(f"{REGISTRY_PATH} entry {name!r}: {err}") from err


def local_path(name: str) -> Path:
    """Where the command of local entry ``name`` writes its file (whether or not it is there);
    a relative ``path`` is under the repository root (the folder of ``checkpoints.json``)."""
    path = Path(_entry(name, "local")["path"])
    return path if path.is_absolute() else REGISTRY_PATH.parent / path


def _registered_path(name: str) -> Path:
    """The file of registry entry ``name``, of either source (whether or not it is there)."""
    return local_path(name) if _entry(name)["source"] == "local" else cached_path(name)


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A file path as given, or the file of a registry name: fetched (Hugging Face) or made
    (local) beforehand; an error says which command gives it."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        raise CheckpointError(f"{str(p)!r} is a directory, not a weights file or registry name")
    name = str(name_or_path)
    if name in registry():
        path = _registered_path(name)
        if path.is_file():
            return path
        entry = _entry(name)
        if entry["source"] == "local":
            raise CheckpointError(
                f"checkpoint {name!r} has not been made yet ({path} missing): run {entry['made_by']}"
            )
        raise CheckpointError(
            f"checkpoint {name!r} is not downloaded yet ({path} missing): run "
            f"python -m hear_gram.checkpoints fetch {name}"
        )
    raise CheckpointError(
        f"weights file {name!r} does not exist and is not a registry name ({sorted(registry())})"
    )


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, timeout: float = 30.0) -> Path:
    """Download a registry checkpoint into the cache, verify its checksum and its keys."""
    entry = _entry(name)
    if entry["source"] == "local":
        raise CheckpointError(
            f"{name} is a local checkpoint: it is made, not downloaded. Run {entry['made_by']} "
            f"(it writes {local_path(name)})"
        )
    url = f"https://huggingface.co/{entry['repo_id']}/resolve/{entry.get('revision', 'main')}/{entry['file']}"
    dest = cached_path(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while block := r.read(1 << 20):
                f.write(block)
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not download {url} ({err}). Offline? On a connected machine download that "
            f"file and either pass its path to load_model / --model, or copy it to {dest}"
        ) from err
    digest = sha256(tmp)
    if entry.get("sha256") and digest != entry["sha256"]:
        tmp.unlink()
        raise CheckpointError(
            f"checksum mismatch for {name}: got {digest}, expected {entry['sha256']}"
        )
    tmp.replace(dest)
    load_encoder(dest)  # verifies layout and keys
    log.info("fetched %s -> %s (sha256 %s)", name, dest, digest)
    return dest


# --- command line -----------------------------------------------------------------------------
def _cmd_list(_: argparse.Namespace) -> None:
    for name, e in registry().items():
        print(f"{name:24s} {e.get('preset', ''):18s} {e.get('module', ''):26s} {_state(name, e)}")
        print(f"{'':24s} {e.get('description', '')}")


def _state(name: str, entry: Mapping) -> str:
    """Source, location and whether the file is there, in one line."""
    path = _registered_path(name)
    if entry["source"] == "local":
        there = "present" if path.is_file() else f"not made yet: run {entry['made_by']}"
        return f"local, {there} ({path})"
    there = "cached" if path.is_file() else "not downloaded"
    return f"huggingface {entry['repo_id']}, {there}"


def _cmd_info(args: argparse.Namespace) -> None:
    if args.path in registry():
        print(f"registry:    {args.path} ({_state(args.path, _entry(args.path))})")
    encoder, rep = load_encoder(resolve(args.path), allow_pickle=args.allow_pickle)
    n = sum(p.numel() for p in encoder.parameters())
    cfg = rep.config
    print(f"file:        {rep.path}")
    print(f"layout:      {rep.layout}: {LAYOUTS.get(rep.layout.split('/')[-1], '')}")
    print(
        f"architecture: {cfg.backbone} ({cfg.format}, {cfg.variant} variant), "
        f"depth {cfg.depth}, width {cfg.width}"
    )
    print(f"config:      {cfg.to_json()}")
    print(f"parameters:  {n / 1e6:.2f} M (encoder)")
    print(
        f"keys:        {rep.n_encoder_keys} encoder keys loaded strictly (no missing, no unexpected)"
    )
    print(f"set aside:   {len(rep.decoder_keys)} decoder, {len(rep.frontend_keys)} front-end "
          f"(checked: {', '.join(sorted(rep.frontend_keys)) or 'none'}), "
          f"{len(rep.ignored_keys)} unused upstream")  # fmt: skip


def _cmd_random(args: argparse.Namespace) -> None:
    if args.with_decoder and args.layout != "released":
        raise CheckpointError("--with-decoder writes upstream's decoder: use --layout released")
    out = Path(args.out)
    if out.is_dir():  # before minutes of work on a full-size model
        raise CheckpointError(f"--out {str(out)!r} is a directory; give a file path to write")
    enc = random_encoder(args.model, args.depth, args.seed)
    decoder = random_decoder(enc.cfg, args.seed) if args.with_decoder else None
    out = save_checkpoint(out, enc, layout=args.layout, decoder=decoder)
    what = f"{len(decoder)} decoder tensors, " if decoder else ""
    print(
        f"wrote random {args.model} (depth {enc.cfg.depth}, seed {args.seed}, {what}"
        f"{args.layout} layout) to {out}"
    )


def _cmd_fetch(args: argparse.Namespace) -> None:
    print(fetch(args.name))


def _cmd_convert(args: argparse.Namespace) -> None:
    enc, rep = load_encoder(args.src, allow_pickle=args.allow_pickle)
    print(f"converted {rep.layout} file -> {save_checkpoint(args.dst, enc, layout=args.layout)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hear_gram.checkpoints", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="known checkpoints: source, and whether downloaded or made")
    p = sub.add_parser("info", help="architecture and key check of a weights file or registry name")
    p.add_argument("path")
    p.add_argument("--allow-pickle", action="store_true")
    p = sub.add_parser("random", help="randomly initialised weights (released layout by default)")
    p.add_argument("--model", required=True, choices=sorted(PRESETS))
    p.add_argument("--depth", type=_depth, default=None, help="encoder layers (preset's if unset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", choices=["released", "hear-gram"], default="released",
                   help="released: upstream's runtime layout (model.* + mel_spec.*)")  # fmt: skip
    p.add_argument("--with-decoder", action="store_true",
                   help="add upstream's decoder keys (decoder_*, mask_token, spec_pred)")  # fmt: skip
    p.add_argument("--out", required=True)
    p = sub.add_parser("fetch", help="download a released checkpoint into the cache")
    p.add_argument("name")
    p = sub.add_parser("convert", help="rewrite any supported file as hear-gram safetensors")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--allow-pickle", action="store_true")
    p.add_argument("--layout", choices=["released", "hear-gram"], default="hear-gram")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    handlers = {"list": _cmd_list, "info": _cmd_info, "random": _cmd_random, "fetch": _cmd_fetch,
                "convert": _cmd_convert}  # fmt: skip
    try:
        handlers[args.cmd](args)
    except (ValueError, OSError) as err:  # CheckpointError, bad configs, unreadable files
        print(f"{parser.prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    return 0


def _depth(text: str) -> int:
    try:
        value = int(text)
        check_int("depth", value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return value


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
