"""``make demo``: offline, end to end through the real HEAR tools, as a small `hear_gram.suite` run.

1. builds two small HEAR-format tasks (a 5-fold scene task, an event task) with
   ``hear_gram.synthetic_tasks``;
2. picks weights: released GRAM-T weights where ``python -m hear_gram.checkpoints fetch NAME`` was
   run; else, for the binaural sets, the demo-scale GRAM-T of ``make pretrain-demo``
   (``gram-demo-cpu``) where it was made; else random full-depth weights (said loudly: those
   scores are not GRAM's);
3. writes WORK/models.toml: ``gram`` (``hear_gram`` on the dry tasks, ``hear_gram.gram_t`` on
   binaural audio, ``hear_gram.gram_t_ambisonic`` on Ambisonic audio, CLS pooling for
   localization), ``dsp`` (the GCC-PHAT and intensity-vector baselines, spatial audio only) and
   ``chance`` (localization and T60 only);
4. runs ``python -m hear_gram.suite`` on it: the dry tasks, the scene task re-rendered as Nat-HEAR
   scenes (binaural and Ambisonic), its localization and T60 tasks; each unit's output goes to its
   log, the terminal shows one progress bar and one line per unit, then the report's tables
   (WORK/report/REPORT.md, results.csv, figures).

``score`` (embeddings + predictions of one weights file on a tasks folder) is kept for
``hear_gram.pretrain.report``.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from hear_gram import checkpoints, cli
from hear_gram.safeio import subdir, write_bytes_atomic
from hear_gram.scores import collect_scores
from hear_gram.synthetic_tasks import make_event_task, make_scene_task

log = logging.getLogger("hear_gram.demo")


# Stand-ins for released weights that ``make pretrain-demo`` makes, by registry name. The demo
# model is binaural GRAM-T (16x8 patches), so only the binaural sets have one.
DEMO_STANDINS = {"gramt-binaural": "gram-demo-cpu"}


def pick_weights(work: Path, name: str, preset: str) -> tuple[Path, str]:
    """Released weights ``name`` when cached; else its demo-pretrained stand-in when made; else
    random full-depth ``preset`` weights (created once in ``work``). Returns (file, what it is)."""
    if checkpoints.cached_path(name) is not None:  # on disk already: the demo never downloads
        cached = checkpoints.resolve(name)  # its sha256 checked
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


def models_toml(gram_t: Path, gram_t_ambisonic: Path, model_options: dict) -> str:
    """The demo's models file (see the module docstring)."""
    import json

    def inline(options: dict) -> str:
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items()) + " }"

    cls = {"strategy": "cls"}
    return f"""# written by python -m hear_gram.demo
[[model]]
name = "gram"
module = "hear_gram"
weights = {json.dumps(str(gram_t))}
options = {inline(model_options)}

[model.binaural]
module = "hear_gram.gram_t"

[model.ambisonic]
module = "hear_gram.gram_t_ambisonic"
weights = {json.dumps(str(gram_t_ambisonic))}

[model.localization]
options = {inline(cls)}

[model.t60]
options = {inline(cls)}

[[model]]
name = "dsp"
module = "localization_tasks.baselines.gcc_phat"
formats = ["binaural", "ambisonic"]

[model.ambisonic]
module = "localization_tasks.baselines.intensity_vector"

[[model]]
name = "chance"
module = "chance"
conditions = ["localization", "t60"]
"""


PROG = "python -m hear_gram.demo"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--out", "--work", dest="out", type=Path, default=Path("work/demo"),
                   metavar="DIR", help="folder for tasks, weights, the suite run (--work: the same)")  # fmt: skip
    p.add_argument("--model-options", dest="model_options", type=cli.json_object,
                   default={"precision": "bf16"}, metavar="JSON",
                   help="JSON object of load_model keyword options")  # fmt: skip
    p.add_argument("--grid", default="fast", choices=("default", "fast", "faster"),
                   help="heareval grid")  # fmt: skip
    p.add_argument("--n-scenes", type=cli.positive_int, default=24,
                   help="held-out scenes in the scene banks")  # fmt: skip
    cli.add_jobs(p, help="suite units run in parallel")
    p.set_defaults(jobs=2)
    return p


def body(args: argparse.Namespace) -> int:
    from hear_gram.suite.__main__ import main as suite

    work = Path(args.out).resolve()
    dry = subdir(work, "tasks")
    t0 = time.time()
    scene = make_scene_task(dry, sample_rates=(48000,))
    make_event_task(dry, sample_rates=(48000,))
    gram_t, which_t = pick_weights(work, "gramt-binaural", "gram-t")
    gram_a, which_a = pick_weights(work, "gramt-ambisonics", "gram-t-ambisonic")
    print(f"checkpoints:\n  binaural and dry: {which_t}\n  ambisonic: {which_a}", flush=True)
    models = work / "models.toml"
    write_bytes_atomic(models, models_toml(gram_t, gram_a, args.model_options).encode())
    argv = ["--models", str(models), "--tasks-dir", str(dry), "--out", str(work / "suite"),
            "--nat-task", scene.name, "--localization-source", scene.name,
            "--grid", args.grid, "--grid-points", "1", "--localization-grid", args.grid,
            "--n-scenes", str(args.n_scenes), "--jobs", str(args.jobs)]  # fmt: skip
    if args.quiet:
        argv.append("--quiet")
    code = suite(argv)
    print(f"demo: {time.time() - t0:.0f} s in all; models file {models}")
    return code


def main(argv: list[str] | None = None) -> int:
    return cli.main(PROG, build_parser, body, argv, log_dir=lambda a: a.out)


if __name__ == "__main__":
    sys.exit(main())
