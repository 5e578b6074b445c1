"""`make gpu-check`: its CPU dry run end to end, and the pieces the GPU run relies on that a CPU
can check (the fused-vs-reference comparison, the switch to the fused path)."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hear_gram import gpu_check
from hear_gram.config import preset

REPO = Path(__file__).resolve().parents[1]


def numbers(obj, path=""):
    """(path, value) of every int/float leaf of a JSON object (bools are not numbers here)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from numbers(v, f"{path}[{i}]")
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield path, obj


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("work")
    proc = subprocess.run(
        ["make", "-s", "gpu-check", "DRY_RUN=1", f"GPU_PY={sys.executable}", f"WORK={work}"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((work / "gpu-check" / "gpu-check.json").read_text())


def test_dry_run_writes_every_section_with_finite_positive_numbers(dry_run):
    assert dry_run["dry_run"] is True and dry_run["environment"]["device"] == "cpu"
    assert dry_run["environment"]["torch"] == torch.__version__
    # the sizes recorded are the dry run's, as JSON writes them (tuples as lists)
    assert dry_run["sizes"] == json.loads(json.dumps(vars(gpu_check.DRY)))
    assert dry_run["embedding"]["status"] == "ok"
    assert dry_run["pretraining"]["status"] == "ok"
    bad = [(p, v) for p, v in numbers(dry_run) if not (math.isfinite(v) and v > 0)]
    assert bad == []
    # the total time covers each section's, measured inside it
    sections = [dry_run[k]["seconds"] for k in gpu_check.SECTIONS]
    assert sum(sections) <= dry_run["seconds"] < sum(sections) + 60


def test_dry_run_embedding_rows(dry_run):
    emb = dry_run["embedding"]
    rows = {(r["model"], r["precision"]): r for r in emb["rows"]}
    assert set(rows) == {("gram-t", "fp32"), ("gram-t", "bf16"), ("gram-m", "fp32"),
                         ("gram-m", "bf16")}  # fmt: skip
    for r in rows.values():
        assert r["bare_audio_s_per_s"] == pytest.approx(20.0 / r["bare_encoder_s"])
        # a process's RSS high-water mark: above the interpreter and torch, below the machine
        assert 100 < r["peak_mem_mb"] < 1e6
        # 10 s at 32 kHz is 1001 frames (hop 320, centred): 6 chunks of 200 frames per clip,
        # at most max_chunks (4) per forward pass
        assert r["chunks"] == 2 * 6 and r["forward_passes"] == 3
        assert r["audio_s_per_s"] == pytest.approx(20.0 / r["runtime_s"])
        assert r["runtime_over_bare"] == pytest.approx(r["runtime_s"] / r["bare_encoder_s"])
    assert rows[("gram-t", "bf16")]["cosine_to_fp32_min"] > 0.99
    assert rows[("gram-m", "bf16")]["cosine_to_fp32_min"] > 0.99
    assert rows[("gram-m", "fp32")]["mamba_path"] == "reference"
    # the throughput goal is about the released model on a GPU: not judged on a dry run
    assert emb["gram_t_bf16_target_met"] is None


def test_dry_run_transformer_throughput_counts_the_flops_of_a_chunk(dry_run):
    """bare_tflops = FLOPs per chunk x chunks / bare seconds, FLOPs per chunk counted here by
    torch's FlopCounterMode (linear layers and the patch convolution) plus attention's two
    (L x L x D) products, 4 L^2 D, with L the tokens the first layer receives."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = gpu_check.sized("gram-t", gpu_check.DRY)
    enc = gpu_check.seeded_encoder(cfg)
    tokens = []
    block = enc.encoder.layers[0]
    hook = block.register_forward_pre_hook(lambda m, args: tokens.append(args[0].shape))
    x = torch.randn(1, cfg.in_channels, cfg.features.n_mels, cfg.features.chunk_frames)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        enc(x)
    hook.remove()
    counted = counter.get_flop_counts()["Global"]
    assert not any("attention" in str(op) for op in counted)  # else it would be counted twice
    ((_, length, width),) = tokens
    per_chunk = counter.get_total_flops() + cfg.depth * 4 * length**2 * width
    assert gpu_check.transformer_flops_per_chunk(cfg) == pytest.approx(per_chunk, rel=1e-9)
    row = next(r for r in dry_run["embedding"]["rows"] if r["model"] == "gram-t")
    expected = per_chunk * row["chunks"] / row["bare_encoder_s"] / 1e12
    assert row["bare_tflops"] == pytest.approx(expected, rel=1e-9)


def test_dry_run_pretraining_and_fused_sections(dry_run):
    pre = dry_run["pretraining"]
    assert (pre["config"], pre["precision"], pre["batch_clips"], pre["steps"]) == (
        "paper-binaural", "bf16", 2, 1)  # fmt: skip
    assert pre["s_per_step"] == pytest.approx(1 / pre["steps_per_s"])
    assert pre["crops_per_clip"] == 2 and pre["overrides"] == list(gpu_check.DRY.pretrain_overrides)
    # a masked-patch MSE of random weights on unit-scale log-mels: positive, of order 1, not NaN
    assert 0 < pre["loss_first"] < 100 and 0 < pre["loss_last"] < 100
    fused = dry_run["mamba_fused"]
    try:
        import mamba_ssm  # noqa: F401

        assert "CUDA" in fused["status"]  # installed, but its kernels cannot run on a CPU
    except ImportError:
        assert fused["status"] == "mamba_ssm not installed"


def tiny_gram_m():
    cfg = preset("gram-m", **gpu_check.TINY_MODEL)
    return gpu_check.seeded_encoder(cfg).train(), cfg


def test_compare_finds_differences_only_where_there_are_some():
    model, cfg = tiny_gram_m()
    x = torch.randn(2, cfg.in_channels, cfg.features.n_mels, cfg.features.chunk_frames)
    same = gpu_check.compare(model, copy.deepcopy(model), x)
    assert same["out_max_abs"] == 0 and same["out_rel"] == 0 and same["grad_rel_max"] == 0
    assert same["n_params_compared"] == sum(1 for _ in model.parameters())
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.encoder_v.layers[0].mixer.out_proj.weight.mul_(1.01)
    diff = gpu_check.compare(model, other, x)
    assert diff["out_rel"] > 1e-4 and diff["grad_rel_max"] > 1e-4 and diff["grad_worst_param"]


def test_set_fused_switches_every_mixer():
    model, cfg = tiny_gram_m()
    x = torch.randn(1, cfg.in_channels, cfg.features.n_mels, cfg.features.chunk_frames)
    assert gpu_check.set_fused(model, True) == cfg.depth
    with pytest.raises(RuntimeError, match="use_fused=True"):  # no fused kernel on a CPU
        model(x)
    gpu_check.set_fused(model, False)
    assert torch.isfinite(model(x)).all()
    with pytest.raises(ValueError, match="no module with a use_fused switch"):
        gpu_check.set_fused(gpu_check.seeded_encoder(preset("gram-t", depth=1)), False)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_without_cuda_the_full_check_is_one_clear_error(capsys, tmp_path):
    assert gpu_check.main(["--out", str(tmp_path / "g.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m hear_gram.gpu_check: error: no CUDA device")
    assert not (tmp_path / "g.json").exists()
