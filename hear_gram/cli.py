"""One command-line convention for every entry point of hear-gram.

Every `python -m ...` tool (and the `hear-gram` command, which dispatches to them) is built as

    def build_parser() -> argparse.ArgumentParser:
        p = cli.parser(PROG, __doc__)
        cli.add_module(p); cli.add_weights(p); cli.add_tasks_dir(p); cli.add_out(p); ...
        return p

    def run(args) -> int | None: ...            # the work; raises on failure

    def main(argv=None) -> int:
        return cli.main(PROG, build_parser, run, argv, log_dir=lambda a: a.out)

    if __name__ == "__main__":
        sys.exit(main())

and so behaves the same way:
- the same option names for the same things: `--module`, `--weights` (`--model` is accepted as
  its old name, the HEAR runner's), `--tasks-dir`, `--out`, `--jobs`, `--seed`, `--quiet` /
  `--verbose`;
- progress bars and warnings on stderr; with `log_dir`, every log record (DEBUG and up) also goes
  to `<log_dir>/logs/<tool>.log`, so a long run's details survive the terminal;
- every expected failure (bad option, missing or malformed file, refused input: `ValueError`,
  `OSError`, `ImportError`, `LookupError`, `CLIError`, and JSON or TOML nested past any
  interpreter limit) ends in ONE line `prog: error: ...` on stderr and exit status 2, argparse's
  own errors included;
- Ctrl-C ends with one line `prog: interrupted` and exit status 130 (128 + SIGINT, as shells do);
- anything else is a bug: one line `prog: internal error: ...` naming the log with its traceback,
  exit status 1 (the traceback is printed on screen only with `--verbose`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tomllib
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from hear_gram.safeio import subdir

EXIT_ERROR = 2  # expected failures, as argparse's own
EXIT_BUG = 1
EXIT_INTERRUPTED = 130
# Nesting deeper than this in a JSON or TOML input is refused: no input of ours needs more than
# a handful of levels, and Python's parsers recurse (RecursionError past ~1000 levels).
MAX_DEPTH = 32
MAX_CONFIG_BYTES = 1 << 20  # option strings, models files and task JSONs of ours are small


class CLIError(ValueError):
    """An expected failure with a message for the user (bad input, refused value)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (`prog: error: ... (see --help)`), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {shorten(one_line(message))} (see --help)\n")


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def shorten(text: str, limit: int = 300) -> str:
    """`text` cut to `limit` characters: an error echoing a 5000-character option value stays
    one readable line."""
    return text if len(text) <= limit else text[: limit - 15] + f"... ({len(text)} chars)"


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of one entry point: its module docstring as help, `--quiet` / `--verbose`."""
    p = _Parser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = p.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="errors only, no progress bars")
    group.add_argument(
        "-v", "--verbose", action="store_true", help="informational messages and tracebacks"
    )
    return p


# ------------------------------------------------------------------ the shared options


def add_module(p: argparse.ArgumentParser, required: bool = True, help: str = "") -> None:
    p.add_argument("--module", required=required, metavar="MODULE",
                   help=help or "HEAR module to import, e.g. hear_gram.gram_t")  # fmt: skip


def add_weights(p: argparse.ArgumentParser, required: bool = False, help: str = "") -> None:
    """`--weights FILE`; `--model` stays accepted (the HEAR runner's name for the same file)."""
    p.add_argument("--weights", "--model", dest="weights", type=Path, default=None,
                   required=required, metavar="FILE",
                   help=help or "weights file given to load_model (--model: the same)")  # fmt: skip


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-options", dest="model_options", type=json_object, default={},
                   metavar="JSON", help="JSON object of load_model keyword options")  # fmt: skip


def add_tasks_dir(p: argparse.ArgumentParser, required: bool = True, help: str = "") -> None:
    p.add_argument("--tasks-dir", type=Path, required=required, metavar="DIR",
                   help=help or "folder of HEAR task folders")  # fmt: skip


def add_out(p: argparse.ArgumentParser, required: bool = True, default: Path | None = None,
            help: str = "") -> None:  # fmt: skip
    p.add_argument("--out", type=Path, required=required and default is None, default=default,
                   metavar="DIR", help=help or "output folder")  # fmt: skip


def add_jobs(p: argparse.ArgumentParser, help: str = "") -> None:
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help=help or "work items run at once")  # fmt: skip


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=seed_int, default=default, help="random seed")


# ------------------------------------------------------------------ value parsers


def positive_int(text: str) -> int:
    """argparse `type=` for counts (workers, batch sizes, scenes): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def seed_int(text: str) -> int:
    """argparse `type=` for seeds: an integer in [0, 2**63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**63), got {value}")
    return value


