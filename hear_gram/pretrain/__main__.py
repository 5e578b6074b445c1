"""python -m hear_gram.pretrain --config NAME [key=value ...]"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hear_gram.pretrain.train import CONFIGS, get_config, train


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hear_gram.pretrain", description=__doc__)
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS))
    parser.add_argument("overrides", nargs="*", help="key=value fields of TrainConfig")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if train(get_config(args.config, args.overrides)) is None:
        sys.exit(130)  # interrupted; the checkpoint is saved, rerun to resume


if __name__ == "__main__":
    main()
