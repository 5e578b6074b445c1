"""Argument parsing shared by the command-line tools: values that fail here end as argparse's
one-line `error:` and exit 2, like every other expected failure of our CLIs."""

from __future__ import annotations

import argparse
import json
from typing import Any


def positive_int(text: str) -> int:
    """argparse `type=` for counts (workers, batch sizes, scenes): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def model_options(text: str) -> dict[str, Any]:
    """A `--model-options` value: a JSON object (the HEAR runner's convention); ValueError if not."""
    try:
        options = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--model-options is not JSON: {e}") from None
    if not isinstance(options, dict):
        raise ValueError("--model-options must be a JSON object")
    return options
