"""A NumPy-backed stand-in for the part of CuPy that ``rnn_xp/cuda/recurrence.py`` uses, so that module runs
unchanged on the CPU with its kernels launched by :mod:`cuda_emulation.launcher`; and an Array-API namespace over it
(:func:`make_namespace`) for the functional core.

Arrays are :class:`EmulatedArray` (an ``ndarray`` subclass with CuPy's ``.device`` and ``.data.ptr``); the device
reports the SM count and opt-in shared memory given to :func:`make_module`, so small test problems can be tiled the
way large ones are on a real GPU.

Every call that would queue work on a GPU (a kernel, a GEMM, a copy, a memset, an elementwise operation) is written
into the module's :class:`Ledger`, with the device allocations and the reads back to the host (which wait for the
GPU): tests count what one forward or backward costs in launches, allocations and synchronisations.
"""

from __future__ import annotations

import ctypes
import types
from collections import Counter
from typing import Any

import numpy as np


class Ledger:
    """What the calls since :meth:`reset` would have cost on a GPU."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.operations: Counter[str] = Counter()  # GPU work queued, by kind
        self.allocations = 0  # device buffers allocated
        self.syncs = 0  # device data read back to the host
        self.devices = 0  # cupy.cuda.Device objects made (each a driver query in CuPy)

    @property
    def launches(self) -> int:
        return sum(self.operations.values())

    def operation(self, kind: str, *, allocates: bool) -> None:
        self.operations[kind] += 1
        self.allocations += int(allocates)


_ledger = Ledger()  # the ledger of the module made last (tests install one stand-in at a time)


class EmulatedDevice:
    """``cupy.cuda.Device``: an id, a context manager, and the attributes the launch plans read."""

    sm_count = 132
    shared_optin = 227 * 1024

    def __init__(self, device_id: int = 0) -> None:
        self.id = int(device_id)
        _ledger.devices += 1

    @property
    def attributes(self) -> dict[str, int]:
        return {"MultiProcessorCount": self.sm_count, "MaxSharedMemoryPerBlockOptin": self.shared_optin}

    def __enter__(self) -> EmulatedDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EmulatedDevice) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def synchronize(self) -> None:
        _ledger.syncs += 1


class EmulatedArray(np.ndarray):
    """``cupy.ndarray``: a NumPy array that says it lives on emulated GPU 0, and whose operations are counted."""

    @property
    def device(self) -> EmulatedDevice:
        return EmulatedDevice(0)

    @property
    def data(self) -> Any:  # type: ignore[override]
        return types.SimpleNamespace(ptr=self.ctypes.data)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, out: Any = None, **kwargs: Any) -> Any:
        _ledger.operation(f"{ufunc.__name__}.{method}" if method != "__call__" else ufunc.__name__,
                          allocates=out is None)
        plain = [np.asarray(a).view(np.ndarray) if isinstance(a, EmulatedArray) else a for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(np.asarray(o).view(np.ndarray) for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        # A reduction gives a 0-d device array, as in CuPy: turning it into a Python number reads it back.
        return _wrap(result) if isinstance(result, np.ndarray | np.generic) else result

    def astype(self, dtype: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        _ledger.operation("astype", allocates=True)
        return _wrap(np.asarray(self).view(np.ndarray).astype(dtype, *args, **kwargs))

    def copy(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        _ledger.operation("copy", allocates=True)
        return _wrap(np.asarray(self).view(np.ndarray).copy(*args, **kwargs))

    def get(self) -> np.ndarray:
        _ledger.syncs += 1
        return np.array(self.view(np.ndarray))

    def item(self, *args: Any) -> Any:
        _ledger.syncs += 1
        return self.view(np.ndarray).item(*args)

    def tolist(self) -> Any:
        _ledger.syncs += 1
        return self.view(np.ndarray).tolist()

    def __bool__(self) -> bool:
        _ledger.syncs += 1
        return bool(self.view(np.ndarray))

    def __float__(self) -> float:
        _ledger.syncs += 1
        return float(self.view(np.ndarray))

    def __int__(self) -> int:
        _ledger.syncs += 1
        return int(self.view(np.ndarray))

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        _ledger.syncs += 1
        return self.view(np.ndarray).__dlpack__(*args, **kwargs)


EmulatedArray.__module__ = "cupy"  # as CuPy's arrays say: rnn_xp's helpers tell CuPy arrays by their module


def _wrap(array: Any) -> EmulatedArray:
    return np.asarray(array).view(EmulatedArray)


def _plain(array: Any) -> np.ndarray:
    return np.asarray(array).view(np.ndarray)


def _allocated(kind: str | None, array: Any) -> EmulatedArray:
    """``array`` as a new device buffer; ``kind``: the operation that filled it (None: left uninitialised)."""
    if kind is None:
        _ledger.allocations += 1
    else:
        _ledger.operation(kind, allocates=True)
    return _wrap(array)


def _empty(shape: Any, dtype: Any = float) -> EmulatedArray:
    # Filled with NaN: a kernel that leaves an output unwritten is then caught.
    filled = np.full(shape, np.nan, dtype=dtype) if np.dtype(dtype).kind == "f" else np.zeros(shape, dtype=dtype)
    return _allocated(None, filled)


def make_module(*, sm_count: int, shared_optin: int) -> types.ModuleType:
    """A module object to put in ``sys.modules['cupy']`` for the duration of a test; its ``ledger`` starts empty."""
    global _ledger
    _ledger = Ledger()
    device = type("Device", (EmulatedDevice,), {"sm_count": sm_count, "shared_optin": shared_optin})
    module = types.ModuleType("cupy")
    module.ledger = _ledger  # type: ignore[attr-defined]
    module.ndarray = EmulatedArray  # type: ignore[attr-defined]
    module.int32, module.uint32 = np.int32, np.uint32  # type: ignore[attr-defined]
    module.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        Device=device, get_current_stream=lambda: types.SimpleNamespace(ptr=0),
        device=types.SimpleNamespace(get_cublas_handle=lambda: 1),
        runtime=types.SimpleNamespace(getDevice=lambda: 0,
                                      getDeviceProperties=lambda index: {"name": b"Emulated GPU"}),
    )

    def asarray(a: Any, dtype: Any = None) -> EmulatedArray:
        if isinstance(a, EmulatedArray) and (dtype is None or a.dtype == dtype):
            return a
        return _allocated("copy", np.asarray(_plain(a) if isinstance(a, EmulatedArray) else a, dtype=dtype))

    def ascontiguousarray(a: Any) -> EmulatedArray:
        if isinstance(a, EmulatedArray) and a.flags.c_contiguous:
            return a
        return _allocated("copy", np.ascontiguousarray(_plain(a)))

    def matmul(a: Any, b: Any, out: Any = None) -> Any:
        _ledger.operation("gemm", allocates=out is None)
        result = np.matmul(_plain(a), _plain(b), out=None if out is None else _plain(out))
        return out if out is not None else _wrap(result)

    module.asarray = asarray  # type: ignore[attr-defined]
    module.ascontiguousarray = ascontiguousarray  # type: ignore[attr-defined]
    module.zeros = lambda shape, dtype=float: _allocated("memset", np.zeros(shape, dtype=dtype))  # type: ignore[attr-defined]
    module.empty = _empty  # type: ignore[attr-defined]
    module.array = lambda a, copy=True, order="K": _allocated(  # type: ignore[attr-defined]
        "copy", np.array(_plain(a), copy=copy, order=order))
    module.concatenate = lambda arrays, axis=0: _allocated(  # type: ignore[attr-defined]
        "concatenate", np.concatenate([_plain(a) for a in arrays], axis=axis))
    module.matmul = matmul  # type: ignore[attr-defined]

    def sum_(a: Any, axis: Any = None, out: Any = None) -> Any:
        _ledger.operation("sum", allocates=out is None)
        result = np.sum(_plain(a), axis=axis)
        if out is None:
            return _wrap(result)
        _plain(out)[...] = result
        return out

    module.sum = sum_  # type: ignore[attr-defined]
    return module


def make_cublas() -> dict[str, types.ModuleType]:
    """``cupy_backends.cuda.libs.cublas`` (and its parents, to put in ``sys.modules``): sgemm/dgemm as cuBLAS
    computes them, column-major on raw addresses (here host memory), each a "gemm" in the ledger."""

    def gemm(ctype: Any) -> Any:
        def call(handle: int, transa: int, transb: int, m: int, n: int, k: int, alpha: int, a: int, lda: int, b: int,
                 ldb: int, beta: int, c: int, ldc: int) -> None:
            _ledger.operation("gemm", allocates=False)

            def at(address: int, rows: int, columns: int) -> np.ndarray:
                # A column-major (rows x columns) matrix with leading dimension `rows` is a row-major (columns x rows).
                return np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(ctype)), shape=(columns, rows))

            scalar = np.dtype(ctype)
            alpha_value = at(alpha, 1, 1)[0, 0].astype(scalar)
            beta_value = at(beta, 1, 1)[0, 0].astype(scalar)
            stored_a = at(a, lda, k if transa == 0 else m)[:, : (m if transa == 0 else k)].T
            stored_b = at(b, ldb, n if transb == 0 else k)[:, : (k if transb == 0 else n)].T
            op_a = stored_a if transa == 0 else stored_a.T
            op_b = stored_b if transb == 0 else stored_b.T
            result = at(c, ldc, n)[:, :m]  # C^T, written in place
            product = (op_a @ op_b).T
            result[...] = alpha_value * product + (beta_value * result if beta_value != 0 else 0)

        return call

    cublas = types.ModuleType("cupy_backends.cuda.libs.cublas")
    cublas.CUBLAS_POINTER_MODE_HOST = 0  # type: ignore[attr-defined]
    cublas.setPointerMode = lambda handle, mode: None  # type: ignore[attr-defined]
    cublas.sgemm = gemm(ctypes.c_float)  # type: ignore[attr-defined]
    cublas.dgemm = gemm(ctypes.c_double)  # type: ignore[attr-defined]
    libs = types.ModuleType("cupy_backends.cuda.libs")
    libs.cublas = cublas  # type: ignore[attr-defined]
    cuda = types.ModuleType("cupy_backends.cuda")
    cuda.libs = libs  # type: ignore[attr-defined]
    root = types.ModuleType("cupy_backends")
    root.cuda = cuda  # type: ignore[attr-defined]
    return {"cupy_backends": root, "cupy_backends.cuda": cuda, "cupy_backends.cuda.libs": libs,
            "cupy_backends.cuda.libs.cublas": cublas}


def make_namespace(cupy: types.ModuleType) -> types.ModuleType:
    """The Array-API functions the functional core calls, on :class:`EmulatedArray`, each counted in ``cupy``'s
    ledger as CuPy would run it (a view is free; everything that makes data queues work)."""

    def reshape(x: Any, shape: tuple[int, ...]) -> Any:
        result = np.reshape(x, shape)
        if not np.shares_memory(result, x):
            _ledger.operation("copy", allocates=True)
        return result

    def asarray(x: Any, dtype: Any = None, device: Any = None, copy: bool | None = None) -> Any:
        if copy:
            return _allocated("copy", np.array(_plain(x), dtype=dtype, copy=True))
        return cupy.asarray(x, dtype=dtype)

    namespace = types.ModuleType("fake_cupy_namespace")
    namespace.__dict__.update(
        float32=np.float32, float64=np.float64, int32=np.int32,
        asarray=asarray,
        reshape=reshape,
        empty=lambda shape, dtype=None, device=None: _empty(shape, dtype),
        zeros=lambda shape, dtype=None, device=None: _allocated("memset", np.zeros(shape, dtype=dtype)),
        zeros_like=lambda x: _allocated("memset", np.zeros_like(_plain(x))),
        arange=lambda n, dtype=None, device=None: _allocated("arange", np.arange(n, dtype=dtype)),
        where=lambda c, a, b: _allocated("where", np.where(_plain(c), _plain(a), _plain(b))),
        concat=lambda arrays, axis=0: _allocated("concatenate", np.concatenate([_plain(a) for a in arrays], axis)),
        stack=lambda arrays, axis=0: _allocated("stack", np.stack([_plain(a) for a in arrays], axis)),
        sum=lambda x, axis=None: _allocated("sum", np.sum(_plain(x), axis=axis)),
        matmul=lambda a, b: a @ b,
        permute_dims=lambda x, axes: np.transpose(x, axes),
        astype=lambda x, dtype: x.astype(dtype),
    )
    return namespace
