"""Where weights come from: the registry of known checkpoints (``checkpoints.json``), name
resolution, and the download of released weights into the cache.

Registry entries are released weights (``"source": "huggingface"``, downloaded by `fetch` into
`cache_dir`) or files a command of this repository makes (``"source": "local"``, e.g.
``gram-demo-cpu`` from ``make pretrain-demo``, under ``work/``).

The registry file is the repository's top-level ``checkpoints.json``; a built wheel carries a copy
of it inside the package (``setup.py`` copies it at build time), which wins when present.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from hear_gram.cache import file_sha256
from hear_gram.checkpoints.loading import CheckpointError, load_encoder
from hear_gram.cli import loads_json
from hear_gram.safeio import UnsafePathError, check_name

log = logging.getLogger(__name__)

# An entry's ``source`` says where its file comes from, and which keys it must have:
# "huggingface": downloaded by ``fetch`` into ``cache_dir()``;
# "local": made by a command of this repository (``made_by``, e.g. ``make pretrain-demo``) at
# ``path`` (relative: under `local_root`); never downloaded, never committed.
SOURCE_KEYS = {"huggingface": ("repo_id", "file"), "local": ("path", "made_by")}

# The registry a built wheel carries (copied in at build time by setup.py), and the repository's
# own, the source of truth, which a checkout (plain or editable install) reads.
PACKAGED_REGISTRY = Path(__file__).resolve().with_name("checkpoints.json")
CHECKOUT_REGISTRY = Path(__file__).resolve().parents[2] / "checkpoints.json"


def default_registry_path() -> Path:
    """The packaged copy when there is one (an installed wheel), else the repository's file."""
    return PACKAGED_REGISTRY if PACKAGED_REGISTRY.is_file() else CHECKOUT_REGISTRY


def registry_path() -> Path:
    """The registry file in use: ``hear_gram.checkpoints.REGISTRY_PATH``, read at each call so that
    a caller (or a test) may point it at another file."""
    import hear_gram.checkpoints as package  # this module's own package: already imported

    return Path(package.REGISTRY_PATH)


def local_root() -> Path:
    """The folder a local entry's relative ``path`` is under: the folder of the registry file (the
    repository root, where ``make`` writes ``work/``), or the current directory when the registry
    is the copy inside an installed package (whose folder is site-packages, never a work dir)."""
    path = registry_path()
    return Path.cwd() if path == PACKAGED_REGISTRY else path.parent


def registry() -> dict[str, dict]:
    """The entries of ``checkpoints.json`` by name, each checked for a known source and its keys."""
    path = registry_path()
    try:
        entries = loads_json(path.read_bytes(), str(path))["checkpoints"]  # depth, NaN checked
    except (OSError, ValueError, KeyError, TypeError) as err:
        detail = f"no {err} entry" if isinstance(err, KeyError) else str(err)
        raise CheckpointError(
            f"the registry {path} is unreadable or malformed ({detail}); it must be a "
            'JSON object with a "checkpoints" object of named entries'
        ) from err
    if not isinstance(entries, dict):
        raise CheckpointError(f'{path}: "checkpoints" must be an object of named entries')
    for name, entry in entries.items():
        _check_entry(name, entry, path)
    return entries


def _check_entry(name: str, entry: object, path: Path) -> None:
    if not isinstance(entry, dict):
        raise CheckpointError(f"{path} entry {name!r} is not a JSON object")
    source = entry.get("source")
    if source not in SOURCE_KEYS:
        raise CheckpointError(
            f"{path} entry {name!r} has source {source!r}; valid kinds: {sorted(SOURCE_KEYS)}"
        )
    missing = [k for k in SOURCE_KEYS[source] if not isinstance(entry.get(k), str) or not entry[k]]
    if missing:
        raise CheckpointError(f"{path} entry {name!r} ({source}) lacks {', '.join(missing)}")


def cache_dir() -> Path:
    return Path(os.environ.get("HEAR_GRAM_HOME", Path.home() / ".cache" / "hear_gram"))


