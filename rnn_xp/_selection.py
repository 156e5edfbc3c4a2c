"""Selection: which namespace the arrays belong to, and which time loop runs the recurrence (decided once per call).

- NumPy arrays: the compiled loop (:mod:`rnn_xp.loops.compiled`, numba) where the cost model measured on this
  machine (:mod:`rnn_xp._cost`) predicts it faster for the call's (T, B, H) and dtype -- small batches -- else
  the faster NumPy loop: :mod:`rnn_xp.loops.numpy_transposed` (float32, small B and large H) or
  :mod:`rnn_xp.loops.numpy_inplace`; without numba always the latter. ``loop="numpy"`` (the plain NumPy loop) or
  ``"compiled"`` force one;
- CuPy arrays: :class:`rnn_xp.loops.cuda.CudaLoop`, unless ``RNN_XP_FORCE_GENERIC=1`` (read once, at import) or the
  caller asks for the generic loop;
- everything else (array-api-strict, torch, JAX), and truncated BPTT everywhere: :mod:`rnn_xp.loops.generic`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import array_api_compat
import numpy as np

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
    if type(array) is np.ndarray:
        return array.copy()  # the common case, without the namespace wrapper's ~2 us
    if array_api_compat.is_jax_namespace(xp):
        return array
    if array_api_compat.is_torch_namespace(xp):
        return array.clone()
    return xp.asarray(array, copy=True)


def select_loop(
    xp: Any,
    *,
    generic: bool = False,
    loop: str = "auto",
    size: tuple[int, int, int] | None = None,
    dtype: str | None = None,
    weights_hh: Sequence[Any] = (),
    directions: int = 1,
    transpose_kept: bool | None = None,
) -> TimeLoop:
    """The time loop for arrays of ``xp``.

    ``generic=True`` (or ``loop="generic"``) asks for the generic Array-API loop anyway; ``loop="numpy"`` or
    ``"compiled"`` force a NumPy loop (NumPy arrays only). With ``loop="auto"``, NumPy arrays of ``size``
    (T, B, H) and ``dtype`` go to the loop the cost model predicts faster (the in-place loop when no size is given);
    ``weights_hh`` (the layers' W_hh arrays) tell it whether their kept transposes are likely reused, ``directions``
    how many directions a layer runs (the compiled loop runs them at once); ``transpose_kept``, when given, is
    that answer already worked out (:func:`transposes_kept`).

    Raises
    ------
    ValueError
        ``loop="numpy"``/``"compiled"`` on arrays that are not NumPy's, or ``"compiled"`` without numba.
    """
    generic = generic or loop == "generic"
    if loop in ("numpy", "compiled") and not is_numpy(xp):
        msg = f"loop={loop!r} runs on NumPy arrays only; got arrays of {xp.__name__}"
        raise ValueError(msg)
    if is_numpy(xp) and not generic:
        from rnn_xp.loops import compiled, numpy_inplace

        if loop == "compiled" and not compiled.available():
            msg = "loop='compiled' needs numba (pip install 'rnn-xp[fast]'); it is not installed"
            raise ValueError(msg)
        if transpose_kept is None:
            transpose_kept = transposes_kept(weights_hh) if loop == "auto" else True
        if loop == "compiled" or (loop == "auto" and _compiled_is_faster(size, dtype, transpose_kept, directions)):
            return compiled  # a module implementing the protocol
        if loop == "auto" and _transposed_is_faster(size, dtype):
            from rnn_xp.loops import numpy_transposed

            return numpy_transposed
        return numpy_inplace
    if is_cupy(xp) and not (generic or FORCE_GENERIC):
        from rnn_xp.loops.cuda import CudaLoop

        return CudaLoop()
    return generic_loop()


def _compiled_is_faster(
    size: tuple[int, int, int] | None, dtype: str | None, transpose_kept: bool, directions: int
) -> bool:
    from rnn_xp.loops import compiled

    if size is None or dtype not in ("float32", "float64") or not compiled.available():
        return False
    from rnn_xp import _cost

    return _cost.prefers_compiled(dtype, *size, transpose_kept=transpose_kept, directions=directions)


def transposes_kept(weights_hh: Sequence[Any]) -> bool:
    """Whether the compiled loop's kept W_hh^T are expected to be reused for all these weights (none given: as
    for new weights, yes); see :func:`rnn_xp.loops._transposes.likely_reused`."""
    if not weights_hh:
        return True
    from rnn_xp.loops import _transposes

    return all(_transposes.likely_reused(weight) for weight in weights_hh)


_COST_NAMES = {"rnn_xp.loops.numpy_inplace": "numpy", "rnn_xp.loops.numpy_transposed": "transposed",
               "rnn_xp.loops.compiled": "compiled"}


def observe_loop(time_loop: TimeLoop, size: tuple[int, int, int], dtype: str, seconds: float, *,
                 transpose_kept: bool, directions: int) -> None:
    """Feed one call's time loop back to the cost model (:func:`rnn_xp._cost.observe`): ``seconds`` a layer, for
    the loop that :func:`select_loop` picked with ``loop="auto"`` on NumPy arrays."""
    name = _COST_NAMES.get(getattr(time_loop, "__name__", ""))
    if name is None or dtype not in ("float32", "float64"):
        return
    from rnn_xp import _cost

    _cost.observe(dtype, *size, name, seconds, transpose_kept=transpose_kept, directions=directions)


def _transposed_is_faster(size: tuple[int, int, int] | None, dtype: str | None) -> bool:
    from rnn_xp.loops import compiled

    if size is None or dtype != "float32" or not compiled.available():  # its fused pass is a numba kernel
        return False
    from rnn_xp import _cost

    return _cost.prefers_transposed(dtype, *size)


def generic_loop() -> TimeLoop:
    """The generic Array-API loop (the one that truncates BPTT)."""
    from rnn_xp.loops import generic

    return generic  # a module implementing the protocol
