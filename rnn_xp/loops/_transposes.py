"""W_hh^T as a C-contiguous array for the compiled loop's forward, remembered across calls while W_hh's values stay
the same.

The compiled forward reads rows of W_hh^T (:mod:`rnn_xp.loops._kernels`). Transposing is a strided copy, about a
cycle an element: 0.1 ms at H=512 and 0.6 ms at H=1024 with our tiled kernel (NumPy's ``ascontiguousarray(W.T)``:
0.3 and 3.4 ms), as much as tens of recurrent steps at B=1. So the transpose is kept, with a copy of the W_hh it was
made from, and reused when a later call's W_hh has the same bits: the check reads both copies once (about 20 us at
H=512) and needs nothing from the caller, so a weight changed in place (an optimizer's step, ``w *= 0.5``) is seen.
A changed weight costs the check's first block and a new transpose.

Whether a weight's last call found it changed is remembered (:func:`likely_reused`): the cost model charges the
compiled loop a transpose only when one is likely to be made (training changes W_hh every step; inference and
streaming reuse it).

At most :data:`MAX_BYTES` are kept (oldest out first); an entry goes when its weight array is garbage-collected.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

from rnn_xp.loops import _aligned

MAX_BYTES = 128 << 20

_lock = threading.Lock()
_kept: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()  # id(weight) -> (copy of weight, weight^T)
_reused: dict[int, bool] = {}  # id(weight) -> False when its last transposed() call found the weight changed
_forgotten: list[int] = []  # ids of weights that died while _lock was held (see _forget)


def _kernels() -> Any:
    from rnn_xp.loops import _kernels

    return _kernels


def transpose(weight: np.ndarray) -> np.ndarray:
    """weight (M, N) -> a new C-contiguous (N, M) array, weight^T, 64-byte aligned (:mod:`rnn_xp.loops._aligned`)."""
    out = _aligned.empty((weight.shape[1], weight.shape[0]), weight.dtype)
    _kernels().transpose_into(out, weight)
    return out


def _bits(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1).view(np.dtype(f"u{array.dtype.itemsize}"))


def transposed(weight: np.ndarray) -> np.ndarray:
    """weight^T, C-contiguous (read it, never write it: it may be shared with later calls).

    weight: a 2-D float array. Non-contiguous weights are transposed every call and not kept."""
    if not weight.flags.c_contiguous or weight.ndim != 2:
        return _aligned.contiguous(weight.T)
    key = id(weight)
    with _lock:
        _drop_forgotten()
        entry = _kept.get(key)
    if (
        entry is not None and entry[0].shape == weight.shape and entry[0].dtype == weight.dtype
        and _kernels().same_bits(_bits(entry[0]), _bits(weight))
    ):
        with _lock:
            _reused[key] = True
        return entry[1]
    result = transpose(weight)
    if 2 * weight.nbytes <= MAX_BYTES:
        # a first transpose is expected to be reused; one of a changed weight, to change again
        _keep(key, weight, (weight.copy(), result), reused=entry is None)
    return result


def is_kept(weight: Any) -> bool:
    """Whether a transpose of this very array is kept (it may still be stale: :func:`transposed` checks)."""
    with _lock:
        return id(weight) in _kept


def likely_reused(weight: Any) -> bool:
    """Whether the next :func:`transposed` call for this very array is expected to reuse a kept transpose: unless
    the last call found the weight changed. An array never seen counts as reused (the first call makes a transpose
    that inference then keeps): charging it would keep such a weight on the NumPy loop, which makes no transpose,
    for ever. A weight too large to keep, or not C-contiguous, is transposed on every call: False."""
    if 2 * weight.nbytes > MAX_BYTES or not weight.flags.c_contiguous:
        return False
    with _lock:
        return _reused.get(id(weight), True)


def _keep(key: int, weight: np.ndarray, entry: tuple[np.ndarray, np.ndarray], *, reused: bool) -> None:
    with _lock:
        _drop_forgotten()
        fresh = key not in _kept
        _kept[key] = entry
        _reused[key] = reused
        _kept.move_to_end(key)
        while sum(2 * copy.nbytes for copy, _ in _kept.values()) > MAX_BYTES:
            _reused.pop(_kept.popitem(last=False)[0], None)
    if fresh:  # the entry goes with its weight (and while the weight lives, no other array can have its id)
        weakref.finalize(weight, _forget, key)


def _forget(key: int) -> None:
    """Drop a dead weight's entry. A finalizer runs wherever the garbage collector does, possibly in this module
    with :data:`_lock` held by the same thread (a full test run hung there): it never waits for the lock, it queues
    the key when the lock is busy, and the next holder drops it (:func:`_drop_forgotten`)."""
    if _lock.acquire(blocking=False):
        try:
            _kept.pop(key, None)
            _reused.pop(key, None)
        finally:
            _lock.release()
    else:
        _forgotten.append(key)  # list.append is atomic


def _drop_forgotten() -> None:
    """With :data:`_lock` held: drop the entries whose weights died while it was busy."""
    while _forgotten:
        key = _forgotten.pop()
        _kept.pop(key, None)
        _reused.pop(key, None)


def clear() -> None:
    """Drop every kept transpose."""
    with _lock:
        _kept.clear()
        _reused.clear()
