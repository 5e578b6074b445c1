"""GPU readiness in one command (``make gpu-check``): the CUDA paths a CPU machine never runs.

On one CUDA device, within about 8 minutes on an H100/H200, with the packages already installed
(torch, triton; ``mamba_ssm`` optional), it measures and writes one JSON:

1. ``mamba_fused``: GRAM-M with ``mamba_ssm``'s fused kernels against the plain-PyTorch reference
   (`hear_gram.mamba`) on the same weights and input: outputs and every parameter's gradient, for
   the Mamba-2 (released GRAM-M) and Mamba-1 (v1 paper) mixers, fp32 and bf16. Without
   ``mamba_ssm`` the section says so.
2. ``embedding``: GRAM-T and GRAM-M through the HEAR runtime in fp32, bf16 and fp16 on a batch of
   10 s stereo clips with many 2 s chunks per forward pass: seconds of audio per second, peak
   memory, the same chunks through the bare encoder (the runtime's overhead as a ratio) and the
   cosine of reduced-precision to fp32 scene embeddings.
3. ``pretraining``: optimiser steps per second and peak memory of the ``paper-binaural`` run
   (`hear_gram.pretrain.train`) at its batch of 96 clips x 16 crops in bf16, scene mixing with
   stand-in RIRs included (a real scene bank takes hours to render).

``--dry-run`` runs the same code on the CPU at tiny sizes (tiny widths, batch 2, one step) in
under a minute: it checks the script, not the machine. Each section is recorded on its own; a
section that fails is written with its error and the exit code is 1, the others still run.

    python -m hear_gram.gpu_check [--out work/gpu-check/gpu-check.json] [--dry-run] [-v]

Each section's progress is logged (on screen with ``-v``; always in ``logs/`` beside the JSON).
Non-finite numbers (no peak memory reading, an infinite error) are written as null.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import logging
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hear_gram import cli, safeio
from hear_gram.bench import finite_or_none, sync, timed
from hear_gram.config import MAMBA_FIELDS, GramConfig, preset
from hear_gram.encoder import GramEncoder, build_encoder
from hear_gram.safeio import subdir
from hear_gram.seeding import seeded

log = logging.getLogger(__name__)
PROG = "python -m hear_gram.gpu_check"

TARGET_GRAM_T_BF16 = 10_000.0  # s of audio per s, one H100, batched chunks (the goal)
INPUT_RATE = 48000  # Hz, as HEAR tasks are delivered
CLIP_SECONDS = 10.0


@dataclass(frozen=True)
class Sizes:
    """Everything the check's cost depends on; `FULL` on a GPU, `DRY` on a CPU."""

    clips: int  # embedding batch, 10 s stereo clips
    max_chunks: int  # 2 s chunks per forward pass of the runtime
    repeats: int  # timed rounds after one warm-up round (best kept)
    precisions: tuple[str, ...]
    overrides: dict  # GramConfig fields replaced in every preset (empty: the released sizes)
    fused_depth: int  # GRAM-M layers in the fused-vs-reference comparison
    fused_chunks: int
    pretrain_overrides: tuple[str, ...]  # key=value for hear_gram.pretrain.train.get_config
    pretrain_steps: int  # timed optimiser steps after one warm-up step
    rir_taps: int  # stand-in room impulse responses, samples at 32 kHz


FULL = Sizes(
    clips=64, max_chunks=512, repeats=3, precisions=("fp32", "bf16", "fp16"), overrides={},
    fused_depth=2, fused_chunks=16, pretrain_overrides=(), pretrain_steps=10, rir_taps=16000,
)  # fmt: skip
TINY_MODEL = {"depth": 1, "width": 64, "heads": 2, "mlp_dim": 128, "d_state": 16, "headdim": 16}
DRY = Sizes(
    clips=2, max_chunks=4, repeats=1, precisions=("fp32", "bf16"), overrides=TINY_MODEL,
    fused_depth=1, fused_chunks=2,
    pretrain_overrides=("depth=1", "width=64", "heads=2", "mlp_dim=128", "decoder_width=32",
                        "decoder_depth=1", "batch_clips=2", "crops=2"),
    pretrain_steps=1, rir_taps=256,
)  # fmt: skip


