"""GPU probes beside the sweep: forward per-step latency, the persistent-vs-per-step crossover, an ncu target.

    python bench/gpu_probe.py latency   [--out DIR]   per-step forward latency (slope over T) vs cuDNN
    python bench/gpu_probe.py crossover [--out DIR]   persistent vs per-step kernels over H and B
    python bench/gpu_probe.py overhead  [--out DIR]   host-side profile of a short forward (T=64, B=1, H=128)
    python bench/gpu_probe.py ncu-target --hidden 512 --batch 64   one forward, for Nsight Compute to profile

Every figure is a median of CUDA-event timings after a warm-up; rnn_xp and torch (cuDNN, TF32 off) run in the
same process on the same weights. Writes JSON under --out and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _time(call: Any, repeats: int = 30) -> float:
    """Median seconds of ``call`` between CUDA events, after two warm-up calls."""
    import cupy

    call()
    call()
    cupy.cuda.Device().synchronize()
    samples = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        call()
        end.record()
        end.synchronize()
        samples.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
    return statistics.median(samples)


def _layers(steps: int, batch: int, hidden: int, input_size: int = 64, bidirectional: bool = False) -> Any:
    import cupy
    import torch

    import rnn_xp

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    ours = rnn_xp.RNN(input_size, hidden, bidirectional=bidirectional, device="cuda", seed=0).eval()
    reference = torch.nn.RNN(input_size, hidden, bidirectional=bidirectional).cuda()
    reference.load_state_dict({k: torch.as_tensor(cupy.asnumpy(v)).cuda() for k, v in ours.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((steps, batch, input_size)).astype(np.float32)
    return ours, cupy.asarray(x), reference, torch.from_numpy(x).cuda()


def forward_times(steps: int, batch: int, hidden: int, *, force_step: bool = False) -> dict[str, float]:
    import torch

    from rnn_xp.loops.cuda import CudaLoop

    ours, x, reference, x_torch = _layers(steps, batch, hidden)
    if force_step:  # the per-step path at every size, through the core with an explicit loop
        from rnn_xp._arrays import namespace_of
        from rnn_xp._layout import CallerLayout
        from rnn_xp.functional import _core

        params = ours.state_dict()
        xp = namespace_of(x)
        loop = CudaLoop("per_step")
        t_ours = _time(lambda: _core.forward(xp, loop, x, params, ours.layout, None, None, "tanh", [], CallerLayout()))
    else:
        t_ours = _time(lambda: ours(x))
    with torch.no_grad():
        t_torch = _time(lambda: reference(x_torch))
    return {"rnn_xp": t_ours, "torch-cudnn": t_torch}


def latency(out: Path) -> list[dict[str, Any]]:
    """Per-step forward latency as the slope of time over T (T=64 and T=512), which removes fixed costs."""
    rows = []
    for hidden, batch in ((1024, 64), (512, 64), (128, 1), (1024, 1), (1024, 256)):
        short, long = forward_times(64, batch, hidden), forward_times(512, batch, hidden)
        row = {"hidden": hidden, "batch": batch}
        for name in short:
            row[f"{name}_us_per_step"] = (long[name] - short[name]) / (512 - 64) * 1e6
        rows.append(row)
        print(row, flush=True)
    (out / "gpu-probe-latency.json").write_text(json.dumps(rows, indent=1))
    return rows


def crossover(out: Path) -> list[dict[str, Any]]:
    rows = []
    for hidden in (128, 512, 1024, 1536, 2048):
        for batch in (1, 64, 256):
            persistent = forward_times(128, batch, hidden)
            step = forward_times(128, batch, hidden, force_step=True)
            row = {"hidden": hidden, "batch": batch, "persistent_ms": persistent["rnn_xp"] * 1e3,
                   "per_step_ms": step["rnn_xp"] * 1e3, "cudnn_ms": persistent["torch-cudnn"] * 1e3}
            rows.append(row)
            print(row, flush=True)
    (out / "gpu-probe-crossover.json").write_text(json.dumps(rows, indent=1))
    return rows


def overhead(out: Path) -> None:
    """Where the host time of a short forward goes (T=64, B=1, H=128): the top of a cProfile listing."""
    import cProfile
    import io
    import pstats

    import cupy

    ours, x, _, _ = _layers(64, 1, 128)
    for _ in range(20):
        ours(x)
    cupy.cuda.Device().synchronize()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(200):
        ours(x)
    profiler.disable()
    cupy.cuda.Device().synchronize()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    (out / "gpu-probe-overhead.txt").write_text(text.getvalue())
    print(text.getvalue()[:4000])


def ncu_target(hidden: int, batch: int, steps: int) -> None:
    import cupy

    ours, x, _, _ = _layers(steps, batch, hidden)
    ours(x)
    cupy.cuda.Device().synchronize()
    out, _ = ours(x)
    ours.backward(cupy.ones_like(out))
    cupy.cuda.Device().synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probe", choices=["latency", "crossover", "overhead", "ncu-target"])
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    if options.probe == "latency":
        latency(options.out)
    elif options.probe == "crossover":
        crossover(options.out)
    elif options.probe == "overhead":
        overhead(options.out)
    else:
        ncu_target(options.hidden, options.batch, options.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
