"""GPU probes beside the sweep (tools/gpu_session.py runs them): per-step latency and fixed cost against cuDNN,
the path crossover, the split-K weight gradients, a smoke run of every kernel, an Nsight Compute target.

    python bench/gpu_probe.py latency   [--out DIR]  forward time at 3 sequence lengths: per-step slope and fixed cost
    python bench/gpu_probe.py crossover [--out DIR]  register / persistent / per-step kernels at the sizes where the
                                                     launch model switches, against its choice
    python bench/gpu_probe.py split-k   [--out DIR]  a training step with rnn_xp.functional._core.SPLIT_K_ROWS off/on
    python bench/gpu_probe.py smoke                  every kernel once at small sizes (for compute-sanitizer)
    python bench/gpu_probe.py ncu-target --hidden 1024 --batch 64   one forward and backward, for Nsight Compute

Every figure is a median of CUDA-event timings after two warm-up calls; rnn_xp and torch (cuDNN, TF32 off) run in
the same process on the same weights. Each probe writes one JSON under --out and prints its rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

# (hidden, batch) of the latency probe: the H100 run's misses (H=128; H=2048 at B=64; H=4096 at B=1), the 4 us
# target (H=1024, B=64) and two that won (H=512, B=64; H=1024, B=1).
LATENCY_SIZES = ((128, 1), (128, 64), (512, 64), (1024, 1), (1024, 64), (2048, 64), (4096, 1))
LATENCY_STEPS = (32, 128, 512)
# (hidden, batch) where the launch model's choice between the kernels is closest or was changed without a GPU.
CROSSOVER_SIZES = ((128, 64), (256, 256), (512, 256), (1024, 64), (1024, 256), (1536, 64), (2048, 8), (2048, 64))
# (T, B, H) of the split-K probe: the H100's slow backward (T=1024, B=256, H=128) and two controls.
SPLIT_K_CASES = ((1024, 256, 128), (1024, 64, 128), (256, 256, 512))
SPLIT_K_ROWS = 2048


def _time(call: Any, repeats: int = 15) -> float:
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


def _path_call(ours: Any, x: Any, path: str) -> Any:
    """One forward of ``ours`` on ``x`` through the core with the CUDA loop forced onto ``path``."""
    from rnn_xp._arrays import namespace_of
    from rnn_xp._layout import CallerLayout
    from rnn_xp.functional import _core
    from rnn_xp.loops.cuda import CudaLoop

    params, xp, loop = ours.state_dict(), namespace_of(x), CudaLoop(path)
    return lambda: _core.forward(xp, loop, x, params, ours.layout, None, None, "tanh", [], CallerLayout())


def fit(steps: list[int], seconds: list[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of seconds over steps."""
    slope, intercept = np.polyfit(np.asarray(steps, dtype=float), np.asarray(seconds, dtype=float), 1)
    return float(slope), float(intercept)


def latency(out: Path, sizes: tuple[tuple[int, int], ...] = LATENCY_SIZES) -> list[dict[str, Any]]:
    """Forward time at each of LATENCY_STEPS: per-step latency (slope) and fixed cost (intercept) of a call."""
    import torch

    from rnn_xp.cuda import recurrence

    rows = []
    for hidden, batch in sizes:
        times: dict[str, list[float]] = {"rnn_xp": [], "torch-cudnn": []}
        for steps in LATENCY_STEPS:
            ours, x, reference, x_torch = _layers(steps, batch, hidden)
            times["rnn_xp"].append(_time(lambda ours=ours, x=x: ours(x)))
            with torch.no_grad():
                times["torch-cudnn"].append(_time(lambda reference=reference, x_torch=x_torch: reference(x_torch)))
        row: dict[str, Any] = {"hidden": hidden, "batch": batch, "steps": list(LATENCY_STEPS),
                               "kind": recurrence.kernels_for(1, hidden, batch, "float32").kind}
        for name, seconds in times.items():
            slope, intercept = fit(list(LATENCY_STEPS), seconds)
            row[f"{name}_us_per_step"] = slope * 1e6
            row[f"{name}_fixed_ms"] = intercept * 1e3
            row[f"{name}_ms"] = [s * 1e3 for s in seconds]
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "latency.json").write_text(json.dumps(rows, indent=1))
    return rows