# --- measuring -------------------------------------------------------------------------------
def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:  # Linux: reset this process's RSS high-water mark
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or this process's peak RSS on a CPU, MB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def sized(name: str, sizes: Sizes, **extra) -> GramConfig:
    """Preset `name` with the sizes' overrides (the Mamba ones only where there are mixers)."""
    over = {**sizes.overrides, **extra}
    if preset(name).backbone != "mamba":
        over = {k: v for k, v in over.items() if k not in MAMBA_FIELDS}
    return preset(name, **over)


def seeded_encoder(cfg: GramConfig, seed: int = 0) -> GramEncoder:
    """Random weights from `seed`, without touching the global RNG's state."""
    with seeded(seed):
        return build_encoder(cfg).eval()


# --- 1. fused vs reference GRAM-M -------------------------------------------------------------
def compare(
    reference: torch.nn.Module,
    other: torch.nn.Module,
    x: torch.Tensor,
    autocast: torch.dtype | None = None,
) -> dict:
    """Outputs and parameter gradients of two models of the same architecture on input `x`
    (loss: mean of squared outputs; under autocast to `autocast` if given, as mixed-precision
    training runs): worst absolute and relative output error, and the worst relative gradient
    error with the parameter it belongs to."""
    outs, grads = [], []
    for model in (reference, other):
        model.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
            y = model(x).float()
        y.square().mean().backward()
        outs.append(y.detach())
        grads.append({n: p.grad.detach().float() for n, p in model.named_parameters()
                      if p.grad is not None})  # fmt: skip
    ref, got = outs
    worst, worst_name = 0.0, ""
    for name, g in grads[0].items():
        other_grad = grads[1].get(name)
        err = math.inf if other_grad is None else rel_err(other_grad, g)
        if not err <= worst:  # also catches NaN
            worst, worst_name = err, name
    return {
        "out_max_abs": float((got - ref).abs().max()),
        "out_rel": rel_err(got, ref),
        "grad_rel_max": worst,
        "grad_worst_param": worst_name,
        "n_params_compared": len(grads[0]),
    }


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| (0 when both are 0)."""
    den = float(b.norm())
    num = float((a - b).norm())
    return num / den if den else (0.0 if num == 0 else math.inf)


def set_fused(model: torch.nn.Module, use_fused: bool | None) -> int:
    """Set every Mamba mixer's ``use_fused``; the number of mixers set (an error if none: the
    comparison would otherwise compare one path with itself)."""
    mixers = [m for m in model.modules() if hasattr(m, "use_fused")]
    if not mixers:
        raise ValueError(f"no module with a use_fused switch in {type(model).__name__}")
    for m in mixers:
        m.use_fused = use_fused
    return len(mixers)


# Outputs and gradients of a correct kernel differ from the reference by rounding only; these
# flag a wrong one (fp32 kernels may use TF32 matmuls inside, hence not 1e-6).
FUSED_TOL = {"fp32": (1e-2, 5e-2), "bf16": (5e-2, 1e-1)}  # (output, gradient) relative


def section_mamba_fused(sizes: Sizes, device: torch.device) -> dict:
    from hear_gram.mamba import fused_available

    try:
        version = importlib.metadata.version("mamba_ssm")
    except importlib.metadata.PackageNotFoundError:
        return {"status": "mamba_ssm not installed"}
    if device.type != "cuda":
        return {"status": f"mamba_ssm {version} installed; its kernels need CUDA"}
    cases = []
    for name in ("gram-m", "gram-m-v1"):
        cfg = sized(name, sizes, depth=sizes.fused_depth)
        if not fused_available(cfg.mamba.mixer):
            cases.append({"preset": name, "status": f"no importable {cfg.mamba.mixer} kernel"})
            continue
        for prec, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            ref = seeded_encoder(cfg).to(device).train()
            fused = copy.deepcopy(ref)
            set_fused(ref, False)
            set_fused(fused, True)
            g = torch.Generator().manual_seed(1)
            x = torch.randn(sizes.fused_chunks, cfg.in_channels, cfg.features.n_mels,
                            cfg.features.chunk_frames, generator=g).to(device)  # fmt: skip
            diff = compare(ref, fused, x, autocast=dtype)
            row = {"preset": name, "mixer": cfg.mamba.mixer, "precision": prec, **diff}
            out_tol, grad_tol = FUSED_TOL[prec]
            row["pass"] = row["out_rel"] <= out_tol and row["grad_rel_max"] <= grad_tol
            cases.append(row)
    return {"status": "compared", "mamba_ssm": version, "tolerances": FUSED_TOL, "cases": cases}


# --- 2. embedding throughput ------------------------------------------------------------------
def transformer_flops_per_chunk(cfg: GramConfig) -> float:
    """Matmul FLOPs of one chunk through GRAM-T: patch projection, then per layer the qkv, output
    and MLP projections (2 L D (4 D + 2 M)) and attention's two products (4 L^2 D)."""
    n, d, m = cfg.num_patches, cfg.width, cfg.mlp_dim
    length = n + 1
    patch = 2 * n * d * cfg.in_channels * cfg.patch_f * cfg.patch_t
    layer = 2 * length * d * (4 * d + 2 * m) + 4 * length**2 * d
    return float(patch + cfg.depth * layer)


