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

    [[model]]
    name = "mono-model"
    module = "pkg.mono_module"              # a module that takes mono audio only
    channels = "mean"                       # binaural/Ambisonic audio: downmixed ("mean") or
                                            #   embedded channel by channel ("per-channel")

Overrides apply in the order base < format < condition; `options` tables are merged key by key.
`channels` (also an override key; "" turns it off) wraps the module for spatial units in
`hear_gram.suite.channels_module`; mono units get the module as it is.
Condition keys are those of the registry (`hear_gram.suite.condition`). Every field is
type-checked (`hear_gram.cli.expect`): a wrong type, a NaN option, a name that would break
REPORT.md's Markdown or a file nested past `hear_gram.cli.MAX_DEPTH` is refused in one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hear_gram import cli
from hear_gram.safeio import check_name
from hear_gram.suite import condition as conditions
from hear_gram.suite.condition import FORMATS, SPATIAL_FORMATS

MODEL_KEYS = {"name", "module", "weights", "options", "conditions", "formats", "channels"}
OVERRIDE_KEYS = {"module", "weights", "options", "channels"}
# Characters a model name may not hold: they would break REPORT.md's tables and text (a `|`
# ends a cell, a backtick opens code, a newline ends the row, brackets and `*` open markup).
MARKDOWN_UNSAFE = set("|`<>[]*\\#")


ADAPTER = "hear_gram.suite.channels_module"
CHANNEL_MODES = ("mean", "per-channel")  # the adapter's modes (the module's docstring)


def adapter_options(module: str, channels: str, fmt: str, options: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """load_model options of the channel adapter around `module` (keys sorted: heareval's folder
    name follows their order, `hear_gram.embed.heareval_folder`). `code`: the wrapped package's
    code fingerprint (16 hex), so every cache keyed by (module, its code, options) sees an edit
    of the wrapped module and not only of the adapter."""
    from hear_gram.cache import code_fingerprint

    return {"channels": channels, "code": code_fingerprint(module)[:16], "format": fmt,
            "module": module, "options": options}  # fmt: skip


class SuiteConfigError(cli.CLIError):
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
    conditions: tuple[str, ...] | None = None  # None: every condition of the run
    formats: tuple[str, ...] = FORMATS
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)
    channels: str = ""  # "mean", "per-channel" or "" (none): how spatial audio reaches the module

    def resolve(self, condition: str, fmt: str) -> Resolved:
        module, weights, options = self.module, self.weights, dict(self.options)
        channels = self.channels
        for key in (fmt, condition):
            over = self.overrides.get(key, {})
            module = over.get("module", module)
            weights = over["weights"] if "weights" in over else weights
            options.update(over.get("options", {}))
            channels = over.get("channels", channels)
        if channels and fmt in SPATIAL_FORMATS:
            return Resolved(ADAPTER, weights, adapter_options(module, channels, fmt, options))
        return Resolved(module, weights, options)

    def channels_of(self, condition: str, fmt: str) -> str:
        """The `channels` adapter of this model's `fmt` units of `condition` ("" for none)."""
        channels = self.channels
        for key in (fmt, condition):
            channels = self.overrides.get(key, {}).get("channels", channels)
        return channels if fmt in SPATIAL_FORMATS else ""

    def applies(self, condition: str, fmt: str) -> bool:
        in_run = self.conditions is None or condition in self.conditions
        return in_run and fmt in self.formats


@dataclass(frozen=True)
class Settings:
    """One suite run: where tasks come from, what is built, how probes are trained. `extra`: the
    values of the conditions' own options (`Condition.options`), by dest."""

    work: Path
    tasks_dir: Path
    conditions: tuple[str, ...] = ()  # empty: every registered condition with `default` True
    tasks: tuple[str, ...] = ()  # HEAR task folder names; empty = every task under tasks_dir
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    grid: str = "default"
    grid_points: int = 8
    localization_grid: str = "default"
    n_scenes: int = 0  # 0: naturalistic_hear.bank.DEFAULT_N_SCENES
    seed: int = 0
    workers: int = 1  # processes of each Nat-HEAR render
    condition_modules: tuple[str, ...] = ()  # imported for their conditions (--condition-module)

    def __post_init__(self) -> None:
        known = conditions.names()
        chosen = conditions.unique(self.conditions) if self.conditions else conditions.defaults()
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise SuiteConfigError(f"unknown conditions {unknown}; choose from {known}")
        object.__setattr__(self, "conditions", chosen)
        object.__setattr__(self, "tasks", conditions.unique(self.tasks))
        for name in self.tasks:
            check_name(name, "task")
        for dest, value in self.extra.items():
            if isinstance(value, tuple):
                for name in value:
                    check_name(name, dest.replace("_", " "))
        if not self.n_scenes:
            from naturalistic_hear.bank import DEFAULT_N_SCENES

            object.__setattr__(self, "n_scenes", DEFAULT_N_SCENES)
        if not 1 <= self.grid_points <= 10_000:
            raise SuiteConfigError(f"grid points must be in 1..10000, got {self.grid_points}")
        if not 1 <= self.n_scenes <= 100_000:
            raise SuiteConfigError(f"n_scenes must be in 1..100000, got {self.n_scenes}")

    def names(self, dest: str) -> tuple[str, ...]:
        """A condition's task-name option (empty when not given)."""
        return tuple(self.extra.get(dest) or ())

    def folder(self, dest: str) -> Path | None:
        """A condition's folder option (None when not given)."""
        return self.extra.get(dest)


