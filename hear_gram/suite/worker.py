"""Warm worker processes for a suite run's steps: the tools a unit runs, without a fresh
interpreter for each.

A unit's steps are the project's command-line tools (`hear_gram.embed`, `hear_gram.predict`,
`localization_tasks.evaluate`, `localization_tasks.seld.evaluate`). Run as fresh interpreters, every
step pays its imports again: heareval's embeddings runner imports TensorFlow
(`heareval/embeddings/task_embeddings.py`), its predictions runner PyTorch Lightning: 5-7 s a
step, about 12 s a HEAR unit, more than a small task's embedding and training. A worker is a
long-lived `python -m hear_gram.suite.worker` that imports those once and then runs one step at a
time: each step calls the tool's own `main(argv)`, the function `python -m TOOL` runs, with the
same arguments, its standard output and error (file descriptors 1 and 2, so C libraries and
progress bars too) appended to the unit's log, and the same exit status. heareval itself is
called as before, unmodified.

What could carry over from one step to the next in the same process, and why it does not change
a result: heareval seeds every probe (`seed_everything(42)` at the start of
`task_predictions`); the spatial evaluators seed every probe from `--seed`; the embedding models
run in eval mode; logging handlers are replaced at each tool's start (`hear_gram.cli`). The tests
compare the scores and embeddings of steps run in a worker after other steps with those of fresh
processes, byte for byte. `--fresh-processes` runs every step in a fresh interpreter instead.

Protocol (parent and worker are this module, nothing else speaks it): one JSON line per request
on the worker's stdin, `{"tool": NAME, "argv": [...], "log": PATH}`, with NAME one of `TOOLS`;
one JSON line per reply, `{"rc": N}`, on the pipe that was its stdout when it started. Between
steps its output goes to the worker log (WORK/logs/workers.log). A worker ends at the end of its
stdin, and quietly (exit 130) on Ctrl-C while idle; one interrupted in a step replies 130 (the
tools' Ctrl-C convention) and is then retired by the parent, as is one whose step failed or that
died (the step is then reported failed with the signal, as a fresh process's would be), and one
that has run `MAX_STEPS` steps.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

# The tools a worker runs, each with what it imports when a worker starts (in the background of
# the run's builds), so that the first step does not wait for them: the tool, and the heareval
# runners it imports only when run.
PRELOAD = {
    "hear_gram.embed": ("hear_gram.embed", "heareval.embeddings.runner"),
    "hear_gram.predict": ("hear_gram.predict", "heareval.predictions.runner"),
    "localization_tasks.evaluate": ("localization_tasks.evaluate",),
    "localization_tasks.seld.evaluate": ("localization_tasks.seld.evaluate",),
}
TOOLS = tuple(PRELOAD)
MAX_REQUEST_BYTES = 1 << 20
# A worker is replaced after this many steps: it bounds whatever the tools leave in the process
# (caches, fragmented memory) over a long run of hundreds of units, for one import in 100 steps.
MAX_STEPS = 100


# ------------------------------------------------------------------ the worker process


def run_step(tool: str, argv: Sequence[str], log: str) -> int:
    """`python -m TOOL ARGV` in this process: the tool's `main(argv)` with its output appended
    to `log`; the exit status a fresh interpreter would end with."""
    if tool not in TOOLS:
        raise ValueError(f"not a tool a worker runs: {tool!r:.80}")
    from hear_gram.predict import output_to

    try:
        with output_to(Path(log)):
            try:
                code = importlib.import_module(tool).main(list(argv))
            except SystemExit as e:  # argparse's own errors and --help
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, int | None):
                    print(e.code, file=sys.stderr)
            except KeyboardInterrupt:  # outside the tool's own handler (its imports)
                print(f"python -m {tool}: interrupted", file=sys.stderr)  # as `hear_gram.cli`
                code = 130
            except BaseException:  # noqa: BLE001 - as an interpreter would: traceback, exit 1
                traceback.print_exc()
                code = 1
    finally:
        gc.collect()  # the step's model and arrays, before the next step loads its own
    return int(code or 0)


def _request(line: bytes) -> tuple[str, list[str], str]:
    if len(line) > MAX_REQUEST_BYTES:
        raise ValueError("request too long")
    data = json.loads(line)
    tool, argv, log = data.get("tool"), data.get("argv"), data.get("log")
    if tool not in TOOLS or not isinstance(log, str) or not isinstance(argv, list) \
            or not all(isinstance(a, str) for a in argv):  # fmt: skip
        raise ValueError("malformed request")
    return tool, argv, log


def serve(preload: Sequence[str]) -> int:
    """The worker's loop (module docstring)."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # between steps, anything printed goes to the worker log, never the replies
    try:
        for name in preload:
            try:
                importlib.import_module(name)
            except Exception as e:  # noqa: BLE001 - the step that needs it fails and says why
                print(f"worker: preloading {name} failed: {type(e).__name__}: {e}", file=sys.stderr)
        for line in sys.stdin.buffer:
            try:
                tool, argv, log = _request(line)
            except (ValueError, AttributeError) as e:
                print(f"worker: refused a request: {e}", file=sys.stderr)
                return 2
            code = run_step(tool, argv, log)
            replies.write(json.dumps({"rc": code}) + "\n")
    except KeyboardInterrupt:  # Ctrl-C at the terminal reached an idle worker
        return 130
    except BrokenPipeError:  # the suite is gone
        return 1
    return 0


