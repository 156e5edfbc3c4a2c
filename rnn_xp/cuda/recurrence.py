"""The CuPy time loop: fused RawKernels behind the interface of :class:`rnn_xp.loops.TimeLoop`.

- persistent kernels (one launch per layer, both directions) when W_hh fits in the SMs' shared memory (see
  :func:`rnn_xp.cuda._launch.persistent_plan` and ``rnn_persistent.cu``);
- otherwise, per step and direction, one cuBLAS GEMM for the recurrent product and one fused epilogue kernel.

The input projection and the weight gradients stay cuBLAS GEMMs in :mod:`rnn_xp.functional._core`; truncated BPTT
runs on the generic loop. This module is the only one that calls CuPy kernels; it checks what CuPy does not (dtype,
shape, contiguity, device) before every launch.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np

from rnn_xp.cuda import _launch, _module

_I32 = np.int32


PATHS = ("auto", "persistent", "per_step")  # the cost model's choice, or one path forced (tuning)


def forward_layer(layer: Any, *, path: str = "auto") -> list[Any]:
    """Run the recurrence of one layer (all directions); ``layer`` is a :class:`rnn_xp.loops.LayerForward`. ``path``:
    "auto" the persistent kernels where the launch model expects them to win, "persistent" wherever they fit,
    "per_step" never."""
    with layer.projections[0].device:
        return _forward_layer(layer.projections, layer.biases, layer.weights_hh, layer.h0s, layer.lengths,
                              layer.nonlinearity, path)


def backward_layer(layer: Any, *, path: str = "auto") -> tuple[list[Any], list[Any]]:
    """Back-propagate through the recurrence of one layer (a :class:`rnn_xp.loops.LayerBackward`, untruncated)."""
    with layer.states[0].device:
        return _backward_layer(layer.grad_states, layer.states, layer.weights_hh, layer.grad_h_ns, layer.lengths,
                               layer.nonlinearity, path)


def _visit_order(steps: int, direction: int) -> range:
    """The time steps in the order a direction visits them (1: from T-1 down to 0)."""
    return range(steps) if direction == 0 else range(steps - 1, -1, -1)


def _forward_layer(
    projections: list[Any],
    biases: list[Any | None],
    weights_hh: list[Any],
    h0s: list[Any],
    lengths: Any | None,
    nonlinearity: str,
    path: str,
) -> list[Any]:
    import cupy

    states = [cupy.ascontiguousarray(p) for p in projections]
    steps, batch, hidden = (int(n) for n in states[0].shape)
    dtype = states[0].dtype
    directions = len(states)
    weights = [_checked(cupy.ascontiguousarray(w), "weight_hh", (hidden, hidden), dtype) for w in weights_hh]
    h0s = [_checked(cupy.ascontiguousarray(h), "h0", (batch, hidden), dtype) for h in h0s]
    for s in states:
        _checked(s, "projection", (steps, batch, hidden), dtype)
    has_bias = biases[0] is not None
    bias_arrays = [_checked(cupy.ascontiguousarray(b), "bias", (hidden,), dtype) for b in biases] if has_bias else [
        cupy.zeros(1, dtype=dtype)
    ] * directions
    lengths, has_lengths = _lengths(lengths, batch)
    relu = _I32(nonlinearity == "relu")
    plan = _plan(directions, hidden, batch, dtype, path)
    if plan is not None:
        second = 1 if directions == 2 else 0
        _launch_persistent(
            "rnn_forward_persistent", dtype, plan,
            states[0], states[second], bias_arrays[0], bias_arrays[second], _I32(has_bias),
            weights[0], weights[second], h0s[0], h0s[second], lengths, has_lengths,
            cupy.zeros(directions * plan.batch_groups, dtype=cupy.uint32), *_plan_args(plan, steps, batch, hidden),
            relu,
        )
        return states
    # Past the on-chip limit: per step one cuBLAS GEMM for h_{t-1} W_hh^T, then one fused epilogue.
    function = _module.kernel("rnn_forward_step", dtype)
    grid = _launch.step_grid(batch=batch, hidden=hidden)
    recurrent = cupy.empty((batch, hidden), dtype=dtype)
    for direction in range(directions):
        previous = h0s[direction]
        weight_t = weights[direction].T
        for t in _visit_order(steps, direction):
            cupy.matmul(previous, weight_t, out=recurrent)
            function(
                grid,
                (_launch.STEP_THREADS,),
                (
                    states[direction], recurrent, previous, bias_arrays[direction], _I32(has_bias),
                    lengths, has_lengths, _I32(t), _I32(batch), _I32(hidden), relu,
                ),
            )
            previous = states[direction][t]
    return states


def _backward_layer(
    grad_states: list[Any],
    states: list[Any],
    weights_hh: list[Any],
    grad_h_ns: list[Any | None],
    lengths: Any | None,
    nonlinearity: str,
    path: str,
) -> tuple[list[Any], list[Any]]:
    import cupy

    steps, batch, hidden = (int(n) for n in states[0].shape)
    dtype = states[0].dtype
    directions = len(states)
    grads_in = [_checked(cupy.ascontiguousarray(g), "grad_states", (steps, batch, hidden), dtype) for g in grad_states]
    states = [_checked(cupy.ascontiguousarray(s), "states", (steps, batch, hidden), dtype) for s in states]
    weights = [_checked(cupy.ascontiguousarray(w), "weight_hh", (hidden, hidden), dtype) for w in weights_hh]
    lengths, has_lengths = _lengths(lengths, batch)
    relu = _I32(nonlinearity == "relu")
    grad_preacts = [cupy.empty((steps, batch, hidden), dtype=dtype) for _ in range(directions)]
    # The carried gradient d loss / d h_t, starting from grad_h_n; it ends as grad_h0.
    carries = [
        cupy.zeros((batch, hidden), dtype=dtype) if g is None
        else _checked(cupy.array(g, copy=True, order="C"), "grad_h_n", (batch, hidden), dtype)
        for g in grad_h_ns
    ]
    plan = _plan(directions, hidden, batch, dtype, path)
    if plan is not None:
        second = 1 if directions == 2 else 0
        grad_h0s = [cupy.empty((batch, hidden), dtype=dtype) for _ in range(directions)]
        _launch_persistent(
            "rnn_backward_persistent", dtype, plan,
            grads_in[0], grads_in[second], states[0], states[second], weights[0], weights[second],
            carries[0], carries[second], grad_preacts[0], grad_preacts[second], grad_h0s[0], grad_h0s[second],
            lengths, has_lengths, cupy.zeros(directions * plan.batch_groups, dtype=cupy.uint32),
            *_plan_args(plan, steps, batch, hidden), relu,
        )
        return grad_preacts, grad_h0s
    # Past the on-chip limit: per step one cuBLAS GEMM for g_t W_hh, then one fused epilogue.
    function = _module.kernel("rnn_backward_step", dtype)
    grid = _launch.step_grid(batch=batch, hidden=hidden)
    product = cupy.empty((batch, hidden), dtype=dtype)
    for direction in range(directions):
        order = list(reversed(_visit_order(steps, direction)))  # the backward visits the forward's steps in reverse
        common = (grads_in[direction], states[direction], product, carries[direction], grad_preacts[direction],
                  lengths, has_lengths)
        sizes = (_I32(batch), _I32(hidden), relu)
        function(grid, (_launch.STEP_THREADS,), (*common, _I32(0), _I32(order[0]), _I32(1), _I32(order[0]), *sizes))
        for index, t in enumerate(order):
            cupy.matmul(grad_preacts[direction][t], weights[direction], out=product)
            has_next = index + 1 < len(order)
            following = order[index + 1] if has_next else t
            function(
                grid, (_launch.STEP_THREADS,),
                (*common, _I32(1), _I32(t), _I32(has_next), _I32(following), *sizes),
            )
    return grad_preacts, carries


def _plan_args(plan: _launch.PersistentPlan, steps: int, batch: int, hidden: int) -> tuple[Any, ...]:
    """The sizes and split that both persistent kernels take after their counters."""
    return (
        _I32(plan.grid // (plan.row_blocks * plan.batch_groups)), _I32(steps), _I32(batch), _I32(hidden),
        _I32(plan.padded), _I32(plan.row_blocks), _I32(plan.batch_groups), _I32(plan.tiles_per_group),
    )


def _launch_persistent(name: str, dtype: Any, plan: _launch.PersistentPlan, *args: Any) -> None:
    """One cooperative launch of ``name<dtype, TB, LB>``: the plan's grid and dynamic shared memory.

    The grid (at most one block per SM) is co-resident only if one block fits on an SM; CuPy would otherwise clamp
    a cooperative grid with a warning, and the blocks would wait for missing ones. Refuse that here.
    """
    function = _module.kernel(name, dtype, plan.template_args)
    registers = int(getattr(function, "num_regs", 0))
    if registers * _launch.THREADS > _launch.REGISTERS_PER_SM:
        msg = f"{name}: {registers} registers x {_launch.THREADS} threads do not fit one block on an SM"
        raise RuntimeError(msg)
    expression = _module.name_expression(name, dtype, plan.template_args)
    _module.ensure_shared_memory(function, expression, _device_id(), plan.shared_bytes)
    function((plan.grid,), (_launch.THREADS,), args, shared_mem=plan.shared_bytes)


def _plan(directions: int, hidden: int, batch: int, dtype: Any, path: str) -> _launch.PersistentPlan | None:
    if path == "per_step":
        return None
    plan = _cached_plan(_device_id(), directions, hidden, batch, int(np.dtype(str(dtype)).itemsize),
                        path == "persistent")
    if plan is None or not _persistent_builds(str(dtype), plan.template_args):
        return None
    return plan


@functools.cache
def _persistent_builds(dtype: str, template_args: tuple[int, int]) -> bool:
    """Whether both persistent kernels of this instance compile and load here; if not, one warning, and the
    per-step path runs instead (CuPy before 14.2 needs a CUDA toolkit's libcudadevrt for cooperative modules)."""
    try:
        for name in _module.PERSISTENT_KERNELS:
            _module.kernel(name, dtype, template_args)
    except Exception as error:  # CuPy raises CompileException, CUDADriverError, OSError... depending on the cause
        warnings.warn(
            f"rnn_xp: the persistent CUDA kernels could not be built ({type(error).__name__}: {error}); "
            "using the per-step path (cuBLAS GEMM + fused epilogue) instead",
            RuntimeWarning,
            stacklevel=4,
        )
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _cached_plan(device_id: int, directions: int, hidden: int, batch: int, itemsize: int, forced: bool) -> Any:
    import cupy

    attributes = cupy.cuda.Device(device_id).attributes
    choose = _launch.persistent_plan if forced else _launch.choose_plan
    return choose(
        sm_count=int(attributes["MultiProcessorCount"]),
        shared_optin=int(attributes["MaxSharedMemoryPerBlockOptin"]),
        directions=directions,
        hidden=hidden,
        batch=batch,
        itemsize=itemsize,
    )


def _lengths(lengths: Any | None, batch: int) -> tuple[Any, Any]:
    """The kernels' (lengths, has_lengths) arguments: the validated int32 (B,) array, or a placeholder."""
    import cupy

    if lengths is None:
        return cupy.zeros(1, dtype=cupy.int32), _I32(0)
    return _checked(cupy.ascontiguousarray(lengths), "lengths", (batch,), np.dtype("int32")), _I32(1)


def _checked(array: Any, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
    import cupy

    if not isinstance(array, cupy.ndarray):
        msg = f"{name} must be a cupy.ndarray for the CUDA kernels; got {type(array).__name__}"
        raise TypeError(msg)
    if array.dtype != dtype:
        msg = f"{name} must have dtype {dtype} for the CUDA kernels; got {array.dtype}"
        raise TypeError(msg)
    if tuple(array.shape) != shape:
        msg = f"{name} must have shape {shape} for the CUDA kernels; got {tuple(array.shape)}"
        raise ValueError(msg)
    if not array.flags.c_contiguous:
        msg = f"{name} must be C-contiguous for the CUDA kernels"
        raise ValueError(msg)
    if array.device.id != cupy.cuda.Device().id:
        msg = f"{name} is on GPU {array.device.id}; the current device is GPU {cupy.cuda.Device().id}"
        raise ValueError(msg)
    return array


def _device_id() -> int:
    import cupy

    return int(cupy.cuda.Device().id)
