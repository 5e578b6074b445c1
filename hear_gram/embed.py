"""`python -m hear_gram.embed MODULE --weights W --tasks-dir T --out BASE`: heareval's embeddings
runner, unchanged, in a folder per weights, recomputing what went stale.

heareval's `heareval.embeddings.runner` writes `{embeddings-dir}/{module}{options}/{task}/` and
skips every task whose folder holds a `.done.embeddings` marker, whatever weights, code or task
content made it. Pointed at the same folder with a retrained checkpoint, an edited module or a
regenerated task, it silently keeps the old embeddings and `hear_gram.predict` scores them.

This wrapper passes the same options to that runner, with its `--embeddings-dir` set to
`BASE/w-<first 12 hex of the weights' sha256>` (`BASE/no-weights` for a module without a weights
file; the layout `hear_gram.demo` uses too). It keeps `BASE/w-.../hear-gram-embed.json`: the full
sha256 and, per heareval folder, the module, model options and, per embedded task, the digest of
its `hear_gram.cache.CacheKey` (module, code fingerprint of the module's package, full weights
sha256, options, content of the task's JSONs and audio). Before any work:
- a task this tool embedded whose key changed since (task content, module code) is recomputed:
  its folder (that task's only, never through a link) is removed and heareval's runner embeds it
  again;
- refused (one line, exit 2): a keyed folder recorded for other weights (a 12-hex prefix
  collision or a copied folder); a heareval folder recorded for another module or options
  (heareval's slugged names collide, e.g. `{"a": "x y"}` and `{"a": "x-y"}`); a task marked done
  that this tool has no record of (made by other means: it destroys nothing it did not make); an
  unreadable record (it could not tell what it made).

MODULE may be given as heareval's positional argument or as `--module`; `--model` is the old name
of `--weights` and `--embeddings-dir` the old name of `--out`. The log goes to
`BASE/logs/hear_gram-embed.log`. On success it prints the folder to hand to `hear_gram.predict`
(`.../<module><options>`).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from hear_gram import cli
from hear_gram.cache import CacheKey, task_digest
from hear_gram.checkpoints import sha256
from hear_gram.heareval_compat import check_task
from hear_gram.safeio import child, write_json

PROG = "python -m hear_gram.embed"
RECORD = "hear-gram-embed.json"
DONE = ".done.embeddings"  # heareval.embeddings.runner's marker of a finished task
log = logging.getLogger("hear_gram.embed")


class StaleEmbeddingsError(ValueError):
    """Embeddings on disk that belong to other weights, options or to no record of ours."""


def weights_key(weights: Path | None) -> tuple[str, str | None]:
    """(folder name, full sha256) for a weights file; ("no-weights", None) without one."""
    if weights is None:
        return "no-weights", None
    digest = sha256(weights)
    return f"w-{digest[:12]}", digest


def heareval_folder(module: str, options: dict) -> str:
    """The folder name heareval's runner gives these embeddings (module name + slugged options,
    as in `heareval.embeddings.runner.runner`)."""
    from slugify import slugify

    if not options:
        return module
    return module + "-" + "-".join(f"{slugify(k)}={slugify(str(v))}" for k, v in options.items())


def task_key(module: str, digest: str | None, options: dict, task: Path) -> str:
    """The digest of what `module`'s embeddings of `task` depend on (`hear_gram.cache`)."""
    return CacheKey(module, digest, options, task_digest(task)).digest()


def read_record(path: Path) -> dict:
    """The record of `path`, {} when there is none; StaleEmbeddingsError when it is unreadable
    or not ours (then nothing in its folder is known to be ours)."""
    if path.is_symlink():
        raise StaleEmbeddingsError(f"{path} is a symbolic link; refusing it")
    if not path.exists():
        return {}
    try:
        record = cli.read_json(path, str(path))
    except (OSError, ValueError) as e:
        raise StaleEmbeddingsError(f"{path} is unreadable ({e}); delete its folder") from e
    folders = record.get("folders", {}) if isinstance(record, dict) else None
    ok = isinstance(folders, dict) and all(
        isinstance(e, dict) and isinstance(e.get("tasks", {}), dict) for e in folders.values()
    )
    if not ok:
        raise StaleEmbeddingsError(f"{path} is not a hear_gram.embed record; delete its folder")
    return record


def remove_task_folder(folder: Path) -> None:
    """Remove one task's embeddings folder, which this tool made; a link there is refused
    (`shutil.rmtree` removes links inside a folder, never what they point to)."""
    if folder.is_symlink():
        raise StaleEmbeddingsError(f"{folder} is a symbolic link; refusing to remove through it")
    if folder.exists():
        log.info("removing stale embeddings %s", folder)
        shutil.rmtree(folder)


