"""rnn_xp.benchmark.plots: one style per implementation, one colour scale per heatmap figure, unstable cells hatched,
and no figure for what a run did not measure."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from rnn_xp.benchmark import plots, sweep
from rnn_xp.benchmark.cases import Case

pytest.importorskip("matplotlib")


def _entry(median_ms: float, *, spread: float = 1.05) -> dict[str, Any]:
    median = median_ms / 1e3
    return {"status": "ok", "median_s": median, "p25_s": median / spread, "p75_s": median * spread,
            "samples_per_s": 1e3 / median_ms, "gflops": 1.0}


def _rows(device: str = "cpu", peers: dict[str, float] | None = None) -> list[dict[str, Any]]:
    peers = {"torch": 2.0, "numpy-loop": 0.5} if peers is None else peers
    rows = []
    for hidden in (8, 32):
        for batch in (1, 8):
            for seq_len in (4, 16):
                for direction in ("fwd", "train"):
                    results = {"rnn_xp": _entry(1.0), **{name: _entry(ms) for name, ms in peers.items()}}
                    rows.append({"device": device, "direction": direction,
                                 "case": Case(seq_len, batch, 4, hidden).as_dict(), "flops": 1.0, "results": results,
                                 "speedup_vs": {name: ms for name, ms in peers.items()}, "gpu_over_cpu": None})
    return rows


def _result(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rows": rows, "config": {"dtype": "float32"}}


def test_every_implementation_has_its_own_colour_and_marker() -> None:
    names = ["rnn_xp", *sweep.ALL_PEERS]
    assert set(names) <= set(plots.STYLES)
    assert len({plots.style(n)[0] for n in names}) == len(names)
    assert len({plots.style(n)[1] for n in names}) == len(names)


def test_the_throughput_lines_use_each_implementations_style(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    drawn: list[tuple[str, str, str, str]] = []
    original = matplotlib.axes.Axes.plot

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        drawn.append((kwargs["label"], kwargs["color"], kwargs["marker"], kwargs["linestyle"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording)
    rows = _rows(peers={"torch": 2.0, "jax": 1.5, "onnxruntime": 3.0})
    plots.draw(_result(rows), tmp_path, "run")
    assert {label for label, *_ in drawn} == {"rnn_xp", "torch", "jax", "onnxruntime"}
    assert all((colour, marker, line) == plots.style(label) for label, colour, marker, line in drawn)


def test_the_heatmaps_share_one_scale_centred_at_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = []
    original = plots._heatmap

    def recording(*args: Any, **kwargs: Any) -> Any:
        image = original(*args, **kwargs)
        images.append(image)
        return image

    monkeypatch.setattr(plots, "_heatmap", recording)
    plots.draw(_result(_rows()), tmp_path, "run")
    # (torch, numpy-loop) x (fwd, train) x H in (8, 32): every panel on log2 of the ratio, -2..2 (1/4x to 4x).
    assert len(images) == 8
    assert {image.get_clim() for image in images} == {(-plots.PEER_LIMIT, plots.PEER_LIMIT)}
    values = {round(float(v), 6) for image in images for v in image.get_array().compressed()}
    assert values == {math.log2(2.0), math.log2(0.5)}


def test_unstable_cells_are_hatched_and_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    rows = _rows(peers={"torch": 2.0})
    shaky = rows[0]  # T=4, B=1, H=8, forward
    shaky["results"]["torch"] = _entry(2.0, spread=2.0)  # quartiles 4x apart
    hatched, texts = [], []
    original_patch, original_text = matplotlib.axes.Axes.add_patch, matplotlib.axes.Axes.text

    def add_patch(self: Any, patch: Any) -> Any:
        hatched.append(patch.get_hatch())
        return original_patch(self, patch)

    def text(self: Any, x: Any, y: Any, s: str, *args: Any, **kwargs: Any) -> Any:
        texts.append(s)
        return original_text(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "add_patch", add_patch)
    monkeypatch.setattr(matplotlib.axes.Axes, "text", text)
    plots.draw(_result(rows), tmp_path, "run")
    assert [h for h in hatched if h] == [plots.HATCH]
    assert [t for t in texts if "⚠" in t] == ["2.00× ⚠"]


def test_a_cpu_only_run_writes_no_gpu_figure(tmp_path: Path) -> None:
    paths = plots.draw(_result(_rows()), tmp_path, "run")
    assert paths == [tmp_path / "run-throughput.png", tmp_path / "run-speedup-vs-peers.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-speedup-vs-peers.png", "run-throughput.png"]


def test_a_run_without_peers_writes_only_the_throughput(tmp_path: Path) -> None:
    assert plots.draw(_result(_rows(peers={})), tmp_path, "run") == [tmp_path / "run-throughput.png"]


def test_stacked_bidirectional_and_variable_length_rows_stay_out_of_the_grid(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """They share (T, B, H) with a plain row: in the grid they would overwrite its cell."""
    rows = _rows(peers={"torch": 2.0})
    extra = dict(rows[0], case=Case(4, 1, 4, 8, num_layers=2).as_dict(), speedup_vs={"torch": 0.25})
    cells = []
    original = plots._heatmap

    def recording(plt: Any, ax: Any, selected: list[dict[str, Any]], value: Any, title: str, **options: Any) -> Any:
        cells.extend(value(r) for r in selected)
        return original(plt, ax, selected, value, title, **options)

    monkeypatch.setattr(plots, "_heatmap", recording)
    plots.draw(_result([*rows, extra]), tmp_path, "run")
    assert set(cells) == {2.0}
