"""Compile the .cu sources with NVRTC through CuPy, lazily, once per process (CuPy caches per device)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

SOURCE_DIR = Path(__file__).resolve().parent

PERSISTENT_KERNELS = ("rnn_forward_persistent", "rnn_backward_persistent")
STEP_KERNELS = ("rnn_forward_step", "rnn_backward_step")
TYPES = {"float32": "float", "float64": "double"}


@functools.cache
def _module(filename: str, cooperative: bool, kernels: tuple[str, ...]) -> Any:
    import cupy

    return cupy.RawModule(
        code=(SOURCE_DIR / filename).read_text(),
        options=("-std=c++17", f"-I{SOURCE_DIR}"),
        name_expressions=[f"{kernel}<{ctype}>" for kernel in kernels for ctype in TYPES.values()],
        enable_cooperative_groups=cooperative,
    )


def kernel(name: str, dtype: Any) -> Any:
    """The compiled ``name<float|double>`` RawKernel for ``dtype`` (compiled on first use)."""
    ctype = TYPES[str(dtype)]
    if name in PERSISTENT_KERNELS:
        module = _module("rnn_persistent.cu", True, PERSISTENT_KERNELS)
    else:
        module = _module("rnn_step.cu", False, STEP_KERNELS)
    return module.get_function(f"{name}<{ctype}>")


_shared_set: dict[tuple[int, str, str], int] = {}


def ensure_shared_memory(function: Any, name: str, dtype: Any, device_id: int, shared_bytes: int) -> None:
    """Raise the kernel's dynamic shared-memory limit (default 48 KiB) when a launch needs more."""
    key = (device_id, name, str(dtype))
    if shared_bytes > 48 * 1024 and _shared_set.get(key, 0) < shared_bytes:
        function.max_dynamic_shared_size_bytes = shared_bytes
        _shared_set[key] = shared_bytes
