"""Where weights come from: the registry of known checkpoints (``checkpoints.json``), name
resolution, and the download of released weights into the cache.

Registry entries are released weights (``"source": "huggingface"``, downloaded by
``huggingface_hub`` into the user's Hugging Face cache, at the revision the entry pins) or files a command of this repository makes (``"source": "local"``, e.g.
``gram-demo-cpu`` from ``make pretrain-demo``, under ``work/``).

The registry file is the repository's top-level ``checkpoints.json``; a built wheel carries a copy
of it inside the package (``setup.py`` copies it at build time), which wins when present.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from hear_gram.cache import file_sha256
from hear_gram.checkpoints.loading import CheckpointError, load_encoder
from hear_gram.cli import loads_json
from hear_gram.safeio import UnsafePathError, check_name

log = logging.getLogger(__name__)

# An entry's ``source`` says where its file comes from, and which keys it must have:
# "huggingface": ``file`` of the hub repository ``repo_id`` at ``revision``, through huggingface_hub;
# "local": made by a command of this repository (``made_by``, e.g. ``make pretrain-demo``) at
# ``path`` (relative: under `local_root`); never downloaded, never committed.
SOURCE_KEYS = {"huggingface": ("repo_id", "file"), "local": ("path", "made_by")}

# A hub repository id as the hub allows it (owner/name), and a sha256 in hex.
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

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
    if source == "huggingface":
        # handed to huggingface_hub, which builds a URL and a cache path of them: only a hub
        # repository id and a file name inside it, never a URL or a path
        if not _REPO_ID.fullmatch(entry["repo_id"]):
            raise CheckpointError(
                f"{path} entry {name!r}: repo_id {entry['repo_id']!r} is not a hub repository id "
                "(owner/name)"
            )
        try:
            check_name(entry["file"], "file", subdirs=True)
        except UnsafePathError as err:
            raise CheckpointError(f"{path} entry {name!r}: {err}") from err
        for key in ("revision", "sha256"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise CheckpointError(f"{path} entry {name!r}: {key} must be a string or null")
        if entry.get("sha256") and not _SHA256_HEX.fullmatch(entry["sha256"]):
            raise CheckpointError(f"{path} entry {name!r}: sha256 must be 64 lowercase hex digits")


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
    return f"downloaded by `python -m hear_gram.checkpoints fetch {name}` from {entry['repo_id']}"


def cached_path(name: str) -> Path | None:
    """The file of Hugging Face entry ``name`` in the user's Hugging Face cache, or None when it is
    not there. Looks only on disk: never downloads, never reaches the network."""
    return _cached(registry_entry(name, "huggingface"))


def local_path(name: str) -> Path:
    """Where the command of local entry ``name`` writes its file (whether or not it is there);
    a relative ``path`` is under `local_root`."""
    path = Path(registry_entry(name, "local")["path"])
    return path if path.is_absolute() else local_root() / path


def registered_path(name: str) -> Path | None:
    """The file of registry entry ``name`` when it is there (made, or in the Hugging Face cache);
    for a local entry the path it is made at, whether or not it is there."""
    return local_path(name) if registry_entry(name)["source"] == "local" else cached_path(name)


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A file path as given, or the file of a registry name: a local entry made beforehand (an
    error says which command makes it); a Hugging Face entry from the user's Hugging Face cache,
    downloaded there first when it is missing (`fetch`), and checked against its sha256."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        raise CheckpointError(f"{str(p)!r} is a directory, not a weights file or registry name")
    name = str(name_or_path)
    reg = registry()
    if name not in reg:
        raise CheckpointError(
            f"weights file {name!r} does not exist and is not a registry name ({sorted(reg)})"
        )
    entry = reg[name]
    if entry["source"] == "local":
        path = local_path(name)
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint {name!r} has not been made yet ({path} missing): run {entry['made_by']}"
            )
        return path
    return hub_file(name)


def sha256(path: Path) -> str:
    """The file's sha256 (hex): `hear_gram.cache.file_sha256`, the one file hash of the
    package (computed once per file state in a process)."""
    return file_sha256(Path(path))


def fetch(name: str) -> Path:
    """Download registry checkpoint ``name`` into the user's Hugging Face cache (or find it there),
    verify its sha256 and its keys; the file's path."""
    entry = registry_entry(name)
    if entry["source"] == "local":
        raise CheckpointError(
            f"{name} is a local checkpoint: it is made, not downloaded. Run {entry['made_by']} "
            f"(it writes {local_path(name)})"
        )
    path = hub_file(name)
    load_encoder(path)  # verifies layout and keys
    return path


# --- the Hugging Face hub ----------------------------------------------------------------------
# Downloads go through huggingface_hub's own `hf_hub_download`, so that everything a user of the
# hub sets up applies unchanged: the cache (HF_HOME, HF_HUB_CACHE), offline mode (HF_HUB_OFFLINE),
# a mirror (HF_ENDPOINT), a token (HF_TOKEN or `hf auth login`), proxies. What it does not do is
# check a file's content: it compares sizes, not hashes. So every file it hands back is hashed
# here against the sha256 this registry records, or, where none is recorded, against the hub's
# own LFS sha256 (the cache names a blob by its ETag, which for an LFS file is that sha256). A
# file that fails is taken out of the cache, so that no later call trusts it.


