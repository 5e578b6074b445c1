"""Runtime fixes that let heareval 2021.1.3's predictions runner work on today's stack, safely.

heareval (hearbenchmark/hear-eval-kit) was written for torch 1.9 and pytorch-lightning 1.4. With
torch 2.13, pytorch-lightning 1.9.5, numpy 2 and pandas 3 two things break in
`python -m heareval.predictions.runner`; the embeddings runner and the rest of the predictions
path run unchanged on CPU (checked end to end by `tests/test_heareval_compat.py`).

1. Checkpoint loading (torch >= 2.6). heareval reads back the Lightning checkpoints it has just
   written in the same run: `torch.load(best_model_path)["epoch"]` in `task_predictions_train`
   and `trainer.test(ckpt_path=...)` in `task_predictions_test`. Those checkpoints pickle the
   grid-point hyper-parameters (`torch.nn.Identity`, `BatchNorm1d`, `xavier_uniform_`, `Adam`),
   which the new `weights_only=True` default refuses (`UnpicklingError ... Identity`). Neither
   call site takes a `weights_only` argument, so we set torch's documented switch
   `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`, and only in the process that runs heareval
   (`python -m hear_gram.predict`): the files are local, written moments earlier by the same
   process, never downloaded.

2. Event-task test post-processing (pytorch-lightning >= 1.6; upstream issue
   hearbenchmark/hear-eval-kit#432). `task_predictions_test` picks the event post-processing
   chosen at the best validation epoch by faking the trainer's epoch,
   `trainer.fit_loop.current_epoch = grid_point.epoch`, before `trainer.test`; the test hook then
   looks up `epoch_best_postprocessing[self.current_epoch]`. Since Lightning 1.6 `FitLoop` has no
   `current_epoch` setter (the epoch lives in `fit_loop.epoch_progress.current.completed`), so the
   assignment only adds an unused attribute, the test hook sees the number of epochs run (e.g.
   50) and raises `KeyError`. We wrap `task_predictions_test` to set the progress counter that
   `trainer.current_epoch` reads before calling the unchanged original, which restores the
   intended behaviour: test events use the post-processing of the checkpointed (best) epoch.
   `trainer.test` does not restore fit-loop progress from the checkpoint, so the value holds.

3. Label files run no code. `SplitMemmapDataset` reads `{split}.target-labels.pkl` from the
   embeddings directory with a bare `pickle.load`, so a planted or foreign file there runs
   arbitrary code (a `__reduce__` payload) the moment predictions start. heareval's embeddings
   runner writes those files from the task's JSON labels: a list (one entry per clip or per
   timestamp) of lists of strings or numbers, which pickle stores without a single global
   reference. We swap the `pickle` name inside `heareval.predictions.task_predictions` for a copy
   whose `load` refuses every global (`LabelUnpickler`) and checks that shape, raising
   `UnsafePickleError` naming the file; `pickle.dump` (its predictions files) is unchanged.

4. Task folders are checked before heareval reads them (`check_task`). heareval's embeddings
   runner `json.load`s `task_metadata.json` and the split JSONs and indexes them bare, so a file
   nested thousands deep dies in a RecursionError and a wrong-typed field (`"sample_duration":
   "x"`, a label that is a dict) in a TypeError or KeyError deep inside a run. `check_task`
   reads them depth-safe (`hear_gram.cli.check_depth`, NaN refused) and checks the fields and
   the label layout hearbenchmark/hear-preprocess writes, raising `TaskFormatError` (a
   ValueError) naming the file and field.
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import logging
import math
import os
import pickle
import types
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

WEIGHTS_ONLY_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_PATCHED = "_hear_gram_patched"


class CompatError(RuntimeError):
    """The environment cannot run heareval's predictions (versions, conflicting switches)."""


class UnsafePickleError(ValueError):
    """A label pickle references code or is not heareval's label layout."""


def allow_heareval_checkpoints() -> None:
    """Fix 1: make `torch.load` default to `weights_only=False` in this process.

    torch reads the variable at every `torch.load` call, so setting it at run time is enough.
    Only call this in a process that runs heareval on checkpoints it writes itself.
    """
    if os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true"):
        raise CompatError(
            "TORCH_FORCE_WEIGHTS_ONLY_LOAD is set; heareval's own Lightning checkpoints cannot be "
            "loaded with weights_only=True. Unset it to run the predictions."
        )
    os.environ[WEIGHTS_ONLY_ENV] = "1"
    # torch warns on every load that the variable forced weights_only=False; that is the point.
    warnings.filterwarnings("ignore", message=f"Environment variable {WEIGHTS_ONLY_ENV} detected")


def set_trainer_epoch(trainer, epoch: int) -> None:
    """Make `trainer.current_epoch` (and so `LightningModule.current_epoch`) return `epoch`.

    This is what `trainer.fit_loop.current_epoch = epoch` did before pytorch-lightning 1.6.
    """
    trainer.fit_loop.epoch_progress.current.completed = epoch
    if trainer.current_epoch != epoch:
        raise RuntimeError(
            f"could not set the trainer epoch to {epoch} (reads {trainer.current_epoch}); "
            "this pytorch-lightning version stores the epoch elsewhere"
        )


