"""The suite's inputs: the models file (TOML) and the run settings, as frozen dataclasses.

A models file lists HEAR modules of any package, each with its weights and load_model options,
and optional overrides per input format (`mono`, `binaural`, `ambisonic`) and per condition:

    [[model]]
    name = "gram"                           # a plain name: folder and table label
    module = "hear_gram"                    # any importable HEAR module
    weights = "gram-t.safetensors"          # relative to this file; omit for none
    options = { precision = "bf16" }        # load_model keyword options
    conditions = ["dry", "nat-binaural"]    # default: every condition of the run
    formats = ["mono", "binaural"]          # default: all three

    [model.binaural]                        # binaural audio: Nat-HEAR binaural, binaural
    module = "hear_gram.gram_t"             #   localization and T60 tasks

    [model.localization]                    # localization units (after the format's overrides)
    options = { strategy = "cls" }

Overrides apply in the order base < format < condition; `options` tables are merged key by key.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hear_gram.safeio import check_name

Condition = Literal["dry", "nat-binaural", "nat-ambisonic", "localization", "t60"]
Format = Literal["mono", "binaural", "ambisonic"]
CONDITIONS: tuple[str, ...] = ("dry", "nat-binaural", "nat-ambisonic", "localization", "t60")
FORMATS: tuple[str, ...] = ("mono", "binaural", "ambisonic")
# The audio format of the HEAR-style conditions; localization and T60 come in both spatial ones.
CONDITION_FORMAT = {"dry": "mono", "nat-binaural": "binaural", "nat-ambisonic": "ambisonic"}
SPATIAL_FORMATS = ("binaural", "ambisonic")
MODEL_KEYS = {"name", "module", "weights", "options", "conditions", "formats"}
OVERRIDE_KEYS = {"module", "weights", "options"}
MAX_MODELS_FILE = 1 << 20  # bytes; a models file is a few lines


class SuiteConfigError(ValueError):
    """A models file or setting the suite cannot run."""


@dataclass(frozen=True)
class Resolved:
    """What a unit runs: a HEAR module, its weights file (or None) and load_model options."""

    module: str
    weights: Path | None
    options: dict[str, Any] = field(hash=False)

    def options_json(self) -> str:
        return json.dumps(self.options, sort_keys=True)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    module: str
    weights: Path | None
    options: dict[str, Any] = field(hash=False)
    conditions: tuple[str, ...] = CONDITIONS
    formats: tuple[str, ...] = FORMATS
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)

    def resolve(self, condition: str, fmt: str) -> Resolved:
        module, weights, options = self.module, self.weights, dict(self.options)
        for key in (fmt, condition):
            over = self.overrides.get(key, {})
            module = over.get("module", module)
            weights = over["weights"] if "weights" in over else weights
            options.update(over.get("options", {}))
        return Resolved(module, weights, options)

    def applies(self, condition: str, fmt: str) -> bool:
        return condition in self.conditions and fmt in self.formats


@dataclass(frozen=True)
class Settings:
    """One suite run: where tasks come from, what is built, how probes are trained."""

    work: Path
    tasks_dir: Path
    conditions: tuple[str, ...] = CONDITIONS
    tasks: tuple[str, ...] = ()  # HEAR task folder names; empty = every task under tasks_dir
    nat_tasks: tuple[str, ...] = ()  # Nat-HEAR conditions' tasks; empty = the same as `tasks`
    nat_dirs: dict[str, Path | None] = field(default_factory=dict, hash=False)
    localization_dir: Path | None = None
    localization_sources: tuple[str, ...] = ()  # empty = the paper's two, when present
    grid: str = "default"
    grid_points: int = 8
    localization_grid: str = "default"
    n_scenes: int = 200
    seed: int = 0
    workers: int = 1  # processes of each Nat-HEAR render

    def __post_init__(self) -> None:
        unknown = sorted(set(self.conditions) - set(CONDITIONS))
        if unknown:
            raise SuiteConfigError(f"unknown conditions {unknown}; choose from {list(CONDITIONS)}")
        for name in self.tasks + self.nat_tasks + self.localization_sources:
            check_name(name, "task")
        if not 1 <= self.grid_points <= 10_000:
            raise SuiteConfigError(f"grid points must be in 1..10000, got {self.grid_points}")
        if not 1 <= self.n_scenes <= 100_000:
            raise SuiteConfigError(f"n_scenes must be in 1..100000, got {self.n_scenes}")


def _path(value: Any, base: Path, what: str) -> Path | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise SuiteConfigError(f"{what} must be a path string, got {value!r}")
    return (base / value).resolve()


def _table(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise SuiteConfigError(f"{what} must be a table, got {value!r:.60}")
    return value


def _names(value: Any, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SuiteConfigError(f"{what} must be a list of strings, got {value!r:.60}")
    bad = sorted(set(value) - set(allowed))
    if bad:
        raise SuiteConfigError(f"{what}: unknown {bad}; choose from {list(allowed)}")
    return tuple(v for v in allowed if v in value)


def _override(raw: dict, base: Path, what: str) -> dict[str, Any]:
    bad = sorted(set(raw) - OVERRIDE_KEYS)
    if bad:
        raise SuiteConfigError(f"{what}: unknown keys {bad}; allowed {sorted(OVERRIDE_KEYS)}")
    out: dict[str, Any] = {}
    if "module" in raw:
        out["module"] = _module(raw["module"], what)
    if "weights" in raw:
        out["weights"] = _path(raw["weights"], base, f"{what}.weights")
    if "options" in raw:
        out["options"] = _table(raw["options"], f"{what}.options")
    return out


def _module(value: Any, what: str) -> str:
    parts = value.split(".") if isinstance(value, str) else []
    if not parts or not all(p.isidentifier() for p in parts):
        raise SuiteConfigError(f"{what}: module must be a dotted Python name, got {value!r:.60}")
    return value


def parse_model(raw: dict, base: Path) -> ModelSpec:
    name = raw.get("name")
    check_name(name, "model name")
    what = f"model {name!r}"
    unknown = sorted(set(raw) - MODEL_KEYS - set(FORMATS) - set(CONDITIONS))
    if unknown:
        raise SuiteConfigError(f"{what}: unknown keys {unknown}")
    if "module" not in raw:
        raise SuiteConfigError(f"{what} has no module")
    overrides = {
        key: _override(_table(raw[key], f"{what}.{key}"), base, f"{what}.{key}")
        for key in (*FORMATS, *CONDITIONS)
        if key in raw
    }
    return ModelSpec(
        name=name,
        module=_module(raw["module"], what),
        weights=_path(raw.get("weights"), base, f"{what}.weights"),
        options=_table(raw.get("options", {}), f"{what}.options"),
        conditions=_names(
            raw.get("conditions", list(CONDITIONS)), CONDITIONS, f"{what}.conditions"
        ),
        formats=_names(raw.get("formats", list(FORMATS)), FORMATS, f"{what}.formats"),
        overrides=overrides,
    )


def load_models(path: Path) -> list[ModelSpec]:
    """The `[[model]]` entries of a TOML models file; paths are relative to the file."""
    if not path.is_file():
        raise FileNotFoundError(f"models file {path} does not exist")
    if path.stat().st_size > MAX_MODELS_FILE:
        raise SuiteConfigError(f"models file {path} is over {MAX_MODELS_FILE} bytes")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SuiteConfigError(f"{path} is not TOML: {e}") from e
    unknown = sorted(set(data) - {"model"})
    if unknown:
        raise SuiteConfigError(f"{path}: unknown top-level keys {unknown}; expected [[model]]")
    entries = data.get("model", [])
    if not isinstance(entries, list) or not entries:
        raise SuiteConfigError(f"{path} has no [[model]] entries")
    models = [parse_model(_table(raw, "[[model]]"), path.parent.resolve()) for raw in entries]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise SuiteConfigError(f"{path}: model names repeat: {names}")
    return models
