"""Checkpoints: read released, upstream and own weight files safely, infer their architecture, load
strictly; a registry of known weights (``checkpoints.json``) and a command-line tool.

Layouts understood (REFERENCE §3):
- released Hugging Face ``model.safetensors``: every key prefixed ``model.``, plus the front-end's
  ``mel_spec.melspec.{spectrogram.window, mel_scale.fb}`` buffers (checked against ours);
- upstream PyTorch Lightning ``.ckpt``: ``{"state_dict": ...}`` with the training module's keys
  (decoder, ``melspec.*``; GRAM-M's unused ``encoder_norm``);
- hear-gram's own ``.safetensors``: the encoder's keys and the ``GramConfig`` as JSON metadata.

Registry entries are released weights (``"source": "huggingface"``, downloaded by ``fetch`` into
``cache_dir()``) or files a command of this repository makes (``"source": "local"``, e.g.
``gram-demo-cpu`` from ``make pretrain-demo``, under ``work/``).

Nothing in a file can run code: safetensors, or ``torch.load(weights_only=True)``; a legacy pickle
that needs more is refused unless the caller opts in with ``allow_pickle=True``.

    python -m hear_gram.checkpoints list
    python -m hear_gram.checkpoints info PATH|NAME
    python -m hear_gram.checkpoints random --model gram-t [--depth N] --out PATH
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
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from hear_gram.config import PRESETS, GramConfig, preset
from hear_gram.encoder import GramEncoder, build_encoder
from hear_gram.frontend import LogMelFrontend

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).resolve().parent.parent / "checkpoints.json"
OWN_FORMAT = "hear-gram/1"
# The entry hear_gram.pretrain adds to its Lightning checkpoints (format, config, encoder prefix).
LIGHTNING_KEY = "hear_gram"
RELEASED_PREFIX = "model."
ENCODER_PREFIXES = ("patch_embed.", "cls_token", "encoder.", "encoder_pos_embed", "encoder_v.")
DECODER_PREFIXES = (
    "decoder_embed.", "decoder_blocks.", "decoder_v.", "decoder_norm.", "decoder_pos_embed",
    "mask_token", "spec_pred.",
)  # fmt: skip
FRONTEND_PREFIXES = ("mel_spec.", "melspec.")
# Present in upstream GRAM-M checkpoints but never used by its forward pass.
UNUSED_UPSTREAM_PREFIXES = ("encoder_norm.",)


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
    """(state dict on CPU, metadata, layout) of a weights file, without executing its contents."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path), device="cpu")
        if meta.get("format") == OWN_FORMAT:
            return state, meta, "hear-gram"
        if state and all(k.startswith(RELEASED_PREFIX) for k in state):
            state = {k[len(RELEASED_PREFIX) :]: v for k, v in state.items()}
            return state, meta, "released"
        return state, meta, "state-dict"
    obj = _torch_load(path, allow_pickle)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        own = obj.get(LIGHTNING_KEY)
        if isinstance(own, Mapping) and own.get("format") == OWN_FORMAT:
            # hear_gram.pretrain's own training checkpoint: the encoder under a prefix, the
            # config beside it (decoder and optimiser state stay in the file, unused here)
            prefix = own["encoder_prefix"]
            state = {
                k[len(prefix) :]: v for k, v in obj["state_dict"].items() if k.startswith(prefix)
            }
            return state, {"config": own["config"]}, "hear-gram-lightning"
        return dict(obj["state_dict"]), {}, "lightning"
    if isinstance(obj, Mapping) and all(isinstance(v, Tensor) for v in obj.values()):
        state = dict(obj)
        if state and all(k.startswith(RELEASED_PREFIX) for k in state):
            return {k[len(RELEASED_PREFIX) :]: v for k, v in state.items()}, {}, "released"
        return state, {}, "state-dict"
    raise CheckpointError(
        f"{path} holds a {type(obj).__name__}, not a state dict or a Lightning checkpoint"
    )


