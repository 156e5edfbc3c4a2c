"""rnn_xp.benchmark: the verdict, the GEMM peak sampled through the sweep, unstable timings, progress without tqdm,
per-implementation geometric means of `bench compare`, and the torch install hint."""

from __future__ import annotations

import io
import math
import os
import sys
import time
from typing import Any

import pytest

from rnn_xp.benchmark import machine, results, sweep
from rnn_xp.benchmark import peak as peak_module
from rnn_xp.benchmark import peers as peers_module
from rnn_xp.benchmark.cases import Case
from rnn_xp.benchmark.progress import Progress
from rnn_xp.benchmark.timing import Timing, is_unstable
from rnn_xp.benchmark.verdict import verdict


def _entry(median_ms: float, *, p25_ms: float | None = None, p75_ms: float | None = None,
           gflops: float = 1.0, peak: float = 100.0) -> dict[str, Any]:
    median = median_ms / 1e3
    return {"status": "ok", "median_s": median, "samples_per_s": 1.0, "p25_s": (p25_ms or median_ms * 0.95) / 1e3,
            "p75_s": (p75_ms or median_ms * 1.05) / 1e3, "repeats": 10, "gflops": gflops,
            "fraction_of_peak": gflops / peak}


def _row(device: str, direction: str, case: Case, times_ms: dict[str, float], **entries: dict[str, Any]) -> dict:
    measured = {name: _entry(ms) for name, ms in times_ms.items()}
    measured.update(entries)
    ours = measured["rnn_xp"]["median_s"]
    return {"device": device, "direction": direction, "case": case.as_dict(), "flops": 1.0, "results": measured,
            "speedup_vs": {n: e["median_s"] / ours for n, e in measured.items() if n != "rnn_xp"},
            "gpu_over_cpu": None}


def _result(rows: list[dict], **extra: Any) -> dict[str, Any]:
    return {"rows": rows, "gemm_peak_gflops": {}, "missing_peers": [], "interrupted": False, **extra}


def test_verdict_covers_every_peer_by_name_with_counts_geomeans_and_losses() -> None:
    """Any peer in the results (a new one included) gets its line: rows won, geometric means, where it loses."""
    rows = []
    for batch, onnx_time in ((1, 4.0), (64, 0.5)):
        for direction in ("fwd", "train"):
            rows.append(_row("cpu", direction, Case(16, batch, 8, 32), {"rnn_xp": 1.0, "torch": 2.0,
                                                                         "onnxruntime": onnx_time}))
    text = "\n".join(verdict(_result(rows)))
    assert "vs torch (cpu): rnn_xp faster on 4 of 4 rows, geometric mean 2.00x (forward 2.00x, forward+backward " \
           "2.00x)" in text
    assert "never slower" in text
    onnx = text[text.index("vs onnxruntime (cpu)"):]
    assert onnx.startswith("vs onnxruntime (cpu): rnn_xp faster on 2 of 4 rows, geometric mean 1.41x")
    assert "by batch B=1 4.00x, B=64 0.50x" in " ".join(onnx.split())
    assert "slower on T16-B64-H32 fwd 0.50x, T16-B64-H32 train 0.50x" in " ".join(onnx.split())


def test_verdict_gpu_cpu_crossover_and_no_gpu() -> None:
    rows = []
    for batch in (1, 8, 64):
        for hidden in (32, 128):
            for seq_len in (16, 256):
                row = _row("cuda", "fwd", Case(seq_len, batch, 8, hidden), {"rnn_xp": 1.0})
                # The GPU wins exactly where B·H >= 1024 (B=8 with H=128, and B=64).
                row["gpu_over_cpu"] = 3.0 if batch * hidden >= 1024 else 0.5
                rows.append(row)
    text = " ".join(" ".join(verdict(_result(rows))).split())
    assert "the GPU is faster on 6 of 12 rows" in text
    assert "crossover: from B·H = 1024 per step the GPU wins every row" in text
    assert "the CPU is faster on T16-B1-H32 fwd 0.50x" in text
    cpu_only = " ".join(verdict(_result([_row("cpu", "fwd", Case(4, 1, 2, 4), {"rnn_xp": 1.0})])))
    assert "GPU vs CPU: not measured, no GPU in this run" in cpu_only


def test_verdict_fraction_of_peak_and_peak_samples() -> None:
    rows = [_row("cpu", "fwd", Case(8, b, 4, 8), {}, rnn_xp=_entry(1.0, gflops=g, peak=200.0))
            for b, g in ((1, 20.0), (16, 100.0))]
    summary = {"best_gflops": 200.0, "median_gflops": 198.0, "lowest_gflops": 95.0, "samples": 7, "size": 768}
    text = " ".join(" ".join(verdict(_result(rows, gemm_peak_gflops={"cpu": 200.0},
                                             gemm_peak={"cpu": summary}))).split())
    assert "GEMM peak (cpu): 200 GFLOP/s, the best of 7 samples over the run (n=768 matmuls; median 198, lowest 95: " \
           "the machine was busy at times)" in text
    assert "rnn_xp reached 10%-50% of it (median 30%, most at T8-B16-H8 fwd)" in text