def _path(value: Any, base: Path, what: str) -> Path | None:
    if value == "":
        return None
    return (base / cli.expect(value, str, what)).resolve()


def _table(value: Any, what: str) -> dict:
    return cli.expect(value, dict, what)


def _options(value: Any, what: str) -> dict:
    """A load_model options table: JSON values only (no dates), finite numbers."""
    _table(value, what)
    stack = [(value, what)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            stack += [(v, f"{where}.{k}") for k, v in item.items()]
        elif isinstance(item, list):
            stack += [(v, f"{where}[{i}]") for i, v in enumerate(item)]
        elif isinstance(item, float) and not math.isfinite(item):
            raise SuiteConfigError(f"{where} must be finite, got {item!r}")
        elif not isinstance(item, str | int | float | bool):
            raise SuiteConfigError(f"{where}: {type(item).__name__} is not a JSON value")
    return value


def _names(value: Any, allowed: list[str] | tuple[str, ...], what: str) -> tuple[str, ...]:
    cli.expect(value, list, what)
    for i, v in enumerate(value):
        cli.expect(v, str, f"{what}[{i}]")
    bad = sorted(set(value) - set(allowed))
    if bad:
        raise SuiteConfigError(f"{what}: unknown {bad}; choose from {list(allowed)}")
    return tuple(v for v in allowed if v in value)


def _channels(value: Any, what: str) -> str:
    value = cli.expect(value, str, what)
    if value not in ("", *CHANNEL_MODES):
        raise SuiteConfigError(f"{what} must be one of {list(CHANNEL_MODES)} (or \"\" for "
                               f"none), got {value!r:.60}")  # fmt: skip
    return value


def _override(raw: dict, base: Path, what: str) -> dict[str, Any]:
    bad = sorted(set(raw) - OVERRIDE_KEYS)
    if bad:
        raise SuiteConfigError(f"{what}: unknown keys {bad}; allowed {sorted(OVERRIDE_KEYS)}")
    out: dict[str, Any] = {}
    if "module" in raw:
        out["module"] = _module(raw["module"], f"{what}.module")
    if "weights" in raw:
        out["weights"] = _path(raw["weights"], base, f"{what}.weights")
    if "options" in raw:
        out["options"] = _options(raw["options"], f"{what}.options")
    if "channels" in raw:
        out["channels"] = _channels(raw["channels"], f"{what}.channels")
    return out


def _module(value: Any, what: str) -> str:
    parts = cli.expect(value, str, what).split(".")
    if not all(p.isidentifier() for p in parts):
        raise SuiteConfigError(f"{what} must be a dotted Python name, got {value!r:.60}")
    return value


def model_name(value: Any) -> str:
    """A model name: a plain folder name that REPORT.md's Markdown shows as it is."""
    name = check_name(cli.expect(value, str, "model name"), "model name")
    bad = sorted({c for c in name if c in MARKDOWN_UNSAFE or not c.isprintable()})
    if bad:
        raise SuiteConfigError(f"model name {name!r:.60} holds {bad}, which would break REPORT.md")
    return name


def parse_model(raw: dict, base: Path) -> ModelSpec:
    if "name" not in raw:
        raise SuiteConfigError("a [[model]] entry has no name")
    name = model_name(raw["name"])
    what = f"model {name!r}"
    known = conditions.names()
    unknown = sorted(set(raw) - MODEL_KEYS - set(FORMATS) - set(known))
    if unknown:
        raise SuiteConfigError(f"{what}: unknown keys {unknown}")
    if "module" not in raw:
        raise SuiteConfigError(f"{what} has no module")
    overrides = {
        key: _override(_table(raw[key], f"{what}.{key}"), base, f"{what}.{key}")
        for key in (*FORMATS, *known)
        if key in raw
    }
    chosen = raw.get("conditions")
    return ModelSpec(
        name=name,
        module=_module(raw["module"], f"{what}.module"),
        weights=_path(raw.get("weights", ""), base, f"{what}.weights"),
        options=_options(raw.get("options", {}), f"{what}.options"),
        conditions=None if chosen is None else _names(chosen, known, f"{what}.conditions"),
        formats=_names(raw.get("formats", list(FORMATS)), FORMATS, f"{what}.formats"),
        overrides=overrides,
        channels=_channels(raw.get("channels", ""), f"{what}.channels"),
    )


def load_models(path: Path) -> list[ModelSpec]:
    """The `[[model]]` entries of a TOML models file; paths are relative to the file."""
    data = cli.read_toml(path, f"models file {path}")
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
