"""Before a suite run: does each model's HEAR module load, and take each input format the run's
conditions give it?

For every distinct (module, weights, options) a model resolves to (`ModelSpec.resolve`) in a
condition whose units call HEAR modules (`Condition.hear_module`), one subprocess (`python -m
hear_gram.suite.probe`) imports the module, loads the model as heareval's runner does
(`load_model(weights, **options)`, or `load_model(**options)` without weights), reads its declared
`sample_rate` and calls `get_scene_embeddings` and `get_timestamp_embeddings` on N_CLIPS clips of
PROBE_S seconds of seeded noise in each format it is assigned, laid out as heareval's runner and
the spatial evaluators pass audio: mono (n, T), binaural (n, T, 2), Ambisonic (n, T, 4)
(`heareval/embeddings/task_embeddings.py` reads WAVs with `soundfile.read`, (T,) or (T, C), and
batches them; `localization_tasks.embeddings` and `localization_tasks.seld.features` pass
(B, N, C) too). A format is taken when both calls return the shapes the model declares
(`scene_embedding_size`, `timestamp_embedding_size`, timestamps (n, T)) and finite values.

A unit whose module cannot take its format, or does not load, is not planned: the report lists
it as `unsupported` with the cause (not `failed`: a rerun would not change it). One line per
model is printed:

    probe: tiny: ok (rate 44100; mono, binaural via channels=mean)
    probe: spectral: ok (rate 16000; mono); cannot take binaural: ValueError: audio must be ...

Results are kept in OUT/probe/<module>-<key>.json, the key a digest of the module, its
package's code, the weights' sha256, the options and this file's code: reruns read them and load
nothing (formats not probed yet are probed then). A load that fails (import error, missing
weights, an exception in load_model) is not kept: installing a package or fixing a path cures it
without changing the key. A model whose module is one of its condition's own baselines
(`Condition.baselines`, e.g. `chance`) is not loaded. `--no-probe` skips all this; a unit then
reads its module's rate from the same cache, probing it (loading only) if missing.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hear_gram import cli
from hear_gram.safeio import locked, subdir, write_json
from hear_gram.suite import condition as conditions
from hear_gram.suite.condition import (
    FORMATS,
    SPATIAL_FORMATS,
    Unit,
    UnitError,
    UnitInterrupted,
    read_json,
    run_logged,
)

if TYPE_CHECKING:
    from torch import Tensor

    from hear_gram.suite.config import ModelSpec, Resolved, Settings

PROG = "python -m hear_gram.suite.probe"
PROBE_S = 0.5  # clip length, s: long enough for any HEAR module's first frame
N_CLIPS = 2  # a batch of two: a module that mixes clips up or drops the batch axis shows
CHANNELS = {"mono": 1, "binaural": 2, "ambisonic": 4}
HINT = ('if the module takes mono audio only, set channels = "mean" or "per-channel" in its '
        "[[model]] entry")  # fmt: skip


# ------------------------------------------------------------------ in the probe's subprocess


def clip(fmt: str, rate: int) -> Tensor:
    """N_CLIPS clips of PROBE_S s of seeded noise (peak about 0.3) at `rate` Hz, in heareval's
    layout: (n, T) mono, (n, T, C) multi-channel."""
    import torch

    n = max(1, round(PROBE_S * rate))
    gen = torch.Generator().manual_seed(0)
    shape = (N_CLIPS, n) if fmt == "mono" else (N_CLIPS, n, CHANNELS[fmt])
    return torch.randn(shape, generator=gen) * 0.1


def _finite(x: Any) -> bool:
    import torch

    return bool(torch.isfinite(torch.as_tensor(x).float()).all())


def refusal(hear: Any, model: Any, fmt: str, rate: int) -> str:
    """Why the module does not take `fmt` audio ("" when it does)."""
    x = clip(fmt, rate)
    try:
        scene = hear.get_scene_embeddings(x, model)
    except Exception as e:
        return f"get_scene_embeddings: {type(e).__name__}: {cli.one_line(e)}"
    want = (N_CLIPS, int(model.scene_embedding_size))
    if tuple(scene.shape) != want:
        return f"get_scene_embeddings returned {tuple(scene.shape)}, expected {want}"
    if not _finite(scene):
        return "get_scene_embeddings returned NaN or Inf"
    try:
        emb, ts = hear.get_timestamp_embeddings(x, model)
    except Exception as e:
        return f"get_timestamp_embeddings: {type(e).__name__}: {cli.one_line(e)}"
    size = int(model.timestamp_embedding_size)
    ok = emb.ndim == 3 and emb.shape[0] == N_CLIPS and emb.shape[2] == size and emb.shape[1] >= 1
    if not ok or tuple(ts.shape) != tuple(emb.shape[:2]):
        return (f"get_timestamp_embeddings returned {tuple(emb.shape)} and timestamps "
                f"{tuple(ts.shape)}, expected ({N_CLIPS}, T, {size}) and ({N_CLIPS}, T)")  # fmt: skip
    if not (_finite(emb) and _finite(ts)):
        return "get_timestamp_embeddings returned NaN or Inf"
    return ""


def probe_module(module: str, weights: str, options: dict, formats: Sequence[str]) -> dict:
    """The probe's record: {loaded, error, sample_rate, formats: {fmt: "" or why not}}."""
    from hear_gram.resample import check_rate

    try:
        hear = importlib.import_module(module)
        model = hear.load_model(weights, **options) if weights else hear.load_model(**options)
        rate = check_rate(getattr(model, "sample_rate", None), "the model's sample_rate")
    except BaseException as e:  # a module may even sys.exit on import: say why, go on
        if isinstance(e, KeyboardInterrupt):
            raise
        return {"loaded": False, "error": f"{type(e).__name__}: {cli.one_line(e)}"[:500],
                "sample_rate": None, "formats": {}}  # fmt: skip
    found = {fmt: refusal(hear, model, fmt, rate)[:500] for fmt in formats}
    return {"loaded": True, "error": "", "sample_rate": rate, "formats": found}


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, "Load a HEAR module and try it on short clips of each format (JSON out).")
    p.add_argument("--module", required=True)
    p.add_argument("--weights", default="")
    p.add_argument("--model-options", type=cli.json_object, default={}, metavar="JSON")
    p.add_argument("--formats", default="", help="comma-separated, of mono,binaural,ambisonic")
    p.add_argument("--out", type=Path, required=True, help="the record's JSON file")
    return p


