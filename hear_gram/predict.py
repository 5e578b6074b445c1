"""`python -m hear_gram.predict TASK_DIRS... [options]`: heareval's predictions runner, quiet and
disk-safe.

Applies `hear_gram.heareval_compat` in this process, then runs heareval's unchanged runner
(`heareval.predictions.runner.runner`) once per task directory, so the options are exactly
heareval's (`--grid default|fast|faster`, `--grid-points N`, `--gpus`, `--in-memory`,
`--deterministic`, `--shuffle`; see `--help`) plus three of ours:

- `--seed S`: the seed of the probes. heareval 2021.1.3 seeds each task's probes with 42
  (`seed_everything(42, workers=False)` at the start of `task_predictions`, with
  `--deterministic true`, its default) and has no option for it; `--seed S` makes that one call
  seed with S instead, nothing else. The default, 42, is heareval's own run, bit for bit.

- `--keep-checkpoints`: keep Lightning's `.ckpt` files. By default each checkpoint made in this run
  is deleted once its split has been tested, and the grid-search checkpoints of this run that
  were never tested (every grid point but the best) when the task is done: heareval leaves one
  75-90 MB file per grid point and split (about 1 GB per k-fold task at the default grid), which
  it never reads again. Only files this run created are deleted, never through a link: a
  `.ckpt` that was there before stays, and a task whose `lightning_logs` is a symbolic link is
  refused before anything runs (Lightning would write, and the cleanup delete, behind it).
- `-v/--verbose`: heareval's and Lightning's output on the terminal, as heareval prints it;
  `-q/--quiet`: errors only.

Without `--verbose` everything heareval, Lightning and its profiler print (`profiler="simple"` is
hard-coded: one table per fit and test) goes to `{task}/prediction-output.log`; the terminal shows
one progress bar per task (grid points trained, splits trained, splits tested), then the score
table (`hear_gram.scores`) and where the logs are.

Task directories are made absolute before heareval sees them: heareval's `CSVLogger` writes under
`Path("logs") / task_dir`, i.e. `./logs/...` in the caller's working directory for a relative path,
and Lightning's checkpoints follow the logger. With an absolute path all of it lands in
`{task}/lightning_logs/version_N/` (metrics.csv, hparams.yaml, and the checkpoints until deleted).

heareval writes, per task directory, `test.predicted-scores.json` (scores per test fold, plus
`aggregated_scores` for k-fold tasks), `{fold}.predictions.pkl`, `prediction.log` and
`prediction-done.json` (a task with this file is skipped). Label pickles in the task directories
are read without running code (`heareval_compat.load_labels`).

The options are parsed by `hear_gram.cli` (heareval's click options, mirrored: the same names,
defaults and boolean spellings), so the tool follows the one CLI convention: expected failures
(a refused label pickle, a missing or malformed file, a task path that is not a directory, an
environment heareval cannot run on, a bad option) end with one line
`python -m hear_gram.predict: error: ...` and exit code 2; Ctrl-C with exit code 130; this
tool's log goes to `{first task}/logs/hear_gram-predict.log`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import random
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hear_gram import cli, heareval_compat
from hear_gram.safeio import UnsafePathError

PROG = "python -m hear_gram.predict"
OUTPUT_LOG = "prediction-output.log"
LIGHTNING_LOGS = "lightning_logs"
log = logging.getLogger("hear_gram.predict")


# ------------------------------------------------------------------ output


@contextlib.contextmanager
def output_to(path: Path | None) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so C libraries, warnings
    and handlers bound to `sys.stderr` too) to `path`, appended; a no-op for None."""
    if path is None:
        yield
        return
    from hear_gram.safeio import open_append

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open_append(path) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def terminal() -> Any:
    """A text stream on the current stderr that stays there while `output_to` redirects fd 2."""
    return os.fdopen(os.dup(2), "w", buffering=1)


# ------------------------------------------------------------------ progress and checkpoints


