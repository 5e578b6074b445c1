"""Throughput and memory of the HEAR runtime, measured side by side in one run (``make bench``).

For each module and precision on the current device: seconds of audio embedded per wall second on
an 8 x 5 s batch and on one 120 s clip, the same chunks through the bare encoder (so the runtime's
overhead is a ratio from this run), peak memory, and the cosine similarity of reduced-precision to
fp32 scene embeddings. Optionally, the peak RSS of one long stereo clip in a fresh process.
Then the two CPU speed goals, timed side by side in one alternating loop (``--goals-only`` runs
just these; ``--no-goals`` skips them): bf16 GRAM-T runtime over a bare fp32 ViT-B forward on the
same chunks, and bf16 GRAM-M over bf16 GRAM-T per chunk, with GRAM-M's bf16 cosine to fp32.
Then (``--ceiling-only`` runs just this) bf16 GRAM-T's FLOP rate as a fraction of this machine's
own bf16 matrix-product rate on the block's linears at the same token count (`matmul_ceiling`).
Weights are random (full depth): speed does not depend on their values.

    python -m hear_gram.bench [--modules gram_t gram_m] [--precisions fp32 bf16] [--long-minutes 20]
    python -m hear_gram.bench --ceiling-only    # bf16 GRAM-T against the bf16 matmul ceiling
    python -m hear_gram.bench --resample    # resampler only (``make bench-resample``)

Measurements that need a fresh process (a peak RSS of their own) are functions of this module run
by ``python -m hear_gram.bench --child NAME ARGS`` (`CHILDREN`), which prints their JSON.

``--resample``: time and peak RSS of resampling 1 s of mono audio for the HEAR input rates and
coprime pairs, each in a fresh process, with the accuracy on a 1 kHz sine (SNR against the analytic
sine at the new rate, 20 ms edges excluded) and, per pair, the polyphase kernel the old
kernel-only resampler would have built.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from hear_gram import cli, safeio
from hear_gram.checkpoints import random_encoder
from hear_gram.runtime import DTYPES, EmbeddingOptions, GramRuntime
from hear_gram.safeio import subdir

MODULES = {  # HEAR module -> (preset, input channels)
    "gram_t": ("gram-t", 2),
    "gram_t_time": ("gram-t-time", 2),
    "gram_t_ambisonic": ("gram-t-ambisonic", 4),
    "gram_m": ("gram-m", 2),
}
SR = 48000
PROG = "python -m hear_gram.bench"
PRECISIONS = tuple(DTYPES)  # EmbeddingOptions' precisions
MAX_LONG_MINUTES = 240.0  # a stereo 48 kHz clip of 4 h is 5.5 GB of float32 already
# Measured once with upstream's runtime (labhamlet/GRAM-T hear_api/runtime.py) on a 2-core CPU;
# upstream needs its own environment, so it is quoted here, not rerun.
UPSTREAM_REFERENCE = (
    "upstream GRAM-T runtime (labhamlet/GRAM-T hear_api/runtime.py), 8 x 5 s, fp32, 2 threads, "
    "measured once on a 2-core CPU, not rerun here: 9.4 s/s"
)


def reset_peak_rss() -> None:
    """Reset the kernel's RSS high-water mark of this process (Linux clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fns: list, device: torch.device, repeats: int) -> list[float]:
    """Best wall seconds of each function over ``repeats`` rounds, after one warm-up round.

    The functions alternate within a round, so a ratio between them sees the same machine load
    (these machines are shared); the minimum is the least disturbed run.
    """
    best = [math.inf] * len(fns)
    for r in range(repeats + 1):
        for i, fn in enumerate(fns):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if r:  # round 0 warms up caches and kernels
                best[i] = min(best[i], time.perf_counter() - t0)
    return best


def chunk_features(rt: GramRuntime, audio: torch.Tensor) -> torch.Tensor:
    """The (G, C, F, T) chunks the runtime encodes for ``audio``, for the bare-encoder timing."""
    captured = []
    original = rt.encoder.forward

    def spy(spec, n_layers=None):
        captured.append(spec)
        return original(spec, n_layers)

    rt.encoder.forward = spy
    try:
        rt.scene_embeddings(audio)
    finally:
        del rt.encoder.forward
    return torch.cat(captured)


