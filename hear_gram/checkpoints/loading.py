"""Reading weights files safely: the layout from the keys, the architecture from the tensors (or
the stored config), every check made before a model is built, then a strict load.

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

A weights file is data from anyone: its format is read from its first bytes (never its name);
nothing in it can run code (safetensors, or ``torch.load(weights_only=True)``; a PyTorch pickle that
needs more is refused unless the caller opts in with ``allow_pickle=True``); a stored config is
checked against sane bounds and against the tensors present before any model is built; tensors
must be finite floating point.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor
from torch.overrides import TorchFunctionMode

from hear_gram.cli import check_depth
from hear_gram.config import GramConfig, MambaConfig
from hear_gram.encoder import GramEncoder, build_encoder
from hear_gram.frontend import LogMelFrontend

log = logging.getLogger(__name__)

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
        # NaN parses here so that GramConfig's own checks name the field; depth is checked
        value = check_depth(json.loads(text), "the stored config")
        return GramConfig.from_dict(value)
    except RecursionError:
        raise CheckpointError(f"{path}: the stored config nests too deep") from None
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
            mamba = MambaConfig(
                mixer="mamba2", d_state=(conv_ch - d_inner) // 2, d_conv=d_conv,
                expand=d_inner // width, headdim=d_inner // nheads,
            )  # fmt: skip
            return GramConfig(backbone="mamba", depth=depth, mamba=mamba, **common)
        d_inner, d_state = state[p + "A_log"].shape
        mamba = MambaConfig(
            mixer="mamba1", d_state=d_state, d_conv=d_conv, expand=d_inner // width,
            dt_rank=_dt_rank(state[p + "dt_proj.weight"].shape[1], width),
        )  # fmt: skip
        return GramConfig(backbone="mamba", depth=depth, mamba=mamba, **common)
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
    ours = LogMelFrontend(cfg.features, ambisonic=cfg.is_ambisonic)
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
