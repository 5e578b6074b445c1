"""``make demo``: offline, end to end through the real HEAR tools.

1. builds two small HEAR-format tasks (a 5-fold scene task, an event task) with
   ``hear_gram.synthetic_tasks``;
2. re-renders the scene task as Nat-HEAR scenes, binaural and Ambisonic
   (``python -m naturalistic_hear``, held-out simulated rooms, built-in noise);
3. picks weights: released GRAM-T weights where ``python -m hear_gram.checkpoints fetch NAME`` was
   run; else, for the binaural sets, the demo-scale GRAM-T of ``make pretrain-demo``
   (``gram-demo-cpu``) where it was made; else random full-depth weights (said loudly: those
   scores are not GRAM's);
4. runs ``python -m heareval.embeddings.runner MODULE --model W ...`` and
   ``python -m hear_gram.predict ...`` as subprocesses, exactly the README's commands: the dry
   tasks with ``hear_gram``, the binaural scenes with ``hear_gram.gram_t``, the Ambisonic scenes
   with ``hear_gram.gram_t_ambisonic``;
5. prints one score table;
6. builds the localization and T60 tasks from the scene task (``localization_tasks.suite``) and
   prints the localization table: GCC-PHAT / intensity-vector baselines, GRAM-T and chance, per
   format and noise bin.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from hear_gram import checkpoints
from hear_gram.scores import collect_scores, format_table
from hear_gram.synthetic_tasks import make_event_task, make_scene_task

log = logging.getLogger("hear_gram.demo")


# Stand-ins for released weights that ``make pretrain-demo`` makes, by registry name. The demo
# model is binaural GRAM-T (16x8 patches), so only the binaural sets have one.
DEMO_STANDINS = {"gramt-binaural": "gram-demo-cpu"}


def pick_weights(work: Path, name: str, preset: str) -> tuple[Path, str]:
    """Released weights ``name`` when cached; else its demo-pretrained stand-in when made; else
    random full-depth ``preset`` weights (created once in ``work``). Returns (file, what it is)."""
    cached = checkpoints.cached_path(name)
    if cached.is_file():
        return cached, f"released {name} weights ({cached})"
    standin = DEMO_STANDINS.get(name)
    if standin is not None and (path := checkpoints.local_path(standin)).is_file():
        return path, demo_note(standin, path)
    path = work / f"random-{preset}.safetensors"
    if not path.is_file():
        checkpoints.save_checkpoint(path, checkpoints.random_encoder(preset, seed=0), "released")
    hint = f"; {made_by(standin)} gives a trained demo model" if standin else ""
    return path, (
        f"RANDOM full-depth {preset} weights ({path}): no trained weights are available offline, "
        "so these scores show the pipeline works, not what GRAM achieves "
        f"(python -m hear_gram.checkpoints fetch {name} on a connected machine{hint})"
    )


def made_by(name: str) -> str:
    """The command that makes local registry entry ``name``."""
    return checkpoints.registry()[name]["made_by"]


def demo_note(name: str, path: Path) -> str:
    """What the demo-pretrained checkpoint is; its size read from the file, not assumed."""
    cfg = checkpoints.stored_config(path)
    size = f"{cfg.depth} layers, width {cfg.width}" if cfg else "size not recorded"
    return (
        f"demo-scale GRAM-T pretrained by {made_by(name)} ({path}): "
        f"{size}, trained for minutes on synthetic audio; expect far below the paper's numbers"
    )


def run(cmd: list[str], env: dict | None = None) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def weights_dir(root: Path, weights: Path) -> Path:
    """`root`/w-<first 12 hex of the weights' sha256>: heareval's runner skips every task whose
    embeddings are marked done, whatever weights made them, so each weights file gets its own
    folder (a retrained or newly fetched checkpoint is never scored on stale embeddings)."""
    return root / f"w-{checkpoints.sha256(Path(weights))[:12]}"


def score(module: str, weights: Path, tasks: Path, emb: Path, model_options: str, grid: str) -> list[dict]:  # fmt: skip
    """Embed every task under `tasks` with ``heareval.embeddings.runner`` into a folder of `emb`
    for these weights, and score them with ``hear_gram.predict`` (the README's commands, as
    subprocesses); `collect_scores` rows."""
    py = sys.executable
    emb = weights_dir(emb, weights)
    run([py, "-m", "heareval.embeddings.runner", module, "--model", str(weights),
         "--tasks-dir", str(tasks), "--embeddings-dir", str(emb),
         "--model-options", model_options])  # fmt: skip
    module_dir = next(d for d in sorted(emb.iterdir()) if d.name.startswith(module))
    task_dirs = [str(d) for d in sorted(module_dir.iterdir()) if d.is_dir()]
    # heareval's small probes run fastest single-threaded on a shared 2-core machine
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run([py, "-m", "hear_gram.predict", *task_dirs, "--grid", grid, "--grid-points", "1"], env)
    return collect_scores(module_dir)


# (set name, HEAR module, registry name, preset, naturalistic format or None for the dry tasks)
SETS = [
    ("dry", "hear_gram", "gramt-binaural", "gram-t", None),
    ("nat-binaural", "hear_gram.gram_t", "gramt-binaural", "gram-t", "binaural"),
    (
        "nat-ambisonic",
        "hear_gram.gram_t_ambisonic",
        "gramt-ambisonics",
        "gram-t-ambisonic",
        "ambisonic",
    ),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hear_gram.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--work", default="work/demo", help="folder for tasks, weights, embeddings")
    p.add_argument("--model-options", default='{"precision": "bf16"}')
    p.add_argument("--grid", default="fast", help="heareval grid: default, fast, faster")
    p.add_argument("--n-scenes", type=int, default=24, help="held-out scenes in the Nat-HEAR bank")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("localization_tasks").setLevel(logging.WARNING)  # per-task dicts: see files
    work = Path(args.work).resolve()
    dry = work / "tasks"
    t0 = time.time()
    scene = make_scene_task(dry, sample_rates=(48000,))
    make_event_task(dry, sample_rates=(48000,))
    py = sys.executable
    table, used = [], []
    for name, module, registry_name, preset, fmt in SETS:
        tasks = dry
        if fmt is not None:
            tasks = work / f"tasks-{name}"
            run([py, "-m", "naturalistic_hear", "--tasks-dir", str(dry), "--out", str(tasks),
                 "--format", fmt, "--task", scene.name, "--n-scenes", str(args.n_scenes),
                 "--cache-dir", str(work / "scene-bank"), "--workers", "2"])  # fmt: skip
        weights, which = pick_weights(work, registry_name, preset)
        print(f"\n[{name}] {module}, checkpoint: {which}\n", flush=True)
        used.append(f"{name}: {which}")
        rows = score(module, weights, tasks, work / f"embeddings-{name}", args.model_options,
                     args.grid)  # fmt: skip
        table += [{**row, "task": f"{row['task']} [{name}]"} for row in rows]
    print(f"\nhear_gram demo scores, {time.time() - t0:.0f} s in all. Checkpoints:")
    for line in used:
        print(f"  {line}")
    print()
    print(format_table(table))
    from localization_tasks.suite import run as localization_suite

    print(
        "\nlocalization (same checkpoints; CLS strategy), tasks built from the demo scene task:\n"
    )
    weights = {preset: pick_weights(work, reg, preset)[0] for _, _, reg, preset, _ in SETS}
    print(
        localization_suite(
            dry, work / "localization", [scene.name], str(weights["gram-t"]),
            str(weights["gram-t-ambisonic"]), args.n_scenes, args.grid, work / "scene-bank",
        )
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
