"""Hostile inputs to ``python -m hear_gram.pretrain.report``: every one fails before any work
(no training, no task written), with one line on stderr and exit 2, and leaves run folders as
they were."""

from __future__ import annotations

import dataclasses
import json

import pytest

from hear_gram.pretrain.report import Plan, main, run_config
from hear_gram.pretrain.train import CONFIG_FILE
from tests.hostile import snapshot

PROG = "python -m hear_gram.pretrain.report: error: "


def refused(capsys, tmp_path, *args: str) -> str:
    work = tmp_path / "work"
    code = main(["--work", str(work), "--run-dir", str(tmp_path / "runs" / "demo"), *args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(PROG)
    assert not work.exists() and not (tmp_path / "runs" / "banks").exists()
    return last


@pytest.mark.hostile("stale")
@pytest.mark.parametrize("stored", ["none", "garbage", "other"])
def test_a_run_folder_of_another_configuration_is_refused_untouched(tmp_path, capsys, stored):
    """The demo run trained before this report (32-scene bank, no config.json) must not be
    scored as if it were the 1000-scene run."""
    cfg = run_config("clean", 1, Plan(run_dir=str(tmp_path / "runs" / "demo")))
    out = tmp_path / "runs" / "demo-clean-seed1"
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"old weights")
    if stored == "garbage":
        (out / CONFIG_FILE).write_text("[1, 2")
    elif stored == "other":
        (out / CONFIG_FILE).write_text(json.dumps({**dataclasses.asdict(cfg), "lr": 0.5}))
    before = snapshot(tmp_path / "runs")
    last = refused(capsys, tmp_path)
    assert str(out) in last
    assert ("lr: 0.5 there, 0.001 asked" in last) if stored == "other" else CONFIG_FILE in last
    assert snapshot(tmp_path / "runs") == before


@pytest.mark.hostile("nonfinite")
@pytest.mark.parametrize("item", ["lr=nan", "mask_ratio=inf", "weight_decay=-inf"])
def test_non_finite_training_settings_are_refused(tmp_path, capsys, item):
    assert f"{item.partition('=')[0]} must be finite" in refused(capsys, tmp_path, "--set", item)


@pytest.mark.hostile("bomb")
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--seeds", "1000000"], "seeds"),
        (["--steps", "0"], "steps"),
        (["--bank-scenes", "1000000000"], "bank_scenes"),
        (["--n-scenes", "1000000000"], "--n-scenes"),
        (["--clips-per-class", "100000"], "--clips-per-class"),
    ],
)
def test_absurd_sizes_are_refused_before_any_work(tmp_path, capsys, args, needle):
    assert needle in refused(capsys, tmp_path, *args)


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    "item, needle",
    [
        ("nope=1", "bad override"),
        ("width=wide", "width takes int | None"),
        ("seed=3", "report's flags"),
    ],
)
def test_bad_overrides_fail_in_one_line(tmp_path, capsys, item, needle):
    assert needle in refused(capsys, tmp_path, "--set", item)
