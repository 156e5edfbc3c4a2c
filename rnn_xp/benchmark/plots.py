"""PNG figures of a sweep (matplotlib, the optional ``plot`` extra): throughput curves and speed-up heatmaps.

Every implementation has one colour, marker and line style in every figure (:data:`STYLES`). The heatmaps share one
colour scale, logarithmic and centred at 1x (parity), so the same colour means the same ratio in every panel; a cell
whose timing was unstable (quartiles more than 3x apart, left out of the verdict) is hatched. A figure is written only
when the run has something for it: a CPU-only run writes no GPU/CPU figure (its verdict says there was no GPU).
The figures show the plain cases of the grid (one layer, one direction, full lengths); the table has every row.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rnn_xp.benchmark.timing import UNSTABLE_QUARTILE_RATIO, is_unstable

# The colour scale shared by the panels of a figure, in log2 units either side of 1x (beyond it the colour saturates;
# each cell prints its value): 1/4x to 4x against the peers, 1/32x to 32x for the GPU against the CPU.
PEER_LIMIT = 2
GPU_LIMIT = 5
# name: (colour, marker, line style). rnn_xp solid, its peers dashed or dotted.
STYLES: dict[str, tuple[str, str, str]] = {
    "rnn_xp": ("#1f77b4", "o", "-"),
    "rnn_xp-generic": ("#17becf", "P", "-."),
    "torch": ("#ff7f0e", "s", "--"),
    "torch-cudnn": ("#d62728", "v", "--"),
    "onnxruntime": ("#2ca02c", "^", "--"),
    "jax": ("#9467bd", "D", "--"),
    "numpy-loop": ("#7f7f7f", "x", ":"),
}
_OTHER = ("#8c564b", "*", "--")
DIRECTION_NAMES = {"fwd": "forward", "train": "forward+backward"}
COLORMAP = "PiYG"  # diverging: pink below 1x, green above, pale at parity
HATCH = "////"


def draw(result: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """Write the figures of ``result`` into ``out``; returns their paths (none when matplotlib is missing).

    Parameters
    ----------
    result : dict
        A result document of :func:`rnn_xp.benchmark.sweep.run_sweep`.
    out : Path
        The folder (created if missing).
    stem : str
        The start of each file name: ``{stem}-throughput.png``, ``{stem}-speedup-vs-peers.png`` and, when the run
        timed rnn_xp on a GPU and on the CPU, ``{stem}-gpu-over-cpu.png``.

    Returns
    -------
    list of Path
        The figures written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for row in result["rows"] if _plain(row)]
    paths = [_throughput(plt, result, rows, out / f"{stem}-throughput.png")]
    if any(row["speedup_vs"] for row in rows):
        paths.append(_speedup_heatmaps(plt, rows, out / f"{stem}-speedup-vs-peers.png"))
    if any(row.get("gpu_over_cpu") for row in rows):
        paths.append(_gpu_over_cpu(plt, rows, out / f"{stem}-gpu-over-cpu.png"))
    return paths


def style(name: str) -> tuple[str, str, str]:
    """(colour, marker, line style) of an implementation."""
    return STYLES.get(name, _OTHER)


def _plain(row: dict[str, Any]) -> bool:
    case = row["case"]
    return case.get("num_layers", 1) == 1 and not case.get("bidirectional") and not case.get("with_lengths")


def _values(rows: list[dict[str, Any]], key: str) -> list[Any]:
    return sorted({row[key] if key in row else row["case"][key] for row in rows})


