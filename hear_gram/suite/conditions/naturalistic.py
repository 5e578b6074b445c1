"""`nat-binaural` and `nat-ambisonic`: HEAR's tasks re-rendered as spatial scenes by
`naturalistic_hear` (Nat-HEAR, arXiv 2506.00934 sec. 4), binaural or first-order Ambisonic.

Each unit's task is rendered first (`python -m naturalistic_hear --task T --format F`, a build
keyed by the source task's content, the seed and the scene count; `hear_gram.suite.build`), or
taken ready-made from `--nat-binaural-dir` / `--nat-ambisonic-dir`. Its tasks are `--nat-task`
(default: those of `--task`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hear_gram.cache import task_digest
from hear_gram.safeio import child
from hear_gram.suite import build
from hear_gram.suite.condition import Option, Unit, register
from hear_gram.suite.conditions.hear import HearCondition, hear_tasks

if TYPE_CHECKING:
    from hear_gram.suite.config import Resolved, Settings

GENERATOR = ("naturalistic_hear",)
NAT_TASK = Option("--nat-task", "names", "task of the Nat-HEAR conditions (default: --task's)")


class Naturalistic(HearCondition):
    reference = "dry"

    def __init__(self, fmt: str) -> None:
        self.name = f"nat-{fmt}"
        self.formats = (fmt,)
        self.label = f"Nat-HEAR {fmt}"
        self.given = Option(f"--nat-{fmt}-dir", "dir", f"ready-made Nat-HEAR {fmt} tasks")
        self.options = (NAT_TASK, self.given)

    def task_names(self, settings: Settings) -> list[str]:
        return hear_tasks(settings, settings.names(NAT_TASK.dest))

    def task_key(self, unit: Unit, settings: Settings) -> str:
        given = settings.folder(self.given.dest)
        if given is not None:
            return task_digest(child(given, unit.task, "task"))
        return build.build_key(self.name, unit.task, settings, GENERATOR)

    def builds(self, unit: Unit, resolved: Resolved, settings: Settings) -> list[build.Build]:
        return [] if settings.folder(self.given.dest) is not None else [self._build(unit, settings)]

    def _build(self, unit: Unit, settings: Settings) -> build.Build:
        params = {"seed": settings.seed, "n_scenes": settings.n_scenes}
        args = ["--format", self.formats[0], "--jobs", str(settings.workers)]
        return build.make(self.name, unit.task, settings, GENERATOR, params, args,
                          f"{self.name} {unit.task}")  # fmt: skip

    def tasks_root(self, unit: Unit, settings: Settings, log_file: Path) -> Path:
        given = settings.folder(self.given.dest)
        if given is not None:
            return given
        return build.run_build(self._build(unit, settings), settings, log_file)


NAT_BINAURAL = register(Naturalistic("binaural"))
NAT_AMBISONIC = register(Naturalistic("ambisonic"))