def bench_one(
    module: str, precision: str, device: torch.device, repeats: int, fp32_scene=None
) -> dict:
    preset_name, channels = MODULES[module]
    opts = EmbeddingOptions.parse({"precision": precision})
    rt = GramRuntime(random_encoder(preset_name, seed=0), opts, source=f"random {preset_name}").to(
        device
    )
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(8, channels, 5 * SR, generator=g) * 2 - 1).to(device)
    long = (torch.rand(1, channels, 120 * SR, generator=g) * 2 - 1).to(device)
    feats = chunk_features(rt, batch)
    cap = opts.max_chunks

    def bare():
        with torch.no_grad():
            for i in range(0, feats.shape[0], cap):
                rt.encoder(feats[i : i + cap])

    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_batch, t_bare = timed([lambda: rt.scene_embeddings(batch), bare], device, repeats)
    (t_long,) = timed([lambda: rt.scene_embeddings(long)], device, max(1, repeats // 2))
    scene = rt.scene_embeddings(batch).cpu()
    row = {
        "module": module, "precision": precision, "device": str(device),
        "chunks_8x5s": int(feats.shape[0]),
        "audio_s_per_s_8x5s": 40.0 / t_batch,
        "audio_s_per_s_120s": 120.0 / t_long,
        "runtime_s_8x5s": t_batch, "bare_encoder_s_8x5s": t_bare,
        "runtime_over_bare": t_batch / t_bare,
        "ms_per_chunk_bare": 1000 * t_bare / feats.shape[0],
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }  # fmt: skip
    if fp32_scene is not None:
        row["cosine_to_fp32_min"] = float(
            torch.nn.functional.cosine_similarity(scene, fp32_scene).min()
        )
    row["_scene"] = scene
    return row


GOAL_T_OVER_FP32_VIT = 3.2  # bf16 GRAM-T runtime speed over a bare fp32 ViT-B, at least
GOAL_M_OVER_T_BF16 = 2.0  # bf16 GRAM-M cost per chunk over bf16 GRAM-T's, at most
GOAL_COSINE = 0.999  # bf16 scene embeddings to fp32, at least


def speed_goals(device: torch.device, repeats: int) -> dict:
    """The two CPU speed goals, each timed side by side in one ``timed`` call on the 8 x 5 s
    stereo batch: bf16 GRAM-T runtime against a bare fp32 ViT-B (GRAM-T's encoder) forward over
    the same chunks, and bf16 GRAM-M's bare encoder against bf16 GRAM-T's per chunk, with the
    cosine of bf16 GRAM-M scene embeddings to fp32."""
    rts = {
        (module, prec): GramRuntime(
            random_encoder(MODULES[module][0], seed=0),
            EmbeddingOptions.parse({"precision": prec}),
            source=f"random {module}",
        ).to(device)
        for module, prec in [("gram_t", "fp32"), ("gram_t", "bf16"), ("gram_m", "bf16")]
    }
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(8, 2, 5 * SR, generator=g) * 2 - 1).to(device)
    feats = chunk_features(rts[("gram_t", "bf16")], batch)
    cap = EmbeddingOptions().max_chunks

    def bare(rt: GramRuntime):
        def fn():
            with torch.no_grad():
                for i in range(0, feats.shape[0], cap):
                    rt.encoder(feats[i : i + cap])

        return fn

    t_rt, t_vit, t_t, t_m = timed(
        [
            lambda: rts[("gram_t", "bf16")].scene_embeddings(batch),
            bare(rts[("gram_t", "fp32")]),
            bare(rts[("gram_t", "bf16")]),
            bare(rts[("gram_m", "bf16")]),
        ],
        device,
        repeats,
    )
    del rts[("gram_t", "fp32")]
    low = rts[("gram_m", "bf16")].scene_embeddings(batch).cpu()
    fp32_m = GramRuntime(random_encoder("gram-m", seed=0), EmbeddingOptions()).to(device)
    ref = fp32_m.scene_embeddings(batch).cpu()
    return {
        "chunks_8x5s": int(feats.shape[0]),
        "gram_t_bf16_runtime_s": t_rt,
        "gram_t_fp32_bare_s": t_vit,
        "gram_t_bf16_bare_s": t_t,
        "gram_m_bf16_bare_s": t_m,
        "gram_t_bf16_runtime_speed_over_fp32_vit": t_vit / t_rt,
        "gram_m_over_gram_t_per_chunk_bf16": t_m / t_t,
        "gram_m_bf16_cosine_to_fp32_min": float(
            torch.nn.functional.cosine_similarity(low, ref).min()
        ),
    }


def fmt_goals(goals: dict) -> str:
    speed = goals["gram_t_bf16_runtime_speed_over_fp32_vit"]
    ratio = goals["gram_m_over_gram_t_per_chunk_bf16"]
    cos = goals["gram_m_bf16_cosine_to_fp32_min"]
    mark = lambda ok: "ok" if ok else "MISSED"
    n = goals["chunks_8x5s"]
    return "\n".join([
        f"speed goals, timed side by side (8 x 5 s stereo, {n} chunks):",
        f"  gram_t bf16 runtime {goals['gram_t_bf16_runtime_s']:.2f} s vs bare fp32 ViT-B "
        f"{goals['gram_t_fp32_bare_s']:.2f} s: {speed:.2f}x faster "
        f"(goal >= {GOAL_T_OVER_FP32_VIT}) {mark(speed >= GOAL_T_OVER_FP32_VIT)}",
        f"  gram_m bf16 bare {1000 * goals['gram_m_bf16_bare_s'] / n:.0f} ms/chunk vs gram_t bf16 "
        f"bare {1000 * goals['gram_t_bf16_bare_s'] / n:.0f} ms/chunk: {ratio:.2f}x "
        f"(goal <= {GOAL_M_OVER_T_BF16}) {mark(ratio <= GOAL_M_OVER_T_BF16)}",
        f"  gram_m bf16 scene cosine to fp32 min {cos:.6f} "
        f"(goal >= {GOAL_COSINE}) {mark(cos >= GOAL_COSINE)}",
    ])  # fmt: skip


def block_linears(cfg) -> list[tuple[int, int]]:
    """(in, out) features of each linear of one GRAM-T block: fused QKV, out-proj, fc1, fc2."""
    d, m = cfg.width, cfg.mlp_dim
    return [(d, 3 * d), (d, d), (d, m), (m, d)]


def encoder_flops(cfg, chunks: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of one GRAM-T forward over `chunks` chunks: the patch
    projection, the blocks' linears and attention's two products (QK^T and AV)."""
    fg, tg = cfg.grid
    tokens = chunks * (1 + fg * tg)
    patch = 2 * chunks * fg * tg * cfg.width * cfg.in_channels * cfg.patch_f * cfg.patch_t
    linears = sum(2 * tokens * i * o for i, o in block_linears(cfg))
    attention = 2 * 2 * chunks * (1 + fg * tg) ** 2 * cfg.width
    return patch + cfg.depth * (linears + attention)


def matmul_ceiling(device: torch.device, repeats: int) -> dict:
    """bf16 GRAM-T against this machine's own bf16 matrix-product throughput, timed side by side
    in one `timed` call on the 8 x 5 s stereo batch: the bare encoder, the runtime, and the
    encoder's linears alone (every block's QKV, out-projection, fc1 and fc2 at the same token
    count, random bf16 operands, no bias) through ``torch.matmul`` and through oneDNN's linear
    (`hear_gram.vit.linear`). The ceiling is those linears' FLOPs over the faster of the two
    times; the fraction is GRAM-T's FLOPs (`encoder_flops`) per second over it: 1.0 would be a
    model made of nothing but those products, run as fast as this machine runs them. Each timed
    function lasts about as long as a forward, so that on a shared machine their best-of-N
    times see alike disturbance (a best of many short runs would flatter the ceiling)."""
    from hear_gram.vit import linear

    rt = GramRuntime(random_encoder("gram-t", seed=0), EmbeddingOptions.parse({"precision": "bf16"}),
                     source="random gram-t").to(device)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(8, 2, 5 * SR, generator=g) * 2 - 1).to(device)
    feats = chunk_features(rt, batch)
    cap, cfg = rt.options.max_chunks, rt.encoder.cfg
    sizes = [min(cap, feats.shape[0] - k) for k in range(0, feats.shape[0], cap)]  # per forward
    tokens = [n * (1 + cfg.grid[0] * cfg.grid[1]) for n in sizes]
    ops = [(torch.randn(max(tokens), i, generator=g).bfloat16().to(device),
            (torch.randn(o, i, generator=g) / i**0.5).bfloat16().to(device))
           for i, o in block_linears(cfg)]  # fmt: skip

    def bare():
        for k in range(0, feats.shape[0], cap):
            rt.encoder(feats[k : k + cap])

    def linears(fused: bool):
        def fn():
            for m in tokens:
                for _ in range(cfg.depth):
                    for x, w in ops:
                        linear(x[:m], w, None) if fused else torch.matmul(x[:m], w.t())

        return fn

    with torch.no_grad():
        t_bare, t_rt, t_matmul, t_onednn = timed(
            [bare, lambda: rt.scene_embeddings(batch), linears(False), linears(True)],
            device,
            repeats,
        )
    linear_flops = cfg.depth * sum(2 * m * i * o for m in tokens for i, o in block_linears(cfg))
    ceiling = linear_flops / min(t_matmul, t_onednn)  # FLOP/s
    flops = encoder_flops(cfg, feats.shape[0])
    return {
        "chunks_8x5s": int(feats.shape[0]), "tokens_per_forward": tokens,
        "linears_matmul_s": t_matmul, "linears_onednn_s": t_onednn,
        "linears_gflop": linear_flops / 1e9, "ceiling_tflops": ceiling / 1e12,
        "gram_t_bf16_bare_s": t_bare, "gram_t_bf16_runtime_s": t_rt,
        "gram_t_bf16_gflop": flops / 1e9,
        "gram_t_bf16_bare_tflops": flops / t_bare / 1e12,
        "bare_fraction_of_ceiling": flops / t_bare / ceiling,
        "runtime_fraction_of_ceiling": flops / t_rt / ceiling,
    }  # fmt: skip


def fmt_ceiling(c: dict) -> str:
    return "\n".join([
        f"bf16 matmul ceiling, timed side by side ({c['chunks_8x5s']} chunks, "
        f"{'+'.join(map(str, c['tokens_per_forward']))} tokens):",
        f"  the encoder's linears alone ({c['linears_gflop']:.0f} GFLOP): torch.matmul "
        f"{c['linears_matmul_s']:.2f} s, oneDNN {c['linears_onednn_s']:.2f} s: ceiling "
        f"{c['ceiling_tflops']:.3f} TFLOP/s",
        f"  gram_t bf16 bare encoder {c['gram_t_bf16_bare_s']:.2f} s for "
        f"{c['gram_t_bf16_gflop']:.0f} GFLOP = {c['gram_t_bf16_bare_tflops']:.3f} TFLOP/s: "
        f"{c['bare_fraction_of_ceiling']:.2f} of the ceiling (runtime, with front-end and "
        f"pooling: {c['runtime_fraction_of_ceiling']:.2f})",
    ])  # fmt: skip


def child_long_clip(minutes: float, precision: str, sr: int) -> dict:
    """In a fresh process (`run_child`): one random stereo clip of `minutes` through a random
    gram_t, with this process's peak RSS afterwards (input audio included)."""
    rt = GramRuntime(random_encoder("gram-t"), EmbeddingOptions.parse({"precision": precision}))
    audio = torch.rand(1, 2, int(minutes * 60 * sr)) * 2 - 1
    t0 = time.perf_counter()
    emb, _ = rt.timestamp_embeddings(audio)
    return {"peak_rss_mb": peak_rss_mb(), "seconds": time.perf_counter() - t0,
            "input_audio_mb": audio.numel() * 4 / 2**20,
            "timestamp_embeddings": list(emb.shape)}  # fmt: skip


def run_child(name: str, *args: object) -> dict:
    """`CHILDREN[name](*args)` in a fresh interpreter (``python -m hear_gram.bench --child``), so
    that its RSS high-water mark is its own; the JSON it prints on its last stdout line."""
    cmd = [sys.executable, "-m", "hear_gram.bench", "--child", name, *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def long_clip_peak(minutes: float, precision: str) -> dict:
    """Peak RSS of one stereo clip of ``minutes`` through gram_t, in a fresh process (so the
    high-water mark is this clip's alone). Includes the input audio itself."""
    return {"minutes": minutes, "precision": precision,
            **run_child("long-clip", minutes, precision, SR)}  # fmt: skip


RESAMPLE_PAIRS = [(48000, 32000), (44100, 32000), (22050, 32000), (16000, 32000),
                  (7919, 32000), (44101, 48000), (22051, 32000), (32000, 7919)]  # fmt: skip


def child_resample(orig: int, new: int, method: str) -> dict:
    """In a fresh process (`run_child`): time, RSS growth and sine SNR of one resample of 1 s of
    a 1 kHz sine from `orig` to `new` Hz (20 ms edges excluded from the SNR)."""
    from hear_gram.resample import resample

    torch.set_num_threads(1)
    x = torch.sin(2 * math.pi * 1000 * torch.arange(orig, dtype=torch.float64) / orig).float()
    resample(x[:64], 1000, 999)  # load torch's kernels before measuring
    reset_peak_rss()
    base = peak_rss_mb()
    t0 = time.perf_counter()
    y = resample(x, orig, new, method=method)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb() - base
    edge = new // 50
    ref = torch.sin(2 * math.pi * 1000 * torch.arange(new, dtype=torch.float64) / new)
    err = (y.double() - ref)[edge:-edge]
    snr = 10 * math.log10(ref[edge:-edge].square().sum() / err.square().sum())
    return {"seconds": seconds, "peak_rss_delta_mb": peak, "snr_db": snr,
            "out_len": y.shape[-1]}  # fmt: skip


# The programs `run_child` runs in a fresh process: name -> (function, its argument types).
CHILDREN = {
    "long-clip": (child_long_clip, (float, str, int)),
    "resample": (child_resample, (int, int, str)),
}


def resample_case(orig: int, new: int, method: str = "auto") -> dict:
    """One resample of 1 s of a 1 kHz sine in a fresh process (so its RSS high-water mark is
    this call's alone)."""
    return run_child("resample", orig, new, method)


def bench_resample() -> dict:
    """Side-by-side table of `resample` for RESAMPLE_PAIRS, plus the two paths compared on
    44100 -> 32000 (the forced fractional path against the polyphase one the features use)."""
    from hear_gram.resample import POLYPHASE_MAX_TAPS, polyphase_taps, resample

    head = (f"{'orig -> new':>15s} {'path':>10s} {'old kernel MB':>13s} {'seconds':>8s} "
            f"{'peak MB':>8s} {'sine SNR dB':>11s}")  # fmt: skip
    print(head)
    print("-" * len(head))
    rows = []
    for orig, new in RESAMPLE_PAIRS:
        taps = polyphase_taps(orig, new)
        row = {"orig": orig, "new": new, **resample_case(orig, new)}
        row["path"] = "polyphase" if taps <= POLYPHASE_MAX_TAPS else "fractional"
        row["polyphase_kernel_mb"] = taps * 4 / 2**20  # float32; the float64 build is twice that
        rows.append(row)
        print(f"{orig:>7d} -> {new:<5d} {row['path']:>10s} {row['polyphase_kernel_mb']:13.1f} "
              f"{row['seconds']:8.4f} {row['peak_rss_delta_mb']:8.1f} {row['snr_db']:11.1f}",
              flush=True)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 44100, generator=g)
    poly = resample(x, 44100, 32000, method="polyphase")
    frac = resample(x, 44100, 32000, method="fractional")
    auto = resample(x, 44100, 32000)
    paths = {
        "auto_equals_polyphase_44100_32000": bool(torch.equal(auto, poly)),
        "fractional_vs_polyphase_max_abs_diff_44100_32000": float((frac - poly).abs().max()),
    }
    for k, v in paths.items():
        print(f"{k}: {v}")
    return {"rows": rows, **paths}


def fmt_table(rows: list[dict]) -> str:
    head = (f"{'module':17s} {'prec':5s} {'8x5s s/s':>9s} {'120s s/s':>9s} {'rt/bare':>8s} "
            f"{'ms/chunk':>9s} {'cos':>8s} {'peakMB':>8s}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        cos = f"{r['cosine_to_fp32_min']:.5f}" if "cosine_to_fp32_min" in r else "-"
        lines.append(
            f"{r['module']:17s} {r['precision']:5s} {r['audio_s_per_s_8x5s']:9.1f} "
            f"{r['audio_s_per_s_120s']:9.1f} {r['runtime_over_bare']:8.3f} "
            f"{r['ms_per_chunk_bare']:9.1f} {cos:>8s} {r['peak_rss_mb']:8.0f}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--modules", nargs="+", default=list(MODULES), choices=list(MODULES))
    p.add_argument(
        "--precisions", nargs="+", default=None, choices=PRECISIONS,
        help="default: fp32 bf16 (+ fp16 on GPU)",
    )  # fmt: skip
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=cli.positive_int, default=3)
    p.add_argument("--long-minutes", type=float, default=20.0, help="0 to skip the long-clip test")
    p.add_argument("--long-precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--out", type=Path, default=Path("work/bench/bench.json"),
                   help="the JSON written (its log: logs/ beside it)")  # fmt: skip
    p.add_argument("--resample", action="store_true", help="only the resampler benchmark")
    p.add_argument(
        "--goals-only", action="store_true", help="only the side-by-side speed-goal timings"
    )
    p.add_argument(
        "--no-goals", action="store_true",
        help="skip the side-by-side speed-goal and matmul-ceiling timings",
    )  # fmt: skip
    p.add_argument(
        "--ceiling-only", action="store_true",
        help="only bf16 GRAM-T against this machine's bf16 matmul throughput",
    )  # fmt: skip
    # internal: one measurement in a fresh process (run_child), its JSON on stdout
    p.add_argument("--child", nargs="+", metavar=("NAME", "ARG"), help=argparse.SUPPRESS)
    return p


def device_of(args: argparse.Namespace) -> torch.device:
    """The checked options' device (CLIError for a bad option, before anything is written)."""
    if not 0 <= args.long_minutes <= MAX_LONG_MINUTES:  # also refuses NaN
        raise cli.CLIError(
            f"--long-minutes must be in [0, {MAX_LONG_MINUTES}], got {args.long_minutes}"
        )
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise cli.CLIError(f"--device {args.device!r:.60}: {cli.one_line(e):.200}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise cli.CLIError(f"--device {args.device}: no CUDA device is available")
    return device


def log_folder(args: argparse.Namespace) -> Path | None:
    if args.child:
        return None
    device_of(args)  # refuse bad options before the log folder is made
    return args.out.parent


def body(args: argparse.Namespace) -> int:
    if args.child:
        name, *values = args.child
        if name not in CHILDREN:
            raise cli.CLIError(f"--child: unknown {name!r}")
        fn, types = CHILDREN[name]
        if len(values) != len(types):
            raise cli.CLIError(f"--child {name} takes {len(types)} arguments")
        print(json.dumps(fn(*(t(v) for t, v in zip(types, values, strict=True)))))
        return 0
    return run(args, device_of(args))


def main(argv: list[str] | None = None) -> int:
    return cli.main(PROG, build_parser, body, argv, log_dir=log_folder)


def run(args: argparse.Namespace, device: torch.device) -> int:
    if args.resample:
        result = bench_resample()
        write_json(args.out, result)
        return 0
    precisions = args.precisions or (
        ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"]
    )
    print(f"device {device} ({platform.processor() or platform.machine()}), torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}", flush=True)  # fmt: skip
    if args.ceiling_only:
        ceiling = matmul_ceiling(device, args.repeats)
        print(fmt_ceiling(ceiling))
        write_json(args.out, {"device": str(device), "threads": torch.get_num_threads(),
                              "matmul_ceiling": ceiling})  # fmt: skip
        return 0
    if args.goals_only:
        goals = speed_goals(device, args.repeats)
        print(fmt_goals(goals))
        write_json(args.out, {"device": str(device), "threads": torch.get_num_threads(),
                              "speed_goals": goals})  # fmt: skip
        return 0
    rows = []
    for module in args.modules:
        ref = None
        for prec in precisions:
            row = bench_one(module, prec, device, args.repeats, ref)
            if prec == "fp32":
                ref = row["_scene"]
            rows.append(row)
            print(fmt_table([row]).splitlines()[-1], flush=True)
    result = {"device": str(device), "threads": torch.get_num_threads(),
              "rows": [{k: v for k, v in r.items() if k != "_scene"} for r in rows]}  # fmt: skip
    by = {(r["module"], r["precision"]): r for r in rows}
    summary = {}
    if ("gram_t", "fp32") in by and ("gram_m", "fp32") in by:
        summary["gram_m_over_gram_t_per_chunk"] = (
            by[("gram_m", "fp32")]["ms_per_chunk_bare"]
            / by[("gram_t", "fp32")]["ms_per_chunk_bare"]
        )
    if ("gram_t", "fp32") in by:
        summary["gram_t_fp32_runtime_over_bare"] = by[("gram_t", "fp32")]["runtime_over_bare"]
    if ("gram_t", "bf16") in by:
        summary["gram_t_bf16_audio_s_per_s_8x5s"] = by[("gram_t", "bf16")]["audio_s_per_s_8x5s"]
        summary["gram_t_bf16_cosine_to_fp32_min"] = by[("gram_t", "bf16")].get("cosine_to_fp32_min")
    if args.long_minutes > 0:
        print(
            f"long clip: {args.long_minutes} min stereo through gram_t ({args.long_precision}) ...",
            flush=True,
        )
        result["long_clip"] = long_clip_peak(args.long_minutes, args.long_precision)
    if not args.no_goals:
        print("speed goals: timing side by side ...", flush=True)
        result["speed_goals"] = speed_goals(device, args.repeats)
        print("bf16 matmul ceiling: timing side by side ...", flush=True)
        result["matmul_ceiling"] = matmul_ceiling(device, args.repeats)
    result["summary"] = summary
    result["reference"] = UPSTREAM_REFERENCE
    print()
    print(fmt_table(rows))
    print()
    for k, v in summary.items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    if "long_clip" in result:
        lc = result["long_clip"]
        print(f"long clip {lc['minutes']} min stereo ({lc['precision']}): peak RSS {lc['peak_rss_mb']:.0f} MB "
              f"(input audio itself {lc['input_audio_mb']:.0f} MB), {lc['seconds']:.1f} s")  # fmt: skip
    if "speed_goals" in result:
        print(fmt_goals(result["speed_goals"]))
        print(fmt_ceiling(result["matmul_ceiling"]))
    print(f"reference: {UPSTREAM_REFERENCE}")
    write_json(args.out, result)
    return 0


def finite_or_none(value):
    """`value` with every non-finite float (NaN: no /proc on this system, inf: a timing of 0)
    replaced by None: JSON has no such numbers (`hear_gram.safeio.write_json` refuses them)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(out: Path, result: dict) -> None:
    """`result` to `out` (atomic; non-finite numbers as null), and say so."""
    safeio.write_json(subdir(out.parent) / safeio.check_name(out.name, "--out"),
                      finite_or_none(result))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
