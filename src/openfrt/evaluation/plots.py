"""DET curves (FNIR against FPIR, both log-scale), drawn off-screen so they work on servers."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from openfrt.evaluation.metrics import SearchOutcomes, det_points


def plot_det(curves: dict[str, SearchOutcomes], path: Path, target_fpir: float, title: str) -> None:
    """Write a DET plot of every curve to ``path`` (PNG), with the target FPIR marked.

    Points with FPIR or FNIR of 0 cannot be shown on log axes and are left out; the lowest
    FPIR drawn is therefore about 1 / (number of non-mated searches).
    """
    figure, axes = plt.subplots(figsize=(6.4, 5.2), dpi=120)
    floor_x = min(target_fpir, *(1 / max(1, o.nonmated.size) for o in curves.values())) / 2
    floor_y = min(1 / max(1, o.mated.size) for o in curves.values()) / 2
    for label, outcomes in curves.items():
        _, fpir, fnir = det_points(outcomes)
        visible = (fpir > 0) & (fnir > 0)
        axes.step(fpir[visible], fnir[visible], where="post", label=label)
    axes.axvline(target_fpir, color="grey", linestyle="--", linewidth=1, label=f"target FPIR {target_fpir:.2g}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(floor_x, 1.0)  # fixed limits: a tiny test set may have no point to autoscale on
    axes.set_ylim(floor_y, 1.0)
    axes.set_xlabel("FPIR (share of non-mated searches that alert)")
    axes.set_ylabel("FNIR (share of mated searches that miss)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
