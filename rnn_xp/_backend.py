"""Backend selection: which namespace the arrays belong to, and which time loop runs the recurrence.

Three time loops share one interface (see :mod:`rnn_xp.functional._recurrence`):

- NumPy arrays: :mod:`rnn_xp._inplace`, reusing buffers it allocated itself (GEMM into a buffer, activation in place);
- CuPy arrays: :mod:`rnn_xp.cuda`, fused RawKernels, unless ``RNN_XP_FORCE_GENERIC=1`` (read once, at import);
- everything else (array-api-strict, torch, JAX, CuPy with kernels off): the generic Array-API loop, which never
  writes into an array, so immutable namespaces work.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import array_api_compat

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


def recurrence_for(xp: Any, *, truncated: bool = False) -> ModuleType:
    """The module whose ``forward_layer``/``backward_layer`` run the time loop for arrays of ``xp``.

    Truncated BPTT runs on the generic loop everywhere (it carries a window of gradients, not one state).
    """
    if is_numpy(xp) and not truncated:
        from rnn_xp import _inplace

        return _inplace
    if is_cupy(xp) and not FORCE_GENERIC and not truncated:
        from rnn_xp.cuda import recurrence

        return recurrence
    from rnn_xp.functional import _recurrence

    return _recurrence
