"""Validation of everything a public entry receives. Each check raises ValueError (shape, value) or TypeError
(dtype, type) whose message names the argument and says what was expected and what came."""

from __future__ import annotations

import numbers
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np
from array_api_compat import device as device_of
from array_api_compat import is_cupy_array

from rnn_xp._arrays import namespace_of, to_numpy
from rnn_xp._layout import CallerLayout
from rnn_xp.params import ParamLayout

NONLINEARITIES = ("tanh", "relu")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Call:
    """The inputs of one forward call, validated, as the caller laid them out (see :mod:`rnn_xp._layout`)."""

    x: Any
    h0: Any | None
    # (B,) int32 on the arrays' device, every value in [1, T] once lengths_checked ([0, T] when traced: check_lengths)
    lengths: Any | None
    layout: CallerLayout
    num_steps: int
    batch: int
    # False for a CuPy lengths array: its values were not read back (see check_lengths); a loop that cannot take
    # that (no CHECKS_LENGTHS) has them checked by check_length_values once the plan has picked it.
    lengths_checked: bool = True


class Checked:
    """A public attribute whose every assignment, in the constructor or later, goes through ``check`` (which
    returns the value to keep or raises): ``rnn.dropout = 1.5`` fails as ``RNN(..., dropout=1.5)`` does, and leaves
    the attribute as it was."""

    def __init__(self, check: Callable[[Any], Any]) -> None:
        self.check = check
        self.slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_checked_{name}"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance.__dict__[self.slot]

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.slot] = self.check(value)


def checked_bool(argname: str) -> Callable[[Any], bool]:
    """A check for :class:`Checked` that accepts True or False (:func:`check_bool` naming ``argname``)."""
    return lambda value: check_bool(value, argname)


def check_nonlinearity(nonlinearity: Any) -> str:
    if nonlinearity not in NONLINEARITIES:
        msg = f"nonlinearity must be one of {NONLINEARITIES}; got {nonlinearity!r}"
        raise ValueError(msg)
    return str(nonlinearity)


LOOPS = ("auto", "generic", "numpy", "numpy_transposed", "compiled")


def check_loop(loop: Any) -> str:
    if not isinstance(loop, str) or loop not in LOOPS:
        msg = f"loop must be one of {LOOPS}; got {loop!r}"
        raise ValueError(msg)
    return loop


def check_dropout(dropout: Any) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        msg = f"dropout must be a float in [0, 1); got {type(dropout).__name__} {dropout!r}"
        raise TypeError(msg)
    if not 0.0 <= float(dropout) < 1.0:
        msg = f"dropout must be in [0, 1); got {dropout!r}"
        raise ValueError(msg)
    return float(dropout)


