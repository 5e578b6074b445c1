"""`dry`: HEAR 2021's tasks as they are (mono), the HEAR column of the paper's table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hear_gram.cache import task_digest
from hear_gram.safeio import child
from hear_gram.suite.condition import Unit, register
from hear_gram.suite.conditions.hear import HearCondition

if TYPE_CHECKING:
    from hear_gram.suite.config import Resolved, Settings


class Dry(HearCondition):
    name = "dry"
    formats = ("mono",)
    label = "HEAR"

    def task_key(self, unit: Unit, settings: Settings) -> str:
        return task_digest(child(settings.tasks_dir, unit.task, "task"))

    def tasks_root(self, unit: Unit, resolved: Resolved, settings: Settings, log_file: Path) -> Path:  # fmt: skip
        return settings.tasks_dir


DRY = register(Dry())
