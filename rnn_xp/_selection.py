"""Selection: which namespace the arrays belong to, and which time loop runs the recurrence (decided once per call).

- NumPy arrays: :mod:`rnn_xp.loops.numpy_inplace`;
- CuPy arrays: :class:`rnn_xp.loops.cuda.CudaLoop`, unless ``RNN_XP_FORCE_GENERIC=1`` (read once, at import) or the
  caller asks for the generic loop;
- everything else (array-api-strict, torch, JAX), and truncated BPTT everywhere: :mod:`rnn_xp.loops.generic`.
"""

from __future__ import annotations

import os
from typing import Any

import array_api_compat

from rnn_xp.loops import TimeLoop

FORCE_GENERIC: bool = os.environ.get("RNN_XP_FORCE_GENERIC", "").strip().lower() in {"1", "true", "yes", "on"}


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
    if array_api_compat.is_jax_namespace(xp):
        return array
    if array_api_compat.is_torch_namespace(xp):
        return array.clone()
    return xp.asarray(array, copy=True)


def select_loop(xp: Any, *, generic: bool = False) -> TimeLoop:
    """The time loop for arrays of ``xp``; ``generic=True`` asks for the generic Array-API loop anyway."""
    if is_numpy(xp) and not generic:
        from rnn_xp.loops import numpy_inplace

        return numpy_inplace  # a module implementing the protocol
    if is_cupy(xp) and not (generic or FORCE_GENERIC):
        from rnn_xp.loops.cuda import CudaLoop

        return CudaLoop()
    return generic_loop()


def generic_loop() -> TimeLoop:
    """The generic Array-API loop (the one that truncates BPTT)."""
    from rnn_xp.loops import generic

    return generic  # a module implementing the protocol
