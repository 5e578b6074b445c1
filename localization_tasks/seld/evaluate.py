"""Evaluate SELD on HEAR-style SELD tasks: HEAR-module embeddings + heads, a SELDnet-style CRNN,
and a zero predictor, all scored with the DCASE metrics on the task's official test fold.

    python -m localization_tasks.seld.evaluate --tasks-dir T --out O
        [--module hear_gram.gram_t_ambisonic --model W.safetensors] [--model-options '{}']
        [--head mlp|bigru] [--baseline crnn --baseline zero] [--epochs 40] [--seed 0]

Targets are single ACCDOA (Shimada et al., ICASSP 2021; DCASE 2022 baseline): per 100 ms frame
and class a vector whose length is the activity and whose direction is the DOA; trained with MSE;
a class is detected in a frame when its vector is longer than 0.5. (Multi-ACCDOA + ADPIT is not
implemented; two instances of one class in a frame keep the last one in the target.)

- module: `get_timestamp_embeddings` of the HEAR module on the task's audio at the module's rate,
  cached per (module, weights, options, task, split); linearly interpolated to the centres of the
  100 ms label frames; head `mlp` (per frame, 2 x 256 hidden) or `bigru` (2-layer BiGRU 128).
- crnn: the DCASE FOA baseline recipe at small scale: 64-band log-mels of the 4 FOA channels +
  3 mel-scaled intensity-vector channels (hear_gram.frontend, 10 ms hop), 3 conv blocks (64
  filters, frequency pooling 4-4-2, time pooling 5-2-1 to 100 ms), a 2-layer BiGRU (128), two
  dense layers, tanh -> ACCDOA.
- zero: predicts nothing (the floor every method must beat: ER 1, F 0, LE 180, LR 0).

Training: Adam 1e-3, full clips as batches of 8, seeded; after each epoch the validation fold's
SELD score decides early stopping (patience 10); the best epoch's weights predict the test fold.
Outputs under O/{method}/{task}/: pred/{clip}.csv (DCASE cartesian), results.json; O/results.csv
and O/results.json (all methods); O/{method}/{task}/tracks.png (one test clip's true and
predicted azimuths over time).
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from hear_gram.config import FeatureConfig
from hear_gram.frontend import LogMelFrontend
from hear_gram.resample import resample
from localization_tasks.seld.labels import FRAME_S, Row, format_rows
from localization_tasks.seld.metrics import score_rows
from localization_tasks.seld.task import clip_frames, read_metadata, read_vocabulary, task_rows
from naturalistic_hear.paths import child, write_bytes_atomic

log = logging.getLogger(__name__)
ACTIVE = 0.5


# ---------------------------------------------------------------------------------------------
# Data


def accdoa_target(rows: list[Row], n_frames: int, n_classes: int) -> np.ndarray:
    """(T, K, 3) unit DOA vectors where a class is active, zeros elsewhere."""
    y = np.zeros((n_frames, n_classes, 3), dtype=np.float32)
    for r in rows:
        if r.frame < n_frames:
            v = np.asarray(r.xyz, dtype=np.float32)
            y[r.frame, r.cls] = v / max(float(np.linalg.norm(v)), 1e-12)
    return y


def decode_accdoa(y: np.ndarray) -> list[Row]:
    """(T, K, 3) -> DCASE rows (track 0) for vectors longer than 0.5."""
    rows = []
    for t, k in zip(*np.nonzero(np.linalg.norm(y, axis=-1) > ACTIVE), strict=True):
        rows.append(Row(int(t), int(k), 0, tuple(float(v) for v in y[t, k])))
    return rows


def load_split(task_dir: Path, split: str, rate: int) -> tuple[list[str], list[np.ndarray]]:
    """File names and audio (N, C) of a split, from the folder at `rate` or resampled from the
    highest rate present."""
    meta = read_metadata(task_dir)
    rates = sorted(int(r) for r in meta.get("sample_rates", []))
    src = rate if rate in rates else rates[-1]
    folder = child(task_dir / str(src), split, "split name")
    names = sorted(task_rows(task_dir, split))
    audio = []
    for name in names:
        x, sr = sf.read(child(folder, name, "clip name"), dtype="float32", always_2d=True)
        if sr != src:
            raise ValueError(f"{folder / name} is {sr} Hz, its folder says {src}")
        if src != rate:
            x = resample(torch.from_numpy(x.T.copy()), src, rate).numpy().T
        audio.append(x)
    return names, audio


class Features:
    """Per-clip input sequences (T_label, D) for a head, or frame features for the CRNN."""

    def __init__(self, kind: str, module: str = "", model: str = "", options: dict | None = None,
                 cache: Path | None = None) -> None:  # fmt: skip
        self.kind, self.module, self.model_path, self.options = kind, module, model, options or {}
        self.cache = cache
        self._hear = self._model = None

    def tag(self) -> str:
        h = hashlib.sha256(json.dumps([self.module, self.model_path, self.options]).encode())
        return f"{self.module}-{h.hexdigest()[:10]}"

    def rate(self, task_dir: Path) -> int:
        if self.kind == "module":
            return int(self._load()[1].sample_rate)
        return int(read_metadata(task_dir)["sample_rates"][0])

    def _load(self):
        if self._model is None:
            self._hear = importlib.import_module(self.module)
            self._model = self._hear.load_model(self.model_path, **self.options)
        return self._hear, self._model

    def __call__(self, task_dir: Path, split: str, n_frames: list[int]) -> list[np.ndarray]:
        rate = self.rate(task_dir)
        names, audio = load_split(task_dir, split, rate)
        if self.kind == "crnn":
            cfg = FeatureConfig(sample_rate=rate, n_mels=64, n_fft=512, win_length=min(512, rate // 50),
                                hop_length=rate // 100, f_min=50.0, f_max=rate / 2)  # fmt: skip
            front = LogMelFrontend(cfg, ambisonic=True)
            with torch.no_grad():
                return [front(torch.from_numpy(a.T.copy())[None])[0].numpy() for a in audio]
        path = self.cache / self.tag() / task_dir.name / f"{split}.npz" if self.cache else None
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as f:
                if list(f["names"]) == names:
                    return [f[f"e{i}"] for i in range(len(names))]
        hear, model = self._load()
        out = []
        for a, n in zip(audio, n_frames, strict=True):
            with torch.no_grad():
                emb, ts = hear.get_timestamp_embeddings(torch.from_numpy(a)[None], model)
            emb, ts = emb[0].float().numpy(), ts[0].float().numpy()
            centres = (np.arange(n) + 0.5) * FRAME_S * 1000
            out.append(np.stack([np.interp(centres, ts, emb[:, d]) for d in range(emb.shape[1])], 1)
                       .astype(np.float32))  # fmt: skip
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            buf = {f"e{i}": e for i, e in enumerate(out)}
            tmp = path.with_name(f".{path.name}.tmp.npz")
            np.savez(tmp, names=np.array(names), **buf)
            tmp.replace(path)
        return out


# ---------------------------------------------------------------------------------------------
# Models


class MLPHead(nn.Module):
    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.net = nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, 3 * k), nn.Tanh())  # fmt: skip

    def forward(self, x):  # (B, T, D) -> (B, T, K, 3)
        return self.net(x).unflatten(-1, (self.k, 3))


class BiGRUHead(nn.Module):
    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.gru = nn.GRU(d, 128, num_layers=2, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(nn.Linear(256, 3 * k), nn.Tanh())

    def forward(self, x):  # (B, T, D) -> (B, T, K, 3)
        return self.out(self.gru(x)[0]).unflatten(-1, (self.k, 3))


class CRNN(nn.Module):
    """SELDnet-style CRNN on (B, 7, F, T_10ms) -> (B, T_10ms / 10, K, 3)."""

    def __init__(self, channels: int, n_mels: int, k: int) -> None:
        super().__init__()
        blocks, c = [], channels
        for fp, tp in ((4, 5), (4, 2), (2, 1)):
            blocks += [nn.Conv2d(c, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d((fp, tp)), nn.Dropout(0.05)]  # fmt: skip
            c = 64
        self.conv = nn.Sequential(*blocks)
        self.head = BiGRUHead(64 * (n_mels // 32), k)

    def forward(self, x):
        h = self.conv(x)  # (B, 64, F / 32, T / 10)
        return self.head(h.flatten(1, 2).transpose(1, 2))


def _batch(xs: list[np.ndarray], ys: list[np.ndarray], idx, crnn: bool):
    x = torch.from_numpy(np.stack([xs[i] for i in idx]))
    y = torch.from_numpy(np.stack([ys[i] for i in idx]))
    if crnn:  # 10 ms frames: T = N // hop + 1; keep whole label frames
        x = x[..., : y.shape[1] * 10]
        if x.shape[-1] < y.shape[1] * 10:
            x = nn.functional.pad(x, (0, y.shape[1] * 10 - x.shape[-1]))
    return x, y


def _predict(model, xs, ys, crnn: bool) -> list[np.ndarray]:
    model.eval()
    with torch.no_grad():
        return [model(_batch(xs, ys, [i], crnn)[0])[0].numpy() for i in range(len(xs))]


def _seld(preds, refs, names, frames, k) -> dict:
    files = {n: (r, decode_accdoa(p)) for n, p, r in zip(names, preds, refs, strict=True)}
    return score_rows(files, k, n_frames=dict(zip(names, frames, strict=True)))


def train_and_test(task_dir: Path, method: str, feats: Features, head: str, epochs: int,
                   seed: int, out: Path, label: str | None = None) -> dict:  # fmt: skip
    """Train on the official train fold(s), stop early on valid, score on test; write outputs."""
    meta, vocab = read_metadata(task_dir), read_vocabulary(task_dir)
    folds, k = meta["seld"]["official_folds"], len(vocab)
    n_of = clip_frames(task_dir)
    data = {}
    for role in ("train", "valid", "test"):
        names, refs, frames, xs, ys = [], [], [], [], []
        for split in folds[role]:
            rows = task_rows(task_dir, split)
            nm = sorted(rows)
            fr = [n_of[(split, n)] for n in nm]
            x = feats(task_dir, split, fr) if method != "zero" else [None] * len(nm)
            names += nm
            refs += [rows[n] for n in nm]
            frames += fr
            xs += x
            ys += [accdoa_target(rows[n], f, k) for n, f in zip(nm, fr, strict=True)]
        data[role] = (names, refs, frames, xs, ys)
    names, refs, frames, xs, ys = data["test"]
    if method == "zero":
        preds = [np.zeros_like(y) for y in ys]
        best_epoch = 0
    else:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        crnn = method == "crnn"
        d = data["train"][3][0].shape[0] if crnn else data["train"][3][0].shape[1]
        model = (CRNN(d, data["train"][3][0].shape[1], k) if crnn
                 else (MLPHead if head == "mlp" else BiGRUHead)(d, k))  # fmt: skip
        if not crnn:  # standardise embeddings with training statistics
            cat = np.concatenate(data["train"][3])
            mu, sd = cat.mean(0), cat.std(0) + 1e-6
            for role in data:
                data[role] = (
                    *data[role][:3],
                    [(x - mu) / sd for x in data[role][3]],
                    data[role][4],
                )
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        best, best_state, best_epoch, bad = float("inf"), None, -1, 0
        tx, ty = data["train"][3], data["train"][4]
        for epoch in range(epochs):
            model.train()
            order = rng.permutation(len(tx))
            for s in range(0, len(order), 8):
                x, y = _batch(tx, ty, order[s : s + 8], crnn)
                loss = nn.functional.mse_loss(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            vn, vr, vf, vx, vy = data["valid"]
            score = _seld(_predict(model, vx, vy, crnn), vr, vn, vf, k)["SELD"]
            log.info("%s %s epoch %d: loss %.4f valid SELD %.3f", method, task_dir.name, epoch,
                     float(loss), score)  # fmt: skip
            if score < best:
                best, best_state, best_epoch, bad = (
                    score,
                    copy.deepcopy(model.state_dict()),
                    epoch,
                    0,
                )
            else:
                bad += 1
                if bad >= 10:
                    break
        model.load_state_dict(best_state)
        names, refs, frames, xs, ys = data["test"]
        preds = _predict(model, xs, ys, crnn)
    result = _seld(preds, refs, names, frames, k)
    result.update({"method": method, "task": task_dir.name, "best_epoch": best_epoch,
                   "test_clips": len(names)})  # fmt: skip
    run_dir = out / child(out, label or method, "method name").name / task_dir.name
    (run_dir / "pred").mkdir(parents=True, exist_ok=True)
    for n, p in zip(names, preds, strict=True):
        path = child(run_dir / "pred", Path(n).stem + ".csv", "clip name")
        write_bytes_atomic(path, format_rows(decode_accdoa(p), "cartesian").encode())
    write_bytes_atomic(run_dir / "results.json", json.dumps(result, indent=1).encode())
    plot_tracks(run_dir / "tracks.png", names[0], refs[0], decode_accdoa(preds[0]), vocab)
    return result


def plot_tracks(path: Path, name: str, ref: list[Row], pred: list[Row], vocab: list[str]) -> None:
    """Azimuth over time of one clip: reference (lines of dots) vs prediction (crosses)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    for rows, marker, what in ((ref, "o", "true"), (pred, "x", "predicted")):
        for c in sorted({r.cls for r in rows}):
            pts = [(r.frame * FRAME_S, r.azimuth_elevation[0]) for r in rows if r.cls == c]
            ax.plot(*zip(*pts, strict=True), marker, ms=3, label=f"{vocab[c]} ({what})")
    ax.set(xlabel="time (s)", ylabel="azimuth (deg)", ylim=(-180, 180), title=name)
    ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