def embed_row(name: str, precision: str, sizes: Sizes, device: torch.device, fp32_scene) -> dict:
    from hear_gram.runtime import EmbeddingOptions, GramRuntime

    cfg = sized(name, sizes)
    opts = EmbeddingOptions.parse({"precision": precision, "max_chunks": sizes.max_chunks,
                                   "sample_rate": INPUT_RATE})  # fmt: skip
    rt = GramRuntime(seeded_encoder(cfg), opts, source=f"random {name}").to(device)
    g = torch.Generator().manual_seed(0)
    n = int(CLIP_SECONDS * INPUT_RATE)
    audio = (torch.rand(sizes.clips, 2, n, generator=g) * 2 - 1).to(device)
    chunks = []  # batch sizes of the runtime's forward passes, seen by a hook
    hook = rt.encoder.register_forward_hook(lambda m, args, out: chunks.append(args[0].shape[0]))
    with torch.no_grad():
        scene = rt.scene_embeddings(audio).float().cpu()
    hook.remove()
    feats = torch.randn(max(chunks), cfg.in_channels, cfg.features.n_mels,
                        cfg.features.chunk_frames, generator=g).to(device)  # fmt: skip

    def bare() -> None:
        with torch.no_grad():
            for size in chunks:
                rt.encoder(feats[:size])

    reset_peak(device)
    t_rt, t_bare = timed([lambda: rt.scene_embeddings(audio), bare], device, sizes.repeats)
    audio_s = sizes.clips * CLIP_SECONDS
    row = {
        "model": name, "precision": precision, "clips": sizes.clips,
        "clip_seconds": CLIP_SECONDS, "chunks": sum(chunks), "forward_passes": len(chunks),
        "audio_s_per_s": audio_s / t_rt, "runtime_s": t_rt, "bare_encoder_s": t_bare,
        "runtime_over_bare": t_rt / t_bare, "bare_audio_s_per_s": audio_s / t_bare,
        "peak_mem_mb": peak_mb(device),
    }  # fmt: skip
    if cfg.backbone == "transformer":
        row["bare_tflops"] = transformer_flops_per_chunk(cfg) * sum(chunks) / t_bare / 1e12
    else:
        from hear_gram.mamba import fused_available

        fused = device.type == "cuda" and fused_available(cfg.mamba.mixer)
        row["mamba_path"] = "fused" if fused else "reference"
    if fp32_scene is not None:
        cos = torch.nn.functional.cosine_similarity(scene, fp32_scene)
        row["cosine_to_fp32_min"] = float(cos.min())
    row["_scene"] = scene
    return row


