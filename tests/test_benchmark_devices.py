"""CPU against GPU in `rnn-xp bench`, on a CPU machine: a stand-in "cuda" device whose rnn_xp runs on NumPy with a
modelled GPU time (a fixed latency a step), the CPU's rnn_xp with a modelled CPU time (work a step), so that the
crossover is known. Every case is timed on both devices, the GPU/CPU column and its heatmap are filled, the
verdict names the crossover, and an interruption keeps whole pairs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from rnn_xp import cli
from rnn_xp.benchmark import plots, results, sweep
from rnn_xp.benchmark.cases import Case
from rnn_xp.benchmark.peers import RnnXp
from rnn_xp.benchmark.verdict import verdict


def cpu_seconds(case: Case) -> float:
    """A CPU's time: proportional to the units computed, T*B*H."""
    return 4e-8 * case.seq_len * case.batch * case.hidden


def gpu_seconds(case: Case) -> float:
    """A GPU's time: a launch, then a latency a step, independent of the work at these sizes."""
    return 5e-5 + 2e-6 * case.seq_len


class Modelled(RnnXp):
    """rnn_xp on NumPy (so the output check runs), reporting a modelled time per call for ``device``."""

    def __init__(self, device: str) -> None:
        super().__init__("cpu")  # the layer runs on NumPy whatever device the sweep times it as
        self.modelled = device
        self.calls = 0

    def unavailable(self, case: Case) -> str | None:
        return None

    def setup(self, case: Case, weights: dict[str, Any], x: Any, grad_out: Any) -> None:
        super().setup(case, weights, x, grad_out)
        self.case = case

    def timer(self) -> Any:
        model = gpu_seconds if self.modelled == "cuda" else cpu_seconds

        def one(call: Any, synchronize: Any) -> float:
            call()
            self.calls += 1
            return model(self.case)

        return one


class ScriptedPeak:
    def __init__(self, device: str, dtype: str) -> None:
        self.samples: list[float] = []
        self.device = device

    def sample(self, calls: int = 1) -> float:
        self.samples += [1000.0 if self.device == "cuda" else 100.0] * calls
        return self.samples[-1]

    @property
    def best(self) -> float:
        return max(self.samples)

    @property
    def count(self) -> int:
        return len(self.samples)

    def summary(self) -> dict[str, Any]:
        return {"best_gflops": self.best, "median_gflops": self.best, "lowest_gflops": self.best,
                "samples": self.count, "size": 1}


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, Modelled]:
    made: dict[str, Modelled] = {}

    def make_peer(name: str, device: str, dtype: str = "float32") -> Any:
        if name != "rnn_xp":
            msg = f"only rnn_xp in this test; got {name}"
            raise AssertionError(msg)
        made[device] = made.get(device) or Modelled(device)
        return made[device]

    monkeypatch.setattr(sweep, "make_peer", make_peer)
    monkeypatch.setattr(sweep, "GemmPeak", ScriptedPeak)
    return made


def _config(**overrides: Any) -> sweep.SweepConfig:
    options = dict(devices=["cpu", "cuda"], seq_lens=(4, 32), batches=(1, 8, 64), hidden=(8, 32), input_size=3,
                   peers=(), quick=True, max_seconds=0.0)
    options.update(overrides)
    return sweep.SweepConfig(**options)  # type: ignore[arg-type]


def test_every_case_is_timed_on_both_devices_and_the_gpu_cpu_column_is_filled(
    fake_gpu: dict[str, Modelled], tmp_path: Path
) -> None:
    result = sweep.run_sweep(_config(), progress_bar=False)
    rows = result["rows"]
    assert len(rows) == 2 * 2 * 3 * 2 * 2  # devices x T x B x H x directions
    by_key = {(r["device"], r["direction"], r["case"]["label"]): r for r in rows}
    for (device, direction, label), row in by_key.items():
        assert (("cpu" if device == "cuda" else "cuda"), direction, label) in by_key
        if device == "cuda":
            case = Case(**{k: v for k, v in row["case"].items() if k != "label"})
            assert row["gpu_over_cpu"] == pytest.approx(cpu_seconds(case) / gpu_seconds(case))
    # The devices alternate case by case: a row of each device for a case before the next case's.
    assert [r["device"] for r in rows[:4]] == ["cpu", "cpu", "cuda", "cuda"]
    table = results.markdown(result)
    cuda_lines = [line for line in table.splitlines() if line.startswith("| ") and "rnn_xp ms" not in line
                  and table.index(line) > table.index("## cuda")]
    assert cuda_lines and all(line.rstrip(" |").split("|")[-1].strip().endswith("x") for line in cuda_lines)

