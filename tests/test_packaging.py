"""hear-gram as a researcher installs it: a wheel built from the sources, installed into a fresh
folder, used from outside the checkout (HEAR asks for a pip-installable package).

The wheel is built from a copy of the build inputs (the checkout stays free of build/ and
egg-info), with this interpreter's setuptools (no download: --no-build-isolation), and installed
with --no-deps: the dependencies come from this environment's site-packages, while the checkout
itself is never on the path of the processes that use the installed package.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hear_gram.checkpoints import random_encoder, save_checkpoint
from tests.hub_stand_in import prefill_cache

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("hear_gram", "naturalistic_hear", "localization_tasks")
BUILD_INPUTS = ("setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md",
                "checkpoints.json", *PACKAGES)  # fmt: skip
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def _run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 120):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORE)
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(dist), str(src)], cwd=src)  # fmt: skip
    (whl,) = dist.glob("hear_gram-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("target")
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
          str(wheel)], cwd=target)  # fmt: skip
    return target


def outside_env(target: Path, home: Path) -> dict:
    """The installed folder first on the path, the checkout nowhere on it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), HF_HOME=str(home), OMP_NUM_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="2")  # fmt: skip
    return env


def test_wheel_holds_every_module_and_the_registry(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        p.relative_to(REPO).as_posix()
        for pkg in PACKAGES
        for p in (REPO / pkg).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    # a sub-package without __init__.py (setuptools' find: skips it) would be missing here
    assert sorted(sources - names) == []
    with zipfile.ZipFile(wheel) as z:
        packaged = z.read("hear_gram/checkpoints/checkpoints.json")
    # the repository's file is the source of truth: the wheel carries it byte for byte
    assert packaged == (REPO / "checkpoints.json").read_bytes()


INSPECT = """
import json, sys
import hear_gram
from hear_gram import checkpoints as ck
out = {
    "hear_gram": hear_gram.__file__,
    "registry_path": str(ck.REGISTRY_PATH),
    "registry": ck.registry(),
    "local_path": str(ck.local_path("gram-demo-cpu")),
    "cached_path": str(ck.cached_path("gramt-binaural")),
    "checkout_on_path": any(p and __import__("os").path.samefile(p, sys.argv[1])
                            for p in sys.path if __import__("os").path.isdir(p)),
}
try:
    ck.resolve("gram-demo-cpu")
except ck.CheckpointError as err:
    out["resolve_error"] = str(err)
print(json.dumps(out))
"""


def test_installed_package_resolves_its_registry_from_outside_the_checkout(installed, tmp_path):
    run = tmp_path / "elsewhere"
    run.mkdir()
    env = outside_env(installed, tmp_path / "hf")
    weights = save_checkpoint(tmp_path / "w.st", random_encoder("gram-t", depth=1), "released")
    snapshot = prefill_cache(tmp_path / "hf" / "hub", "labhamlet/gramt-binaural",
                             "model.safetensors", weights.read_bytes())  # fmt: skip
    proc = _run([sys.executable, "-c", INSPECT, str(REPO)], cwd=run, env=env)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["hear_gram"]).is_relative_to(installed)
    assert not out["checkout_on_path"]
    assert (
        Path(out["registry_path"]) == installed / "hear_gram" / "checkpoints" / "checkpoints.json"
    )
    assert filecmp.cmp(out["registry_path"], REPO / "checkpoints.json", shallow=False)
    assert out["registry"] == json.loads((REPO / "checkpoints.json").read_text())["checkpoints"]
    # a local entry of an installed package lives under the current directory (where `make`
    # would have written work/), never under site-packages
    assert Path(out["local_path"]) == run / "work/pretrain/demo-cpu/model.safetensors"
    assert "make pretrain-demo" in out["resolve_error"]
    # released weights: found in the user's Hugging Face cache (HF_HOME), offline
    assert Path(out["cached_path"]) == snapshot


VALIDATE = """
import runpy, sys
from pathlib import Path
import hear_gram
# the validator must exercise the installed copy, not a checkout the environment also knows
assert Path(hear_gram.__file__).is_relative_to(sys.argv[1]), hear_gram.__file__
sys.argv = ["hear-validator", "hear_gram", "-m", sys.argv[2], "-d", "cpu"]
runpy.run_module("hearvalidator.validate", run_name="__main__")
"""


@pytest.mark.slow
def test_installed_package_passes_the_hear_validator(installed, tmp_path):
    env = outside_env(installed, tmp_path / "cache")
    weights = tmp_path / "random.safetensors"
    made = _run([sys.executable, "-m", "hear_gram.checkpoints", "random", "--model", "gram-t",
                 "--depth", "1", "--out", str(weights)], cwd=tmp_path, env=env)  # fmt: skip
    assert "depth 1" in made.stdout and weights.is_file()
    proc = _run([sys.executable, "-c", VALIDATE, str(installed), str(weights)], cwd=tmp_path,
                env=env, timeout=300)  # fmt: skip
    log = proc.stdout + proc.stderr
    assert "Looks good!" in log, log[-3000:]
    # a depth-1 GRAM-T: raw timestamp embeddings are 8 frequency tokens x width 768
    assert "timestamp_embedding_size: 6144" in log


def test_a_checkout_reads_the_repository_registry_and_holds_no_second_copy():
    from hear_gram import checkpoints as ck

    # a copy inside the package (left by an in-place build) would win and could go stale
    assert not ck.sources.PACKAGED_REGISTRY.exists()
    assert ck.default_registry_path() == REPO / "checkpoints.json"
    assert ck.local_root() == REPO  # `make pretrain-demo` writes work/ at the repository root