def section_embedding(sizes: Sizes, device: torch.device) -> dict:
    rows = []
    for name in ("gram-t", "gram-m"):
        ref = None
        for prec in sizes.precisions:
            row = embed_row(name, prec, sizes, device, ref)
            if prec == "fp32":
                ref = row["_scene"]
            rows.append({k: v for k, v in row.items() if k != "_scene"})
            log.info("%s %s: %.1f s of audio per s", name, prec, row["audio_s_per_s"])
            if device.type == "cuda":
                torch.cuda.empty_cache()
    out: dict = {"status": "ok", "input_rate_hz": INPUT_RATE, "rows": rows}
    best = [r for r in rows if (r["model"], r["precision"]) == ("gram-t", "bf16")]
    if best:
        out["gram_t_bf16_target_audio_s_per_s"] = TARGET_GRAM_T_BF16
        # the goal is for the released size on a GPU; tiny dry-run models say nothing about it
        met = best[0]["audio_s_per_s"] >= TARGET_GRAM_T_BF16
        out["gram_t_bf16_target_met"] = met if sizes == FULL and device.type == "cuda" else None
    return out


# --- 3. pretraining steps ---------------------------------------------------------------------
class StandInRirs:
    """The `get` of a scene bank (naturalistic_hear.bank.SceneBank) with random exponentially
    decaying stereo RIRs: the mixer's FFT convolutions cost what they cost with real rooms."""

    def __init__(self, n: int, taps: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        decay = torch.exp(-torch.arange(taps) / (taps / 6.9))  # -60 dB at the last tap
        self.rirs = [(torch.randn(3, 2, taps, generator=g) * decay).numpy() for _ in range(n)]

    def __len__(self) -> int:
        return len(self.rirs)

    def get(self, i: int):
        rir = self.rirs[i]
        return None, rir[0], rir[1:]  # (scene, source RIR (C, L), noise RIRs (K, C, L))


def section_pretraining(sizes: Sizes, device: torch.device) -> dict:
    from hear_gram.pretrain.data import SceneMixer
    from hear_gram.pretrain.train import PretrainModule, get_config

    cfg = get_config("paper-binaural", list(sizes.pretrain_overrides))
    sr = cfg.gram_config().features.sample_rate
    with seeded(cfg.seed):
        module = PretrainModule(cfg, SceneMixer(2, StandInRirs(8, sizes.rir_taps))).to(device)
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    b, n = cfg.batch_clips, int(CLIP_SECONDS * sr)
    g = torch.Generator().manual_seed(2)
    batch = {
        "clip": (torch.randn(b, n, generator=g) * 0.1).to(device),
        "noise": (torch.randn(b, n, generator=g) * 0.1).to(device),
        "active": torch.ones(b, n, dtype=torch.bool),
        "scene": torch.arange(b) % 8,
        "snr": torch.rand(b, generator=g) * 35 + 5,
    }
    dtype = torch.bfloat16 if cfg.precision == "bf16" else None
    losses = []

    def step() -> None:
        crops, gen = module.crops(batch)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, _, _ = module.mae(crops, generator=gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.mae.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))

    step()  # warm-up: kernels, allocator, optimiser state
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(sizes.pretrain_steps):
        step()
    sync(device)
    seconds = time.perf_counter() - t0
    return {
        "status": "ok", "config": "paper-binaural", "overrides": list(sizes.pretrain_overrides),
        "batch_clips": b, "crops_per_clip": cfg.crops, "precision": cfg.precision,
        "mixing": f"scene mix with {sizes.rir_taps}-tap stand-in RIRs",
        "steps": sizes.pretrain_steps, "steps_per_s": sizes.pretrain_steps / seconds,
        "s_per_step": seconds / sizes.pretrain_steps, "peak_mem_mb": peak_mb(device),
        "loss_first": losses[0], "loss_last": losses[-1],
    }  # fmt: skip


