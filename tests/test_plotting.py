"""Figures are written without touching pyplot's backend or its list of open figures: importing
or plotting with hear-gram inside a notebook must not switch the user's backend."""

import importlib

import matplotlib
import numpy as np


def test_plots_write_pngs_and_leave_the_backend_and_pyplot_alone(tmp_path):
    import matplotlib.pyplot as plt

    from hear_gram.pretrain import train
    from localization_tasks import plots

    previous = matplotlib.get_backend()
    matplotlib.use("svg")  # stands in for a user's own (e.g. inline) backend
    try:
        importlib.reload(plots)  # module-level code runs again
        rows = [
            {"target": "direction", "source_task": "t", "format": "binaural", "snr_bin": b,
             "mean_angular_error_deg": e}
            for b, e in (("clean", 30.0), ("snr05-10", 50.0))
        ]  # fmt: skip
        a = plots.error_vs_snr(rows, tmp_path / "err.png", "demo")
        vec = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        b = plots.azimuth_scatter({"t": (vec, vec[::-1])}, tmp_path / "az.png")
        log = tmp_path / "logs" / "version_0"
        log.mkdir(parents=True)
        (log / "metrics.csv").write_text("step,train/loss\n0,2.0\n1,1.5\n2,1.2\n")
        train.plot_loss(tmp_path / "logs", tmp_path / "loss.png")
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == []  # nothing left open in pyplot
        for png in (a, b, tmp_path / "loss.png"):
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    finally:
        matplotlib.use(previous)