def registry_entry(name: str, source: str | None = None) -> dict:
    """Registry entry ``name``; with ``source``, an error unless it is of that kind."""
    reg = registry()
    if name not in reg:
        raise CheckpointError(f"unknown checkpoint {name!r}; known: {sorted(reg)}")
    entry = reg[name]
    if source is not None and entry["source"] != source:
        raise CheckpointError(
            f"checkpoint {name!r} is a {entry['source']} entry, not {source}: {_origin(name, entry)}"
        )
    return entry


def _origin(name: str, entry: Mapping) -> str:
    if entry["source"] == "local":
        return f"made by `{entry['made_by']}` at {local_path(name)}, never downloaded"
    return f"downloaded by `python -m hear_gram.checkpoints fetch {name}` into {cached_path(name)}"


def cached_path(name: str) -> Path:
    """Where ``fetch`` puts the file of Hugging Face entry ``name`` (whether or not it is there)."""
    entry = registry_entry(name, "huggingface")
    # both names come from checkpoints.json: a download must not land outside the cache
    try:
        return cache_dir() / check_name(name, "registry name") / check_name(entry["file"], "file")
    except UnsafePathError as err:
        raise CheckpointError(f"{registry_path()} entry {name!r}: {err}") from err


def local_path(name: str) -> Path:
    """Where the command of local entry ``name`` writes its file (whether or not it is there);
    a relative ``path`` is under `local_root`."""
    path = Path(registry_entry(name, "local")["path"])
    return path if path.is_absolute() else local_root() / path


def registered_path(name: str) -> Path:
    """The file of registry entry ``name``, of either source (whether or not it is there)."""
    return local_path(name) if registry_entry(name)["source"] == "local" else cached_path(name)


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A file path as given, or the file of a registry name: fetched (Hugging Face) or made
    (local) beforehand; an error says which command gives it."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        raise CheckpointError(f"{str(p)!r} is a directory, not a weights file or registry name")
    name = str(name_or_path)
    if name in registry():
        path = registered_path(name)
        if path.is_file():
            return path
        entry = registry_entry(name)
        if entry["source"] == "local":
            raise CheckpointError(
                f"checkpoint {name!r} has not been made yet ({path} missing): run {entry['made_by']}"
            )
        raise CheckpointError(
            f"checkpoint {name!r} is not downloaded yet ({path} missing): run "
            f"python -m hear_gram.checkpoints fetch {name}"
        )
    raise CheckpointError(
        f"weights file {name!r} does not exist and is not a registry name ({sorted(registry())})"
    )


def sha256(path: Path) -> str:
    """The file's sha256 (hex): `hear_gram.cache.file_sha256`, the one file hash of the
    package (computed once per file state in a process)."""
    return file_sha256(Path(path))


def fetch(name: str, timeout: float = 30.0) -> Path:
    """Download a registry checkpoint into the cache, verify its checksum and its keys."""
    entry = registry_entry(name)
    if entry["source"] == "local":
        raise CheckpointError(
            f"{name} is a local checkpoint: it is made, not downloaded. Run {entry['made_by']} "
            f"(it writes {local_path(name)})"
        )
    url = f"https://huggingface.co/{entry['repo_id']}/resolve/{entry.get('revision', 'main')}/{entry['file']}"
    dest = cached_path(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while block := r.read(1 << 20):
                f.write(block)
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not download {url} ({err}). Offline? On a connected machine download that "
            f"file and either pass its path to load_model / --model, or copy it to {dest}"
        ) from err
    digest = sha256(tmp)
    if entry.get("sha256") and digest != entry["sha256"]:
        tmp.unlink()
        raise CheckpointError(
            f"checksum mismatch for {name}: got {digest}, expected {entry['sha256']}"
        )
    tmp.replace(dest)
    load_encoder(dest)  # verifies layout and keys
    log.info("fetched %s -> %s (sha256 %s)", name, dest, digest)
    return dest