def body(args: argparse.Namespace) -> int:
    formats = [f for f in args.formats.split(",") if f]
    bad = sorted(set(formats) - set(FORMATS))
    if bad:
        raise cli.CLIError(f"--formats: unknown {bad}; choose from {list(FORMATS)}")
    write_json(args.out, probe_module(args.module, args.weights, args.model_options, formats))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(PROG, build_parser, body, argv)


# ------------------------------------------------------------------ in the suite


def key(resolved: Resolved) -> str:
    """What a probe's record depends on: module, its package's code, weights sha256, options,
    and this file. OSError when the weights file is missing."""
    from hear_gram.cache import code_fingerprint, file_sha256, weights_sha256
    from hear_gram.suite.build import digest

    return digest({"module": resolved.module, "code": code_fingerprint(resolved.module),
                   "weights": weights_sha256(resolved.weights), "options": resolved.options,
                   "probe": file_sha256(Path(__file__))})  # fmt: skip


def probe(resolved: Resolved, formats: Iterable[str], settings: Settings) -> dict:
    """The record of `resolved` covering `formats`: kept under OUT/probe, completed by a probe
    subprocess when a format is missing (under a lock: parallel runs probe once)."""
    try:
        k = key(resolved)
    except OSError as e:
        return {"loaded": False, "error": cli.one_line(e), "sample_rate": None, "formats": {}}
    folder = subdir(settings.work, "probe", what="probe folder")
    name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', resolved.module)[:60]}-{k[:16]}"
    path = folder / f"{name}.json"
    with locked(folder / f"{name}.lock"):
        have = read_json(path)
        if not (have and have.get("key") == k and _valid(have)):
            have = None  # missing, stale, or not what this file writes: probe again
        known = (have or {}).get("formats", {})
        missing = [f for f in dict.fromkeys(formats) if f not in known]
        if have is not None and not missing:
            return have
        new = _run(resolved, missing, folder, name)
        if not _valid(new):
            return {"loaded": False, "error": new.get("error") or "the probe's record is not valid",
                    "sample_rate": None, "formats": {}}  # fmt: skip
        record = {"key": k, "module": resolved.module, "weights": str(resolved.weights or ""),
                  "options": resolved.options, **new,
                  "formats": {**known, **new.get("formats", {})}}  # fmt: skip
        write_json(path, record)
    return record