# ------------------------------------------------------------------ the suite's side


class WorkerDied(RuntimeError):
    """The worker ended before it replied (killed, out of memory, a crash in C code)."""

    def __init__(self, code: int | None) -> None:
        self.code = code
        if code is not None and code < 0:
            what = f"killed by {signal.Signals(-code).name}" if -code in signal.valid_signals() \
                else f"ended by signal {-code}"  # fmt: skip
        else:
            what = f"exited {code}"
        super().__init__(f"the worker process {what} before the step ended")


class Worker:
    """One worker process, spawned with `env`, its own output appended to `log`."""

    def __init__(self, env: dict[str, str], log: Path, preload: Sequence[str]) -> None:
        from hear_gram.safeio import open_append

        with open_append(log) as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hear_gram.suite.worker", *preload],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out, env=env)  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out: IO[bytes] = self.proc.stdout
        self.steps = 0  # requests sent

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, tool: str, argv: Sequence[str], log: Path) -> None:
        line = json.dumps({"tool": tool, "argv": list(argv), "log": str(log)}) + "\n"
        self.steps += 1
        try:
            self._in.write(line.encode())
            self._in.flush()
        except (BrokenPipeError, OSError):
            raise WorkerDied(self.proc.wait()) from None

    def reply(self) -> int:
        """The step's exit status; WorkerDied if the worker ended first."""
        line = self._out.readline(MAX_REQUEST_BYTES)
        if not line:
            raise WorkerDied(self.proc.wait())
        try:
            code = json.loads(line)["rc"]
        except (ValueError, KeyError, TypeError):
            code = None
        if not isinstance(code, int):
            self.close(grace_s=0.0)
            raise WorkerDied(None)
        return code

    def close(self, grace_s: float = 10.0) -> None:
        """End the worker: end of its stdin, then SIGKILL if it is still running `grace_s` later."""
        with contextlib.suppress(OSError):
            self._in.close()
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self._out.close()


class Pool:
    """Idle workers for a run's steps, one per step running at a time (the run's `--jobs`).
    `start(n)` spawns `n` now, so their imports overlap the run's builds."""

    def __init__(self, env: dict[str, str], log: Path, tools: Sequence[str],
                 max_steps: int = MAX_STEPS) -> None:  # fmt: skip
        self.env, self.log, self.max_steps = env, log, max_steps
        self.preload = [m for t in tools for m in PRELOAD[t]]
        self._idle: list[Worker] = []
        self._lock = threading.Lock()
        self._closed = False

    def serves(self, cmd: Sequence[str]) -> bool:
        return len(cmd) >= 3 and cmd[0] == sys.executable and cmd[1] == "-m" and cmd[2] in TOOLS

    def start(self, n: int) -> None:
        with self._lock:
            while len(self._idle) < n:
                self._idle.append(Worker(self.env, self.log, self.preload))

    def take(self) -> Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.close(grace_s=0.0)
        return Worker(self.env, self.log, self.preload)

    def give_back(self, worker: Worker) -> None:
        with self._lock:
            if not self._closed and worker.alive() and worker.steps < self.max_steps:
                self._idle.append(worker)
                return
        worker.close()

    def close(self) -> None:
        """End the idle workers: no step runs in them, so one still importing (a run that ended
        before its first step) is killed after a short grace rather than waited for."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close(grace_s=0.5)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    unknown = [a for a in args if a not in set().union(*PRELOAD.values())]
    if unknown:
        print(f"hear_gram.suite.worker: not a module to preload: {unknown[0]!r:.80}",
              file=sys.stderr)  # fmt: skip
        return 2
    return serve(args)


def pool_for(settings: Any, tools: Sequence[str]) -> Pool:
    """A pool whose workers run with the environment of the suite's steps (`condition.step_env`)
    and log to WORK/logs/workers.log."""
    from hear_gram.safeio import subdir
    from hear_gram.suite.condition import step_env

    return Pool(step_env(), subdir(settings.work, "logs") / "workers.log", tools)


if __name__ == "__main__":
    sys.exit(main())
