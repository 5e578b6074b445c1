"""Checkpoints: read released, upstream and own weight files safely, infer their architecture, load
strictly; a registry of known weights (``checkpoints.json``) and a command-line tool.

One module per step, all re-exported here:
- `hear_gram.checkpoints.loading`: a weights file of any supported layout -> checked state dict ->
  strictly loaded `GramEncoder` (`read_state`, `infer_config`, `load_encoder`, ...);
- `hear_gram.checkpoints.saving`: an encoder -> hear-gram's or upstream's layout on disk, and
  random weights (`save_checkpoint`, `random_encoder`, ...);
- `hear_gram.checkpoints.sources`: the registry, names -> files, downloads (`registry`,
  `resolve`, `fetch`, ...);
- `hear_gram.checkpoints.cli`: the command-line tool.

    python -m hear_gram.checkpoints list
    python -m hear_gram.checkpoints info PATH|NAME
    python -m hear_gram.checkpoints random --model gram-t [--depth N] [--with-decoder] --out PATH
    python -m hear_gram.checkpoints fetch NAME
    python -m hear_gram.checkpoints convert IN OUT [--allow-pickle]
"""

from __future__ import annotations

from hear_gram.checkpoints.cli import main
from hear_gram.checkpoints.loading import (
    DECODER_PREFIXES,
    ENCODER_PREFIXES,
    FLOAT_DTYPES,
    FRONTEND_KEYS,
    FRONTEND_PREFIXES,
    HUB_PREFIX,
    LAYOUTS,
    LIGHTNING_KEY,
    OWN_FORMAT,
    RELEASED_PREFIX,
    RUNTIME_FRONTEND,
    SHAPE_FIELDS,
    UNUSED_UPSTREAM_PREFIXES,
    CheckpointError,
    LoadReport,
    check_config,
    check_frontend,
    check_tensors,
    compare_keys,
    expected_shapes,
    infer_config,
    load_encoder,
    load_strict,
    parse_config,
    read_state,
    sniff,
    split_state,
    stored_config,
    unwrap,
)
from hear_gram.checkpoints.saving import (
    random_decoder,
    random_encoder,
    released_state,
    save_checkpoint,
    upstream_decoder_state,
)
from hear_gram.checkpoints.sources import (
    SOURCE_KEYS,
    cached_path,
    default_registry_path,
    fetch,
    hub_file,
    local_path,
    local_root,
    registered_path,
    registry,
    registry_entry,
    registry_path,
    resolve,
    sha256,
    verify_hub_file,
)
from hear_gram.config import PRESETS

# The registry file every function of `sources` reads (at each call): the copy a built wheel
# carries, else the repository's ``checkpoints.json``. Point it elsewhere to use another registry.
REGISTRY_PATH = default_registry_path()

__all__ = [
    "CheckpointError", "DECODER_PREFIXES", "ENCODER_PREFIXES", "FLOAT_DTYPES", "FRONTEND_KEYS",
    "FRONTEND_PREFIXES", "HUB_PREFIX", "LAYOUTS", "LIGHTNING_KEY", "LoadReport", "OWN_FORMAT",
    "PRESETS", "REGISTRY_PATH", "RELEASED_PREFIX", "RUNTIME_FRONTEND", "SHAPE_FIELDS",
    "SOURCE_KEYS", "UNUSED_UPSTREAM_PREFIXES", "cached_path", "check_config",
    "check_frontend", "check_tensors", "compare_keys", "default_registry_path", "expected_shapes",
    "fetch", "hub_file", "infer_config", "load_encoder", "load_strict", "local_path", "local_root", "main",
    "parse_config", "random_decoder", "random_encoder", "read_state", "registered_path", "registry",
    "registry_entry", "registry_path",
    "released_state", "resolve", "save_checkpoint", "sha256", "sniff", "split_state",
    "stored_config", "unwrap", "upstream_decoder_state", "verify_hub_file",
]  # fmt: skip