def _valid(record: dict) -> bool:
    """A record of a module that loaded: a sample rate in range, a str cause per format."""
    from hear_gram.resample import MAX_RATE

    rate, formats = record.get("sample_rate"), record.get("formats")
    return (record.get("loaded") is True and type(rate) is int and 1 <= rate <= MAX_RATE
            and isinstance(formats, dict) and set(formats) <= set(FORMATS)
            and all(isinstance(v, str) for v in formats.values()))  # fmt: skip


def _run(resolved: Resolved, formats: list[str], folder: Path, name: str) -> dict:
    out = folder / f"{name}.new.json"
    cmd = [sys.executable, "-m", "hear_gram.suite.probe", "--module", resolved.module,
           "--model-options", resolved.options_json(), "--formats", ",".join(formats),
           "--out", str(out)]  # fmt: skip
    if resolved.weights is not None:
        cmd += ["--weights", str(resolved.weights)]
    try:
        out.unlink(missing_ok=True)
        run_logged(cmd, folder / f"{name}.log", "probe")
    except UnitInterrupted:
        raise KeyboardInterrupt from None
    except UnitError as e:  # the subprocess died (a crash in native code, out of memory)
        return {"loaded": False, "error": str(e), "sample_rate": None, "formats": {}}
    record = read_json(out)
    out.unlink(missing_ok=True)
    if record is None or not isinstance(record.get("formats"), dict):
        return {"loaded": False, "error": f"the probe left no record in {out}",
                "sample_rate": None, "formats": {}}  # fmt: skip
    return record


def sample_rate(resolved: Resolved, settings: Settings) -> int:
    """The module's declared sample rate (Hz), from its probe record (probed, loading only,
    when there is none). UnitError when the module does not load."""
    record = probe(resolved, (), settings)
    rate = record.get("sample_rate")
    if not record.get("loaded") or not isinstance(rate, int):
        raise UnitError(f"cannot load {resolved.module}: {record.get('error', '')}")
    return rate


def baseline_modules() -> frozenset[str]:
    """The module names the conditions run themselves (chance, majority, ...): never loaded."""
    return frozenset(_baselines())


def _baselines() -> dict[str, list[str]]:
    """Baseline module name -> the conditions that run it."""
    out: dict[str, list[str]] = {}
    for name in conditions.names():
        for b in conditions.get(name).baselines:
            out.setdefault(b, []).append(name)
    return out


