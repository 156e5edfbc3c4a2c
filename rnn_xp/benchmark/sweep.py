"""The benchmark sweep: sequence lengths x batch sizes x hidden sizes, on each device, against every peer.

Every implementation of a row gets the same weights and input; a peer's output is checked against rnn_xp's
before its time counts. Timings alternate between implementations in blocks (see
:func:`rnn_xp.benchmark.timing.measure_alternating`); GPU timings use CUDA events after a warm-up. With several
devices, each case is measured on every device before the next case, so that the GPU/CPU ratio of a row
(rnn_xp's CPU time over its GPU time, ``gpu_over_cpu``) exists for every case finished. Ctrl-C stops the sweep and
keeps every finished row.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnn_xp.benchmark import cpu_load
from rnn_xp.benchmark.cases import Case
from rnn_xp.benchmark.peak import GemmPeak
from rnn_xp.benchmark.peers import NumpyLoop, Peer, RnnXp, Torch
from rnn_xp.benchmark.progress import make_progress
from rnn_xp.benchmark.timing import is_unstable, measure_alternating

SCHEMA = "rnn-xp-bench/1"
PEERS_BY_DEVICE = {"cpu": ("torch", "onnxruntime", "jax", "numpy-loop"), "cuda": ("torch-cudnn", "rnn_xp-generic")}
ALL_PEERS = ("torch", "onnxruntime", "jax", "numpy-loop", "torch-cudnn", "rnn_xp-generic")
QUICK = {"seq_lens": (16, 64, 256), "batches": (1, 16, 64), "hidden": (64, 256)}
FULL = {"seq_lens": (64, 256, 1024), "batches": (1, 8, 64, 256), "hidden": (128, 512, 1024)}
# Rows the full sweep adds to the grid where it times a GPU (on the CPU too, for the GPU/CPU column): stacked,
# bidirectional and variable-length layers, and hidden sizes past the persistent kernel's on-chip limit.
CUDA_EXTRA = tuple(
    [Case(256, b, 64, 512, num_layers=2) for b in (8, 64)]
    + [Case(256, b, 64, 512, bidirectional=True) for b in (8, 64)]
    + [Case(256, b, 64, 512, with_lengths=True) for b in (8, 64)]
    + [Case(256, b, 64, h) for h in (2048, 4096) for b in (1, 8, 64, 256)]
)
# Rounds of GEMM peak samples (one call of each size a round): a few before a device's first case, then one
# after each case (see rnn_xp.benchmark.peak).
PEAK_ROUNDS_FIRST = 5
PEAK_ROUNDS_BETWEEN = 1


@dataclass
class SweepConfig:
    devices: Sequence[str]
    seq_lens: Sequence[int]
    batches: Sequence[int]
    hidden: Sequence[int]
    input_size: int = 64
    peers: Sequence[str] = ALL_PEERS
    dtype: str = "float32"
    directions: Sequence[str] = ("fwd", "train")
    quick: bool = False
    max_seconds: float = 2.0  # timing budget per implementation and row
    extra_cases: Sequence[Case] = field(default_factory=tuple)
    # Only these implementations are timed (all are still set up and checked against rnn_xp's output); None: all.
    # A harness that times each implementation in its own process (bench/cpu_vs_peers.py) sets one name per process.
    timed: Sequence[str] | None = None

    def cases(self) -> list[Case]:
        grid = [
            Case(t, b, self.input_size, h)
            for h, b, t in itertools.product(self.hidden, self.batches, self.seq_lens)
        ]
        return grid + list(self.extra_cases)


def make_peer(name: str, device: str, dtype: str = "float32") -> Peer:
    if name == "rnn_xp":
        return RnnXp(device)
    if name == "rnn_xp-generic":
        return RnnXp(device, generic=True)
    if name in ("torch", "torch-cudnn"):
        return Torch(device)
    if name == "numpy-loop":
        return NumpyLoop()
    if name == "onnxruntime":
        from rnn_xp.benchmark.peers_onnx import OnnxRuntime

        return OnnxRuntime(dtype)
    if name == "jax":
        from rnn_xp.benchmark.peers_jax import Jax

        return Jax()
    msg = f"peers must be among {ALL_PEERS}; got {name!r}"
    raise ValueError(msg)


def run_sweep(
    config: SweepConfig,
    *,
    progress_bar: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the sweep; returns the result document (see :data:`SCHEMA`), also when interrupted by Ctrl-C.

    Progress goes to stderr: a tqdm bar when ``progress_bar`` and tqdm is installed, else plain lines. The GEMM
    peak of a device is sampled at the start and after each case (:class:`rnn_xp.benchmark.peak.GemmPeak`); every
    row's ``fraction_of_peak`` is set against the best sample once the device's rows are done, so rows handed to
    ``on_row`` before that carry the fraction of the best peak so far.
    """
    from rnn_xp.benchmark.machine import describe

    started = time.perf_counter()
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": describe(),
        "config": {
            "devices": list(config.devices), "seq_lens": list(config.seq_lens), "batches": list(config.batches),
            "hidden": list(config.hidden), "input_size": config.input_size, "peers": list(config.peers),
            "dtype": config.dtype, "directions": list(config.directions), "quick": config.quick,
            "max_seconds": config.max_seconds,
        },
        "gemm_peak_gflops": {},
        "gemm_peak": {},
        "missing_peers": [],
        "rows": [],
        "interrupted": False,
    }
    load_start = cpu_load.snapshot()
    total = len(config.cases()) * len(config.devices) * len(config.directions)
    progress = make_progress(total, use_tqdm=progress_bar)
    measured: dict[str, tuple[list[Peer], GemmPeak]] = {}
    try:
        for device in config.devices:
            peers = _available_peers(config, device, result["missing_peers"])
            if peers:
                measured[device] = (peers, GemmPeak(device, config.dtype))
                measured[device][1].sample(PEAK_ROUNDS_FIRST)
        for case in config.cases():
            for device, (peers, peak) in measured.items():
                progress.start(f"{device} {case.label}")
                for row in _measure_case(config, device, case, peers, peak.best):
                    result["rows"].append(row)
                    if on_row is not None:
                        on_row(row)
                    progress.advance()
                peak.sample(PEAK_ROUNDS_BETWEEN)
    except KeyboardInterrupt:
        result["interrupted"] = True
    finally:
        progress.close()
        for device, (_, peak) in measured.items():
            if peak.count:
                result["gemm_peak_gflops"][device] = peak.best
                result["gemm_peak"][device] = peak.summary()
                _set_fraction_of_peak(result["rows"], device, peak.best)
    _add_gpu_over_cpu(result["rows"])
    result["elapsed_s"] = time.perf_counter() - started
    # Other processes' CPU time during the sweep (its own left out), which the verdict reports when it is large.
    result["other_load"] = cpu_load.others(load_start, cpu_load.snapshot())
    return result


