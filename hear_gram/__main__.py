"""The `hear-gram` command (also `python -m hear_gram`): one entry to every tool of the package.

    hear-gram SUBCOMMAND [ARGS ...]          e.g. hear-gram suite --models m.toml --tasks-dir T
    hear-gram localization generate ARGS     (groups: localization, seld)

Each subcommand is a module whose `main(argv)` receives the remaining arguments unchanged, so
`hear-gram suite ARGS` behaves exactly as `python -m hear_gram.suite ARGS`: the same options, the
same messages on stderr, the same exit status. Modules are imported only when their subcommand
runs (by name, through importlib), so `hear-gram --help` is fast and imports no torch.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PROG = "hear-gram"
EXIT_ERROR = 2  # as argparse's own usage errors (hear_gram.cli.EXIT_ERROR)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it (hear_gram.cli.EXIT_INTERRUPTED)


@dataclass(frozen=True)
class Command:
    """A subcommand: the module whose `main` runs it, and its one-line description."""

    module: str
    help: str


# A group maps sub-subcommands to commands; kept in the order `--help` lists them.
Group = dict[str, Command]

COMMANDS: dict[str, Command | Group] = {
    "suite": Command("hear_gram.suite.__main__", "HEAR tasks to the paper's table, any modules"),
    "embed": Command("hear_gram.embed", "heareval's embeddings runner, one folder per weights"),
    "predict": Command("hear_gram.predict", "heareval's predictions runner, quiet and disk-safe"),
    "scores": Command("hear_gram.scores", "the test scores heareval wrote, as a table"),
    "checkpoints": Command(
        "hear_gram.checkpoints.cli", "list, inspect, make, download and convert weights files"
    ),
    "naturalistic": Command(
        "naturalistic_hear.__main__", "re-render HEAR tasks as spatial scenes (Nat-HEAR)"
    ),
    "localization": {
        "generate": Command(
            "localization_tasks.generate", "localization and T60 tasks from HEAR scene tasks"
        ),
        "evaluate": Command(
            "localization_tasks.evaluate", "evaluate a HEAR module on localization and T60 tasks"
        ),
        "modes": Command(
            "localization_tasks.seld.modes", "single-source localization, listen-eval-kit modes"
        ),
    },
    "seld": {
        "synth": Command("localization_tasks.seld.synth", "offline synthetic SELD tasks"),
        "convert": Command("localization_tasks.seld.convert", "a DCASE Task 3 set to a SELD task"),
        "evaluate": Command(
            "localization_tasks.seld.evaluate", "evaluate SELD with embeddings and heads"
        ),
        "score": Command("localization_tasks.seld.score", "score DCASE-format SELD predictions"),
    },
    "demo": Command("hear_gram.demo", "offline end-to-end demo through the real HEAR tools"),
    "bench": Command("hear_gram.bench", "throughput and memory of the HEAR runtime"),
    "gpu-check": Command("hear_gram.gpu_check", "GPU readiness: fused kernels, speed, memory"),
    "pretrain": Command("hear_gram.pretrain.__main__", "pretrain a GRAM encoder (Lightning)"),
    "pretrain-report": Command(
        "hear_gram.pretrain.report", "naturalistic vs clean vs random pretraining, over seeds"
    ),
    "validate": Command("hearvalidator.validate", "hear-validator on a HEAR module"),
}


def usage(table: dict[str, Command | Group], prefix: str) -> str:
    """The help text of the top level (`prefix` "hear-gram") or of a group."""
    width = max(len(name) for name in _flat(table, ""))
    lines = [f"usage: {prefix} SUBCOMMAND [ARGS ...]  ({prefix} SUBCOMMAND --help for its options)"]
    if prefix == PROG:
        lines += ["", (__doc__ or "").splitlines()[0]]
    lines += ["", "subcommands:"]
    for name, cmd in _flat(table, "").items():
        lines.append(f"  {name:<{width}}  {cmd.help}")
    return "\n".join(lines)


def _flat(table: Group | dict[str, Command | Group], prefix: str) -> dict[str, Command]:
    """{"localization generate": Command, ...}: every runnable subcommand under `table`."""
    out: dict[str, Command] = {}
    for name, entry in table.items():
        full = f"{prefix} {name}".strip()
        out.update(_flat(entry, full) if isinstance(entry, dict) else {full: entry})
    return out


def resolve(argv: Sequence[str]) -> tuple[Command | None, list[str], str, int | None]:
    """(command, its arguments, text to print, exit status when no command runs)."""
    table: Command | dict[str, Command | Group] = COMMANDS
    prefix, args = PROG, list(argv)
    while isinstance(table, dict):
        if not args or args[0] in ("-h", "--help"):
            return None, [], usage(table, prefix), 0 if args else EXIT_ERROR
        name = args.pop(0)
        if name not in table:
            choices = ", ".join(table)
            msg = f"{prefix}: error: unknown subcommand {name!r:.60} (choose from {choices}; see --help)"
            return None, [], msg, EXIT_ERROR
        table, prefix = table[name], f"{prefix} {name}"
    return table, args, "", None


def call(main: Callable[..., object], argv: list[str], argv0: str) -> int:
    """`main(argv)`, its exit status whether returned or raised (SystemExit, as argparse does).

    `sys.argv` is `[argv0, *argv]` meanwhile (restored afterwards), as `python -m` sets it with
    the module's file as `argv0`: a parser without its own `prog` names itself the same way, and
    a `main()` without parameters (hear-validator's) reads its arguments there."""
    saved = sys.argv
    sys.argv = [argv0, *argv]
    try:
        code = main(argv) if inspect.signature(main).parameters else main()
    except SystemExit as e:
        code = e.code
    except KeyboardInterrupt:  # a tool that does not catch Ctrl-C itself: as hear_gram.cli does
        print(f"{PROG}: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        sys.argv = saved
    return exit_status(code)


def exit_status(code: object) -> int:
    """The status the interpreter would exit with for `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):  # a bool too: sys.exit(True) exits 1
        return int(code)
    print(code, file=sys.stderr)  # sys.exit("message"): printed, status 1
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cmd, rest, text, status = resolve(argv)
    if cmd is None:
        print(text, file=sys.stdout if status == 0 else sys.stderr)
        return int(status or 0)
    try:
        module = importlib.import_module(cmd.module)
    except ImportError as e:  # e.g. `validate` without the `hear` extras installed
        print(f"{PROG}: error: cannot import {cmd.module}: {e}", file=sys.stderr)
        return EXIT_ERROR
    return call(module.main, rest, getattr(module, "__file__", None) or PROG)


if __name__ == "__main__":
    sys.exit(main())