def test_unstable_timings_are_flagged_and_left_out() -> None:
    """The issue's torch row (median 7.97 ms, 25th percentile 0.10 ms) is flagged, in the table and the verdict."""
    wild = _entry(7.97, p25_ms=0.10, p75_ms=8.1)
    assert is_unstable(wild) and not is_unstable(_entry(1.0, p25_ms=0.8, p75_ms=2.3))
    assert is_unstable(Timing(7.97e-3, 0.10e-3, 8.1e-3, 20))
    rows = [_row("cpu", "train", Case(64, 16, 64, 64), {"rnn_xp": 1.0}, torch=wild),
            _row("cpu", "fwd", Case(64, 16, 64, 64), {"rnn_xp": 1.0, "torch": 3.0})]
    result = _result(rows)
    text = " ".join(" ".join(verdict(result)).split())
    assert "vs torch (cpu): rnn_xp faster on 1 of 1 rows" in text and "(1 unstable rows left out)" in text
    assert "unstable: 1 timings whose quartiles are more than 3x apart" in text
    assert "torch T64-B16-H64 train (quartiles 0.1, 7.97, 8.1 ms)" in text
    table = results.markdown({**result, "date": "d", "config": {"dtype": "float32"},
                              "machine": {"cpu": {"model": "m", "logical_cores": 2, "blas": "b"}, "gpus": []}})
    assert "7.970 (7.97x) ⚠" in table and "3.000 (3.00x) |" in table
    assert "## Verdict" in table


def test_missing_torch_says_how_to_add_the_cpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # find_spec("torch") is None: as if not installed
    reason = peers_module.Torch("cpu").unavailable(Case(2, 1, 1, 1))
    assert reason is not None
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in reason
    text = " ".join(verdict(_result([], missing_peers=[{"peer": "torch", "device": "cpu", "reason": reason}])))
    assert "not measured: torch on cpu (torch is not installed; add it with pip install torch==2.13.0" in text


def test_gemm_peak_is_the_best_sample_over_sizes_and_time() -> None:
    gemm = peak_module.GemmPeak("cpu", "float32", sizes=(64, 128))
    call, synchronize, timer = gemm._gemms[128]
    slow = {"left": 1}

    def disturbed() -> object:
        if slow["left"]:
            slow["left"] -= 1
            time.sleep(0.05)  # another process holds the cores during the first sample
        return call()

    gemm._gemms[128] = (disturbed, synchronize, timer)
    gemm.sample()
    first = gemm.samples[128][0]
    gemm.sample(3)
    assert gemm.count == 8 and len(gemm.samples[64]) == len(gemm.samples[128]) == 4
    assert gemm.best == max(max(gemm.samples[64]), max(gemm.samples[128])) > 2 * first
    summary = gemm.summary()
    assert summary["best_gflops"] == gemm.best and summary["samples"] == 4
    assert summary["lowest_gflops"] == min(gemm.samples[summary["size"]])
    assert 2 * 128**3 / 0.05 / 1e9 > first  # the disturbed call was timed as disturbed
    with pytest.raises(ValueError, match="needs at least one sample"):
        _ = peak_module.GemmPeak("cpu", "float32", sizes=(8,)).best


def test_sweep_interleaves_peak_samples_and_uses_the_best(monkeypatch: pytest.MonkeyPatch) -> None:
    """A low first peak (95) must not inflate every row's fraction: later samples (200, 206) replace it."""
    rates = iter([95.0, 200.0, 206.0, 150.0])

    class ScriptedPeak:
        def __init__(self, device: str, dtype: str) -> None:
            self.samples: list[float] = []

        def sample(self, calls: int = 1) -> float:
            self.samples.append(next(rates))
            return self.samples[-1]

        @property
        def best(self) -> float:
            return max(self.samples)

        @property
        def count(self) -> int:
            return len(self.samples)

        def summary(self) -> dict[str, Any]:
            return {"best_gflops": self.best, "median_gflops": 0.0, "lowest_gflops": min(self.samples),
                    "samples": len(self.samples), "size": 1}

    monkeypatch.setattr(sweep, "GemmPeak", ScriptedPeak)
    config = sweep.SweepConfig(devices=["cpu"], seq_lens=(3, 4, 5), batches=(2,), hidden=(4,), input_size=3,
                               peers=("numpy-loop",), quick=True, max_seconds=0.005)
    result = sweep.run_sweep(config, progress_bar=False)
    assert result["gemm_peak_gflops"]["cpu"] == 206.0
    assert result["gemm_peak"]["cpu"]["samples"] == 4  # one before the first case, one after each of 3 cases
    for row in result["rows"]:
        for entry in row["results"].values():
            assert entry["fraction_of_peak"] == pytest.approx(entry["gflops"] / 206.0)
            assert entry["unstable"] == is_unstable(entry)


