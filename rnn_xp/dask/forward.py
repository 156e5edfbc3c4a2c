"""Batch-sharded inference: ``rnn_forward`` over a dask array chunked along its batch axis.

Each batch chunk is one task that calls :func:`rnn_xp.functional.rnn_forward` on its block (the CPU loop the plan
picks, or CuPy's kernels, by the chunk's type). The parameters enter the graph once, as a single key that every chunk's
task depends on, so a worker receives them once per call however many chunks it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import array_api_compat
import dask
import dask.array as da
import numpy as np
from dask.array.utils import meta_from_array
from dask.base import tokenize

from rnn_xp._arrays import namespace_of
from rnn_xp._checks import check_bool, check_h0_shape, check_lengths, check_nonlinearity, sequence_sizes
from rnn_xp.functional import rnn_forward as functional_forward
from rnn_xp.params import ParamLayout, layout_from_params

PARAMS_KEY_PREFIX = "rnn-params-"


def rnn_forward(
    x: Any,
    params: Mapping[str, Any],
    h0: Any | None = None,
    *,
    lengths: Any | None = None,
    nonlinearity: str = "tanh",
    batch_first: bool = False,
) -> tuple[Any, Any]:
    """Lazy ``(out, h_n)`` of a stacked Elman RNN over a batch-sharded dask array, as
    :func:`rnn_xp.functional.rnn_forward` computes them on one machine.

    Parameters
    ----------
    x : dask array, shape (T, B, I), or (B, T, I) with ``batch_first``, or (T, I) unbatched
        Chunked along the batch axis only: time and features must each be one chunk (a ValueError says how to
        rechunk otherwise). Its chunks are NumPy or CuPy arrays, of the parameters' type and dtype.
    params : mapping of torch-named NumPy or CuPy arrays
        As for :func:`rnn_xp.functional.rnn_forward`; they enter the task graph once.
    h0 : dask array or array of the parameters' type, shape (L*D, B, H) (or (L*D, H) unbatched), optional
        Aligned to x's batch chunks (rechunked along axis 1 if needed).
    lengths : dask array, NumPy array or sequence of ints, shape (B,), optional
        Each sequence's length in [1, T], aligned to x's batch chunks. NumPy values are checked now; the values
        of a dask array are checked by each chunk's task when it runs (a ValueError at compute time).
    nonlinearity : {"tanh", "relu"}
    batch_first : bool

    Returns
    -------
    out : dask array, shape (T, B, D*H) (or (B, T, D*H), or (T, D*H)), chunked like x along the batch
    h_n : dask array, shape (L*D, B, H) (or (L*D, H)), chunked along axis 1 like x's batch

    Raises
    ------
    TypeError
        x is not a dask array; chunk type or dtype differ from the parameters'; non-integer lengths.
    ValueError
        Shapes that do not match the parameters, chunks along time or features, unknown chunk sizes, bad options.

    Examples
    --------
    >>> import dask.array as da, numpy as np, rnn_xp
    >>> from rnn_xp.dask import rnn_forward
    >>> params = rnn_xp.RNN(3, 4, dtype="float64", seed=0).state_dict()
    >>> x = da.from_array(np.ones((5, 6, 3)), chunks=(5, 2, 3))   # 3 chunks of 2 sequences
    >>> out, h_n = rnn_forward(x, params)
    >>> out.chunks[1], h_n.chunks[1]
    ((2, 2, 2), (2, 2, 2))
    """
    if not isinstance(x, da.Array):
        msg = (
            f"x must be a dask array chunked along its batch axis; got {type(x).__module__}.{type(x).__name__} "
            "(wrap it with dask.array.from_array, or use rnn_xp.functional.rnn_forward on one machine)"
        )
        raise TypeError(msg)
    layout = layout_from_params(params)
    parameters = {name: params[name] for name in layout.names()}
    xp = namespace_of(*parameters.values(), argname="params")
    dtype = parameters[layout.names()[0]].dtype
    nonlinearity = check_nonlinearity(nonlinearity)
    batch_first = check_bool(batch_first, "batch_first")
    _check_x(x, xp, dtype, layout, batch_first)
    if x.ndim == 2:  # one sequence: a batch of one, as the functional core treats it
        if lengths is not None:
            msg = "lengths must be None for unbatched (2-D) x; give x a batch dimension to use lengths"
            raise ValueError(msg)
        h0_batched = None if h0 is None else _unbatched_h0(h0, layout)[:, None, :]
        out, h_n = _sharded(x[:, None, :], parameters, layout, h0_batched, None, nonlinearity, False)
        return out[:, 0, :], h_n[:, 0, :]
    return _sharded(x, parameters, layout, h0, lengths, nonlinearity, batch_first)


def _check_x(x: Any, xp: Any, dtype: Any, layout: ParamLayout, batch_first: bool) -> None:
    chunk_xp = array_api_compat.array_namespace(x._meta)
    if chunk_xp is not xp:
        msg = (
            f"x's chunks must be arrays of the parameters' type ({xp.__name__}); got chunks of "
            f"{type(x._meta).__module__}.{type(x._meta).__name__}"
        )
        raise TypeError(msg)
    if x.dtype != dtype:
        msg = f"x must have dtype {dtype} (the parameters' dtype); got {x.dtype}"
        raise TypeError(msg)
    shape = tuple(x.shape)
    if len(shape) in (2, 3) and any(np.isnan(n) for n in shape):
        msg = f"x has unknown chunk sizes {x.chunks}; call x.compute_chunk_sizes() first"
        raise ValueError(msg)
    sequence_sizes(tuple(int(n) for n in shape), layout, batch_first=batch_first)
    batch_axis = None if x.ndim == 2 else (0 if batch_first else 1)
    split = {axis: x.chunks[axis] for axis in range(x.ndim) if axis != batch_axis and len(x.chunks[axis]) > 1}
    if split:
        names = {0: "time" if batch_axis != 0 else "batch", 1: "time" if batch_axis == 0 else "batch",
                 x.ndim - 1: "features"}
        which = ", ".join(f"{names[axis]} (axis {axis}: {chunks})" for axis, chunks in split.items())
        fix = ", ".join(f"{axis}: -1" for axis in split)
        msg = (
            f"x must be one chunk along time and features and chunked along the batch only; it is split along "
            f"{which}. Rechunk it first: x = x.rechunk({{{fix}}})"
        )
        raise ValueError(msg)


def _unbatched_h0(h0: Any, layout: ParamLayout) -> Any:
    check_h0_shape(tuple(int(n) for n in h0.shape), layout, 1, unbatched=True)
    return h0 if isinstance(h0, da.Array) else da.from_array(h0, chunks=-1)


def _sharded(
    x: Any,
    params: dict[str, Any],
    layout: ParamLayout,
    h0: Any | None,
    lengths: Any | None,
    nonlinearity: str,
    batch_first: bool,
) -> tuple[Any, Any]:
    batch_axis = 0 if batch_first else 1
    num_steps = int(x.shape[1 - batch_axis])
    batch_chunks = x.chunks[batch_axis]
    stacked, hidden = layout.num_layers * layout.num_directions, layout.hidden_size
    h0_blocks = _h0_blocks(h0, stacked, batch_chunks, hidden, x.dtype)
    length_blocks = _length_blocks(lengths, num_steps, batch_chunks)
    # One key for the parameters: every chunk's task depends on it, none embeds a copy.
    shipped = dask.delayed(params, pure=True, traverse=False, name=PARAMS_KEY_PREFIX + tokenize(params))
    x_blocks = x.to_delayed().reshape(-1)
    meta = meta_from_array(x._meta, ndim=3, dtype=x.dtype)
    outs, states = [], []
    for index, rows in enumerate(batch_chunks):
        result = dask.delayed(_forward_block, pure=True, nout=2)(
            x_blocks[index], shipped, h0_blocks[index], length_blocks[index], nonlinearity, batch_first
        )
        out_shape = (rows, num_steps, layout.num_directions * hidden) if batch_first else (
            num_steps, rows, layout.num_directions * hidden
        )
        outs.append(da.from_delayed(result[0], shape=out_shape, dtype=x.dtype, meta=meta))
        states.append(da.from_delayed(result[1], shape=(stacked, rows, hidden), dtype=x.dtype, meta=meta))
    return da.concatenate(outs, axis=batch_axis), da.concatenate(states, axis=1)


def _forward_block(
    x: Any, params: dict[str, Any], h0: Any | None, lengths: Any | None, nonlinearity: str, batch_first: bool
) -> tuple[Any, Any]:
    """One chunk on its worker: the functional forward (which picks the chunk type's fast loop)."""
    out, h_n, _ = functional_forward(x, params, h0, lengths=lengths, nonlinearity=nonlinearity,
                                     batch_first=batch_first)
    return out, h_n


def _h0_blocks(h0: Any | None, stacked: int, batch_chunks: tuple[int, ...], hidden: int, dtype: Any) -> list[Any]:
    if h0 is None:
        return [None] * len(batch_chunks)
    expected = (stacked, sum(batch_chunks), hidden)
    if tuple(h0.shape) != expected:
        msg = f"h0 must have shape {expected} (num_layers*num_directions, batch, hidden_size); got {tuple(h0.shape)}"
        raise ValueError(msg)
    if h0.dtype != dtype:
        msg = f"h0 must have dtype {dtype} (the parameters' dtype); got {h0.dtype}"
        raise TypeError(msg)
    chunks = ((stacked,), batch_chunks, (hidden,))
    blocks = h0.rechunk(chunks) if isinstance(h0, da.Array) else da.from_array(h0, chunks=chunks)
    return list(blocks.to_delayed().reshape(-1))


def _length_blocks(lengths: Any | None, num_steps: int, batch_chunks: tuple[int, ...]) -> list[Any]:
    if lengths is None:
        return [None] * len(batch_chunks)
    batch = sum(batch_chunks)
    if isinstance(lengths, da.Array):
        if not np.issubdtype(lengths.dtype, np.integer):
            msg = f"lengths must hold integers; got dtype {lengths.dtype}"
            raise TypeError(msg)
        if tuple(lengths.shape) != (batch,):
            msg = f"lengths must have shape ({batch},) (batch,); got {tuple(lengths.shape)}"
            raise ValueError(msg)
        blocks = lengths.rechunk((batch_chunks,))
    else:  # known now: checked once here, on the client
        host = check_lengths(array_api_compat.numpy, lengths, num_steps, batch, False, device="cpu")
        blocks = da.from_array(np.asarray(host), chunks=(batch_chunks,))
    return list(blocks.to_delayed().reshape(-1))
