"""GRAM for benchmark frameworks other than HEAR: X-ARES (`hear_gram.adapters.xares`) and MTEB's
audio benchmark MAEB (`hear_gram.adapters.mteb`).

Both load a released checkpoint by its registry name (``checkpoints.json``; the file comes from
the user's Hugging Face cache, downloaded on first use) through the same HEAR module that
heareval runs, so an adapter's embeddings are the HEAR module's. The environment variable
``HEAR_GRAM_WEIGHTS`` names a weights file (or another registry name) to use instead, for
frameworks that build an encoder with no arguments.

Both frameworks hand over mono audio (each averages a file's channels before the encoder sees it;
see the README, "Other benchmarks"). GRAM's spatial models then get what their HEAR modules make
of mono audio: the binaural models the same signal at both ears, the Ambisonic model the signal on
all four channels (as upstream's runtime does), so their spatial cues are those of a sound with
no direction. A one-time warning says so.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os

from hear_gram import checkpoints
from hear_gram.runtime import GramRuntime

log = logging.getLogger(__name__)

WEIGHTS_ENV = "HEAR_GRAM_WEIGHTS"


def load_runtime(name: str, **model_options) -> GramRuntime:
    """The HEAR module of registry entry ``name`` (its ``module``), loaded with the weights of
    ``$HEAR_GRAM_WEIGHTS`` when set, else of ``name``, at the model's own sample rate (so a
    framework that resamples to `GramRuntime.native_rate` leaves no second resampling inside)."""
    entry = checkpoints.registry_entry(name)
    module = importlib.import_module(entry["module"])
    weights = os.environ.get(WEIGHTS_ENV) or name
    runtime = module.load_model(weights, **model_options)
    rate = runtime.cfg.features.sample_rate
    runtime.options = dataclasses.replace(runtime.options, sample_rate=rate)
    runtime.eval()  # neither framework calls eval(); GRAM has no dropout at inference either way
    return runtime


def spatial_kind(runtime: GramRuntime) -> str | None:
    """'binaural' or 'Ambisonic' for a model trained on spatial audio, None for a mono one."""
    if runtime.cfg.is_ambisonic:
        return "Ambisonic"
    return "binaural" if runtime.cfg.in_channels == 2 else None


def mono_warning(framework: str, runtime: GramRuntime) -> str | None:
    """The one-time warning for mono audio given to a spatial model, or None for a mono model."""
    kind = spatial_kind(runtime)
    if kind is None:
        return None
    how = ("copied to all four channels (W, Y, Z, X)" if kind == "Ambisonic"
           else "given to both ears")  # fmt: skip
    return (
        f"{framework} hands over mono audio: the {kind} GRAM model ({runtime.source}) gets it "
        f"{how}, so its embeddings carry no spatial cues; scores are of the model on mono input"
    )
