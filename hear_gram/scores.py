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
import statistics
from pathlib import Path

SCORES_FILE = "test.predicted-scores.json"
# heareval.score.available_scores: the metrics built with maximize=False.
LOWER_IS_BETTER = frozenset({"segment_1s_er"})


def _fold_entries(scores: dict) -> dict[str, dict]:
    """The per-test-fold entries: dicts carrying heareval's primary `test_score`."""
    return {k: v for k, v in scores.items() if isinstance(v, dict) and "test_score" in v}


class ScoresError(ValueError):
    """A scores or metadata file that is not what heareval writes."""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise ScoresError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ScoresError(f"{path} holds a {type(data).__name__}, not heareval's JSON object")
    return data


def _task_rows(task_dir: Path) -> list[dict]:
    scores = _read_json(task_dir / SCORES_FILE)
    metadata_path = task_dir / "task_metadata.json"
    metadata = _read_json(metadata_path) if metadata_path.exists() else {}
    metrics = metadata.get("evaluation") or ["score"]
    folds = _fold_entries(scores)
    if not folds:
        raise ScoresError(f"{task_dir / SCORES_FILE} has no fold entries with a test_score")
    rows = []
    for metric in metrics:
        try:
            values = [float(fold[f"test_{metric}"]) for fold in folds.values()]
        except (KeyError, TypeError, ValueError) as e:
            raise ScoresError(
                f"{task_dir / SCORES_FILE}: a fold lacks a numeric test_{metric} ({e!r})"
            ) from e
        rows.append(
            {
                "module": task_dir.parent.name,
                "task": metadata.get("task_name", task_dir.name),
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


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    prog = "python -m hear_gram.scores"
    parser = argparse.ArgumentParser(
        prog=prog, description="Print heareval test scores as a table."
    )
    parser.add_argument("embeddings_root", type=Path)
    args = parser.parse_args(argv)
    try:
        if not args.embeddings_root.is_dir():
            raise FileNotFoundError(f"{args.embeddings_root} is not a directory")
        rows = collect_scores(args.embeddings_root)
        if not rows:
            raise ScoresError(f"no {SCORES_FILE} under {args.embeddings_root}")
    except (ValueError, OSError) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    print(format_table(rows))


if __name__ == "__main__":
    main()
