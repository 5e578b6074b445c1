"""`nat-binaural` and `nat-ambisonic`: HEAR's tasks re-rendered as spatial scenes by
`naturalistic_hear` (Nat-HEAR, arXiv 2506.00934 sec. 4), binaural or first-order Ambisonic.

Each unit's task is rendered first (`python -m naturalistic_hear --task T --format F
--sample-rate R`, a build keyed by the source task's content, the seed, the scene count and the
rate; `hear_gram.suite.build`), or taken ready-made from `--nat-binaural-dir` /
`--nat-ambisonic-dir`. Its tasks are `--nat-task` (default: those of `--task`).

Only the sample rate the unit's model reads is rendered (`build.pick_rate`: the model's own when
the source has it, else the highest, which the unit then resamples): each rendered file is a pure
function of its clip (`naturalistic_hear.generate`), so a rate rendered alone is byte-identical to
the same rate rendered beside the others. The chance and majority rows need no audio: the
generator copies the source's labels, splits and vocabulary byte for byte, so they are read from
the source task and nothing is rendered for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hear_gram.cache import task_digest
from hear_gram.safeio import child
from hear_gram.suite import build
from hear_gram.suite.condition import SEEDS, Option, Unit, register
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
        self.options = (NAT_TASK, self.given, SEEDS)

    def task_names(self, settings: Settings) -> list[str]:
        return hear_tasks(settings, settings.names(NAT_TASK.dest))

    def task_key(self, unit: Unit, settings: Settings) -> str:
        given = settings.folder(self.given.dest)
        if given is not None:
            return task_digest(child(given, unit.task, "task"))
        return build.build_key(self.name, unit.task, settings, GENERATOR)

    def builds(self, unit: Unit, resolved: Resolved, settings: Settings) -> list[build.Build]:
        if settings.folder(self.given.dest) is not None or resolved.module in self.baselines:
            return []
        rate = build.rate_to_build(resolved, settings, unit.task)
        if rate is None:
            return []
        # the build's key has the rate; the unit's task key (the rendering's settings) has not
        params = {"seed": settings.seed, "n_scenes": settings.n_scenes, "sample_rate": rate}
        args = ["--format", self.formats[0], "--jobs", str(settings.workers),
                "--sample-rate", str(rate)]  # fmt: skip
        return [build.make(self.name, unit.task, settings, GENERATOR, params, args,
                           f"{self.name} {unit.task} {rate} Hz", tags=(str(rate),))]  # fmt: skip

    def tasks_root(self, unit: Unit, resolved: Resolved, settings: Settings, log_file: Path) -> Path:  # fmt: skip
        given = settings.folder(self.given.dest)
        if given is not None:
            return given
        if resolved.module in self.baselines:  # labels only: the source's, byte for byte
            return settings.tasks_dir
        return build.run_first(self.builds(unit, resolved, settings), unit.task, settings,
                               log_file)  # fmt: skip


NAT_BINAURAL = register(Naturalistic("binaural"))
NAT_AMBISONIC = register(Naturalistic("ambisonic"))
