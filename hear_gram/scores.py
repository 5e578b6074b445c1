"""Read the test scores that heareval's predictions runner wrote, as rows and as a text table.

heareval 2021.1.3 (`task_predictions`) writes one `test.predicted-scores.json` per task
directory, `{embeddings_dir}/{module}/{task}/`, for every split mode:

    {"fold00": {"test_top1_acc": ..., "test_score": ..., "validation_score": ..., "epoch": ...},
     "fold01": {...}, ...,                 # k-fold: one entry per test fold
     "aggregated_scores": {...},           # k-fold only: "{key}_mean" and "{key}_std"
     "hparams": {...}, "postprocessing": ..., "score_mode": "max", "embedding_path": "..."}

with a single `"test"` entry instead of the folds for `trainvaltest` tasks. Each metric named in
the task's `evaluation` list appears as `test_{metric}` in every fold entry.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

from hear_gram import cli

SCORES_FILE = "test.predicted-scores.json"
# heareval.score.available_scores: the metrics built with maximize=False.
LOWER_IS_BETTER = frozenset({"segment_1s_er"})


def _fold_entries(scores: dict) -> dict[str, dict]:
    """The per-test-fold entries: dicts carrying heareval's primary `test_score`."""
    return {k: v for k, v in scores.items() if isinstance(v, dict) and "test_score" in v}


class ScoresError(ValueError):
    """A scores or metadata file that is not what heareval writes."""


MAX_SCORES_FILE = 16 << 20  # bytes; heareval's files are a few kB


def _read_json(path: Path) -> dict:
    if path.stat().st_size > MAX_SCORES_FILE:
        raise ScoresError(f"{path} is over {MAX_SCORES_FILE} bytes; not heareval's scores")
    try:
        # NaN is accepted here (Python's json writes it for a NaN score); the values used are
        # checked one by one in `_number`.
        data = json.loads(path.read_bytes())
    except RecursionError:
        raise ScoresError(f"{path} nests too deep to be heareval's JSON") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ScoresError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ScoresError(f"{path} holds a {type(data).__name__}, not heareval's JSON object")
    return data


def _number(value: object, path: Path, what: str) -> float:
    """A score: a finite int or float (not a bool, a string, a NaN or an infinity: heareval
    writes floats; anything else would become a plausible table cell)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value):  # type: ignore[arg-type]
        raise ScoresError(f"{path}: {what} is {value!r:.40}, not a finite number")
    return float(value)  # type: ignore[arg-type]


def _metadata(path: Path) -> tuple[str | None, list[str]]:
    """(task_name, evaluation metrics) of a task_metadata.json, type-checked."""
    if not path.exists():
        return None, ["score"]
    metadata = _read_json(path)
    name = metadata.get("task_name")
    if name is not None and not isinstance(name, str):
        raise ScoresError(f"{path}: task_name is {name!r:.40}, not a string")
    metrics = metadata.get("evaluation") or ["score"]
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise ScoresError(f"{path}: evaluation is {metrics!r:.60}, not a list of metric names")
    return name, metrics


def _task_rows(task_dir: Path) -> list[dict]:
    path = task_dir / SCORES_FILE
    scores = _read_json(path)
    name, metrics = _metadata(task_dir / "task_metadata.json")
    folds = _fold_entries(scores)
    if not folds:
        raise ScoresError(f"{path} has no fold entries with a test_score")
    rows = []
    for metric in metrics:
        key = f"test_{metric}"
        missing = [fold for fold, entry in folds.items() if key not in entry]
        if missing:
            raise ScoresError(f"{path}: fold {missing[0]} lacks {key}")
        values = [_number(entry[key], path, f"{fold}.{key}") for fold, entry in folds.items()]
        rows.append(
            {
                "module": task_dir.parent.name,
                "task": name if name is not None else task_dir.name,
                "metric": metric,
                "mean": statistics.fmean(values),
                # Sample standard deviation, as in heareval's aggregate_test_results.
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "n_folds": len(values),
                "better": "lower" if metric in LOWER_IS_BETTER else "higher",
            }
        )
    return rows


def collect_scores(embeddings_root: str | Path) -> list[dict]:
    """One row per (module, task, metric) for every `test.predicted-scores.json` at or below
    `embeddings_root` (an embeddings dir, a module dir or a task dir), sorted by module, task
    and the task's metric order. Keys: module, task, metric, mean, std, n_folds, better."""
    root = Path(embeddings_root)
    task_dirs = sorted(p.parent for p in root.rglob(SCORES_FILE))
    return [row for task_dir in task_dirs for row in _task_rows(task_dir)]


def format_table(rows: list[dict]) -> str:
    """A plain-text table of `collect_scores` rows, one line per row."""
    header = ["module", "task", "metric", "mean", "std", "folds", "better"]
    lines = [
        [
            r["module"],
            r["task"],
            r["metric"],
            f"{r['mean']:.4f}",
            f"{r['std']:.4f}",
            str(r["n_folds"]),
            r["better"],
        ]
        for r in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=False)]
    out = [header, ["-" * w for w in widths], *lines]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in out
    )


PROG = "python -m hear_gram.scores"


def build_parser():
    p = cli.parser(PROG, "Print heareval test scores (test.predicted-scores.json) as a table.")
    p.add_argument("embeddings_root", type=Path,
                   help="an embeddings dir, a module dir or a task dir")  # fmt: skip
    return p


def run(args) -> int:
    if not args.embeddings_root.is_dir():
        raise FileNotFoundError(f"{args.embeddings_root} is not a directory")
    rows = collect_scores(args.embeddings_root)
    if not rows:
        raise ScoresError(f"no {SCORES_FILE} under {args.embeddings_root}")
    print(format_table(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(PROG, build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