class _Hooks:
    """What the wrapped heareval steps report to: the current task's progress bar, whether
    tested checkpoints are deleted, and the task's checkpoints from before this run (kept)."""

    bar: Any = None
    keep_checkpoints = False
    task: Path | None = None
    before: frozenset[Path] = frozenset()


def checkpoints(task: Path) -> set[Path]:
    """The Lightning checkpoints `task/lightning_logs/version_*/checkpoints/*.ckpt` that are
    regular files reached without following any link (a planted link is never listed, so
    never deleted through)."""
    found: set[Path] = set()
    logs = task / LIGHTNING_LOGS
    if logs.is_symlink() or not logs.is_dir():
        return found
    for version in logs.iterdir():
        folder = version / "checkpoints"
        if not version.name.startswith("version_") or version.is_symlink() or folder.is_symlink():
            continue
        if folder.is_dir():
            found |= {f for f in folder.iterdir()
                      if f.suffix == ".ckpt" and not f.is_symlink() and f.is_file()}  # fmt: skip
    return found


def made_in_this_run(path: Path) -> bool:
    """Whether `path` is a checkpoint of the current task that this run created."""
    task = _Hooks.task
    return task is not None and path in checkpoints(task) - _Hooks.before


def _step(fn, delete_checkpoint: bool):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        if _Hooks.bar is not None:
            _Hooks.bar.update(1)
        if delete_checkpoint and not _Hooks.keep_checkpoints:
            # The grid point of this split has been tested: its checkpoint is never read again.
            grid_point = kwargs.get("grid_point", args[1] if len(args) > 1 else None)
            path = Path(getattr(grid_point, "model_path", "") or "")
            if path.suffix == ".ckpt" and made_in_this_run(path):
                path.unlink()
        return result

    wrapper._hear_gram_step = True  # type: ignore[attr-defined]
    return wrapper


def patch_steps() -> None:
    """Count each training and test run of heareval's `task_predictions`, and delete a split's
    checkpoint once tested. Idempotent; call after `heareval_compat.apply()`."""
    from heareval.predictions import task_predictions as tp

    if not getattr(tp.task_predictions_train, "_hear_gram_step", False):
        tp.task_predictions_train = _step(tp.task_predictions_train, delete_checkpoint=False)
    if not getattr(tp.task_predictions_test, "_hear_gram_step", False):
        tp.task_predictions_test = _step(tp.task_predictions_test, delete_checkpoint=True)


HEAREVAL_SEED = 42  # `task_predictions`: seed_everything(42, workers=False)


def seed_probes(seed: int) -> None:
    """heareval's one seeding call (`seed_everything(42, workers=False)` in
    `heareval.predictions.task_predictions.task_predictions`) seeds with `seed` instead. Set on
    every run, also to 42: a warm suite worker runs many, each with its own seed."""
    from heareval.predictions import task_predictions as tp
    from pytorch_lightning import seed_everything

    def seeded(_heareval_seed: int, workers: bool = False) -> int:
        return seed_everything(seed, workers=workers)

    tp.seed_everything = seeded


def n_steps(task: Path, grid: str, grid_points: int) -> int:
    """Training and test runs heareval makes on `task`: the grid points tried on the first
    split, one training per other split, one test per split (`task_predictions`)."""
    import copy

    from heareval.predictions import task_predictions as tp
    from sklearn.model_selection import ParameterGrid

    metadata = heareval_compat.check_metadata(
        heareval_compat.read_task_json(task / "task_metadata.json", "task metadata"),
        f"{task}/task_metadata.json",
    )
    grids = {"default": tp.PARAM_GRID, "fast": tp.FAST_PARAM_GRID, "faster": tp.FASTER_PARAM_GRID}
    final = copy.copy(grids.get(grid, tp.PARAM_GRID))
    final.update(tp.TASK_SPECIFIC_PARAM_GRID.get(metadata.get("task_name"), {}))
    final.update(metadata.get("evaluation_params", {}).get("task_specific_param_grid", {}))
    splits = len(tp.get_splits_from_metadata(metadata))
    return min(grid_points, len(ParameterGrid(final))) + 2 * splits - 1