COLUMNS = ("method", "task", "ER20", "F20", "LE_CD", "LR_CD", "SELD", "best_epoch")


def format_table(results: list[dict]) -> str:
    lines = [
        "| method | task | ER20 | F20 | LE_CD | LR_CD | SELD |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['method']} | {r['task']} | {r['ER20']:.3f} | {r['F20']:.3f} | "
                     f"{r['LE_CD']:.1f} | {r['LR_CD']:.3f} | {r['SELD']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m localization_tasks.seld.evaluate")
    p.add_argument("--tasks-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--task", action="append", default=None)
    p.add_argument("--module", default=None)
    p.add_argument("--model", default="")
    p.add_argument("--model-options", default="{}")
    p.add_argument("--name", default=None, help="method name of the module in the table")
    p.add_argument("--head", choices=("mlp", "bigru"), default="bigru")
    p.add_argument("--baseline", action="append", choices=("crnn", "zero"), default=[])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if not 1 <= args.epochs <= 10_000:
            raise ValueError(f"--epochs must be 1..10000, got {args.epochs}")
        options = json.loads(args.model_options)
        if not isinstance(options, dict):
            raise ValueError("--model-options must be a JSON object")
        tasks = [child(args.tasks_dir, t, "task") for t in args.task] if args.task else sorted(
            p for p in args.tasks_dir.iterdir() if (p / "task_metadata.json").is_file())  # fmt: skip
        if not tasks:
            raise FileNotFoundError(f"no SELD tasks under {args.tasks_dir}")
        methods = [(b, Features(b)) for b in args.baseline]
        if args.module:
            feats = Features("module", args.module, args.model, options, args.out / "embeddings")
            methods.append((args.name or f"{args.module}+{args.head}", feats))
        results = []
        for task in tasks:
            for name, feats in methods:
                method = name if name in ("crnn", "zero") else "module"
                res = train_and_test(
                    task, method, feats, args.head, args.epochs, args.seed, args.out
                )
                res["method"] = name
                results.append(res)
        write_bytes_atomic(args.out / "results.json", json.dumps(results, indent=1).encode())
        with open(args.out / "results.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            w.writerows([[r[c] for c in COLUMNS] for r in results])
    except (ValueError, OSError) as e:
        print(f"localization_tasks.seld.evaluate: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_table(results))


if __name__ == "__main__":
    main()
