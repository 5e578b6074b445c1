"""`python -m hear_gram.predict TASK_DIRS... [options]`: heareval's predictions runner, fixed.

Applies `hear_gram.heareval_compat` in this process, then hands the command line unchanged to
heareval's click command `heareval.predictions.runner.runner`, so the options are exactly
heareval's (`--grid default|fast|faster`, `--grid-points N`, `--gpus`, `--in-memory`,
`--deterministic`, `--shuffle`; see `--help`). Label pickles in the task directories are read
without running code (`heareval_compat.load_labels`).

heareval writes, per task directory, `test.predicted-scores.json` (scores per test fold, plus
`aggregated_scores` for k-fold tasks), `{fold}.predictions.pkl`, `prediction.log`,
`prediction-done.json` (a task with this file is skipped) and `lightning_logs/` checkpoints.

Expected failures (a refused label pickle, a missing file, heareval's own ValueErrors such as a
task path that is not a directory, an environment heareval cannot run on) end with one line,
`python -m hear_gram.predict: error: ...`, and exit code 2; usage errors are click's (also 2).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from hear_gram import heareval_compat

PROG = "python -m hear_gram.predict"


def fail(message: object) -> None:
    """One line on stderr and exit 2 (the CLI convention of every hear_gram tool)."""
    text = " ".join(str(message).split())
    print(f"{PROG}: error: {text}", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str] | None = None) -> None:
    # Only our logger: heareval and Lightning attach their own handlers, a root handler would
    # print their messages twice.
    log = logging.getLogger("hear_gram")
    log.setLevel(logging.INFO)
    log.addHandler(logging.StreamHandler())
    try:
        heareval_compat.apply()
        # Imported after the fixes so nothing of heareval runs unpatched.
        from heareval.predictions.runner import runner

        runner.main(args=list(sys.argv[1:] if argv is None else argv), prog_name=PROG)
    except (ValueError, OSError, heareval_compat.CompatError) as e:
        fail(e)


if __name__ == "__main__":
    main()