def stored_config(path: str | os.PathLike) -> GramConfig | None:
    """The config a hear-gram safetensors file carries in its metadata, read without loading its
    tensors; None for other layouts."""
    if Path(path).suffix != ".safetensors":
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != OWN_FORMAT:
        return None
    return GramConfig.from_dict(json.loads(meta["config"]))


def _torch_load(path: Path, allow_pickle: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise CheckpointError(
                f"{path} contains pickled Python objects that torch.load(weights_only=True) "
                f"refuses ({str(err).splitlines()[0][:200]}). Loading it would run code from the "
                "file. If you trust it, pass allow_pickle=True (model option "
                '{"allow_pickle": true}), or convert it once: python -m hear_gram.checkpoints '
                "convert IN OUT.safetensors --allow-pickle"
            ) from err
        log.warning("loading %s with full pickle support (allow_pickle=True)", path)
        return torch.load(path, map_location="cpu", weights_only=False)


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
        elif k.startswith(FRONTEND_PREFIXES):
            other["frontend"].append(k)
        elif k.startswith(UNUSED_UPSTREAM_PREFIXES):
            other["ignored"].append(k)
        else:
            unknown.append(k)
    if unknown:
        raise CheckpointError(
            f"unexpected keys of no known kind: {_few(unknown)}. Known encoder prefixes: "
            f"{ENCODER_PREFIXES}; decoder: {DECODER_PREFIXES}; front-end: {FRONTEND_PREFIXES}"
        )
    if not enc:
        raise CheckpointError(f"no GRAM encoder keys in the file; first keys: {_few(list(state))}")
    return enc, other


def _few(keys: list[str], n: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" ... (+{len(keys) - n} more)" if len(keys) > n else "")


def _layer_count(state: Mapping[str, Tensor], pattern: str) -> int:
    idx = sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})
    if idx != list(range(len(idx))):
        raise CheckpointError(f"layer indices are not contiguous from 0: {idx}")
    return len(idx)


def infer_config(state: Mapping[str, Tensor]) -> GramConfig:
    """Rebuild the architecture from tensor shapes alone (depth, width, patch, channels, mixer).

    Attention heads are not visible in the weights; as in every ViT size upstream used, the head
    width is 64 (heads = width / 64). hear-gram's own files store the config and skip this.
    """
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


# --- loading ----------------------------------------------------------------------------------
def check_frontend(state: Mapping[str, Tensor], keys: list[str], cfg: GramConfig) -> None:
    """The released files carry the mel window and filter bank they were trained with: they must
    equal hear-gram's front-end, else the features (and embeddings) would silently differ."""
    ours = LogMelFrontend(cfg.features, ambisonic=cfg.in_channels == 7)
    expected = {"window": ours.window, "fb": ours.fb}
    for k in keys:
        name = k.rsplit(".", 1)[-1]
        if name not in expected:
            continue
        theirs, mine = state[k].float(), expected[name]
        if theirs.shape != mine.shape or not torch.allclose(theirs, mine, atol=1e-5, rtol=1e-4):
            raise CheckpointError(
                f"the file's {k} ({tuple(theirs.shape)}) differs from hear_gram's front-end "
                f"({tuple(mine.shape)}): these weights were trained on other features"
            )


