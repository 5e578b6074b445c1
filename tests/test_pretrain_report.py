"""The pretraining report: numbers over seeds, the 2-standard-error rule and its verdicts, the
left/right kernel diagnostic, the run folders it reuses or refuses, and the whole pipeline end
to end on a tiny configuration (the full report: ``make pretrain-report``)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from hear_gram.checkpoints import save_checkpoint
from hear_gram.pretrain.data import SceneMixer
from hear_gram.pretrain.diagnostics import lr_kernel_cosine, weights_lr_cosine
from hear_gram.pretrain.report import main
from hear_gram.pretrain.report.markdown import kernel_change
from hear_gram.pretrain.report.runs import (
    NOT_LEARNED,
    Plan,
    StaleRunError,
    encoder_weights,
    finished_run,
    init_encoder,
    run_config,
)
from hear_gram.pretrain.report.stats import (
    DIRECTION,
    LOC_BINS,
    MODELS,
    Score,
    compare,
    outcome,
    over_seeds,
    summary,
    verdict,
    verdicts,
)
from hear_gram.pretrain.train import CONFIG_FILE, PretrainModule, get_config
from tests.tiny import TINY_TRAIN

TINY = TINY_TRAIN


def err(*values: float) -> Score:
    return Score(tuple(values), higher_is_better=False)


# --- numbers over seeds ------------------------------------------------------------------------
def test_standard_error_is_over_seeds_from_the_per_seed_numbers():
    per_seed = [{"a": 1.0, "b": 5.0}, {"a": 2.0, "b": 5.0}, {"a": 4.0, "b": 5.0}]
    scores = over_seeds(per_seed, higher_is_better=False)
    assert scores["a"].values == (1.0, 2.0, 4.0)  # seed order kept
    # by hand: mean 7/3, deviations -4/3, -1/3, 5/3, sample variance (42/9)/2, SE = sd/sqrt(3)
    assert scores["a"].mean == pytest.approx(7 / 3)
    assert scores["a"].se() == pytest.approx(math.sqrt(21 / 9) / math.sqrt(3))
    assert scores["a"].cell(2) == "2.33 ± 0.88"
    assert scores["b"].se() == 0.0
    assert math.isnan(err(3.0).se()) and err(3.0).cell(1) == "3.0"  # one seed: no spread
    with pytest.raises(ValueError, match="finite"):
        err(1.0, float("nan"))


# The SE of each score below is 2/sqrt(3); of a difference, 2 sqrt(2/3) = 1.633: 2 SE = 3.266.
A = err(10.0, 12.0, 14.0)


@pytest.mark.parametrize("gap", [3.0, 3.2])
def test_within_two_standard_errors_is_noise(gap):
    b = err(10.0 + gap, 12.0 + gap, 14.0 + gap)
    assert "within noise" in compare("a", A, "b", b, "loc")
    v = verdict("a", A, "b", b, "loc", " deg", 1)
    assert "**No**, within noise" in v and "2 standard errors 3.3 deg" in v


def test_beyond_two_standard_errors_is_a_difference_lower_error_wins():
    b = err(13.4, 15.4, 17.4)  # 3.4 > 3.266
    assert compare("a", A, "b", b, "loc", " deg").startswith("loc: a is better than b by 3.4 deg")
    assert "**Yes**" in verdict("a", A, "b", b, "loc", " deg", 1)
    assert "**No, the reverse**: a is better" in verdict("b", b, "a", A, "loc", " deg", 1)
    accuracy = Score((0.9, 0.92, 0.94), higher_is_better=True)
    worse = Score((0.8, 0.82, 0.84), higher_is_better=True)
    assert "**Yes**" in verdict("x", accuracy, "y", worse, "top1", "", 3)


def test_a_single_seed_is_stated_never_judged():
    one, other = err(10.0), err(50.0)
    assert "single seed" in compare("a", one, "b", other, "loc")
    v = verdict("a", one, "b", other, "loc", " deg", 1)
    assert "**Cannot tell**" in v and "Yes" not in v and "No" not in v


def test_verdicts_and_outcome_cover_every_pair_pooling_and_bin():
    by_model = {
        m: {**{b: err(v, v + 1, v + 2) for b in LOC_BINS}, DIRECTION: err(v, v + 1, v + 2),
            "t60": err(0.3, 0.31, 0.32)}
        for m, v in zip(MODELS, (20.0, 40.0, 60.0), strict=True)
    }  # fmt: skip
    loc = {"cls": by_model, "mean": by_model}
    lines = verdicts(loc)
    assert len(lines) == 2 * 2 * 3  # poolings x (direction, T60) x pairs
    assert lines[0].startswith(
        "Is naturalistic better than clean on direction error, mean over SNR bins (cls pooling)? "
        "**Yes**"
    )
    assert sum("T60" in s and "within noise" in s for s in lines) == 6
    assert summary(loc) == (
        "In short (direction error, cls pooling): naturalistic better than clean: **yes**; "
        "naturalistic better than random: **yes**; clean better than random: **yes**."
    )
    reverse = {"cls": {m: {DIRECTION: err(*v)} for m, v in zip(MODELS, ((50.0, 52.0),
               (49.0, 53.0), (30.0,)), strict=True)}}  # fmt: skip
    assert summary(reverse) == (
        "In short (direction error, cls pooling): naturalistic better than clean: **no (within "
        "noise)**; naturalistic better than random: **cannot tell**; clean better than random: "
        "**cannot tell**."
    )
    reverse["cls"]["random"] = {DIRECTION: err(20.0, 22.0)}
    assert "naturalistic better than random: **no (random is better)**" in summary(reverse)
    values = zip(MODELS, (0.9, 0.9, 0.6), strict=True)
    cls = {m: {"scene top1": Score((v, v), True)} for m, v in values}
    detail = outcome(cls, loc)
    assert len(detail) == 3 * (1 + 2 * (len(LOC_BINS) + 1))  # DIRECTION only in verdicts


# --- the diagnostic ----------------------------------------------------------------------------
def test_lr_cosine_of_identical_opposite_independent_and_zero_kernels():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 2, 16, 16, generator=gen)
    same = w.clone()
    same[:, 1] = same[:, 0]
    np.testing.assert_allclose(lr_kernel_cosine(same), 1.0, atol=1e-12)
    opposite = same.clone()
    opposite[:, 1] = -3.0 * opposite[:, 0]  # scale does not matter, sign does
    np.testing.assert_allclose(lr_kernel_cosine(opposite), -1.0, atol=1e-12)
    # independent kernels of 256 taps: cosines ~ N(0, 1/16)
    assert abs(float(np.mean(lr_kernel_cosine(w)))) < 0.05
    assert float(np.max(np.abs(lr_kernel_cosine(w)))) < 0.4
    w[3] = 0.0
    assert np.isnan(lr_kernel_cosine(w)[3]) and np.isfinite(lr_kernel_cosine(w)[:3]).all()
    with pytest.raises(ValueError, match="channels 0 and 1"):
        lr_kernel_cosine(torch.zeros(4, 1, 2, 2))


def test_lr_cosine_of_an_encoder_file_with_identical_channel_kernels_is_one(tmp_path):
    cfg = get_config("demo-cpu", list(TINY))
    encoder = init_encoder(cfg)
    before = weights_lr_cosine(save_checkpoint(tmp_path / "init.safetensors", encoder))
    assert abs(float(np.mean(before))) < 0.2  # the initialisation draws L and R independently
    with torch.no_grad():
        encoder.patch_embed.proj.weight[:, 1] = encoder.patch_embed.proj.weight[:, 0]
    path = save_checkpoint(tmp_path / "same.safetensors", encoder)
    np.testing.assert_allclose(weights_lr_cosine(path), 1.0, atol=1e-6)


def test_dry_batches_give_both_ear_kernels_the_same_update():
    """The report's explanation: with the mono clip on both channels, an AdamW step moves the
    left and right kernels alike, so their difference only shrinks by weight decay."""
    cfg = get_config("demo-cpu", list(TINY))
    module = PretrainModule(cfg, SceneMixer(2))
    f, t = cfg.gram_config().features.n_mels, cfg.gram_config().features.chunk_frames
    mono = torch.randn(2, 1, f, t, generator=torch.Generator().manual_seed(1))
    weight = module.mae.encoder.patch_embed.proj.weight
    gap0 = (weight[:, 0] - weight[:, 1]).detach().clone()
    lr, wd = 1e-2, 0.1
    opt = torch.optim.AdamW(module.mae.parameters(), lr=lr, weight_decay=wd)
    loss, _, _ = module.mae(mono.expand(-1, 2, -1, -1), generator=torch.Generator().manual_seed(2))
    loss.backward()
    assert weight.grad[:, 0].abs().sum() > 0
    torch.testing.assert_close(weight.grad[:, 0], weight.grad[:, 1], rtol=0, atol=0)
    opt.step()
    torch.testing.assert_close(weight[:, 0] - weight[:, 1], gap0 * (1 - lr * wd))


def test_before_is_the_initialisation_of_the_training_run():
    cfg = run_config("clean", 2, Plan(run_dir="r", overrides=TINY))
    pl.seed_everything(cfg.seed)
    trained_init = PretrainModule(cfg, SceneMixer(2)).mae.encoder.state_dict()
    ours = init_encoder(cfg).state_dict()
    assert ours.keys() == trained_init.keys()
    for k in ours:
        torch.testing.assert_close(ours[k], trained_init[k], rtol=0, atol=0)
    other = init_encoder(cfg.replace(seed=3)).patch_embed.proj.weight
    assert not torch.equal(other, ours["patch_embed.proj.weight"])


def test_kernel_change_sentences():
    assert "(not trained)" in kernel_change("random", err(0.1, 0.0), err(0.1, 0.0))
    rose = kernel_change("clean", err(0.01, 0.0, -0.01), err(0.6, 0.7, 0.8))
    assert rose.startswith("clean: L/R cosine rose")
    assert "did not move" in kernel_change("nat", err(0.0, 0.1, -0.1), err(0.05, 0.15, -0.05))


# --- run folders -------------------------------------------------------------------------------
def test_run_folders_per_lambda_and_seed(tmp_path):
    plan = Plan(run_dir=str(tmp_path / "demo-cpu"))
    dirs = {
        (m, s): run_config(m, s, plan).out_dir for m in ("naturalistic", "clean") for s in (0, 1)
    }
    assert dirs == {
        ("naturalistic", 0): str(tmp_path / "demo-cpu"),
        ("naturalistic", 1): str(tmp_path / "demo-cpu-seed1"),
        ("clean", 0): str(tmp_path / "demo-cpu-clean"),
        ("clean", 1): str(tmp_path / "demo-cpu-clean-seed1"),
    }
    for s in (0, 1):
        nat, clean = run_config("naturalistic", s, plan), run_config("clean", s, plan)
        assert (nat.clean_ratio, clean.clean_ratio, nat.seed, clean.seed) == (0.0, 1.0, s, s)
        # the two runs of a seed differ only in lambda and where they live
        assert clean.replace(clean_ratio=0.0, out_dir="x") == nat.replace(out_dir="x")
    # the defaults, and naturalistic seed 0 is exactly make pretrain-demo's run
    assert (plan.seeds, plan.steps, plan.bank_scenes) == (3, 1000, 1000)
    make_demo = get_config(
        "demo-cpu", [f"out_dir={tmp_path / 'demo-cpu'}", f"bank_dir={tmp_path / 'banks'}"]
    )
    assert run_config("naturalistic", 0, plan) == make_demo
    with pytest.raises(ValueError, match="set by the report"):
        Plan(overrides=("max_steps=5",))


def finish(cfg, **stored) -> None:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.safetensors").write_bytes(b"weights")
    (out / CONFIG_FILE).write_text(json.dumps({**dataclasses.asdict(cfg), **stored}))


def test_a_finished_run_is_reused_only_when_its_config_matches(tmp_path, capsys):
    plan = Plan(run_dir=str(tmp_path / "demo-cpu"))
    cfg = run_config("naturalistic", 0, plan)
    assert finished_run(cfg) is None  # nothing there: train
    finish(cfg, num_workers=7, out_dir="/elsewhere")  # not learned: still the same run
    assert finished_run(cfg) == tmp_path / "demo-cpu" / "model.safetensors"
    assert set(NOT_LEARNED) >= {"out_dir", "num_workers"}
    finish(cfg, bank_scenes=32)  # the old demo bank
    with pytest.raises(StaleRunError, match="bank_scenes: 32 there, 1000 asked"):
        finished_run(cfg)
    # the CLI refuses before any work, in one line, and leaves the folder alone
    assert main(["--work", str(tmp_path / "w"), "--run-dir", plan.run_dir]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("python -m hear_gram.pretrain.report: error: ")
    assert "bank_scenes" in lines[-1] and "Traceback" not in "".join(lines)
    assert (tmp_path / "demo-cpu" / "model.safetensors").read_bytes() == b"weights"
    assert not (tmp_path / "w").exists()
    (tmp_path / "demo-cpu" / CONFIG_FILE).unlink()
    with pytest.raises(StaleRunError, match=f"without a readable {CONFIG_FILE}"):
        finished_run(cfg)


# --- end to end --------------------------------------------------------------------------------
def cell_of(report: str, row: str, column: str) -> str:
    lines = report.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| model |") and f" {column} |" in line:
            col = [c.strip() for c in line.strip("|").split("|")].index(column)
            for body in lines[i + 2 :]:
                if not body.startswith("|"):
                    break
                cells = [c.strip() for c in body.strip("|").split("|")]
                if cells[0] == row:
                    return cells[col]
    raise AssertionError(f"no cell ({row}, {column})")


@pytest.fixture
def one_thread():
    """The probes are tiny: a second OpenMP thread spinning on a busy 2-core machine made this
    test 6x slower (820 s instead of 130 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_report_end_to_end_tiny(tmp_path, one_thread):
    """2 seeds x (naturalistic, clean, random), 2 training steps each, localization only: the
    tables are means ± SE over the per-seed numbers it records, and a rerun retrains nothing.
    About 40 s of CPU (the probes: 12 evaluations x 5 tasks x 5 folds)."""
    work, run_dir = tmp_path / "report", tmp_path / "runs" / "demo"
    args = ["--work", str(work), "--run-dir", str(run_dir), "--seeds", "2", "--steps", "2",
            "--bank-scenes", "2", "--grid", "tiny", "--n-scenes", "10", "--clips-per-class", "2",
            "--no-classification", *[f"--set={o}" for o in TINY]]  # fmt: skip
    assert main(args) == 0
    report = (work / "REPORT.md").read_text()
    scores = json.loads((work / "scores.json").read_text())
    per_seed = scores["per_seed"]
    assert scores["meta"]["runs"] == "4 trained now, 0 reused"
    for model in MODELS:
        values = [s[DIRECTION] for s in per_seed["localization"]["cls"][model]]
        assert len(values) == 2
        mean, se = np.mean(values), np.std(values, ddof=1) / np.sqrt(2)
        assert cell_of(report, f"{model} (cls)", DIRECTION) == f"{mean:.2f} ± {se:.2f}"
        # the headline direction score is the mean of the seed's SNR bins
        for seed in per_seed["localization"]["mean"][model]:
            assert seed[DIRECTION] == pytest.approx(np.mean([seed[b] for b in LOC_BINS]))
    diag = per_seed["diagnostic"]
    assert [d["before"] for d in diag["random"]] == [d["after"] for d in diag["random"]]
    assert [d["before"] for d in diag["clean"]] == [d["before"] for d in diag["random"]]
    assert all(d["after"] != d["before"] for d in diag["naturalistic"])
    verdict_lines = [line for line in report.splitlines() if line.startswith("- Is ")]
    assert len(verdict_lines) == 12
    assert all(re.search(r"\*\*(Yes|No|No, the reverse)\*\*", v) for v in verdict_lines)
    for png in ("loss.png", "localization.png", "lr_kernels.png"):
        assert (work / png).stat().st_size > 1000 and f"]({png})" in report
    assert "gcc_phat" in report and "## Classification" not in report
    # a rerun retrains nothing: every run folder is found finished and reused as it is
    plan = Plan(run_dir=str(run_dir), seeds=2, steps=2, bank_scenes=2, overrides=TINY)
    weights = run_dir.parent / "demo-clean-seed1" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    for model in ("naturalistic", "clean"):
        for seed in (0, 1):
            path, status = encoder_weights(model, seed, plan, work)
            assert status == "reused" and path == Path(run_config(model, seed, plan).out_dir) / (
                "model.safetensors"
            )
    assert weights.stat().st_mtime_ns == stamp
