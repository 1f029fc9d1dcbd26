"""Per-trial learning-curve plot, the learning-rate finder's curve and the best model's test-split plot
(matplotlib, scikit-learn's displays). The search-level plots come from skopt in :mod:`optimizer`."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy.typing as npt

from bo_tuner.config import metric_is_maximized


def pyplot() -> Any:
    """matplotlib's pyplot, to draw figures into files (each is closed once saved, so none shows anywhere).

    Agg, unless this process chose its backend already: pyplot imported, or ``MPLBACKEND`` set (a Jupyter kernel
    sets its inline backend so). A study or ``minimize`` that draws in the caller's process (the Ray backend, a
    Python objective) would otherwise switch a notebook to Agg, and the user's own plots after it would no longer
    show. bo_tuner's worker and plotter processes switch to Agg as they start (:func:`draw_into_files`).
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_into_files() -> None:
    """Agg in one of bo_tuner's own processes (a worker, the plotter), whatever backend it inherited: Keras
    imports pyplot (with ``MPLBACKEND``'s backend, e.g. a notebook's inline one) before the process draws."""
    import matplotlib

    matplotlib.use("Agg")


def learning_curve(history: Mapping[str, list[float]], metric: str, path: str, title: str) -> bool:
    """Loss and ``metric`` per epoch, training and validation side by side. False when there is nothing to draw."""
    if not history.get("loss"):
        return False
    plt = pyplot()
    base = metric.removeprefix("val_")
    panels = [name for name in ("loss", base) if name in history or f"val_{name}" in history]
    # Fixed margins and legend corners: tight_layout and legend(loc="best") were two thirds of the drawing time,
    # paid once per trial. Losses fall (the upper right stays clear), scores like accuracy rise (lower right).
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    figure.subplots_adjust(left=0.09 if len(panels) > 1 else 0.16, right=0.98, bottom=0.15, top=0.82, wspace=0.25)
    for ax, name in zip(axes[0], panels, strict=True):
        for series, style in ((name, "-"), (f"val_{name}", "--")):
            values = history.get(series)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=series)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        falling = name == "loss" or not metric_is_maximized(f"val_{name}")
        ax.legend(loc="upper right" if falling else "lower right")
        ax.grid(alpha=0.3)
    figure.suptitle(title)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return True


def lr_finder(learning_rates: list[float], losses: list[float], smoothed: list[float], suggestion: float,
              path: str, title: str) -> None:
    """Loss against learning rate (log scale), the smoothed curve and the suggested rate."""
    import math

    plt = pyplot()
    figure, ax = plt.subplots(figsize=(6, 3.8))
    finite = [(r, v) for r, v in zip(learning_rates, losses, strict=True) if math.isfinite(v)]
    ax.plot([r for r, _ in finite], [v for _, v in finite], alpha=0.35, label="batch loss")
    ax.plot(learning_rates[: len(smoothed)], smoothed, label="smoothed loss")
    ax.axvline(suggestion, color="red", linestyle="--", label=f"suggested {suggestion:.2g}")
    ax.set_xscale("log")
    top = max(smoothed[: max(1, len(smoothed) // 10)]) * 2.5 if smoothed else None
    if top and math.isfinite(top):
        ax.set_ylim(bottom=0, top=top)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def test_predictions(task: str, truth: npt.NDArray[Any], predictions: npt.NDArray[Any],
                     classes: Sequence[str] | None, path: str, title: str) -> None:
    """The best model on the held-out test split: scikit-learn's confusion matrix (classification; labels as
    strings, in ``classes``' order) or its actual-vs-predicted and residual plots (regression)."""
    from sklearn.metrics import ConfusionMatrixDisplay, PredictionErrorDisplay

    plt = pyplot()
    if task == "classification":
        labels = list(classes) if classes is not None else sorted(set(truth.tolist()) | set(predictions.tolist()))
        side = min(14.0, max(4.5, 0.45 * len(labels) + 2.5))
        figure, ax = plt.subplots(figsize=(side, side * 0.85))
        ConfusionMatrixDisplay.from_predictions(
            truth, predictions, labels=labels, ax=ax, colorbar=False, cmap="Blues",
            include_values=len(labels) <= 25,  # beyond that the counts overlap; the colours still read
            xticks_rotation="vertical" if max(map(len, labels)) > 3 else "horizontal")
        ax.set_title(f"{title}: test confusion matrix ({len(truth)} rows)")
    else:
        figure, axes = plt.subplots(1, 2, figsize=(9.5, 4.2))
        for ax, kind in zip(axes, ("actual_vs_predicted", "residual_vs_predicted"), strict=True):
            PredictionErrorDisplay.from_predictions(truth, predictions, kind=kind, ax=ax,
                                                    scatter_kwargs={"alpha": 0.5, "s": 12})
        figure.suptitle(f"{title}: test split ({len(truth)} rows)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