# --- driver -----------------------------------------------------------------------------------
def environment(device: torch.device) -> dict:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    env = {"device": str(device), "python": platform.python_version(),
           "torch": torch.__version__, "cuda": torch.version.cuda, "triton": version("triton"),
           "mamba_ssm": version("mamba_ssm"), "threads": torch.get_num_threads()}  # fmt: skip
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(name=props.name, memory_gb=props.total_memory / 2**30,
                   capability=".".join(map(str, torch.cuda.get_device_capability(device))))  # fmt: skip
    else:
        env["name"] = platform.processor() or platform.machine()
    return env


SECTIONS = {
    "mamba_fused": section_mamba_fused,
    "embedding": section_embedding,
    "pretraining": section_pretraining,
}


def run(out: Path, dry_run: bool, device: torch.device) -> dict:
    """All sections, the JSON rewritten after each (a run cut short keeps what it measured)."""
    sizes = DRY if dry_run else FULL
    t0 = time.perf_counter()
    result: dict = {"schema": 1, "dry_run": dry_run, "environment": environment(device),
                    "sizes": dict(vars(sizes)), "seconds": 0.0}  # fmt: skip
    for name, section in SECTIONS.items():
        log.info("gpu-check: %s ...", name)
        t = time.perf_counter()
        try:
            result[name] = section(sizes, device)
        except ImportError as err:  # a package this section needs is not on this machine
            result[name] = {"status": f"skipped: {err}"}
        except Exception as err:  # recorded, so that one failure does not lose the rest
            log.exception("gpu-check: %s failed", name)
            result[name] = {"status": "error", "error": f"{type(err).__name__}: {err}"}
        result[name]["seconds"] = time.perf_counter() - t
        result["seconds"] = time.perf_counter() - t0
        write_json(out, result)
    return result


def write_json(out: Path, result: dict) -> None:
    """`result` to `out`, atomically (a run cut short keeps a whole file); non-finite numbers
    (a NaN peak without /proc, an infinite error) as null."""
    safeio.write_json(subdir(out.parent) / safeio.check_name(out.name, "--out"),
                      finite_or_none(result))  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--out", type=Path, default=Path("work/gpu-check/gpu-check.json"),
                   help="the JSON written (its log: logs/ beside it)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (< 1 min)")
    p.add_argument("--device", default=None, help="default: cuda, or cpu with --dry-run")
    return p


def device_of(args: argparse.Namespace) -> torch.device:
    """The device asked for, or CLIError (before anything is written)."""
    try:
        device = torch.device(args.device or ("cpu" if args.dry_run else "cuda"))
    except RuntimeError as e:
        raise cli.CLIError(f"--device {args.device!r:.60}: {cli.one_line(e):.200}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise cli.CLIError(f"no CUDA device here (torch {torch.__version__}, CUDA "
                           f"{torch.version.cuda}); use --dry-run for the CPU check")  # fmt: skip
    return device


def log_folder(args: argparse.Namespace) -> Path:
    device_of(args)  # a refused device writes nothing, not even the log
    return args.out.parent


def body(args: argparse.Namespace) -> int:
    result = run(args.out, args.dry_run, device_of(args))
    print(json.dumps(finite_or_none(result), indent=2))
    failed = [k for k in SECTIONS if result[k].get("status") == "error"]
    if failed:
        print(f"{PROG}: error: sections failed: {', '.join(failed)} (see {args.out})",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(PROG, build_parser, body, argv, log_dir=log_folder)


if __name__ == "__main__":
    sys.exit(main())