def remove_checkpoints(task: Path, before: frozenset[Path] = frozenset()) -> int:
    """Delete the checkpoints of `task` that are not in `before` (those this run made), never
    through a link, and their `checkpoints` folders once empty; returns bytes freed."""
    freed = 0
    for ckpt in sorted(checkpoints(task) - before):
        freed += ckpt.stat().st_size
        ckpt.unlink()
    logs = task / LIGHTNING_LOGS
    if logs.is_dir() and not logs.is_symlink():
        for version in logs.glob("version_*"):
            folder = version / "checkpoints"
            if not version.is_symlink() and not folder.is_symlink():
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty
    return freed


def refuse_linked_logs(tasks: Sequence[Path]) -> None:
    """UnsafePathError when a task's `lightning_logs` is a symbolic link: Lightning would write
    its logs and checkpoints behind it, and a cleanup could delete there."""
    for task in tasks:
        logs = task / LIGHTNING_LOGS
        if logs.is_symlink():
            raise UnsafePathError(f"{logs} is a symbolic link; refusing to run heareval there")


# ------------------------------------------------------------------ the command


def predict(task_dirs: Sequence[str], keep_checkpoints: bool, verbose: bool, shuffle: bool,
            **heareval_options: Any) -> list[Path]:  # fmt: skip
    """heareval's runner on each task directory in turn, quiet unless `verbose`; returns the
    task directories (absolute)."""
    from heareval.predictions.runner import runner
    from tqdm import tqdm

    tasks = [Path(t).resolve() for t in task_dirs]
    refuse_linked_logs(tasks)
    if shuffle:
        random.shuffle(tasks)
    _Hooks.keep_checkpoints = keep_checkpoints
    out = terminal()
    try:
        for task in tasks:
            if not task.is_dir():
                raise ValueError(f"{task} should be a directory")
            if (task / "prediction-done.json").exists():
                print(f"{task.name}: already predicted (prediction-done.json), skipped", file=out)
                continue
            total = n_steps(task, heareval_options["grid"], heareval_options["grid_points"])
            log_path = None if verbose else task / OUTPUT_LOG
            bar = tqdm(total=total, desc=task.name, unit="fit", file=out, disable=verbose)
            _Hooks.bar, _Hooks.task = bar, task
            _Hooks.before = frozenset(checkpoints(task))
            try:
                with output_to(log_path):
                    # heareval's runner, unchanged, on this one task (it loops over its
                    # arguments the same way).
                    runner.callback(task_dirs=[str(task)], shuffle=False, **heareval_options)
            except ValueError as e:
                where = f" (full log: {log_path})" if log_path else ""
                raise ValueError(f"{task.name}: {e}{where}") from e
            finally:
                _Hooks.bar, _Hooks.task = None, None
                bar.close()
                if not keep_checkpoints:
                    remove_checkpoints(task, _Hooks.before)
    finally:
        out.flush()
    return tasks


def show_scores(tasks: Sequence[Path], verbose: bool) -> None:
    from hear_gram.scores import SCORES_FILE, collect_scores, format_table

    rows = [row for task in tasks for row in collect_scores(task)]
    if rows:
        print(format_table(rows))
    missing = [t.name for t in tasks if not (t / SCORES_FILE).is_file()]
    if missing:
        print(f"no scores for {', '.join(missing)}")
    if not verbose and tasks:
        parents = {t.parent for t in tasks}
        where = tasks[0] / OUTPUT_LOG if len(tasks) == 1 else f"{{task}}/{OUTPUT_LOG}"
        if len(tasks) > 1 and len(parents) == 1:
            where = f"{parents.pop()}/<task>/{OUTPUT_LOG}"
        print(f"heareval's full output: {where}")