def _set_fraction_of_peak(rows: list[dict[str, Any]], device: str, peak: float) -> None:
    """Every timed entry of ``device``'s rows: achieved GFLOP/s / ``peak``."""
    for row in rows:
        if row["device"] == device:
            for entry in row["results"].values():
                if "gflops" in entry:
                    entry["fraction_of_peak"] = entry["gflops"] / peak


def _available_peers(config: SweepConfig, device: str, missing: list[dict[str, str]]) -> list[Peer]:
    """rnn_xp plus the requested peers for ``device``; unavailable ones are recorded in ``missing``."""
    probe = Case(2, 1, 1, 1)
    ours = make_peer("rnn_xp", device)
    reason = ours.unavailable(probe)
    if reason is not None:
        missing.append({"peer": "rnn_xp", "device": device, "reason": reason})
        return []
    chosen: list[Peer] = [ours]
    for name in PEERS_BY_DEVICE[device]:
        if name not in config.peers:
            continue
        peer = make_peer(name, device, config.dtype)
        reason = peer.unavailable(probe)
        if reason is None:
            chosen.append(peer)
        else:
            missing.append({"peer": name, "device": device, "reason": reason})
    return chosen


def _measure_case(
    config: SweepConfig, device: str, case: Case, peers: list[Peer], peak: float
) -> list[dict[str, Any]]:
    if not peers:
        return []
    rng = np.random.default_rng(0)
    import rnn_xp

    weights = rnn_xp.RNN(
        case.input_size, case.hidden, num_layers=case.num_layers, bidirectional=case.bidirectional,
        dtype=config.dtype, seed=0,
    ).state_dict()
    x = rng.standard_normal((case.seq_len, case.batch, case.input_size)).astype(config.dtype)
    grad_out = rng.standard_normal((case.seq_len, case.batch, case.directions * case.hidden)).astype(config.dtype)
    statuses: dict[str, dict[str, Any]] = {}
    runnable: list[Peer] = []
    expected = None
    for peer in peers:
        reason = peer.unavailable(case)
        if reason is not None:
            statuses[peer.name] = {"status": "unsupported", "reason": reason}
            continue
        peer.setup(case, weights, x, grad_out)
        output = peer.output()
        if expected is None:
            expected = output
            runnable.append(peer)
            statuses[peer.name] = {"status": "ok", "max_abs_diff": 0.0}
            continue
        error = float(np.max(np.abs(output - expected)))
        tolerance = (1e-3 if config.dtype == "float32" else 1e-9) * max(1.0, float(np.max(np.abs(expected))))
        if error <= tolerance:
            runnable.append(peer)
            statuses[peer.name] = {"status": "ok", "max_abs_diff": error}
        else:
            statuses[peer.name] = {"status": "wrong", "max_abs_diff": error, "reason": "output differs from rnn_xp"}
    rows = []
    quick = config.quick
    for direction in config.directions:
        method = "forward" if direction == "fwd" else "train_step"
        flops = case.forward_flops() if direction == "fwd" else case.train_flops()
        timed = [
            p for p in runnable
            if (direction == "fwd" or p.trains) and (config.timed is None or p.name in config.timed)
        ]
        timings = measure_alternating(
            {p.name: getattr(p, method) for p in timed},
            synchronize={p.name: p.synchronize for p in timed},
            timers={p.name: p.timer() for p in timed},
            rounds=2 if quick else 4,
            # The pause lets a CPU library's worker threads go idle; GPU peers need none.
            pause=0.02 if quick or device == "cuda" else 0.25,
            min_per_block=1 if quick else 2,
            max_seconds=config.max_seconds,
        )
        results: dict[str, dict[str, Any]] = {}
        for name, status in statuses.items():
            entry = dict(status)
            if entry["status"] == "ok" and config.timed is not None and name not in config.timed:
                entry["status"] = "not timed"  # set up and checked only (timed in another process)
            elif entry["status"] == "ok" and name not in timings:  # a forward-only peer on a training row
                entry = {"status": "unsupported", "reason": "forward only"}
            if name in timings:
                seconds = timings[name].median
                entry.update(timings[name].as_dict())
                entry["samples_per_s"] = case.batch * case.seq_len / seconds
                entry["gflops"] = flops / seconds / 1e9
                entry["fraction_of_peak"] = flops / seconds / 1e9 / peak
                entry["unstable"] = is_unstable(timings[name])
            results[name] = entry
        ours = results.get("rnn_xp", {}).get("median_s")
        speedup = {
            name: entry["median_s"] / ours
            for name, entry in results.items()
            if name != "rnn_xp" and ours and "median_s" in entry
        }
        rows.append(
            {
                "device": device, "direction": direction, "case": case.as_dict(), "flops": flops,
                "results": results, "speedup_vs": speedup, "gpu_over_cpu": None,
            }
        )
    return rows


def _add_gpu_over_cpu(rows: list[dict[str, Any]]) -> None:
    """rnn_xp's CPU time / its GPU time, on rows measured on both devices."""
    cpu = {
        (r["case"]["label"], r["direction"]): r["results"]["rnn_xp"].get("median_s")
        for r in rows
        if r["device"] == "cpu" and "rnn_xp" in r["results"]
    }
    for row in rows:
        if row["device"] == "cuda" and "median_s" in row["results"].get("rnn_xp", {}):
            cpu_time = cpu.get((row["case"]["label"], row["direction"]))
            if cpu_time:
                row["gpu_over_cpu"] = cpu_time / row["results"]["rnn_xp"]["median_s"]