def test_the_gpu_cpu_heatmaps_cover_t_and_b(fake_gpu: dict[str, Modelled], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """One heatmap per (direction, H), batch by sequence length, every cell a GPU/CPU ratio."""
    pytest.importorskip("matplotlib")
    result = sweep.run_sweep(_config(), progress_bar=False)
    panels = []
    original = plots._heatmap

    def recording(plt: Any, ax: Any, rows: list[dict[str, Any]], value: Any, title: str, **options: Any) -> Any:
        if options.get("limit") == plots.GPU_LIMIT:
            cells = {(r["case"]["batch"], r["case"]["seq_len"]): value(r) for r in rows}
            panels.append((title, cells))
        return original(plt, ax, rows, value, title, **options)

    monkeypatch.setattr(plots, "_heatmap", recording)
    figures = plots.draw(result, tmp_path, "fake")
    assert tmp_path / "fake-gpu-over-cpu.png" in figures
    assert len(panels) == 4  # (fwd, train) x H in (8, 32)
    for _, cells in panels:
        assert set(cells) == {(b, t) for b in (1, 8, 64) for t in (4, 32)} and all(v > 0 for v in cells.values())


def test_the_verdict_names_the_crossover(fake_gpu: dict[str, Modelled]) -> None:
    """With these models the GPU wins at T=32 from B*H = 256 and at T=4 from 512 (B*H > 362): the crossover at every
    T is B*H = 512 (B=64 at H=8), while B*H = 256 (B=8 at H=32) still loses at T=4."""
    result = sweep.run_sweep(_config(), progress_bar=False)
    text = " ".join(" ".join(verdict(result)).split())
    wins = [r for r in result["rows"] if r["device"] == "cuda" and r["gpu_over_cpu"] > 1]
    assert {(r["case"]["seq_len"], r["case"]["batch"] * r["case"]["hidden"]) for r in wins} == {
        (4, 512), (4, 2048), (32, 256), (32, 512), (32, 2048)}
    assert "crossover: from B·H = 512 per step the GPU wins every row (at every T measured)" in text
    assert f"the GPU is faster on {len(wins)} of 24 rows" in text and len(wins) == 10


def test_an_interrupted_sweep_keeps_whole_pairs(fake_gpu: dict[str, Modelled], monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C after the third case: the cases finished have both devices' rows and their GPU/CPU ratios."""
    finished = []
    original = sweep._measure_case

    def measure(config: Any, device: str, case: Case, peers: Any, peak: float) -> Any:
        if len(finished) == 6:
            raise KeyboardInterrupt
        finished.append((device, case.label))
        return original(config, device, case, peers, peak)

    monkeypatch.setattr(sweep, "_measure_case", measure)
    result = sweep.run_sweep(_config(), progress_bar=False)
    assert result["interrupted"]
    assert [device for device, _ in finished] == ["cpu", "cuda"] * 3
    assert all(r["gpu_over_cpu"] for r in result["rows"] if r["device"] == "cuda")
    assert len(result["rows"]) == 12


def test_bench_on_a_machine_with_a_gpu_times_the_cpu_on_the_gpu_rows(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """`rnn-xp bench` (full and quick) where a GPU is present: both devices by default, and the full sweep's extra
    GPU rows (layers, directions, lengths, H=2048/4096) on the CPU as well."""
    from rnn_xp.benchmark import machine

    monkeypatch.setattr(machine, "gpus", lambda: [{"name": "Fake GPU"}])
    seen: list[sweep.SweepConfig] = []

    def run(config: sweep.SweepConfig, **options: Any) -> dict[str, Any]:
        seen.append(config)
        return {"schema": sweep.SCHEMA, "date": "d", "rows": [], "interrupted": False, "missing_peers": [],
                "gemm_peak_gflops": {}, "config": {"dtype": "float32"},
                "machine": {"cpu": {"model": "m", "logical_cores": 2, "blas": "b"}, "gpus": [{"name": "Fake GPU"}]}}

    monkeypatch.setattr(sweep, "run_sweep", run)
    for quick in (False, True):
        options = argparse.Namespace(dask=None, peers="torch", out=tmp_path, device="all", quick=quick, seq_lens=None,
                                     batches=None, hidden=None, input_size=64, dtype="float32", direction="both",
                                     max_seconds=None, name=None, no_plots=True)
        assert cli._bench(options) == 0
    full, quick_config = seen
    assert list(full.devices) == list(quick_config.devices) == ["cpu", "cuda"]
    assert full.extra_cases == sweep.CUDA_EXTRA and not quick_config.extra_cases
