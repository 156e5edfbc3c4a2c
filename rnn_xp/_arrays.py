"""Array helpers below everything else: which namespace arrays belong to, private copies, and copies between the
host and a device. This module imports nothing of rnn_xp's; CuPy only inside the calls that need it."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np


def namespace_of(*arrays: Any, argname: str = "arrays") -> Any:
    """The Array-API namespace shared by ``arrays`` (``None`` entries are ignored).

    Raises
    ------
    TypeError
        When an entry is not an array, or the arrays come from different libraries.
    """
    present = [a for a in arrays if a is not None]
    try:
        return array_api_compat.array_namespace(*present)
    except TypeError as error:
        kinds = sorted({f"{type(a).__module__}.{type(a).__name__}" for a in present})
        msg = f"{argname} must be arrays of a single array-API namespace; got {', '.join(kinds)} ({error})"
        raise TypeError(msg) from None


def is_numpy(xp: Any) -> bool:
    return bool(array_api_compat.is_numpy_namespace(xp))


def is_cupy(xp: Any) -> bool:
    return bool(array_api_compat.is_cupy_namespace(xp))


def private_copy(xp: Any, array: Any) -> Any:
    """A copy of ``array`` that later in-place edits of ``array`` cannot reach (``array`` itself on JAX, whose
    arrays are immutable). torch tensors are cloned, so torch autograd still flows through the copy."""
    if type(array) is np.ndarray:
        return array.copy()  # the common case, without the namespace wrapper
    if array_api_compat.is_jax_namespace(xp):
        return array
    if array_api_compat.is_torch_namespace(xp):
        return array.clone()
    return xp.asarray(array, copy=True)


def to_numpy(array: Any) -> np.ndarray:
    """A host NumPy copy (or view) of a NumPy, CuPy, torch or other DLPack/array-protocol array."""
    if isinstance(array, np.ndarray):
        return array
    module = type(array).__module__.split(".")[0]
    if module == "cupy":
        return array.get()
    if module == "torch":
        return array.detach().cpu().numpy()
    try:
        return np.from_dlpack(array)
    except (TypeError, AttributeError, BufferError, RuntimeError):
        return np.asarray(array)


def place(xp: Any, host: Any, like: Any) -> Any:
    """``host`` (a NumPy array or nested sequence) as an array of ``xp`` on the device that holds ``like``.

    Training code creates every array this way (or with ``device=device_of(like)``), so a model on ``cuda:1`` gets its
    data on ``cuda:1`` rather than on the current device."""
    return xp.asarray(host, device=array_api_compat.device(like))


def from_numpy(host: np.ndarray, device: Any, *, owned: bool = False) -> Any:
    """Copy a host array onto ``device`` (an :class:`rnn_xp._device.Device`) as a NumPy or CuPy array;
    ``owned=True`` hands over a host array nobody else holds, which the CPU then keeps as it is (no second copy)."""
    if device.kind == "cpu":
        return host if owned else np.array(host, copy=True)
    import cupy  # the layer's device check (rnn_xp._device.namespace_for) ran before any array is placed

    with cupy.cuda.Device(device.index):
        return cupy.asarray(host)


ALIGNMENT = 64  # bytes: a cache line, and an AVX-512 register


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous NumPy array whose data start on a :data:`ALIGNMENT`-byte boundary (a view into
    a slightly larger buffer, which it keeps alive). The layer's parameters live in such arrays: NumPy promises only
    16 bytes, and the compiled loop's vector loads of a misaligned weight row touch two cache lines
    (the aligned-parameters rows of bench/results/*-fast-paths.md). Alignment changes no result, only the speed."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(size * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + size * dtype.itemsize].view(dtype).reshape(shape)