def check_positive_int(value: Any, argname: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        msg = f"{argname} must be a positive integer; got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    if value <= 0:
        msg = f"{argname} must be a positive integer; got {value!r}"
        raise ValueError(msg)
    return int(value)


def check_bool(value: Any, argname: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        msg = f"{argname} must be True or False; got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    return bool(value)


def check_seed(seed: Any, argname: str = "seed") -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        msg = f"{argname} must be None or a non-negative integer; got {type(seed).__name__} {seed!r}"
        raise TypeError(msg)
    if seed < 0:
        msg = f"{argname} must be None or a non-negative integer; got {seed!r}"
        raise ValueError(msg)
    return int(seed)


def check_truncate(truncate: Any) -> int | None:
    if truncate is None:
        return None
    if isinstance(truncate, bool) or not isinstance(truncate, numbers.Integral):
        msg = f"bptt_truncate must be None or an integer >= 0; got {type(truncate).__name__} {truncate!r}"
        raise TypeError(msg)
    if truncate < 0:
        msg = f"bptt_truncate must be None or an integer >= 0; got {truncate!r}"
        raise ValueError(msg)
    return int(truncate)


def check_dtype_name(dtype: Any) -> str:
    """'float32' or 'float64' from that string or a NumPy dtype (np.float32, np.dtype('float64')); None means the
    default, float32 (as in torch; NumPy's own None would mean float64)."""
    if dtype is None:
        return "float32"
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            msg = f"dtype must be one of {DTYPES}; got {dtype!r}"
            raise ValueError(msg)
        return dtype
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        msg = f"dtype must be one of {DTYPES} or the matching NumPy dtype; got {dtype!r}"
        raise TypeError(msg)
    return str(name)


def check_plain_array(value: Any, argname: str) -> None:
    """``value`` is an array (not a scalar, list, ``numpy.matrix`` or masked array, whose indexing and arithmetic
    differ from the Array API's)."""
    if isinstance(value, np.matrix | np.ma.MaskedArray):
        msg = f"{argname} must be a plain array; got {type(value).__module__}.{type(value).__name__} (use np.asarray)"
        raise TypeError(msg)
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        msg = f"{argname} must be an array; got {type(value).__name__} {value!r:.60}"
        raise TypeError(msg)


def check_array(xp: Any, value: Any, argname: str, *, dtype: Any, device: Any) -> None:
    """``value`` is an array of ``xp`` with exactly ``dtype`` on ``device``."""
    check_plain_array(value, argname)
    if not xp.isdtype(value.dtype, "real floating"):
        msg = f"{argname} must have a real floating dtype ({dtype}); got {value.dtype}"
        raise TypeError(msg)
    if value.dtype != dtype:
        msg = f"{argname} must have dtype {dtype} (the parameters' dtype); got {value.dtype}"
        raise TypeError(msg)
    got = device_of(value)
    # Inside jax.jit/grad/vmap an array is a tracer, whose device array-api-compat reports as None: unknown, not
    # different (JAX itself places traced arrays), so there is nothing to compare.
    if got is not None and device is not None and got != device:
        msg = f"{argname} must be on device {device} (the parameters' device); got {got}"
        raise ValueError(msg)


def check_call(
    xp: Any,
    x: Any,
    h0: Any | None,
    lengths: Any | None,
    layout: ParamLayout,
    *,
    batch_first: bool,
    dtype: Any,
    device: Any,
) -> Call:
    """Validate x, h0 and lengths against the parameter layout; lengths come back as int32 (B,) on the device."""
    check_array(xp, x, "x", dtype=dtype, device=device)
    num_steps, batch, unbatched = sequence_sizes(tuple(int(n) for n in x.shape), layout, batch_first=batch_first)
    if h0 is not None:
        _check_h0(xp, h0, layout, batch, unbatched, dtype=dtype, device=device)
    checked = None if lengths is None else check_lengths(xp, lengths, num_steps, batch, unbatched, device=device)
    return Call(x, h0, checked, CallerLayout(batch_first=batch_first and not unbatched, unbatched=unbatched),
                num_steps, batch, lengths_checked=lengths is None or not is_cupy_array(lengths))


def sequence_sizes(shape: tuple[int, ...], layout: ParamLayout, *, batch_first: bool) -> tuple[int, int, bool]:
    """(T, B, unbatched) from x's shape, after checking it against the parameters (any array type's shape)."""
    layout_text = "(B, T, input_size)" if batch_first else "(T, B, input_size)"
    if len(shape) not in (2, 3):
        msg = f"x must be 3-D {layout_text} or 2-D (T, input_size) unbatched; got shape {shape}"
        raise ValueError(msg)
    if shape[-1] != layout.input_size:
        msg = f"x must have input_size={layout.input_size} as its last dimension; got shape {shape}"
        raise ValueError(msg)
    unbatched = len(shape) == 2
    if unbatched:
        num_steps, batch = shape[0], 1
    else:
        num_steps, batch = (shape[1], shape[0]) if batch_first else (shape[0], shape[1])
    if num_steps == 0:
        msg = f"x must have at least one time step; got shape {shape}"
        raise ValueError(msg)
    if batch == 0:
        msg = f"x must have a batch of at least one sequence; got shape {shape}"
        raise ValueError(msg)
    return num_steps, batch, unbatched


def check_h0_shape(shape: tuple[int, ...], layout: ParamLayout, batch: int, unbatched: bool) -> None:
    """h0's shape is (L*D, B, H), or (L*D, H) unbatched."""
    stacked = layout.num_layers * layout.num_directions
    expected = (stacked, layout.hidden_size) if unbatched else (stacked, batch, layout.hidden_size)
    meaning = "(num_layers*num_directions, hidden_size)" if unbatched else (
        "(num_layers*num_directions, batch, hidden_size)"
    )
    if shape != expected:
        msg = f"h0 must have shape {expected} {meaning}; got {shape}"
        raise ValueError(msg)


def _check_h0(
    xp: Any, h0: Any, layout: ParamLayout, batch: int, unbatched: bool, *, dtype: Any, device: Any
) -> None:
    check_array(xp, h0, "h0", dtype=dtype, device=device)
    check_h0_shape(tuple(int(n) for n in h0.shape), layout, batch, unbatched)


def check_lengths(xp: Any, lengths: Any, num_steps: int, batch: int, unbatched: bool, *, device: Any) -> Any:
    """``lengths`` as a (B,) int32 array of ``xp`` on ``device``, after checking every value lies in [1, T].

    With JAX arrays, ``lengths`` may be traced (an argument of a function under ``jax.jit`` or ``jax.vmap``): its
    dtype and shape are checked, but its values exist only when the compiled function runs, so nothing can raise for
    them; they are clipped to [0, T] instead. A length of 0 or less is then an empty sequence (zero outputs, h_n = h0,
    no gradient into its x) and a length above T is T: what the loops' rule "step t is inside sample b when
    t < lengths[b]" gives for such values, made explicit (and safe from int32 wrap-around) by the clip.

    A CuPy array is checked for its dtype and shape only: reading its values back would wait for everything queued
    on the GPU. The CUDA kernels then take it as it is and make a sample whose length lies outside [1, T] NaN; any
    other loop has the values checked by :func:`check_length_values` first.
    """
    if unbatched:
        msg = "lengths must be None for unbatched (2-D) x; give x a batch dimension to use lengths"
        raise ValueError(msg)
    if _is_jax_tracer(lengths) and array_api_compat.is_jax_namespace(xp):
        _check_lengths_kind(lengths.dtype, xp.isdtype(lengths.dtype, "integral"), tuple(lengths.shape), batch)
        # the upper bound in the lengths' own dtype (where T does not fit, e.g. uint8 and T = 300, nothing exceeds T)
        high = min(num_steps, int(xp.iinfo(lengths.dtype).max))
        return xp.astype(xp.clip(lengths, min=0, max=high), xp.int32)
    if is_cupy_array(lengths):
        _check_lengths_kind(lengths.dtype, np.dtype(lengths.dtype).kind in "iu", tuple(lengths.shape), batch)
        on_device = lengths if device_of(lengths) == device else xp.asarray(lengths, device=device)
        return on_device if on_device.dtype == xp.int32 else xp.astype(on_device, xp.int32)
    host = _lengths_to_numpy(lengths)
    _check_lengths_kind(host.dtype, host.dtype.kind in "iu", host.shape, batch)
    _check_lengths_range(host, num_steps)
    return xp.asarray(host.astype(np.int32), device=device)


def check_length_values(lengths: Any, num_steps: int) -> None:
    """The range check that :func:`check_lengths` leaves out for a CuPy array (reads it back to the host)."""
    _check_lengths_range(to_numpy(lengths), num_steps)


def _check_lengths_kind(dtype: Any, integral: bool, shape: tuple[int, ...], batch: int) -> None:
    if not integral:
        msg = f"lengths must hold integers; got dtype {dtype}"
        raise TypeError(msg)
    if shape != (batch,):
        msg = f"lengths must have shape ({batch},) (batch,); got {shape}"
        raise ValueError(msg)


def _check_lengths_range(host: np.ndarray, num_steps: int) -> None:
    low, high = int(host.min()), int(host.max())
    if low < 1 or high > num_steps:
        msg = f"lengths must lie in [1, T={num_steps}]; got values from {low} to {high}"
        raise ValueError(msg)


def _is_jax_tracer(value: Any) -> bool:
    """Whether ``value`` is a traced JAX array (no values on the host). Without jax imported nothing is a tracer, so
    this never imports jax."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(value, jax.core.Tracer)


def _lengths_to_numpy(lengths: Any) -> np.ndarray:
    """``lengths`` on the host: a sequence of ints, or an integer array of any array-API namespace or device (NumPy,
    torch, CuPy, array-api-strict, JAX, ...); the values are checked on the host, so they must be concrete."""
    if isinstance(lengths, list | tuple | range):
        if not all(isinstance(n, numbers.Real) for n in lengths):
            msg = f"lengths must be a flat sequence of integers; got {lengths!r}"
            raise TypeError(msg)
        return np.asarray(lengths)
    if isinstance(lengths, np.ndarray):
        return lengths
    try:
        namespace_of(lengths, argname="lengths")
    except TypeError:
        msg = (
            "lengths must be a sequence of ints or an integer array (of any array-API namespace); "
            f"got {type(lengths).__module__}.{type(lengths).__name__}"
        )
        raise TypeError(msg) from None
    try:
        return np.asarray(to_numpy(lengths))
    except Exception as error:  # a JAX tracer has no values (jax raises its own TypeError subclasses)
        msg = (
            "lengths must hold concrete values, which are checked on the host; got a traced "
            f"{type(lengths).__name__} (traced lengths are taken with JAX arrays x, h0 and params only; otherwise, "
            f"inside jax.jit/vmap, pass lengths as a list or NumPy array closed over, not as a traced argument) "
            f"({type(error).__name__})"
        )
        raise TypeError(msg) from None


def check_grad(
    xp: Any, grad: Any, argname: str, expected_shape: tuple[int, ...], *, dtype: Any, device: Any
) -> None:
    if namespace_of(grad, argname=argname) is not xp:
        msg = f"{argname} must be an array of the forward's namespace {xp.__name__}; got {type(grad).__name__}"
        raise TypeError(msg)
    check_array(xp, grad, argname, dtype=dtype, device=device)
    got = tuple(int(n) for n in grad.shape)
    if got != expected_shape:
        msg = f"{argname} must have shape {expected_shape} (the forward's output); got {got}"
        raise ValueError(msg)