def patch_event_test_epoch() -> None:
    """Fix 2 (hearbenchmark/hear-eval-kit#432): wrap heareval's `task_predictions_test` so the
    trainer's epoch is the best checkpoint's epoch while testing. Idempotent."""
    from heareval.predictions import task_predictions as tp

    original = tp.task_predictions_test
    if getattr(original, _PATCHED, False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def task_predictions_test(*args, **kwargs):
        grid_point = signature.bind(*args, **kwargs).arguments["grid_point"]
        set_trainer_epoch(grid_point.trainer, grid_point.epoch)
        return original(*args, **kwargs)

    setattr(task_predictions_test, _PATCHED, True)
    # `task_predictions` looks the function up in the module globals at call time.
    tp.task_predictions_test = task_predictions_test


class LabelUnpickler(pickle._Unpickler):
    """Unpickles plain containers and scalars only: any global (class, function) is refused, so
    no `__reduce__` payload can run. Built on the pure-Python unpickler, whatever a library may
    have put at `pickle.Unpickler`, so the refusal does not depend on import order."""

    def find_class(self, module: str, name: str):
        raise UnsafePickleError(f"it references {module}.{name}")

    def persistent_load(self, pid):
        raise UnsafePickleError("it uses persistent ids")


def _check_labels(labels: object) -> list:
    """heareval's layout: a list of lists of str/int/float (one inner list per clip or frame)."""
    if not isinstance(labels, list):
        raise UnsafePickleError(f"it holds a {type(labels).__name__}, not a list of label lists")
    for i, item in enumerate(labels):
        if not isinstance(item, list) or not all(isinstance(v, (str, int, float)) for v in item):
            raise UnsafePickleError(
                f"entry {i} is {item!r:.60}, not a list of label strings or numbers"
            )
    return labels


def load_labels(file) -> list:
    """`pickle.load` for heareval's `*.target-labels.pkl`: no globals, heareval's layout only.

    Raises UnsafePickleError naming the file (a planted, foreign or corrupt label file)."""
    name = getattr(file, "name", "label pickle")
    try:
        return _check_labels(LabelUnpickler(file).load())
    except UnsafePickleError as e:
        reason = str(e)
    except Exception as e:  # any decoding failure means "not heareval's labels"
        # the pure-Python unpickler (which libraries such as dill put in place of the C one)
        # raises KeyError, not UnpicklingError, on an unknown opcode
        reason = f"it is not a valid pickle ({type(e).__name__}: {e})"
    raise UnsafePickleError(
        f"refusing to load {name}: {reason}; heareval's embeddings runner writes only lists of "
        "label strings and numbers there, so this file was planted or made by other code "
        "(recompute the embeddings with python -m hear_gram.embed)"
    )


def _labels_only_pickle() -> types.ModuleType:
    """A stand-in for the `pickle` module whose `load`/`loads`/`Unpickler` are label-only."""
    shim = types.ModuleType("pickle", "pickle, with hear_gram's label-only loading")
    shim.__dict__.update({k: v for k, v in vars(pickle).items() if not k.startswith("__")})
    shim.load = load_labels
    shim.loads = lambda data: load_labels(io.BytesIO(data))
    shim.Unpickler = LabelUnpickler
    setattr(shim, _PATCHED, True)
    return shim


def patch_label_unpickling() -> None:
    """Fix 3: heareval's predictions read label pickles with `load_labels`. Idempotent."""
    from heareval.predictions import task_predictions as tp

    if not getattr(tp.pickle, _PATCHED, False):
        tp.pickle = _labels_only_pickle()


def check_versions() -> None:
    """Fail early on a pytorch-lightning that heareval 2021.1.3 cannot run on at all."""
    import pytorch_lightning as pl

    major = int(pl.__version__.split(".")[0])
    if major >= 2:
        raise CompatError(
            f"pytorch-lightning {pl.__version__}: heareval 2021.1.3 needs 1.x "
            "(it passes Trainer(gpus=...) and defines validation_epoch_end); install 1.9.5"
        )


def apply() -> None:
    """Apply every fix; call before running heareval's predictions code in this process."""
    check_versions()
    allow_heareval_checkpoints()
    patch_event_test_epoch()
    patch_label_unpickling()
    logger.info(
        "heareval compat: %s=1, task_predictions_test epoch fix (#432), label-only unpickling",
        WEIGHTS_ONLY_ENV,
    )


# ------------------------------------------------------------------ task folders (fix 4)

MAX_TASK_JSON_BYTES = 256 << 20  # FSD50K's split JSONs, the largest of HEAR 2021, are ~10 MB
SPLIT_MODES = ("trainvaltest", "new_split_kfold", "presplit_kfold")
EMBEDDING_TYPES = ("scene", "event")


class TaskFormatError(ValueError):
    """A task_metadata.json or split JSON that heareval cannot read as a HEAR task."""


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_task_json(path: Path, what: str) -> Any:
    """A task JSON file, parsed without recursion limits being hit (RecursionError becomes a
    TaskFormatError), NaN/Infinity refused, nesting checked; the size is checked before
    reading."""
    from hear_gram.cli import CLIError, check_depth

    if path.is_dir():
        raise TaskFormatError(f"{path}: {what} is a directory, not a file")
    if not path.is_file():
        raise TaskFormatError(f"{path.parent}: missing {what} ({path.name})")
    if path.stat().st_size > MAX_TASK_JSON_BYTES:
        raise TaskFormatError(f"{path}: {what} is over {MAX_TASK_JSON_BYTES} bytes")
    try:
        value = json.loads(path.read_bytes(), parse_constant=_not_a_number)
        return check_depth(value, f"{path}: {what}")
    except RecursionError:
        raise TaskFormatError(f"{path}: {what} nests too deep") from None
    except CLIError as e:
        raise TaskFormatError(str(e)) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise TaskFormatError(f"{path}: {what} is not valid JSON: {e}") from None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_metadata(metadata: object, where: str) -> dict:
    """The fields of task_metadata.json that heareval reads, type-checked (hear-preprocess's
    layout; optional fields are checked when present)."""
    if not isinstance(metadata, dict):
        raise TaskFormatError(f"{where}: expected a JSON object, got {type(metadata).__name__}")

    def bad(field: str, expected: str) -> TaskFormatError:
        return TaskFormatError(f"{where}: {field} must be {expected}, got {metadata[field]!r:.60}")

    splits = metadata.get("splits")
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise TaskFormatError(f"{where}: 'splits' must be a list of split names")
    choices = {"split_mode": SPLIT_MODES, "embedding_type": EMBEDDING_TYPES}
    for field, allowed in choices.items():
        if field in metadata and metadata[field] not in allowed:
            raise bad(field, " or ".join(allowed))
    # heareval's probes know multiclass and multilabel; localization_tasks adds regressions.
    for field in ("task_name", "mode", "prediction_type"):
        if field in metadata and not isinstance(metadata[field], str):
            raise bad(field, "a string")
    if "sample_duration" in metadata and metadata["sample_duration"] is not None:
        if not _is_number(metadata["sample_duration"]) or metadata["sample_duration"] <= 0:
            raise bad("sample_duration", "a positive number of seconds or null")
    for field in ("sample_rate", "nfolds"):
        value = metadata.get(field)
        if field in metadata and not (isinstance(value, int) and not isinstance(value, bool)
                                      and value >= 1):  # fmt: skip
            raise bad(field, "a positive integer")
    if "evaluation" in metadata and not (
        isinstance(metadata["evaluation"], list)
        and all(isinstance(m, str) for m in metadata["evaluation"])
    ):
        raise bad("evaluation", "a list of metric names")
    if "evaluation_params" in metadata and not isinstance(metadata["evaluation_params"], dict):
        raise bad("evaluation_params", "an object")
    return metadata


def _check_event(event: object) -> bool:
    return (
        isinstance(event, dict)
        and isinstance(event.get("label"), str | int)
        and not isinstance(event.get("label"), bool)
        and _is_number(event.get("start"))
        and _is_number(event.get("end"))
    )


def check_split(data: object, embedding_type: str | None, where: str) -> dict:
    """A split JSON: {file name: labels}, scene labels strings or numbers, event labels objects
    {"label", "start", "end"} (milliseconds), as hear-preprocess writes them."""
    if not isinstance(data, dict):
        raise TaskFormatError(f"{where}: expected an object {{file name: labels}}")
    for name, labels in data.items():
        if not isinstance(labels, list):
            raise TaskFormatError(f"{where}: labels of {name!r:.60} must be a list")
        for label in labels:
            ok = _check_event(label) if embedding_type == "event" else _is_label(label)
            if not ok:
                raise TaskFormatError(f"{where}: label {label!r:.60} of {name!r:.60} is not a "
                                      f"{embedding_type or 'scene'} label")  # fmt: skip
    return data


def _is_label(value: object) -> bool:
    return isinstance(value, str) or (_is_number(value) and not isinstance(value, bool))


def check_task(task_dir: Path) -> tuple[dict, dict[str, dict]]:
    """(metadata, {split: labels}) of a HEAR task folder, checked (fix 4). Split names must be
    plain names (they become file names)."""
    from hear_gram.safeio import check_name

    task_dir = Path(task_dir)
    where = f"{task_dir}/task_metadata.json"
    metadata = check_metadata(read_task_json(task_dir / "task_metadata.json", "task metadata"),
                              where)  # fmt: skip
    labels = {}
    for split in metadata["splits"]:
        check_name(split, f"split name in {where}")
        path = task_dir / f"{split}.json"
        data = read_task_json(path, f"split file of split {split!r}")
        labels[split] = check_split(data, metadata.get("embedding_type"), str(path))
    return metadata, labels
