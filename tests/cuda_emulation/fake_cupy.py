"""A NumPy-backed stand-in for the part of CuPy that ``rnn_xp/cuda/recurrence.py`` uses, so that module runs
unchanged on the CPU with its kernels launched by :mod:`cuda_emulation.launcher`.

Arrays are :class:`EmulatedArray` (an ``ndarray`` subclass with CuPy's ``.device``); the device reports the SM count
and opt-in shared memory given to :func:`make_module`, so small test problems can be tiled the way large ones are
on a real GPU.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np


class EmulatedDevice:
    """``cupy.cuda.Device``: an id, a context manager, and the attributes the launch plans read."""

    sm_count = 132
    shared_optin = 227 * 1024

    def __init__(self, device_id: int = 0) -> None:
        self.id = int(device_id)

    @property
    def attributes(self) -> dict[str, int]:
        return {"MultiProcessorCount": self.sm_count, "MaxSharedMemoryPerBlockOptin": self.shared_optin}

    def __enter__(self) -> EmulatedDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def synchronize(self) -> None:
        return None


class EmulatedArray(np.ndarray):
    """``cupy.ndarray``: a NumPy array that says it lives on emulated GPU 0."""

    @property
    def device(self) -> EmulatedDevice:
        return EmulatedDevice(0)


def _wrap(array: Any) -> EmulatedArray:
    return np.asarray(array).view(EmulatedArray)


def make_module(*, sm_count: int, shared_optin: int) -> types.ModuleType:
    """A module object to put in ``sys.modules['cupy']`` for the duration of a test."""
    device = type("Device", (EmulatedDevice,), {"sm_count": sm_count, "shared_optin": shared_optin})
    module = types.ModuleType("cupy")
    module.ndarray = EmulatedArray  # type: ignore[attr-defined]
    module.int32, module.uint32 = np.int32, np.uint32  # type: ignore[attr-defined]
    module.cuda = types.SimpleNamespace(Device=device)  # type: ignore[attr-defined]
    module.asarray = lambda a, dtype=None: _wrap(np.asarray(a, dtype=dtype))  # type: ignore[attr-defined]
    module.ascontiguousarray = lambda a: _wrap(np.ascontiguousarray(a))  # type: ignore[attr-defined]
    module.zeros = lambda shape, dtype=float: _wrap(np.zeros(shape, dtype=dtype))  # type: ignore[attr-defined]
    # empty arrays are filled with NaN: a kernel that leaves an output unwritten is then caught
    module.empty = lambda shape, dtype=float: _wrap(  # type: ignore[attr-defined]
        np.full(shape, np.nan, dtype=dtype) if np.dtype(dtype).kind == "f" else np.zeros(shape, dtype=dtype)
    )
    module.array = lambda a, copy=True, order="K": _wrap(np.array(a, copy=copy, order=order))  # type: ignore[attr-defined]
    module.matmul = lambda a, b, out=None: np.matmul(a, b, out=out)  # type: ignore[attr-defined]
    return module