def click_bool(text: str) -> bool:
    """argparse `type=` for heareval's boolean options, spelled as click.BOOL accepts them."""
    value = text.strip().lower()
    if value in ("1", "true", "t", "yes", "y", "on"):
        return True
    if value in ("0", "false", "f", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r} (true or false)")


def gpus_json(text: str) -> str:
    """argparse `type=` for `--gpus`: JSON (heareval `json.loads` it), kept as the string."""
    try:
        cli.loads_json(text, "--gpus")
    except cli.CLIError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def lightning_seed(text: str) -> int:
    """argparse `type=` for `--seed`: Lightning's `seed_everything` takes [0, 2**32) only (it
    would draw a random seed for any other value, with a warning)."""
    value = cli.seed_int(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"a probe seed is below 2**32, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """heareval's runner options (`heareval.predictions.runner.runner`: the same names, defaults
    and boolean spellings) plus `--keep-checkpoints`."""
    p = cli.parser(PROG, __doc__)
    p.add_argument("task_dirs", nargs="+", metavar="TASK_DIRS", help="embeddings task folders")
    p.add_argument("--grid-points", type=cli.positive_int, default=8,
                   help="grid points of the randomized grid search (default: 8)")  # fmt: skip
    p.add_argument("--gpus", type=gpus_json, default=None,
                   help='GPUs as JSON, e.g. "[0]" (default: "[0]" when CUDA is available)')  # fmt: skip
    p.add_argument("--in-memory", type=click_bool, default=True, metavar="BOOL")
    p.add_argument("--deterministic", type=click_bool, default=True, metavar="BOOL")
    p.add_argument("--grid", choices=("default", "fast", "faster"), default="default")
    p.add_argument("--shuffle", type=click_bool, default=False, metavar="BOOL")
    p.add_argument("--seed", type=lightning_seed, default=HEAREVAL_SEED,
                   help="the probes' seed (default 42: heareval's own)")  # fmt: skip
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep Lightning's .ckpt files (deleted once scored by default)")  # fmt: skip
    return p


def keep_lightning_output() -> None:
    """Lightning's loggers print INFO (the profiler's report) through their own handler when the
    root logger has none at import (pytorch_lightning/__init__.py); `hear_gram.cli` has set root
    handlers by then, whose console shows warnings only. Give them that handler back, so their
    output goes where heareval's goes (`{task}/prediction-output.log`, or the terminal)."""
    for name in ("pytorch_lightning", "lightning_fabric"):
        logger = logging.getLogger(name)
        if not any(getattr(h, "_hear_gram_predict", False) for h in logger.handlers):
            handler = logging.StreamHandler()  # sys.stderr: fd 2, redirected by `output_to`
            handler._hear_gram_predict = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def run(args: argparse.Namespace) -> None:
    # lightning_fabric's import-time notice about setuptools' pkg_resources: not ours to act on.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    keep_lightning_output()
    try:
        heareval_compat.apply()
    except heareval_compat.CompatError as e:
        raise cli.CLIError(str(e)) from None
    patch_steps()
    seed_probes(args.seed)
    gpus = args.gpus
    if gpus is None:
        import torch

        gpus = "[0]" if torch.cuda.is_available() else None  # heareval's default
    tasks = predict(args.task_dirs, args.keep_checkpoints, args.verbose, args.shuffle,
                    grid_points=args.grid_points, gpus=gpus, in_memory=args.in_memory,
                    deterministic=args.deterministic, grid=args.grid)  # fmt: skip
    show_scores(tasks, args.verbose)


def log_dir(args: argparse.Namespace) -> Path | None:
    """This tool's log goes under the first task folder (none when it is not a folder)."""
    first = Path(args.task_dirs[0])
    return first if first.is_dir() and not first.is_symlink() else None


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(PROG, build_parser, run, argv, log_dir=log_dir)


if __name__ == "__main__":
    sys.exit(main())
