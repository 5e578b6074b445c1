"""`python -m hear_gram.predict TASK_DIRS... [options]`: heareval's predictions runner, quiet and
disk-safe.

Applies `hear_gram.heareval_compat` in this process, then runs heareval's unchanged runner
(`heareval.predictions.runner.runner`) once per task directory, so the options are exactly
heareval's (`--grid default|fast|faster`, `--grid-points N`, `--gpus`, `--in-memory`,
`--deterministic`, `--shuffle`; see `--help`) plus two of ours:

- `--keep-checkpoints`: keep Lightning's `.ckpt` files. By default each checkpoint is deleted once
  its split has been tested, and the grid-search checkpoints that were never tested (every grid
  point but the best) when the task is done: heareval leaves one 75-90 MB file per grid point and
  split (about 1 GB per k-fold task at the default grid), which it never reads again.
- `--verbose`: heareval's and Lightning's output on the terminal, as heareval prints it.

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

Expected failures (a refused label pickle, a missing file, heareval's own ValueErrors such as a
task path that is not a directory, an environment heareval cannot run on) end with one line,
`python -m hear_gram.predict: error: ...`, and exit code 2; usage errors are click's (also 2).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hear_gram import heareval_compat

PROG = "python -m hear_gram.predict"
OUTPUT_LOG = "prediction-output.log"
log = logging.getLogger("hear_gram.predict")


def fail(message: object) -> None:
    """One line on stderr and exit 2 (the CLI convention of every hear_gram tool)."""
    text = " ".join(str(message).split())
    print(f"{PROG}: error: {text}", file=sys.stderr)
    sys.exit(2)


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
    """What the wrapped heareval steps report to: the current task's progress bar and whether
    tested checkpoints are deleted."""

    bar: Any = None
    keep_checkpoints = False


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
            if path.suffix == ".ckpt" and path.is_file():
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


def n_steps(task: Path, grid: str, grid_points: int) -> int:
    """Training and test runs heareval makes on `task`: the grid points tried on the first
    split, one training per other split, one test per split (`task_predictions`)."""
    import copy

    from heareval.predictions import task_predictions as tp
    from sklearn.model_selection import ParameterGrid

    metadata = json.loads((task / "task_metadata.json").read_text())
    grids = {"default": tp.PARAM_GRID, "fast": tp.FAST_PARAM_GRID, "faster": tp.FASTER_PARAM_GRID}
    final = copy.copy(grids.get(grid, tp.PARAM_GRID))
    final.update(tp.TASK_SPECIFIC_PARAM_GRID.get(metadata.get("task_name"), {}))
    final.update(metadata.get("evaluation_params", {}).get("task_specific_param_grid", {}))
    splits = len(tp.get_splits_from_metadata(metadata))
    return min(grid_points, len(ParameterGrid(final))) + 2 * splits - 1


def remove_checkpoints(task: Path) -> int:
    """Delete every Lightning checkpoint under `task/lightning_logs`; returns bytes freed."""
    freed = 0
    for ckpt in sorted((task / "lightning_logs").glob("version_*/checkpoints/*.ckpt")):
        if ckpt.is_file() and not ckpt.is_symlink():
            freed += ckpt.stat().st_size
            ckpt.unlink()
    for folder in (task / "lightning_logs").glob("version_*/checkpoints"):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty
    return freed


# ------------------------------------------------------------------ the command


def predict(task_dirs: Sequence[str], keep_checkpoints: bool, verbose: bool, shuffle: bool,
            **heareval_options: Any) -> list[Path]:  # fmt: skip
    """heareval's runner on each task directory in turn, quiet unless `verbose`; returns the
    task directories (absolute)."""
    from heareval.predictions.runner import runner
    from tqdm import tqdm

    tasks = [Path(t).resolve() for t in task_dirs]
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
            _Hooks.bar = bar
            try:
                with output_to(log_path):
                    # heareval's runner, unchanged, on this one task (it loops over its
                    # arguments the same way).
                    runner.callback(task_dirs=[str(task)], shuffle=False, **heareval_options)
            except ValueError as e:
                where = f" (full log: {log_path})" if log_path else ""
                raise ValueError(f"{task.name}: {e}{where}") from e
            finally:
                _Hooks.bar = None
                bar.close()
                if not keep_checkpoints:
                    remove_checkpoints(task)
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


def build_command():
    """heareval's click command's options plus ours, running `predict`."""
    import click
    from heareval.predictions.runner import runner

    def callback(task_dirs, keep_checkpoints, verbose, **options):
        tasks = predict(task_dirs, keep_checkpoints, verbose, **options)
        show_scores(tasks, verbose)

    ours = [
        click.Option(["--keep-checkpoints"], is_flag=True,
                     help="Keep Lightning's .ckpt files (deleted once scored by default)."),
        click.Option(["--verbose"], is_flag=True,
                     help="Show heareval's and Lightning's output instead of logging it to "
                     f"{{task}}/{OUTPUT_LOG}."),
    ]  # fmt: skip
    return click.Command(
        PROG, params=[*runner.params, *ours], callback=callback, help=__doc__.split("\n\n")[0]
    )


def main(argv: Sequence[str] | None = None) -> None:
    # Only our logger: heareval and Lightning attach their own handlers, a root handler would
    # print their messages twice.
    log.setLevel(logging.INFO)
    log.addHandler(logging.StreamHandler())
    # lightning_fabric's import-time notice about setuptools' pkg_resources: not ours to act on.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    try:
        heareval_compat.apply()
        patch_steps()
        command = build_command()
        command.main(args=list(sys.argv[1:] if argv is None else argv), prog_name=PROG)
    except (ValueError, OSError, heareval_compat.CompatError) as e:
        fail(e)


if __name__ == "__main__":
    main()
