"""The command-line tool ``python -m hear_gram.checkpoints`` (console script
``hear-gram-checkpoints``): list, inspect, make, download and convert weights files.

    python -m hear_gram.checkpoints list
    python -m hear_gram.checkpoints info PATH|NAME
    python -m hear_gram.checkpoints random --preset gram-t [--depth N] [--with-decoder] --out PATH
    python -m hear_gram.checkpoints fetch NAME
    python -m hear_gram.checkpoints convert IN OUT [--allow-pickle]

`random --preset` names an architecture preset (`hear_gram.config.PRESETS`); `--model` is its old
name (here a preset, not a weights file). The tool follows `hear_gram.cli`: one line
`python -m hear_gram.checkpoints: error: ...` and exit 2 for every expected failure, 130 on
Ctrl-C (no log file: each subcommand writes at most one file).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from hear_gram import cli
from hear_gram.checkpoints.loading import LAYOUTS, CheckpointError, load_encoder
from hear_gram.checkpoints.saving import random_decoder, random_encoder, save_checkpoint
from hear_gram.checkpoints.sources import fetch, registered_path, registry, registry_entry, resolve
from hear_gram.config import PRESETS, check_int


def _cmd_list(_: argparse.Namespace) -> None:
    for name, e in registry().items():
        print(f"{name:24s} {e.get('preset', ''):18s} {e.get('module', ''):26s} {_state(name, e)}")
        print(f"{'':24s} {e.get('description', '')}")


def _state(name: str, entry: Mapping) -> str:
    """Source, location and whether the file is there, in one line."""
    path = registered_path(name)
    if entry["source"] == "local":
        there = "present" if path.is_file() else f"not made yet: run {entry['made_by']}"
        return f"local, {there} ({path})"
    there = f"in the Hugging Face cache ({path})" if path else "not downloaded"
    return f"huggingface {entry['repo_id']}@{entry.get('revision') or 'main'}, {there}"


def _cmd_info(args: argparse.Namespace) -> None:
    if args.path in registry():
        print(f"registry:    {args.path} ({_state(args.path, registry_entry(args.path))})")
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


PROG = "python -m hear_gram.checkpoints"
HANDLERS = {"list": _cmd_list, "info": _cmd_info, "random": _cmd_random, "fetch": _cmd_fetch,
            "convert": _cmd_convert}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(PROG, __doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="known checkpoints: source, and whether downloaded or made")
    p = sub.add_parser("info", help="architecture and key check of a weights file or registry name")
    p.add_argument("path")
    p.add_argument("--allow-pickle", action="store_true")
    p = sub.add_parser("random", help="randomly initialised weights (released layout by default)")
    p.add_argument("--preset", "--model", dest="model", required=True, choices=sorted(PRESETS),
                   help="architecture preset (--model: the same)")  # fmt: skip
    p.add_argument("--depth", type=_depth, default=None, help="encoder layers (preset's if unset)")
    cli.add_seed(p)
    p.add_argument("--layout", choices=["released", "hear-gram"], default="released",
                   help="released: upstream's runtime layout (model.* + mel_spec.*)")  # fmt: skip
    p.add_argument("--with-decoder", action="store_true",
                   help="add upstream's decoder keys (decoder_*, mask_token, spec_pred)")  # fmt: skip
    p.add_argument("--out", required=True, help="weights file to write")
    p = sub.add_parser(
        "fetch",
        help="download a released checkpoint into the Hugging Face cache "
        "(HF_HOME, HF_HUB_OFFLINE, HF_ENDPOINT and HF_TOKEN apply)",
    )
    p.add_argument("name")
    p = sub.add_parser("convert", help="rewrite any supported file as hear-gram safetensors")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--allow-pickle", action="store_true")
    p.add_argument("--layout", choices=["released", "hear-gram"], default="hear-gram")
    return parser


def _run(args: argparse.Namespace) -> None:
    HANDLERS[args.cmd](args)


def main(argv: Sequence[str] | None = None) -> int:
    # No log file: each subcommand writes at most one file, and a `logs/` folder would appear
    # beside the user's weights; errors are one line, tracebacks of bugs with --verbose.
    return cli.main(PROG, build_parser, _run, argv)


def _depth(text: str) -> int:
    try:
        value = int(text)
        check_int("depth", value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return value