def test_plain_progress_lines_without_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(4, stream=stream)
    progress.start("cpu T3-B2-I3-H4")
    progress.advance(2)
    progress.start("cpu T5-B2-I3-H4")
    progress.advance(2)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("rnn-xp bench: 0/4 rows, now cpu T3-B2-I3-H4 (0 s")
    assert lines[1].startswith("rnn-xp bench: 2/4 rows, now cpu T5-B2-I3-H4 (") and "left)" in lines[1]
    assert lines[2].startswith("rnn-xp bench: 4/4 rows in ")


def test_compare_geometric_mean_per_implementation() -> None:
    case = Case(4, 2, 3, 4)
    first = _result([_row("cpu", d, case, {"rnn_xp": 1.0, "torch": 1.0}) for d in ("fwd", "train")])
    second = _result([_row("cpu", "fwd", case, {"rnn_xp": 2.0, "torch": 0.5}),
                      _row("cpu", "train", case, {"rnn_xp": 8.0, "torch": 0.5})])
    ratios = results.compare(first, second)
    means = results.geometric_means(ratios)
    assert means[("rnn_xp", "cpu")] == {"geomean": pytest.approx(4.0), "rows": 2}
    assert means[("torch", "cpu")] == {"geomean": pytest.approx(0.5), "rows": 2}
    text = results.format_comparison(ratios, "a.json", "b.json")
    assert "  rnn_xp (cpu): 4.00 over 2 rows" in text and "  torch (cpu): 0.50 over 2 rows" in text
    assert math.isclose(means[("rnn_xp", "cpu")]["geomean"] * means[("torch", "cpu")]["geomean"], 2.0)


def test_verdict_warns_of_a_busy_machine_only_when_others_used_the_cpus_during_the_sweep() -> None:
    rows = [_row("cpu", "fwd", Case(8, 1, 4, 8), {"rnn_xp": 1.0})]
    machine = {"cpu": {"logical_cores": 2}}
    quiet = _result(rows, machine=machine, other_load={"wall_s": 60.0, "own_cpu_s": 110.0, "other_cpu_s": 3.0,
                                                       "other_cores": 0.05})
    busy = _result(rows, machine=machine, other_load={"wall_s": 60.0, "own_cpu_s": 70.0, "other_cpu_s": 54.0,
                                                      "other_cores": 0.9})
    unknown = _result(rows, machine=machine, other_load=None)
    assert not any("busy machine" in line for line in verdict(quiet) + verdict(unknown))
    text = " ".join(" ".join(verdict(busy)).split())
    assert "busy machine: other processes kept 0.9 of the 2 logical cores busy on average during the sweep (54 " \
           "CPU-seconds in 60 s, this process's own time left out)" in text


def test_sweep_records_what_other_processes_used_during_it() -> None:
    config = sweep.SweepConfig(devices=["cpu"], seq_lens=(3,), batches=(2,), hidden=(4,), input_size=3,
                               peers=(), quick=True, max_seconds=0.005, directions=("fwd",))
    result = sweep.run_sweep(config, progress_bar=False)
    if not os.path.exists("/proc/stat"):
        assert result["other_load"] is None
        return
    load = result["other_load"]
    assert load["wall_s"] > 0 and load["own_cpu_s"] >= 0 and load["other_cpu_s"] >= 0
    assert load["other_cores"] == pytest.approx(load["other_cpu_s"] / load["wall_s"])


def test_a_sweep_can_time_only_some_implementations_and_still_checks_the_rest() -> None:
    """bench/cpu_vs_peers.py times each implementation in a process of its own: that process sets up and checks every
    implementation of the case, but times only its own."""
    from rnn_xp.benchmark import sweep

    config = sweep.SweepConfig(devices=["cpu"], seq_lens=(3,), batches=(2,), hidden=(4,), input_size=3,
                               peers=("numpy-loop",), directions=("fwd",), quick=True, max_seconds=0.01,
                               timed=("numpy-loop",))
    (row,) = sweep.run_sweep(config, progress_bar=False)["rows"]
    assert row["results"]["rnn_xp"]["status"] == "not timed" and "median_s" not in row["results"]["rnn_xp"]
    assert row["results"]["numpy-loop"]["status"] == "ok" and row["results"]["numpy-loop"]["median_s"] > 0
    assert row["results"]["numpy-loop"]["max_abs_diff"] < 1e-5


def test_blas_line_names_openblas_kernels_and_a_forced_core(monkeypatch):
    """The machine line says which OpenBLAS kernels ran and whether OPENBLAS_CORETYPE chose them (a forced
    Haswell core halves large-sgemm throughput on an AVX-512 CPU; a result must say so)."""
    core = machine.openblas_core()
    if core is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS found in this process")
    assert core.strip() and core.isprintable()
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert machine.blas().endswith(f", {core} kernels (OPENBLAS_CORETYPE=Haswell)")
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert machine.blas().endswith(f", {core} kernels")


def test_openblas_core_without_proc_maps_is_none(monkeypatch):
    def unreadable(self, *args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(machine.Path, "read_text", unreadable)
    assert machine.openblas_core() is None
