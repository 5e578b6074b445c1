"""`localization`: direction of arrival on the localization tasks of each source, binaural and
Ambisonic; mean angular error (deg) per SNR bin (arXiv 2506.00934 sec. 5)."""

from __future__ import annotations

from pathlib import Path

from hear_gram.suite.condition import register
from hear_gram.suite.conditions.spatial import SpatialCondition, error_vs_bins

# Table order: clean first, then from the least to the most noisy (localization_tasks.bins).
SNR_BINS = (("clean", "clean"), ("snr20-40", "20-40 dB"), ("snr10-20", "10-20 dB"),
            ("snr05-10", "5-10 dB"))  # fmt: skip


class Localization(SpatialCondition):
    name = "localization"
    title = "Localization"
    target = "direction"
    metric = "mean_angular_error_deg"
    caption = "Mean angular error (deg) per SNR bin"
    columns = tuple((label, b) for b, label in SNR_BINS)
    digits = 1

    def figure(self, rows: list[dict], out: Path) -> list[str]:
        from hear_gram.plotting import save

        bins = tuple(reversed(SNR_BINS))  # x axis: the noisiest bin first
        fig = error_vs_bins(rows, self.name, bins, "mean angular error (deg)")
        if fig is None:
            return []
        save(fig, out / "error_vs_snr.png", dpi=110)
        return ["error_vs_snr.png"]


LOCALIZATION = register(Localization())