def check(units: Sequence[Unit], models: dict[str, ModelSpec], settings: Settings,
          jobs: int = 1, echo: Callable[[str], None] = print) -> dict[Unit, str]:  # fmt: skip
    """Probe every module the units call (module docstring); print one line per model; return
    the units that cannot run, each with its cause."""
    wanted: dict[str, tuple[Resolved, set[str]]] = {}  # probe target -> (resolved, formats)
    plan: list[tuple[Unit, str]] = []  # (unit, its target or "" for a baseline of its condition)
    unsupported: dict[Unit, str] = {}
    others = _baselines()
    for u in units:
        cond = conditions.get(u.condition)
        if not cond.hear_module:
            continue
        resolved = models[u.model].resolve(u.condition, u.fmt)
        if resolved.module in cond.baselines:
            plan.append((u, ""))
        elif resolved.module in others:
            unsupported[u] = (f"{resolved.module} is a baseline of {', '.join(others[resolved.module])}"
                              f", not of {u.condition} (its baselines: "
                              f"{', '.join(cond.baselines) or 'none'})")  # fmt: skip
        else:
            target = json.dumps([resolved.module, str(resolved.weights), resolved.options],
                                sort_keys=True)  # fmt: skip
            wanted.setdefault(target, (resolved, set()))[1].add(u.fmt)
            plan.append((u, target))
    with cf.ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = {t: pool.submit(probe, r, sorted(f), settings) for t, (r, f) in wanted.items()}
        records = {t: f.result() for t, f in futures.items()}
    hinted = set()
    for u, target in plan:
        cause = _cause(records[target], u.fmt, models[u.model], u) if target else ""
        if cause:
            unsupported[u] = cause
            if u.fmt in SPATIAL_FORMATS and not models[u.model].channels_of(u.condition, u.fmt):
                hinted.add(u)
    planned = dict(plan)
    for model in models.values():
        mine = [(u, t) for u, t in plan if u.model == model.name]
        mine += [(u, None) for u in unsupported if u.model == model.name and u not in planned]
        if mine:
            hint = f" ({HINT})" if any(u in hinted for u, _ in mine) else ""
            echo(f"probe: {model.name}: {summary(mine, records, unsupported, model)}{hint}")
    return {u: cause + (f" ({HINT})" if u in hinted else "") for u, cause in unsupported.items()}


def _cause(record: dict, fmt: str, model: ModelSpec, unit: Unit) -> str:
    """Why `unit` cannot run on this record ("" when it can)."""
    if not record.get("loaded"):
        return f"cannot load {model.resolve(unit.condition, fmt).module}: {record.get('error')}"
    why = record.get("formats", {}).get(fmt, "not probed")
    return why and f"cannot take {fmt}: {why}"


def summary(mine: list[tuple[Unit, str | None]], records: dict[str, dict],
            unsupported: dict[Unit, str], model: ModelSpec) -> str:  # fmt: skip
    """One line: the formats taken (by rate), the baselines, then each distinct refusal (in
    FORMATS order)."""
    by_rate: dict[int, list[str]] = {}
    baselines: dict[str, list[str]] = {}  # baseline -> the conditions it runs in
    for u, target in mine:
        if u in unsupported:
            continue
        if not target:
            name = model.resolve(u.condition, u.fmt).module
            baselines.setdefault(name, []).append(u.condition)
            continue
        via = model.channels_of(u.condition, u.fmt)
        label = u.fmt + (f" via channels={via}" if via else "")
        by_rate.setdefault(records[target]["sample_rate"], []).append(label)
    parts = []
    if by_rate:
        rates = [f"rate {rate}; {', '.join(_ordered(labels))}" for rate, labels in sorted(by_rate.items())]  # fmt: skip
        parts.append(f"ok ({'; '.join(rates)})")
    for name, conds in baselines.items():
        parts.append(f"baseline {name}, no module loaded ({', '.join(dict.fromkeys(conds))})")
    rank = {f: i for i, f in enumerate(FORMATS)}
    refused = sorted((u for u, _ in mine if u in unsupported), key=lambda u: (rank[u.fmt], u))
    return "; ".join([*parts, *dict.fromkeys(unsupported[u] for u in refused)])


def _ordered(labels: list[str]) -> list[str]:
    """Distinct labels in FORMATS order."""
    rank = {f: i for i, f in enumerate(FORMATS)}
    return sorted(dict.fromkeys(labels), key=lambda s: (rank.get(s.split()[0], 9), s))


if __name__ == "__main__":
    sys.exit(main())