def shard(text: str) -> tuple[int, int]:
    """argparse `type=` for `--shard K/N`: shard K (0-based) of N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be K/N, e.g. 0/4, got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise argparse.ArgumentTypeError(f"needs 0 <= K < N, got {k}/{n}")
    return k, n


def json_object(text: str) -> dict[str, Any]:
    """argparse `type=` for a JSON object option (e.g. `--model-options`)."""
    try:
        value = loads_json(text, "value")
    except CLIError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------ JSON and TOML inputs


def check_depth(value: Any, what: str, limit: int = MAX_DEPTH) -> Any:
    """`value` if its lists and dicts nest at most `limit` deep, else CLIError (iterative: never
    a RecursionError)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                raise CLIError(f"{what} nests deeper than {limit} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)
    return value


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def loads_json(text: str | bytes, what: str) -> Any:
    """Parsed JSON, or CLIError naming `what`: not JSON, NaN/Infinity (not JSON numbers), or
    nested past `MAX_DEPTH`."""
    if len(text) > MAX_CONFIG_BYTES:
        raise CLIError(f"{what} is over {MAX_CONFIG_BYTES} bytes")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise CLIError(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CLIError(f"{what} is not JSON: {one_line(e)}") from None
    return check_depth(value, what)


def read_json(path: Path, what: str = "") -> Any:
    """`loads_json` of a file (size checked before reading)."""
    what = what or str(path)
    _check_size(path, what)
    return loads_json(path.read_bytes(), what)


def read_toml(path: Path, what: str = "") -> dict[str, Any]:
    """A TOML file as a dict, or CLIError (not TOML, not UTF-8, too deep, too large)."""
    what = what or str(path)
    _check_size(path, what)
    try:
        value = tomllib.loads(path.read_bytes().decode("utf-8"))
    except RecursionError:
        raise CLIError(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CLIError(f"{what} is not TOML: {one_line(e)}") from None
    return check_depth(value, what)


def _check_size(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CLIError(f"{what} is over {MAX_CONFIG_BYTES} bytes")


def expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """`value` if it is of `kind` (a bool is never an int or float here; floats must be
    finite), else CLIError saying what was expected and what came."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if ok and isinstance(value, float) and not math.isfinite(value):
        raise CLIError(f"{what} must be finite, got {value!r}")
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise CLIError(f"{what} must be {names}, got {type(value).__name__} {value!r:.60}")
    return value


# ------------------------------------------------------------------ running an entry point

EXPECTED = (CLIError, ValueError, OSError, ImportError, LookupError, RecursionError)


def setup_logging(args: argparse.Namespace, prog: str, log_dir: Path | None) -> Path | None:
    """Console: WARNING (INFO with --verbose, ERROR with --quiet) on stderr; with `log_dir`,
    everything from DEBUG up to `<log_dir>/logs/<tool>.log` too. Returns the log file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_hear_gram", False):
            root.removeHandler(handler)
            handler.close()  # a warm worker runs many tools: their log files must not pile up
    level = logging.ERROR if getattr(args, "quiet", False) else logging.WARNING
    level = logging.INFO if getattr(args, "verbose", False) else level
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    console._hear_gram = True  # type: ignore[attr-defined]
    root.addHandler(console)
    root.setLevel(logging.DEBUG if log_dir is not None else level)
    if log_dir is None:
        return None
    path = subdir(log_dir, "logs") / f"{prog.split()[-1].replace('.', '-')}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._hear_gram = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    return path


def main(
    prog: str,
    build_parser: Callable[[], argparse.ArgumentParser],
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
    log_dir: Callable[[argparse.Namespace], Path | None] | None = None,
) -> int:
    """Parse `argv`, run `body(args)` under the convention of the module docstring; returns the
    exit status (`body`'s int, or 0)."""
    args = build_parser().parse_args(argv)
    log_file = None
    try:
        folder = log_dir(args) if log_dir is not None else None
        log_file = setup_logging(args, prog, folder)
        code = body(args)
        return 0 if code is None else int(code)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EXPECTED as e:
        logging.getLogger(prog).debug("expected failure", exc_info=True)
        # our messages are whole (they say what to do); only a runaway one is cut
        print(f"{prog}: error: {shorten(one_line(e), 4000) or type(e).__name__}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # a bug: keep the traceback, say where it is
        # DEBUG: the traceback goes to the log file only; the console gets the one line below
        logging.getLogger(prog).debug("internal error", exc_info=True)
        if getattr(args, "verbose", False):
            traceback.print_exc()
        where = f"; traceback in {log_file}" if log_file else "; rerun with --verbose"
        print(f"{prog}: internal error: {type(e).__name__}: {one_line(e)}{where}",
              file=sys.stderr)  # fmt: skip
        return EXIT_BUG


def model_options(text: str) -> dict[str, Any]:
    """A `--model-options` string as a dict (the HEAR runner's convention), or CLIError."""
    value = loads_json(text, "--model-options")
    if not isinstance(value, dict):
        raise CLIError(f"--model-options must be a JSON object, got {type(value).__name__}")
    return value
