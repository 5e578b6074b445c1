"""`python -m hear_gram.embed MODULE --model W --tasks-dir T --embeddings-dir BASE`: heareval's
embeddings runner, unchanged, in a folder per weights so embeddings are never stale.

heareval's `heareval.embeddings.runner` writes `{embeddings-dir}/{module}{options}/{task}/` and
skips every task whose folder holds a `.done.embeddings` marker, whatever weights or task content
made it. Pointed at the same `--embeddings-dir` with a retrained checkpoint (or a regenerated
task), it silently keeps the old embeddings and `hear_gram.predict` scores them.

This wrapper passes the same options to that runner, with `--embeddings-dir` set to
`BASE/w-<first 12 hex of the weights' sha256>` (`BASE/no-weights` for a module without a weights
file; the layout `hear_gram.demo` uses too). It keeps `BASE/w-.../hear-gram-embed.json`: the full
sha256, and per heareval folder the module, model options and a sha256 of every file of each
embedded task. It refuses, before any work:
- a keyed folder recorded for other weights (a 12-hex prefix collision or a copied folder);
- a heareval folder recorded for another module or options (heareval's slugged names collide,
  e.g. `{"a": "x y"}` and `{"a": "x-y"}`);
- a task already embedded (marked done) whose files changed since, or whose embeddings have no
  record (made by other means): delete that task's folder to recompute it.

On success it prints the folder to hand to `hear_gram.predict` (`.../<module><options>`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hear_gram.checkpoints import sha256
from hear_gram.safeio import child, write_bytes_atomic

PROG = "python -m hear_gram.embed"
RECORD = "hear-gram-embed.json"
DONE = ".done.embeddings"  # heareval.embeddings.runner's marker of a finished task


class StaleEmbeddingsError(ValueError):
    """Embeddings on disk that belong to other weights, options or task content."""


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


def task_fingerprint(task: Path) -> str:
    """sha256 over every file of a task (relative path and content, sorted): the content its
    embeddings depend on. Symbolic links are hashed by target name, never followed."""
    h = hashlib.sha256()
    for p in sorted(task.rglob("*")):
        rel = p.relative_to(task).as_posix()
        if p.is_symlink():
            h.update(f"link {rel} -> {os.readlink(p)}\n".encode())
        elif p.is_file():
            h.update(f"file {rel}\n".encode())
            h.update(sha256(p).encode())
    return h.hexdigest()


def read_record(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StaleEmbeddingsError(f"{path} is unreadable ({e}); delete its folder") from e
    if not isinstance(record, dict) or not isinstance(record.get("folders", {}), dict):
        raise StaleEmbeddingsError(f"{path} is not a hear_gram.embed record; delete its folder")
    return record


def check_and_plan(
    out: Path, digest: str | None, folder: str, module: str, options: dict, tasks: list[Path]
) -> dict:
    """Refuse mixing (module docstring); return the record updated with this run's entry and
    the fingerprints of `tasks` (what they will be once embedded)."""
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
    for task in tasks:
        fingerprint = task_fingerprint(task)
        task_out = out / folder / task.name
        if (task_out / DONE).exists() and known.get(task.name) != fingerprint:
            why = "changed since" if task.name in known else "has no record of what made"
            raise StaleEmbeddingsError(
                f"task {task.name} {why} its embeddings in {task_out}; delete that folder to "
                "recompute them"
            )
        known[task.name] = fingerprint
    folders = {**record.get("folders", {})}
    folders[folder] = {"module": module, "model_options": options, "tasks": known}
    return {"weights_sha256": digest, "folders": folders}


def select_tasks(tasks_dir: Path, task: str) -> list[Path]:
    if not tasks_dir.is_dir():
        raise FileNotFoundError(f"--tasks-dir {tasks_dir} is not a directory")
    if task == "all":
        return sorted(p for p in tasks_dir.iterdir() if p.is_dir())
    path = child(tasks_dir, task, "--task")
    if not path.is_dir():
        raise FileNotFoundError(f"task {task!r} is not a directory under {tasks_dir}")
    return [path]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("module", help="HEAR module, e.g. hear_gram or hear_gram.gram_m")
    p.add_argument("--model", type=Path, default=None, help="weights file")
    p.add_argument("--tasks-dir", type=Path, default=Path("tasks"))
    p.add_argument("--task", default="all", help="one task folder name (default: all)")
    p.add_argument("--embeddings-dir", type=Path, default=Path("embeddings"), help="base folder")
    p.add_argument("--model-options", default="{}", help="JSON dict passed to load_model")
    args = p.parse_args(argv)
    try:
        args.options = json.loads(args.model_options)
    except ValueError as e:
        p.error(f"--model-options is not JSON: {e}")
    if not isinstance(args.options, dict):
        p.error("--model-options must be a JSON dict")
    if args.model is not None and not args.model.is_file():
        p.error(f"--model {args.model} is not a file")
    return args


def run(args: argparse.Namespace) -> Path:
    """Embed with heareval's runner into the keyed folder; return `.../<module><options>`."""
    tasks = select_tasks(args.tasks_dir, args.task)
    key, digest = weights_key(args.model)
    out = args.embeddings_dir / key
    folder = heareval_folder(args.module, args.options)
    record = check_and_plan(out, digest, folder, args.module, args.options, tasks)
    out.mkdir(parents=True, exist_ok=True)
    from heareval.embeddings.runner import runner

    cmd = [args.module, "--tasks-dir", str(args.tasks_dir), "--task", args.task,
           "--embeddings-dir", str(out), "--model-options", args.model_options]  # fmt: skip
    if args.model is not None:
        cmd += ["--model", str(args.model)]
    runner.main(args=cmd, prog_name="heareval.embeddings.runner", standalone_mode=False)
    # Record only the tasks heareval finished (a failed task has no marker, and is redone).
    done = record["folders"][folder]["tasks"]
    done = {name: fp for name, fp in done.items() if (out / folder / name / DONE).exists()}
    record["folders"][folder]["tasks"] = done
    write_bytes_atomic(out / RECORD, json.dumps(record, indent=2).encode())
    return out / folder


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        folder = run(args)
    except (ValueError, OSError) as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    print(f"embeddings: {folder}")


if __name__ == "__main__":
    main()
