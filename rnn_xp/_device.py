"""The ``device=`` flag: ``"cpu"`` is NumPy, ``"cuda"``/``"cuda:N"`` is CuPy on GPU N (imported only then)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


class DeviceUnavailableError(RuntimeError):
    """The device is well formed but this machine cannot provide it (CuPy or a GPU is missing)."""


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu" or "cuda"
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


def parse_device(device: Any) -> Device:
    """Parse ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises
    ------
    TypeError
        ``device`` is not a string.
    ValueError
        An unknown device string.
    """
    if not isinstance(device, str):
        msg = f"device must be a string 'cpu', 'cuda' or 'cuda:N'; got {type(device).__name__} {device!r}"
        raise TypeError(msg)
    if device == "cpu":
        return Device("cpu")
    match = _CUDA.match(device)
    if match is None:
        msg = f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}"
        raise ValueError(msg)
    return Device("cuda", int(match.group(1) or 0))


def import_cupy() -> Any:
    """CuPy, imported on first use, with an error that names what is missing."""
    try:
        import cupy
    except ImportError as error:
        msg = (
            "device='cuda' needs CuPy, which is not installed: pip install cupy-cuda13x (CUDA 13) or "
            f"cupy-cuda12x (CUDA 12) ({error})"
        )
        raise DeviceUnavailableError(msg) from None
    return cupy


def namespace_for(device: Device) -> Any:
    """The array-api-compat namespace for ``device``; checks that the GPU exists."""
    if device.kind == "cpu":
        import array_api_compat.numpy as numpy_namespace

        return numpy_namespace
    cupy = import_cupy()
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CuPy raises its own CUDARuntimeError when no driver/GPU is present
        msg = f"device={str(device)!r} needs an NVIDIA GPU, but CUDA reports none ({error})"
        raise DeviceUnavailableError(msg) from None
    if device.index >= count:
        msg = f"device={str(device)!r} does not exist: this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})"
        raise DeviceUnavailableError(msg)
    import array_api_compat.cupy as cupy_namespace

    return cupy_namespace