def load_strict(encoder: GramEncoder, state: Mapping[str, Tensor]) -> None:
    """load_state_dict(strict=True), with an error that names every missing, unexpected and
    mis-shaped key."""
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            "weights do not match the architecture "
            f"(missing: {_few(missing) or 'none'}; unexpected: {_few(unexpected) or 'none'}; "
            f"shape mismatches: {'; '.join(shapes[:8]) or 'none'})"
        )
    encoder.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def load_encoder(
    path: str | os.PathLike, allow_pickle: bool = False
) -> tuple[GramEncoder, LoadReport]:
    """Load any supported weights file into a GRAM encoder, in eval mode on the CPU."""
    state, meta, layout = read_state(path, allow_pickle)
    enc_state, other = split_state(state)
    if "config" in meta:
        cfg = GramConfig.from_dict(json.loads(meta["config"]))
    else:
        cfg = infer_config(enc_state)
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
def save_checkpoint(
    path: str | os.PathLike, encoder: GramEncoder, layout: str = "hear-gram"
) -> Path:
    """Write ``encoder`` as hear-gram's own safetensors (config in the metadata) or in the
    released Hugging Face layout (``model.`` prefix, mel buffers, no config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous().cpu() for k, v in encoder.state_dict().items()}
    if layout == "hear-gram":
        meta = {"format": OWN_FORMAT, "config": encoder.cfg.to_json()}
    elif layout == "released":
        fe = LogMelFrontend(encoder.cfg.features, ambisonic=encoder.cfg.in_channels == 7)
        state["mel_spec.melspec.spectrogram.window"] = fe.window.clone()
        state["mel_spec.melspec.mel_scale.fb"] = fe.fb.clone()
        state = {RELEASED_PREFIX + k: v for k, v in state.items()}
        meta = {"format": "pt"}
    else:
        raise ValueError(f"layout must be 'hear-gram' or 'released', got {layout!r}")
    tmp = path.with_name(path.name + ".partial")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic: an interrupted save leaves no half-written checkpoint
    return path


def random_encoder(model: str, depth: int | None = None, seed: int = 0) -> GramEncoder:
    """A randomly initialised encoder of a named preset (for tests and pipelines), seeded."""
    cfg = preset(model, **({"depth": depth} if depth else {}))
    torch.manual_seed(seed)
    return build_encoder(cfg).eval()


# --- registry ---------------------------------------------------------------------------------
# An entry's ``source`` says where its file comes from, and which keys it must have:
# "huggingface": downloaded by ``fetch`` into ``cache_dir()``;
# "local": made by a command of this repository (``made_by``, e.g. ``make pretrain-demo``) at
# ``path``, relative to the repository root; never downloaded, never committed.
SOURCE_KEYS = {"huggingface": ("repo_id", "file"), "local": ("path", "made_by")}


def registry() -> dict[str, dict]:
    """The entries of ``checkpoints.json`` by name, each checked for a known source and its keys."""
    entries = json.loads(REGISTRY_PATH.read_text())["checkpoints"]
    for name, entry in entries.items():
        _check_entry(name, entry)
    return entries


def _check_entry(name: str, entry: Mapping) -> None:
    source = entry.get("source")
    if source not in SOURCE_KEYS:
        raise CheckpointError(
            f"{REGISTRY_PATH} entry {name!r} has source {source!r}; valid kinds: {sorted(SOURCE_KEYS)}"
        )
    missing = [k for k in SOURCE_KEYS[source] if not entry.get(k)]
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
    return cache_dir() / name / entry["file"]


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
    print(f"file:        {rep.path}")
    print(f"layout:      {rep.layout}")
    print(
        f"architecture:{' ' if rep.config else ''}{rep.config.backbone} ({rep.config.format}, "
        f"{rep.config.variant} variant), depth {rep.config.depth}, width {rep.config.width}"
    )
    print(f"config:      {rep.config.to_json()}")
    print(f"parameters:  {n / 1e6:.2f} M (encoder)")
    print(
        f"keys:        {rep.n_encoder_keys} encoder keys loaded strictly (no missing, no unexpected)"
    )
    print(f"set aside:   {len(rep.decoder_keys)} decoder, {len(rep.frontend_keys)} front-end "
          f"(checked), {len(rep.ignored_keys)} unused upstream")  # fmt: skip


def _cmd_random(args: argparse.Namespace) -> None:
    enc = random_encoder(args.model, args.depth, args.seed)
    out = save_checkpoint(args.out, enc, layout=args.layout)
    print(
        f"wrote random {args.model} (depth {enc.cfg.depth}, seed {args.seed}, {args.layout} layout) to {out}"
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
    p.add_argument("--depth", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", choices=["released", "hear-gram"], default="released")
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
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
