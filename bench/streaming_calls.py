"""Streaming calls on the CPU: one step (T=1, B=1) per call, as `rnn-xp sample` and online inference make them.

Times rnn_xp's compiled loop, rnn_xp's loop="auto" and torch.nn.RNN (when installed) on the same weights and input,
alternating, median of many calls; prints a Markdown table with rnn_xp / torch ratios.
``python bench/streaming_calls.py [--calls N]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np

import rnn_xp

SHAPES = ((64, 256), (64, 512), (64, 1024))  # (I, H)


def _median_us(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for call in calls.values():  # warm-up: numba cache load, torch's first call
        call()
        call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - started)
    return {name: float(np.median(values)) * 1e6 for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per implementation and shape")
    args = parser.parse_args()
    try:
        import torch

        torch.set_grad_enabled(False)
    except ImportError:
        torch = None
    print("| I, H | rnn_xp compiled µs | rnn_xp auto µs | torch µs | compiled / torch | auto / torch |")
    print("|---|---:|---:|---:|---:|---:|")
    for input_size, hidden in SHAPES:
        x = np.random.default_rng(0).standard_normal((1, 1, input_size)).astype(np.float32)
        compiled = rnn_xp.RNN(input_size, hidden, dtype="float32", seed=0, loop="compiled").eval()
        auto = rnn_xp.RNN(input_size, hidden, dtype="float32", seed=0).eval()
        calls: dict[str, Callable[[], object]] = {"compiled": partial(compiled, x), "auto": partial(auto, x)}
        if torch is not None:
            reference = torch.nn.RNN(input_size, hidden)
            reference.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in compiled.state_dict().items()})
            x_torch = torch.from_numpy(x)
            calls["torch"] = partial(reference, x_torch)
        us = _median_us(calls, args.calls)
        torch_us = us.get("torch")
        torch_cell = f"{torch_us:.1f}" if torch_us else "— (not installed)"
        ratios = [f"{us[name] / torch_us:.2f}" if torch_us else "—" for name in ("compiled", "auto")]
        print(
            f"| {input_size}, {hidden} | {us['compiled']:.1f} | {us['auto']:.1f} | {torch_cell} | "
            f"{ratios[0]} | {ratios[1]} |"
        )


if __name__ == "__main__":
    main()