def _hub():
    """huggingface_hub, imported on first use (it is not needed to load a file by its path)."""
    import huggingface_hub
    import huggingface_hub.constants  # submodules: not loaded by the package's lazy __init__
    import huggingface_hub.errors

    return huggingface_hub


def _revision(entry: Mapping) -> str:
    """The entry's revision (a commit where checkpoints.json pins one; a string, `_check_entry`),
    "main" when unset."""
    return entry.get("revision") or "main"


def _cached(entry: Mapping) -> Path | None:
    """The entry's file in the user's Hugging Face cache, or None: on disk only, no network."""
    found = _hub().try_to_load_from_cache(
        entry["repo_id"], entry["file"], revision=_revision(entry)
    )
    return Path(found) if isinstance(found, str) else None


def hub_file(name: str) -> Path:
    """Hugging Face entry ``name``'s file: from the user's Hugging Face cache, downloaded there
    first when missing (a progress bar on stderr), then checked (`verify_hub_file`)."""
    entry = registry_entry(name, "huggingface")
    hub = _hub()
    revision = _revision(entry)
    where = f"{entry['repo_id']} ({entry['file']} at revision {revision})"
    if _cached(entry) is None:
        log.info("downloading checkpoint %s from %s", name, where)
    try:
        found = hub.hf_hub_download(
            entry["repo_id"], entry["file"], revision=revision,
            library_name="hear-gram", library_version=_version(),
        )  # fmt: skip
    except hub.errors.LocalEntryNotFoundError as err:
        offline = hub.constants.HF_HUB_OFFLINE
        why = (
            "HF_HUB_OFFLINE is set"
            if offline
            else f"the hub ({hub.constants.ENDPOINT}) is unreachable"
        )
        raise CheckpointError(
            f"checkpoint {name!r} is not in the Hugging Face cache ({hub.constants.HF_HUB_CACHE}) "
            f"and {why}: run `python -m hear_gram.checkpoints fetch {name}` where the hub can be "
            "reached (HF_HOME or HF_HUB_CACHE pointing at a cache you then copy here), or pass the "
            "weights file's path instead of its name"
        ) from err
    except (hub.errors.RepositoryNotFoundError, hub.errors.RevisionNotFoundError) as err:
        raise CheckpointError(
            f"checkpoint {name!r}: {where} was not found or needs access rights on "
            f"{hub.constants.ENDPOINT} (HTTP {_status(err)}); for a gated or private repository "
            "set HF_TOKEN or run `hf auth login`"
        ) from err
    except hub.errors.EntryNotFoundError as err:
        raise CheckpointError(f"checkpoint {name!r}: no file {where} on the hub") from err
    except (hub.errors.HfHubHTTPError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {name!r}: could not download {where}: {err}") from err
    path = Path(found)
    verify_hub_file(name, entry, path)
    return path


def _status(err: Exception) -> str:
    response = getattr(err, "response", None)
    return str(getattr(response, "status_code", "?"))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hear-gram")
    except PackageNotFoundError:
        return "unknown"


def verify_hub_file(name: str, entry: Mapping, path: Path) -> str:
    """``path`` (a file in the Hugging Face cache) against the sha256 the registry records, or else
    the hub's LFS sha256; on a mismatch the file is taken out of the cache and an error raised.
    The digest."""
    digest = sha256(path)
    blob = Path(os.path.realpath(path))
    lfs = blob.name if blob.parent.name == "blobs" and _SHA256_HEX.fullmatch(blob.name) else None
    expected, what = (
        (entry.get("sha256"), "checkpoints.json")
        if entry.get("sha256")
        else (lfs, "the hub's LFS record")
    )
    if expected is None:
        log.warning("%s: no sha256 recorded, and the hub gave none; its sha256 is %s", name, digest)
    elif digest != expected:
        _evict(path, blob)
        raise CheckpointError(
            f"checksum mismatch for {name}: the downloaded file's sha256 is {digest}, {what} says "
            f"{expected}; it was removed from the Hugging Face cache (a truncated or tampered "
            "download). Run the command again to download it afresh"
        )
    log.info(
        "%s: %s (sha256 %s, checked against %s)",
        name,
        path,
        digest,
        what if expected else "nothing",
    )
    return digest


def _evict(pointer: Path, blob: Path) -> None:
    """Take a bad file out of the Hugging Face cache: its snapshot entry and, when the entry points
    into the cache's blob folder of the same repository, the blob itself. Nothing else is touched."""
    storage = pointer.parent
    while storage.parent.name != "" and storage.name != "snapshots":
        storage = storage.parent
    same_repo = (
        storage.name == "snapshots"
        and blob.parent == Path(os.path.realpath(storage.parent)) / "blobs"
    )
    pointer.unlink(missing_ok=True)
    if same_repo:
        blob.unlink(missing_ok=True)
