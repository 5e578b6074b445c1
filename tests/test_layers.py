"""The import layers of .importlinter: held by the code, and the two contracts agree."""

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".importlinter")
    return cfg


def _layers(section: str) -> list[list[str]]:
    text = _contracts()[f"importlinter:contract:{section}"]["layers"]
    return [[m.strip() for m in line.replace("|", ":").split(":")] for line in text.split("\n") if line.strip()]  # fmt: skip


def test_both_contracts_list_the_same_base_modules():
    # "packages" lists the base of hear_gram by name; "hear_gram" (exhaustive) places every module.
    # A module added to the second but not the first would escape the package-level check.
    apps_and_base = _layers("hear_gram")
    apps = {m for line in apps_and_base[:2] for m in line}
    base_inner = {f"hear_gram.{m}" for line in apps_and_base[2:] for m in line}
    packages = _layers("packages")
    assert {m.removeprefix("hear_gram.") for m in packages[0]} == apps
    assert set(packages[-1]) == base_inner


def test_lint_imports_keeps_every_contract_and_catches_an_upward_import(tmp_path):
    exe = Path(sys.executable).with_name("lint-imports")
    ok = subprocess.run([exe, "--config", str(ROOT / ".importlinter")], cwd=ROOT,
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stdout[-2000:]
    assert "0 broken" in ok.stdout
    # The same contracts on a copy of the packages in which the base imports a data tool.
    import shutil

    for pkg in ("hear_gram", "naturalistic_hear", "localization_tasks"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "hear_gram" / "dsp.py", "a") as f:
        f.write("\nfrom naturalistic_hear import rooms  # an upward import\n")
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    bad = subprocess.run([exe, "--config", ".importlinter"], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert bad.returncode != 0
    assert "hear_gram.dsp -> naturalistic_hear" in bad.stdout.replace("\n", " ")
