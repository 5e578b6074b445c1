"""Released weights through huggingface_hub: the user's Hugging Face cache, revisions, offline
mode, mirrors (HF_ENDPOINT), tokens, and our sha256 check after the download. Each case runs the
real command in a fresh interpreter with the environment a user would set, against a local
stand-in for the hub (`tests/hub_stand_in.py`): nothing here reaches the internet."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hear_gram import checkpoints as ck
from hear_gram.checkpoints import random_encoder, save_checkpoint
from tests.hub_stand_in import HubStandIn, Repo

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMIT = "1" * 40
# The driver: the checkpoints tool, or the HEAR module loading a registry name, with the registry
# in argv[1] (the shipped one unless a test writes its own).
DRIVER = """
import sys
import hear_gram.checkpoints as ck
ck.REGISTRY_PATH = sys.argv[1]
if sys.argv[2] == "load_model":
    import hear_gram
    m = hear_gram.load_model(sys.argv[3])
    print("loaded", m.source)
else:
    sys.exit(ck.main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> bytes:
    """A depth-1 GRAM-T in upstream's released layout: the bytes the stand-in serves."""
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    save_checkpoint(path, random_encoder("gram-t", depth=1, seed=5), "released")
    return path.read_bytes()


def run(args, env_extra: dict, registry: Path | None = None, hf_home: Path | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    if hf_home is not None:
        env["HF_HOME"] = str(hf_home)
    env.update(env_extra)
    reg = str(registry or ck.default_registry_path())
    return subprocess.run(
        [sys.executable, "-c", DRIVER, reg, *args], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def blobs(hf_home: Path, repo_id: str) -> list[Path]:
    folder = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}" / "blobs"
    return (
        sorted(p for p in folder.iterdir() if not p.name.endswith(".lock"))
        if folder.is_dir()
        else []
    )


def test_fetch_fills_the_users_hf_cache_and_then_works_offline(tmp_path, weights):
    hf = tmp_path / "hf"
    repo = Repo(COMMIT, {"model.safetensors": weights})
    with HubStandIn({"labhamlet/gramt-binaural": repo}) as hub:
        out = run(["fetch", "gramt-binaural"], {"HF_ENDPOINT": hub.url}, hf_home=hf)
        assert out.returncode == 0, out.stderr
        # the file is huggingface_hub's snapshot entry, a link to the blob named by its sha256
        snapshot = hf / "hub" / "models--labhamlet--gramt-binaural" / "snapshots" / COMMIT
        assert Path(out.stdout.strip()) == snapshot / "model.safetensors"
        assert [b.name for b in blobs(hf, "labhamlet/gramt-binaural")] == [
            hashlib.sha256(weights).hexdigest()
        ]
        assert (
            hf / "hub" / "models--labhamlet--gramt-binaural" / "refs" / "main"
        ).read_text() == COMMIT
        assert repo.gets == 1
        # a second fetch is answered by the cache, with no second download
        out = run(["fetch", "gramt-binaural"], {"HF_ENDPOINT": hub.url}, hf_home=hf)
        assert out.returncode == 0 and repo.gets == 1
    # the stand-in is gone: offline, the HEAR module loads the registry name from the cache
    out = run(["load_model", "gramt-binaural"], {"HF_HUB_OFFLINE": "1"}, hf_home=hf)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"loaded {snapshot / 'model.safetensors'}"


def test_offline_with_an_empty_cache_is_one_line_naming_the_way_out(tmp_path):
    out = run(["fetch", "gramt-binaural"], {"HF_HUB_OFFLINE": "1"}, hf_home=tmp_path / "hf")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m hear_gram.checkpoints: error: ")
    assert "HF_HUB_OFFLINE is set" in lines[0] and "pass the weights file's path" in lines[0]


def test_a_pinned_revision_is_asked_for_by_its_commit(tmp_path, weights):
    """gramt-mono is pinned in checkpoints.json: the request names that commit, not "main"."""
    pinned = ck.registry()["gramt-mono"]["revision"]
    assert len(pinned) == 40
    repo = Repo(pinned, {"model.safetensors": weights})
    with HubStandIn({"labhamlet/gramt-mono": repo}) as hub:
        out = run(["fetch", "gramt-mono"], {"HF_ENDPOINT": hub.url}, hf_home=tmp_path / "hf")
        assert out.returncode == 0, out.stderr
        # (huggingface_hub also asks the endpoint for /api/... listings of its own)
        assert {p for _, p, _ in hub.requests if "/resolve/" in p} == {
            f"/labhamlet/gramt-mono/resolve/{pinned}/model.safetensors"
        }


def test_a_private_repository_needs_the_users_token(tmp_path, weights):
    repo = Repo(COMMIT, {"model.safetensors": weights}, token="hf_secret")
    with HubStandIn({"labhamlet/gramt-binaural": repo}) as hub:
        env = {"HF_ENDPOINT": hub.url}
        out = run(["fetch", "gramt-binaural"], env, hf_home=tmp_path / "a")
        assert out.returncode == 2 and "set HF_TOKEN or run `hf auth login`" in out.stderr
        assert "HTTP 401" in out.stderr and len(out.stderr.strip().splitlines()) == 1
        out = run(
            ["fetch", "gramt-binaural"], {**env, "HF_TOKEN": "hf_secret"}, hf_home=tmp_path / "b"
        )
        assert out.returncode == 0, out.stderr
        assert ("GET", "/labhamlet/gramt-binaural/resolve/main/model.safetensors",
                "Bearer hf_secret") in hub.requests  # fmt: skip


def registry_with(tmp_path: Path, sha256: str | None) -> Path:
    entry = {"source": "huggingface", "repo_id": "lab/w", "revision": "main",
             "file": "model.safetensors", "sha256": sha256}  # fmt: skip
    path = tmp_path / "checkpoints.json"
    path.write_text(json.dumps({"schema": 1, "checkpoints": {"w": entry}}))
    return path


@pytest.mark.hostile("stale")
@pytest.mark.parametrize("recorded", [True, False], ids=["recorded-sha256", "hub-lfs-sha256"])
def test_a_tampered_download_is_refused_and_leaves_nothing_in_the_cache(
    tmp_path, weights, recorded
):
    """Same size, other bytes: huggingface_hub checks only the size; our check catches it,
    against checkpoints.json's sha256 or, with none recorded, the hub's own LFS sha256."""
    hf = tmp_path / "hf"
    good = hashlib.sha256(weights).hexdigest()
    registry = registry_with(tmp_path, good if recorded else None)
    tampered = bytearray(weights)
    tampered[-1] ^= 1
    repo = Repo(
        COMMIT, {"model.safetensors": weights}, served={"model.safetensors": bytes(tampered)}
    )
    with HubStandIn({"lab/w": repo}) as hub:
        out = run(["fetch", "w"], {"HF_ENDPOINT": hub.url}, registry, hf)
        assert out.returncode == 2
        assert (
            f"checksum mismatch for w: the downloaded file's sha256 is {hashlib.sha256(tampered).hexdigest()}"
            in out.stderr
        )
        assert (
            "checkpoints.json" if recorded else "the hub's LFS record"
        ) + f" says {good}" in out.stderr
        assert blobs(hf, "lab/w") == []
        assert not list((hf / "hub" / "models--lab--w" / "snapshots").rglob("model.safetensors"))
        # the cache is not poisoned: offline, nothing is found; online, the true file comes
        out = run(["fetch", "w"], {"HF_HUB_OFFLINE": "1"}, registry, hf)
        assert out.returncode == 2 and "HF_HUB_OFFLINE is set" in out.stderr
        repo.served.clear()
        out = run(["fetch", "w"], {"HF_ENDPOINT": hub.url}, registry, hf)
        assert out.returncode == 0, out.stderr
        assert Path(out.stdout.strip()).read_bytes() == weights


@pytest.mark.hostile("stale")
def test_a_truncated_download_is_refused_and_leaves_nothing_in_the_cache(tmp_path, weights):
    hf = tmp_path / "hf"
    repo = Repo(
        COMMIT, {"model.safetensors": weights}, served={"model.safetensors": weights[:-100]}
    )
    with HubStandIn({"lab/w": repo}) as hub:
        out = run(["fetch", "w"], {"HF_ENDPOINT": hub.url}, registry_with(tmp_path, None), hf)
    assert out.returncode == 2 and "could not download lab/w" in out.stderr
    assert f"should be of size {len(weights)}" in out.stderr
    assert blobs(hf, "lab/w") == [] and not list(hf.rglob("*.incomplete"))


@pytest.mark.hostile("stale")
def test_a_cached_file_altered_later_is_refused_and_removed(tmp_path, weights):
    """A cache entry changed after its download (disk fault, another tool): the next load
    re-hashes it, refuses it and takes it out, so the one after downloads it again."""
    hf = tmp_path / "hf"
    registry = registry_with(tmp_path, hashlib.sha256(weights).hexdigest())
    repo = Repo(COMMIT, {"model.safetensors": weights})
    with HubStandIn({"lab/w": repo}) as hub:
        assert run(["fetch", "w"], {"HF_ENDPOINT": hub.url}, registry, hf).returncode == 0
        (blob,) = blobs(hf, "lab/w")
        blob.write_bytes(b"\0" * len(weights))
        out = run(["load_model", "w"], {"HF_HUB_OFFLINE": "1"}, registry, hf)
        assert out.returncode != 0 and "checksum mismatch for w" in out.stderr
        assert blobs(hf, "lab/w") == []
        out = run(["load_model", "w"], {"HF_ENDPOINT": hub.url}, registry, hf)
        assert out.returncode == 0, out.stderr
        assert repo.gets == 2


@pytest.mark.hostile("path")
@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("repo_id", "https://evil.example/x", "is not a hub repository id"),
        ("repo_id", "../../x", "is not a hub repository id"),
        ("file", "../../outside.bin", "not a plain relative name"),
        ("sha256", "abc", "sha256 must be 64 lowercase hex digits"),
        ("revision", 5, "revision must be a string or null"),
    ],
)
def test_registry_values_that_could_lead_a_download_astray_are_refused(
    tmp_path, monkeypatch, field, value, needle
):
    entry = {"source": "huggingface", "repo_id": "lab/w", "file": "model.safetensors", field: value}
    (tmp_path / "checkpoints.json").write_text(json.dumps({"checkpoints": {"w": entry}}))
    monkeypatch.setattr(ck, "REGISTRY_PATH", tmp_path / "checkpoints.json")
    with pytest.raises(ck.CheckpointError, match=needle):
        ck.resolve("w")