def _throughput(plt: Any, result: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> Path:
    """One panel per (device, direction, H) and batch B: samples·steps/s against T, one line per implementation."""
    panel_rows = sorted({(r["device"], r["direction"], r["case"]["hidden"]) for r in rows},
                        key=lambda key: (key[0], key[1] != "fwd", key[2]))
    batches = _values(rows, "batch") or [0]
    figure, axes = plt.subplots(max(1, len(panel_rows)), len(batches), figsize=(3.3 * len(batches) + 0.6,
                                2.6 * max(1, len(panel_rows)) + 0.9), squeeze=False, sharey="row",
                                layout="constrained")
    names: list[str] = []
    for i, (device, direction, hidden) in enumerate(panel_rows):
        for j, batch in enumerate(batches):
            ax = axes[i][j]
            selected = [r for r in rows if (r["device"], r["direction"], r["case"]["hidden"], r["case"]["batch"])
                        == (device, direction, hidden, batch)]
            series: dict[str, list[tuple[int, float]]] = {}
            for row in selected:
                for name, entry in row["results"].items():
                    if "samples_per_s" in entry:
                        series.setdefault(name, []).append((row["case"]["seq_len"], entry["samples_per_s"]))
            for name in sorted(series, key=lambda n: (n != "rnn_xp", n)):
                points = sorted(series[name])
                colour, marker, line = style(name)
                ax.plot([p[0] for p in points], [p[1] for p in points], linestyle=line, marker=marker,
                        color=colour, label=name, linewidth=2.2 if name == "rnn_xp" else 1.4, markersize=5)
                names += [] if name in names else [name]
            ax.set_xscale("log", base=2)
            seq_lens = sorted({r["case"]["seq_len"] for r in selected})
            ax.set_xticks(seq_lens, [str(t) for t in seq_lens], minor=False)
            ax.set_xticks([], minor=True)
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_title(f"{device}, {DIRECTION_NAMES.get(direction, direction)}, H={hidden}, B={batch}",
                         fontsize="small")
            if i == len(panel_rows) - 1:
                ax.set_xlabel("sequence length T")
            if j == 0:
                ax.set_ylabel("samples·steps / s")
    handles = [plt.Line2D([], [], color=style(n)[0], marker=style(n)[1], linestyle=style(n)[2], label=n)
               for n in sorted(names, key=lambda n: (n != "rnn_xp", n))]
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize="small",
                      frameon=False)
    figure.suptitle(f"Throughput, B·T / s (higher is faster), {result['config']['dtype']}", fontsize="medium")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _heatmap(plt: Any, ax: Any, rows: list[dict[str, Any]], value: Any, title: str, *,
             limit: int = PEER_LIMIT, unstable: Any = None) -> Any:
    """Batch by sequence length, each cell the ratio ``value(row)`` (None: no cell), coloured by log2 of it on the
    shared scale ±``limit``; cells for which ``unstable(row)`` is true are hatched."""
    batches = _values(rows, "batch")
    seq_lens = _values(rows, "seq_len")
    grid = [[math.nan] * len(seq_lens) for _ in batches]
    shaky = []
    for row in rows:
        number = value(row)
        if number is not None and number > 0:
            bi, si = batches.index(row["case"]["batch"]), seq_lens.index(row["case"]["seq_len"])
            grid[bi][si] = number
            if unstable is not None and unstable(row):
                shaky.append((bi, si))
    logs = [[math.log2(v) if v == v else math.nan for v in line] for line in grid]
    image = ax.imshow(logs, cmap=COLORMAP, origin="lower", aspect="auto", vmin=-limit, vmax=limit)
    for bi, line in enumerate(grid):
        for si, number in enumerate(line):
            ink = "white" if number == number and abs(math.log2(number)) > 0.6 * limit else "black"
            text = "—" if number != number else f"{number:.2f}×" + (" ⚠" if (bi, si) in shaky else "")
            ax.text(si, bi, text, ha="center", va="center", fontsize=8, color=ink)
            if (bi, si) in shaky:
                ax.add_patch(plt.Rectangle((si - 0.5, bi - 0.5), 1, 1, fill=False, hatch=HATCH, edgecolor=ink,
                                           linewidth=0, alpha=0.6))
    ax.set_xticks(range(len(seq_lens)), [str(s) for s in seq_lens])
    ax.set_yticks(range(len(batches)), [str(b) for b in batches])
    ax.set_xlabel("sequence length T", fontsize="small")
    ax.set_ylabel("batch B", fontsize="small")
    ax.set_title(title, fontsize="small")
    return image


def _colorbar(figure: Any, image: Any, axes: Any, limit: int, label: str) -> None:
    ticks = list(range(-limit, limit + 1))
    bar = figure.colorbar(image, ax=axes, fraction=0.025, pad=0.02, ticks=ticks, extend="both")
    bar.ax.set_yticklabels([f"{2 ** t}×" if t >= 0 else f"1/{2 ** -t}×" for t in ticks])
    bar.set_label(label)