def check_and_plan(
    out: Path, digest: str | None, folder: str, module: str, options: dict, tasks: list[Path]
) -> tuple[dict, list[Path]]:
    """Refuse mixing (module docstring); return the record updated with this run's keys of
    `tasks` (what they will be once embedded) and the stale task folders to remove."""
    record = read_record(out / RECORD)
    if record and record.get("weights_sha256") != digest:
        raise StaleEmbeddingsError(
            f"{out} holds embeddings of weights {record.get('weights_sha256')}, not {digest}"
        )
    entry = record.get("folders", {}).get(folder, {})
    if entry and (entry.get("module"), entry.get("model_options")) != (module, options):
        raise StaleEmbeddingsError(
            f"{out / folder} holds embeddings of {entry.get('module')} with options "
            f"{entry.get('model_options')}, not {module} with {options}"
        )
    known = dict(entry.get("tasks", {}))
    stale = []
    for task in tasks:
        key = task_key(module, digest, options, task)
        task_out = out / folder / task.name
        if task_out.is_symlink():
            raise StaleEmbeddingsError(f"{task_out} is a symbolic link; refusing it")
        if (task_out / DONE).exists() and known.get(task.name) != key:
            if task.name not in known:
                raise StaleEmbeddingsError(
                    f"task {task.name} has embeddings in {task_out} that hear_gram.embed has no "
                    "record of making; delete that folder to recompute them"
                )
            stale.append(task_out)
        known[task.name] = key
    folders = {**record.get("folders", {})}
    folders[folder] = {"module": module, "model_options": options, "tasks": known}
    return {"weights_sha256": digest, "folders": folders}, stale


def select_tasks(tasks_dir: Path, task: str) -> list[Path]:
    """The task folders to embed: `task`, or with "all" every folder holding a
    task_metadata.json (a `logs` folder of a generator's, say, is no task)."""
    if not tasks_dir.is_dir():
        raise FileNotFoundError(f"--tasks-dir {tasks_dir} is not a directory")
    if task == "all":
        found = sorted(p.parent for p in tasks_dir.glob("*/task_metadata.json"))
        if not found:
            raise FileNotFoundError(f"--tasks-dir {tasks_dir} holds no task folder")
        return found
    path = child(tasks_dir, task, "--task")
    if not path.is_dir():
        raise FileNotFoundError(f"task {task!r} is not a directory under {tasks_dir}")
    return [path]


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("module_arg", nargs="?", metavar="MODULE",
                   help="HEAR module, e.g. hear_gram or hear_gram.gram_m (or --module)")  # fmt: skip
    cli.add_module(p, required=False)
    cli.add_weights(p)
    cli.add_tasks_dir(p, required=False)
    p.set_defaults(tasks_dir=Path("tasks"))
    p.add_argument("--task", default="all", help="one task folder name (default: all)")
    p.add_argument("--out", "--embeddings-dir", dest="out", type=Path, default=Path("embeddings"),
                   metavar="DIR", help="base folder (--embeddings-dir: the same)")  # fmt: skip
    cli.add_model_options(p)
    return p


def resolve_module(args: argparse.Namespace) -> str:
    given = {m for m in (args.module_arg, args.module) if m}
    if len(given) != 1:
        raise cli.CLIError("give the HEAR module once, as MODULE or --module")
    return given.pop()


def run(args: argparse.Namespace) -> Path:
    """Embed with heareval's runner into the keyed folder; return `.../<module><options>`."""
    module, options = resolve_module(args), args.model_options
    if args.weights is not None and not args.weights.is_file():
        raise FileNotFoundError(f"--weights {args.weights} is not a file")
    tasks = select_tasks(args.tasks_dir, args.task)
    for task in tasks:
        check_task(task)
    key, digest = weights_key(args.weights)
    out = args.out / key
    folder = heareval_folder(module, options)
    record, stale = check_and_plan(out, digest, folder, module, options, tasks)
    for task_out in stale:
        remove_task_folder(task_out)
    out.mkdir(parents=True, exist_ok=True)
    from heareval.embeddings.runner import runner

    try:  # one runner call per task (heareval's "all" would take every folder for a task)
        for task in tasks:
            cmd = [module, "--tasks-dir", str(args.tasks_dir), "--task", task.name,
                   "--embeddings-dir", str(out), "--model-options", json.dumps(options)]  # fmt: skip
            if args.weights is not None:
                cmd += ["--model", str(args.weights)]
            runner.main(args=cmd, prog_name="heareval.embeddings.runner", standalone_mode=False)
    finally:
        # Record the tasks heareval finished, also when a later one fails or Ctrl-C stops the
        # run (a task without its marker is redone; one with it and no record would be refused).
        done = record["folders"][folder]["tasks"]
        done = {name: k for name, k in done.items() if (out / folder / name / DONE).exists()}
        record["folders"][folder]["tasks"] = done
        write_json(out / RECORD, record)
    return out / folder


def body(args: argparse.Namespace) -> None:
    print(f"embeddings: {run(args)}")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(PROG, build_parser, body, argv, log_dir=lambda a: a.out)


if __name__ == "__main__":
    sys.exit(main())
