"""python -m hear_gram.pretrain --config NAME [key=value ...]

Trains (or resumes) the named run configuration of `hear_gram.pretrain.train`, each `key=value`
replacing one field of its TrainConfig (a wrong key, type or size is refused before any work).
Ctrl-C saves the run's state (exit 130): the same command resumes it. The log:
``<out_dir>/logs/hear_gram-pretrain.log``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hear_gram import cli
from hear_gram.pretrain.train import CONFIGS, get_config, train

PROG = "python -m hear_gram.pretrain"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--config", required=True, choices=sorted(CONFIGS))
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="fields of TrainConfig")
    return p


def log_folder(args: argparse.Namespace) -> Path:
    """The run folder, once the configuration is valid (a refused one writes nothing)."""
    return Path(get_config(args.config, args.overrides).out_dir)


def body(args: argparse.Namespace) -> int:
    if train(get_config(args.config, args.overrides)) is None:
        raise KeyboardInterrupt  # interrupted; the checkpoint is saved, rerun to resume
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(PROG, build_parser, body, argv, log_dir=log_folder)


if __name__ == "__main__":
    sys.exit(main())
