"""Progress bars and loss-curve figures for the training examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def progress_bar(seconds: float) -> Any:
    """A tqdm bar over a time budget in seconds (None when tqdm is not installed)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=int(seconds), unit="s", desc="train", dynamic_ncols=True, mininterval=0.5)


def plot_curves(
    history: dict[str, list[Any]], path: Path, title: str, ylabel: str, *, held_out_label: str = "held-out",
    final_label: str = "final",
    log_y: bool = False,
    baseline: tuple[float, str] | None = None,
) -> Path | None:
    """Training (moving average) and held-out curves against training seconds, and the ``final`` point if the
    history has one, as a PNG (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, ax = plt.subplots(figsize=(6.5, 4))
    if history["train"]:
        seconds = np.array([p[0] for p in history["train"]])
        values = np.array([p[1] for p in history["train"]])
        window = max(1, len(values) // 100)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(seconds[window - 1 :], smooth, label="training (moving average)")
    if history["held_out"]:
        ax.plot([p[0] for p in history["held_out"]], [p[1] for p in history["held_out"]], "o-",
                label=held_out_label)
    if history.get("final"):
        (seconds_final, value), = history["final"]
        ax.plot([seconds_final], [value], "*", markersize=14, label=f"{final_label}: {value:.3f}")
    if baseline is not None:
        ax.axhline(baseline[0], color="grey", linestyle="--", label=baseline[1])
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("training seconds")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
