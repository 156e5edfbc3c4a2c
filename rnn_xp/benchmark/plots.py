"""PNG figures of a sweep (matplotlib, the optional ``plot`` extra): throughput curves and speedup heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STYLES = {"rnn_xp": "-", "torch": "--", "torch-cudnn": "--", "numpy-loop": ":", "rnn_xp-generic": "-."}


def draw(result: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """Write the figures next to the result files; returns their paths (none when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        _throughput(plt, result, out / f"{stem}-throughput.png"),
        _speedup_heatmaps(plt, result, out / f"{stem}-speedup-vs-peers.png"),
        _gpu_over_cpu(plt, result, out / f"{stem}-gpu-over-cpu.png"),
    ]
    return paths


def _axes_grid(plt: Any, rows: int, cols: int, *, size: tuple[float, float] = (4.2, 3.4)) -> tuple[Any, Any]:
    figure, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    return figure, axes


def _throughput(plt: Any, result: dict[str, Any], path: Path) -> Path:
    rows = result["rows"]
    directions = sorted({r["direction"] for r in rows}) or ["fwd"]
    hiddens = sorted({r["case"]["hidden"] for r in rows}) or [0]
    batches = sorted({r["case"]["batch"] for r in rows})
    colors = {b: plt.cm.viridis(i / max(1, len(batches) - 1)) for i, b in enumerate(batches)}
    figure, axes = _axes_grid(plt, len(directions), len(hiddens))
    for i, direction in enumerate(directions):
        for j, hidden in enumerate(hiddens):
            ax = axes[i][j]
            selected = [r for r in rows if r["direction"] == direction and r["case"]["hidden"] == hidden]
            series: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
            for row in selected:
                for name, entry in row["results"].items():
                    if "samples_per_s" in entry:
                        key = (row["device"], name, row["case"]["batch"])
                        series.setdefault(key, []).append((row["case"]["seq_len"], entry["samples_per_s"]))
            for (device, name, batch), points in sorted(series.items()):
                points.sort()
                ax.plot(
                    [p[0] for p in points], [p[1] for p in points], STYLES.get(name, "-"),
                    color=colors[batch], marker="o" if device == "cuda" else ".",
                    label=f"{name} ({device}) B={batch}",
                )
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("sequence length T")
            ax.set_ylabel("samples·steps / s")
            ax.set_title(f"{'forward' if direction == 'fwd' else 'forward+backward'}, H={hidden}")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize="small")
    figure.suptitle(f"throughput (B·T/s), {result['config']['dtype']}", fontsize="medium")
    figure.tight_layout(rect=(0, 0.05 + 0.025 * ((len(labels) + 3) // 4), 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _heatmap(plt: Any, ax: Any, rows: list[dict[str, Any]], value: Any, title: str) -> None:
    batches = sorted({r["case"]["batch"] for r in rows})
    seq_lens = sorted({r["case"]["seq_len"] for r in rows})
    grid = [[float("nan")] * len(seq_lens) for _ in batches]
    for row in rows:
        number = value(row)
        if number is not None:
            grid[batches.index(row["case"]["batch"])][seq_lens.index(row["case"]["seq_len"])] = number
    from matplotlib.colors import TwoSlopeNorm

    values = [v for line in grid for v in line if v == v]
    # Centred on 1 (parity): green is rnn_xp faster, red slower, whatever the range of the run.
    norm = TwoSlopeNorm(vcenter=1.0, vmin=min([0.5, *values]) * 0.99, vmax=max([2.0, *values]) * 1.01)
    image = ax.imshow(grid, cmap="RdYlGn", origin="lower", aspect="auto", norm=norm)
    for bi, line in enumerate(grid):
        for si, number in enumerate(line):
            ax.text(si, bi, "—" if number != number else f"{number:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(seq_lens)), [str(s) for s in seq_lens])
    ax.set_yticks(range(len(batches)), [str(b) for b in batches])
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("batch B")
    ax.set_title(title, fontsize="small")
    plt.colorbar(image, ax=ax, fraction=0.046)


def _speedup_heatmaps(plt: Any, result: dict[str, Any], path: Path) -> Path:
    rows = result["rows"]
    panels = sorted(
        {(r["device"], r["direction"], peer, r["case"]["hidden"]) for r in rows for peer in r["speedup_vs"]}
    )
    figure, axes = _axes_grid(plt, max(1, (len(panels) + 2) // 3), min(3, max(1, len(panels))))
    flat = [ax for line in axes for ax in line]
    for ax, (device, direction, peer, hidden) in zip(flat, panels, strict=False):
        selected = [
            r for r in rows if r["device"] == device and r["direction"] == direction and r["case"]["hidden"] == hidden
        ]
        _heatmap(plt, ax, selected, lambda r, p=peer: r["speedup_vs"].get(p),
                 f"rnn_xp speedup over {peer} ({device}, {direction}, H={hidden})")
    for ax in flat[len(panels):]:
        ax.axis("off")
    if not panels:
        flat[0].text(0.5, 0.5, "no peer measured in this run", ha="center", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _gpu_over_cpu(plt: Any, result: dict[str, Any], path: Path) -> Path:
    rows = [r for r in result["rows"] if r["device"] == "cuda" and r["gpu_over_cpu"]]
    panels = sorted({(r["direction"], r["case"]["hidden"]) for r in rows})
    figure, axes = _axes_grid(plt, 1, max(1, len(panels)))
    if not panels:
        ax = axes[0][0]
        ax.axis("off")
        ax.text(0.5, 0.5, "GPU/CPU speedup: not measured\n(no GPU, or no CPU rows, in this run)", ha="center",
                va="center")
    for ax, (direction, hidden) in zip(axes[0], panels, strict=False):
        selected = [r for r in rows if r["direction"] == direction and r["case"]["hidden"] == hidden]
        _heatmap(plt, ax, selected, lambda r: r["gpu_over_cpu"], f"rnn_xp GPU/CPU speedup ({direction}, H={hidden})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