def _footnote(figure: Any) -> None:
    figure.supxlabel(f"Hatched, ⚠: a timing whose quartiles are more than {UNSTABLE_QUARTILE_RATIO:g}× apart "
                     "(unstable; left out of the verdict). —: not measured.", fontsize="small")


def _entry_unstable(entry: dict[str, Any]) -> bool:
    return "p25_s" in entry and bool(entry.get("unstable", is_unstable(entry)))


def _speedup_heatmaps(plt: Any, rows: list[dict[str, Any]], path: Path) -> Path:
    """One row of panels per (device, peer, direction) that has a ratio, one column per H: peer time / rnn_xp time."""
    lines = sorted({(r["device"], peer, r["direction"]) for r in rows for peer in r["speedup_vs"]},
                   key=lambda key: (key[0], key[1], key[2] != "fwd"))
    hiddens = _values(rows, "hidden")
    figure, axes = plt.subplots(len(lines), len(hiddens), figsize=(3.4 * len(hiddens) + 1.4, 2.6 * len(lines) + 0.8),
                                squeeze=False, layout="constrained")
    image = None
    for i, (device, peer, direction) in enumerate(lines):
        for j, hidden in enumerate(hiddens):
            ax = axes[i][j]
            selected = [r for r in rows if (r["device"], r["direction"], r["case"]["hidden"]) == (device, direction,
                                                                                                    hidden)]
            title = f"vs {peer} ({device}), {DIRECTION_NAMES.get(direction, direction)}, H={hidden}"
            if not any(peer in r["speedup_vs"] for r in selected):
                ax.axis("off")
                continue

            def shaky(row: dict[str, Any], peer: str = peer) -> bool:
                return _entry_unstable(row["results"].get("rnn_xp", {})) or _entry_unstable(
                    row["results"].get(peer, {}))

            image = _heatmap(plt, ax, selected, lambda r, p=peer: r["speedup_vs"].get(p), title, unstable=shaky)
    if image is not None:
        _colorbar(figure, image, axes, PEER_LIMIT, "peer time / rnn_xp time (above 1×: rnn_xp faster)")
    figure.suptitle("rnn_xp's speed-up over each peer, same rows, same process", fontsize="medium")
    _footnote(figure)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _gpu_over_cpu(plt: Any, rows: list[dict[str, Any]], path: Path) -> Path:
    """One panel per (direction, H): rnn_xp's CPU time / its GPU time."""
    cuda = [r for r in rows if r["device"] == "cuda" and r.get("gpu_over_cpu")]
    cpu = {(r["case"]["label"], r["direction"]): r for r in rows if r["device"] == "cpu"}
    directions = sorted({r["direction"] for r in cuda}, key=lambda d: d != "fwd")
    hiddens = _values(cuda, "hidden")
    figure, axes = plt.subplots(len(directions), len(hiddens), figsize=(3.4 * len(hiddens) + 1.4,
                                2.7 * len(directions) + 0.8), squeeze=False, layout="constrained")

    def shaky(row: dict[str, Any]) -> bool:
        other = cpu.get((row["case"]["label"], row["direction"]), {"results": {}})
        return _entry_unstable(row["results"].get("rnn_xp", {})) or _entry_unstable(
            other["results"].get("rnn_xp", {}))

    image = None
    for i, direction in enumerate(directions):
        for j, hidden in enumerate(hiddens):
            selected = [r for r in cuda if r["direction"] == direction and r["case"]["hidden"] == hidden]
            image = _heatmap(plt, axes[i][j], selected, lambda r: r["gpu_over_cpu"],
                             f"{DIRECTION_NAMES.get(direction, direction)}, H={hidden}", limit=GPU_LIMIT,
                             unstable=shaky)
    _colorbar(figure, image, axes, GPU_LIMIT, "rnn_xp CPU time / GPU time (above 1×: the GPU is faster)")
    figure.suptitle("rnn_xp on the GPU against rnn_xp on the CPU of the same machine", fontsize="medium")
    _footnote(figure)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
