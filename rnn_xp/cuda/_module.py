"""Compile the .cu sources with NVRTC through CuPy, lazily, one module per kernel instance (CuPy caches on disk)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

SOURCE_DIR = Path(__file__).resolve().parent

SOURCES = {
    "rnn_forward_registers": "rnn_registers.cu",
    "rnn_backward_registers": "rnn_registers.cu",
    "rnn_forward_persistent": "rnn_persistent.cu",
    "rnn_backward_persistent": "rnn_persistent.cu",
    "rnn_forward_step": "rnn_step.cu",
    "rnn_backward_step": "rnn_step.cu",
}
PERSISTENT_KERNELS = ("rnn_forward_persistent", "rnn_backward_persistent")
REGISTER_KERNELS = ("rnn_forward_registers", "rnn_backward_registers")
TYPES = {"float32": "float", "float64": "double"}


def name_expression(name: str, dtype: Any, template_args: tuple[int, ...] = ()) -> str:
    """``name<float|double[, args...]>``, as the kernel is instantiated in C++."""
    return f"{name}<{', '.join([TYPES[str(dtype)], *map(str, template_args)])}>"


@functools.cache
def headers_digest() -> str:
    """A hash of the included headers: CuPy's on-disk cache keys on the source text and the options only, so the
    digest goes into the options (an edited header then compiles anew instead of reusing a stale binary)."""
    digest = hashlib.sha256()
    for header in sorted(SOURCE_DIR.glob("*.cuh")):
        digest.update(header.name.encode() + b"\0" + header.read_bytes())
    return digest.hexdigest()[:16]


def compile_options() -> tuple[str, ...]:
    return ("-std=c++17", f"-I{SOURCE_DIR}", f"-DRNN_XP_HEADERS_DIGEST=0x{headers_digest()}ULL")


@functools.cache
def _module(filename: str, expression: str, cooperative: bool) -> Any:
    import cupy

    return cupy.RawModule(
        code=(SOURCE_DIR / filename).read_text(),
        options=compile_options(),
        name_expressions=[expression],
        enable_cooperative_groups=cooperative,
    )


def kernel(name: str, dtype: Any, template_args: tuple[int, ...] = ()) -> Any:
    """The compiled RawKernel ``name<dtype, template_args...>`` (compiled on first use).

    Persistent kernels are launched cooperatively: the launch then fails, rather than deadlocks, if the grid's
    blocks cannot all be resident at once (their groups wait for each other).
    """
    expression = name_expression(name, dtype, template_args)
    module = _module(SOURCES[name], expression, name in PERSISTENT_KERNELS)
    return module.get_function(expression)


_shared_set: dict[tuple[int, str], int] = {}


def ensure_shared_memory(function: Any, expression: str, device_id: int, shared_bytes: int) -> None:
    """Raise the kernel's dynamic shared-memory limit (default 48 KiB) when a launch needs more."""
    key = (device_id, expression)
    if shared_bytes > 48 * 1024 and _shared_set.get(key, 0) < shared_bytes:
        function.max_dynamic_shared_size_bytes = shared_bytes
        _shared_set[key] = shared_bytes