def crossover(out: Path, steps: int = 128) -> list[dict[str, Any]]:
    """Each path that runs kernels of its own at a size, timed, beside the path "auto" picks."""
    from rnn_xp.cuda import recurrence

    rows = []
    for hidden, batch in CROSSOVER_SIZES:
        ours, x, _, _ = _layers(steps, batch, hidden)
        paths = [p for p in ("registers", "persistent", "per_step")
                 if recurrence.kernels_for(1, hidden, batch, "float32", p).kind == p]
        row: dict[str, Any] = {"hidden": hidden, "batch": batch, "steps": steps,
                               "chosen": recurrence.kernels_for(1, hidden, batch, "float32").kind}
        for path in paths:
            row[f"{path}_ms"] = _time(_path_call(ours, x, path)) * 1e3
        row["fastest"] = min(paths, key=lambda p: row[f"{p}_ms"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "crossover.json").write_text(json.dumps(rows, indent=1))
    return rows


def split_k(out: Path) -> list[dict[str, Any]]:
    """A training step (forward, backward) with the split-K weight gradients off and on, against cuDNN's."""
    rows = [_split_k_case(steps, batch, hidden) for steps, batch, hidden in SPLIT_K_CASES]
    (out / "split-k.json").write_text(json.dumps(rows, indent=1))
    return rows


def _split_k_case(steps: int, batch: int, hidden: int) -> dict[str, Any]:
    import cupy
    import torch

    from rnn_xp.functional import _core

    ours, x, reference, x_torch = _layers(steps, batch, hidden)
    ours.train()
    grad = cupy.ones((steps, batch, hidden), dtype=cupy.float32)

    def step() -> None:
        ours(x)
        ours.backward(grad)

    row: dict[str, Any] = {"steps": steps, "batch": batch, "hidden": hidden}
    for label, rows_per_chunk in (("off", None), ("on", SPLIT_K_ROWS)):
        _core.SPLIT_K_ROWS = rows_per_chunk
        try:
            row[f"train_ms_{label}"] = _time(step) * 1e3
            row[f"forward_ms_{label}"] = _time(lambda: ours(x)) * 1e3
        finally:
            _core.SPLIT_K_ROWS = None
    x_grad = x_torch.clone().requires_grad_(True)
    grad_torch = torch.ones((steps, batch, hidden), device="cuda")

    def torch_step() -> None:
        output, _ = reference(x_grad)
        output.backward(grad_torch)

    row["torch-cudnn_train_ms"] = _time(torch_step) * 1e3
    print(json.dumps(row), flush=True)
    return row


def smoke() -> None:
    """Every kernel forward and backward once, at sizes small enough for compute-sanitizer: the register kernels,
    the persistent kernels with several blocks a group (their counters), the per-step path, with lengths, h0, both
    directions, and the bias sums of the split-K flag."""
    import array_api_compat.cupy as xp
    import cupy

    from rnn_xp._layout import CallerLayout
    from rnn_xp.cuda import recurrence
    from rnn_xp.functional import _core
    from rnn_xp.loops.cuda import CudaLoop
    from rnn_xp.params import ParamLayout, init_params

    rng = np.random.default_rng(0)
    lengths = cupy.asarray(np.array([4, 1, 3], dtype=np.int32))
    for dtype, hidden, path, split in (("float32", 33, "auto", None), ("float32", 33, "auto", 4),
                                       ("float32", 700, "persistent", 4), ("float64", 40, "persistent", None),
                                       ("float32", 48, "per_step", 4)):
        layout = ParamLayout(5, hidden, 1, 2, True)
        params = {k: cupy.asarray(v) for k, v in init_params(layout, seed=1, dtype=dtype).items()}
        x = cupy.asarray(rng.standard_normal((4, 3, 5)).astype(dtype))
        h0 = cupy.asarray(rng.standard_normal((2, 3, hidden)).astype(dtype))
        loop = CudaLoop(path)
        _core.SPLIT_K_ROWS = split
        try:
            out, h_n, cache = _core.forward(xp, loop, x, params, layout, h0, lengths, "tanh", [], CallerLayout())
            _core.backward(cache, loop, cupy.ones_like(out), cupy.ones_like(h_n), None)
        finally:
            _core.SPLIT_K_ROWS = None
        cupy.cuda.Device().synchronize()
        kernels = recurrence.kernels_for(2, hidden, 3, dtype, path)
        print(f"smoke: {dtype} H={hidden} path={path} split={split}: {kernels.kind} kernels ran "
              f"({getattr(kernels.plan, 'grid', 'per step')} blocks)", flush=True)


def ncu_target(hidden: int, batch: int, steps: int) -> None:
    """One warm-up forward and backward, then one more of each for Nsight Compute (--launch-skip past the first).
    rnn_xp alone: no torch to import under the profiler."""
    import cupy

    import rnn_xp

    ours = rnn_xp.RNN(64, hidden, device="cuda", seed=0)
    x = cupy.asarray(np.random.default_rng(0).standard_normal((steps, batch, 64)).astype(np.float32))
    for _ in range(2):
        out, _ = ours(x)
        ours.backward(cupy.ones_like(out))
    cupy.cuda.Device().synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probe", choices=["latency", "crossover", "split-k", "smoke", "ncu-target"])
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    if options.probe == "latency":
        latency(options.out)
    elif options.probe == "crossover":
        crossover(options.out)
    elif options.probe == "split-k":
        split_k(options.out)
    elif options.probe == "smoke":
        smoke()
    else:
        ncu_target(options.hidden, options.batch, options.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
