"""The CuPy time loop: fused RawKernels behind the interface of :class:`rnn_xp.loops.TimeLoop` (with its optional
``*_into`` hooks).

- float32 with hidden <= 256: the register kernels (``rnn_registers.cu``, :func:`rnn_xp.cuda._launch.register_plan`),
  one launch per layer, both directions, blocks that never wait for each other;
- otherwise persistent kernels (one launch per layer, both directions) when W_hh fits in the SMs' shared memory (see
  :func:`rnn_xp.cuda._launch.persistent_plan` and ``rnn_persistent.cu``);
- otherwise, per step and direction, one cuBLAS GEMM for the recurrent product and one fused epilogue kernel.

The per-step path (hidden sizes whose W_hh does not fit on chip, e.g. 4096 in float32, or where the launch model
expects it to win, e.g. 2048 at B=64) issues its two launches a step from a Python loop that does nothing else: the
GEMM is a raw cuBLAS call on CuPy's cached handle, on pointers computed by arithmetic (no array views, no checks,
no allocation a step), that adds h_{t-1} W_hh^T into the projection of step t (beta = 1), so the epilogue reads one
array; every other argument of the epilogue is made once per layer call. Chosen over the alternatives by reasoning
(a GPU will decide): a CUDA graph of the loop needs a GEMM kernel of our own, since CuPy refuses cuBLAS during
stream capture, and a graph bakes in the buffers, so it would be captured anew for every call (a step's host cost
again); a persistent kernel that streams W_hh from L2 each step meets every SM reading the whole state every step,
the broadcast that already makes the persistent kernels lose at H=2048, B=64, and needs a grid-wide barrier a step.
cuBLAS keeps its GEMM (the larger part of a step at these sizes), and the host's work a step is expected to fall
below the GPU's own time a step at these sizes (cupy.matmul with its checks, views and fresh scalars did not; this
path has not run on a GPU yet: tools/gpu_session.py holds the predicted figures and measures them).

The input projection and the weight gradients stay cuBLAS GEMMs in :mod:`rnn_xp.functional._core`; truncated BPTT
runs on the generic loop. This module is the only one that calls CuPy kernels.

Host cost. Everything a call does not have to recompute is cached: per (device, directions, hidden, batch, dtype,
path) the choice of kernels, their function handles, launch shapes, dynamic shared memory and size arguments; per
(device, stream) the persistent kernels' arrival counters, which the kernels leave at zero. Absent inputs (biases,
h0, grad_h_n, grad_out, lengths) are null pointers, not placeholder arrays. Nothing is validated here: the public
entry validated every array, and the core hands over arrays it made (contiguous, of one dtype, on one device); only
the caller's parameters and h0 pass through ``cupy.ascontiguousarray``, which returns a contiguous array as it is.
A forward on the register or persistent kernels is then: one allocation for the states (h0 included) per direction
and one launch; a backward: one allocation for the pre-activation gradients per direction and one launch.
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnn_xp.cuda import _launch, _module

_I32 = np.int32

# "auto": the launch model's choice; "registers": the register kernels where they apply (float32, hidden <= 256),
# else as "auto"; "persistent": the shared-memory persistent kernels wherever they fit; "per_step": never on chip.
PATHS = ("auto", "registers", "persistent", "per_step")


@dataclass(frozen=True)
class Kernels:
    """The kernels one (device, directions, hidden, batch, dtype, path) runs, with what their launches need.

    ``kind``: "registers", "persistent" or "per_step"; ``plan``: the register or persistent plan (None on the
    per-step path); ``forward`` / ``backward``: the compiled functions; ``grid``, ``block``, ``shared_bytes``: the
    launch shape; ``sizes``: the size arguments after (directions, steps) that the on-chip kernels take.
    """

    kind: str
    plan: _launch.RegisterPlan | _launch.PersistentPlan | None
    forward: Any
    backward: Any
    grid: tuple[int]
    block: tuple[int]
    shared_bytes: int
    sizes: tuple[Any, ...]


def forward_layer(layer: Any, *, path: str = "auto") -> list[Any]:
    """The protocol's forward (a :class:`rnn_xp.loops.LayerForward`): the states of every direction."""
    directions = len(layer.projections)
    states, _ = _forward(layer.projections, layer.biases, [None] * directions, layer.weights_hh, layer.h0s,
                         layer.lengths, layer.nonlinearity, None, None, 0, path)
    return states


def forward_layer_into(layer: Any, *, path: str = "auto") -> tuple[list[Any], list[Any]]:
    """The forward hook (a :class:`rnn_xp.loops.LayerForwardInto`): (states, previous), with ``layer.out`` and
    ``layer.h_n`` filled. ``path``: one of :data:`PATHS`."""
    return _forward(layer.projections, layer.biases_ih, layer.biases_hh, layer.weights_hh, layer.h0s,
                    layer.lengths, layer.nonlinearity, layer.out, layer.h_n, layer.first, path)


def backward_layer(layer: Any, *, path: str = "auto") -> tuple[list[Any], list[Any]]:
    """The protocol's backward (a :class:`rnn_xp.loops.LayerBackward`, untruncated): (grad_preacts, grad_h0s)."""
    import cupy

    directions = len(layer.states)
    with layer.states[0].device:
        grad_output = (cupy.ascontiguousarray(layer.grad_states[0]) if directions == 1
                       else cupy.concatenate(layer.grad_states, axis=-1))
        grad_h0 = cupy.empty((directions, *layer.states[0].shape[1:]), dtype=layer.states[0].dtype)
    grad_preacts = _backward(grad_output, layer.states, layer.weights_hh, layer.grad_h_ns, layer.lengths,
                             layer.nonlinearity, grad_h0, 0, None, path)
    return grad_preacts, [grad_h0[d] for d in range(directions)]


def backward_layer_into(layer: Any, *, path: str = "auto") -> list[Any]:
    """The backward hook (a :class:`rnn_xp.loops.LayerBackwardInto`): grad_preacts, with ``layer.grad_h0`` (and
    ``layer.grad_bias``, where given: the kernels sum their pre-activation gradients per block, one sum over the
    blocks a direction follows) filled."""
    return _backward(layer.grad_output, layer.states, layer.weights_hh, layer.grad_h_ns, layer.lengths,
                     layer.nonlinearity, layer.grad_h0, layer.first, layer.grad_bias, path)


def _visit_order(steps: int, direction: int) -> range:
    """The time steps in the order a direction visits them (1: from T-1 down to 0)."""
    return range(steps) if direction == 0 else range(steps - 1, -1, -1)


def _forward(
    projections: list[Any],
    biases_ih: list[Any | None],
    biases_hh: list[Any | None],
    weights_hh: list[Any],
    h0s: list[Any | None],
    lengths: Any | None,
    nonlinearity: str,
    out: Any | None,
    h_n: Any | None,
    first: int,
    path: str,
) -> tuple[list[Any], list[Any]]:
    import cupy

    device = projections[0].device
    with device:
        steps, batch, hidden = projections[0].shape
        dtype = projections[0].dtype
        directions = len(projections)
        kernels = _kernels(device.id, directions, hidden, batch, dtype.char, path)
        weights = [cupy.ascontiguousarray(w) for w in weights_hh]
        biases = [[None if b is None else cupy.ascontiguousarray(b) for b in pair] for pair in (biases_ih, biases_hh)]
        h0s = [None if h is None else cupy.ascontiguousarray(h) for h in h0s]
        lengths = None if lengths is None else cupy.ascontiguousarray(lengths)
        # States and the state before each step in one buffer per direction: h0 at the first visited step's end.
        buffers = [cupy.empty((steps + 1, batch, hidden), dtype=dtype) for _ in range(directions)]
        states = [b[1:] if d == 0 else b[:steps] for d, b in enumerate(buffers)]
        previous = [b[:steps] if d == 0 else b[1:] for d, b in enumerate(buffers)]
        initial = [b[0] if d == 0 else b[steps] for d, b in enumerate(buffers)]
        h_ns = [None] * directions if h_n is None else [h_n[first + d] for d in range(directions)]
        relu = _I32(nonlinearity == "relu")
        if kernels.kind == "per_step":
            _forward_per_step(kernels, projections, biases, weights, h0s, states, initial, out, h_ns, lengths, relu)
            return states, previous
        second = 1 if directions == 2 else 0
        arrays = (projections[0], projections[second], biases[0][0], biases[1][0], biases[0][second],
                  biases[1][second], weights[0], weights[second], h0s[0], h0s[second], states[0], states[second],
                  initial[0], initial[second], out, h_ns[0], h_ns[second], lengths)
        kernels.forward(kernels.grid, kernels.block, (*arrays, *_tail(device.id, kernels, directions, steps, relu)),
                        shared_mem=kernels.shared_bytes)
        return states, previous


def _forward_per_step(kernels: Kernels, projections: list[Any], biases: list[list[Any | None]], weights: list[Any],
                      h0s: list[Any | None], states: list[Any], initial: list[Any], out: Any | None,
                      h_ns: list[Any | None], lengths: Any | None, relu: Any) -> None:
    """Per step: projection[t] += h_{t-1} W_hh^T (raw cuBLAS), then one fused epilogue."""
    steps, batch, hidden = projections[0].shape
    directions = len(projections)
    gemm, handle, one, _ = _blas(projections[0].dtype)
    plane = batch * hidden * projections[0].dtype.itemsize
    tail = (_I32(steps), _I32(batch), _I32(hidden), relu)
    for direction in range(directions):
        weight, projected, state = (a.data.ptr for a in (weights[direction], projections[direction], states[direction]))
        arrays = (projections[direction], biases[0][direction], biases[1][direction], h0s[direction],
                  states[direction], initial[direction], out, h_ns[direction], lengths, _I32(direction),
                  _I32(directions))
        h0 = h0s[direction]
        for step, t in enumerate(_visit_order(steps, direction)):
            before = state + (t + 1 if direction else t - 1) * plane if step else None if h0 is None else h0.data.ptr
            if before is not None:  # a first step from h0 = 0 has no recurrent product
                # Column-major: (H x B) += W_hh (as its stored transpose, op T) @ (H x B), leading dimensions H.
                gemm(handle, _OP_T, _OP_N, hidden, batch, hidden, one, weight, hidden, before, hidden, one,
                     projected + t * plane, hidden)
            kernels.forward(kernels.grid, kernels.block, (*arrays, _I32(step), *tail))


def _backward(
    grad_output: Any | None,
    states: list[Any],
    weights_hh: list[Any],
    grad_h_ns: list[Any | None],
    lengths: Any | None,
    nonlinearity: str,
    grad_h0: Any,
    first: int,
    grad_bias: Any | None,
    path: str,
) -> list[Any]:
    import cupy

    device = states[0].device
    with device:
        steps, batch, hidden = states[0].shape
        dtype = states[0].dtype
        directions = len(states)
        kernels = _kernels(device.id, directions, hidden, batch, dtype.char, path)
        weights = [cupy.ascontiguousarray(w) for w in weights_hh]
        grad_output = None if grad_output is None else cupy.ascontiguousarray(grad_output)
        grad_h_ns = [None if g is None else cupy.ascontiguousarray(g) for g in grad_h_ns]
        lengths = None if lengths is None else cupy.ascontiguousarray(lengths)
        grad_preacts = [cupy.empty((steps, batch, hidden), dtype=dtype) for _ in range(directions)]
        grad_h0s = [grad_h0[first + d] for d in range(directions)]
        partials = ([None] * directions if grad_bias is None
                    else [cupy.empty((_bias_rows(kernels, batch), hidden), dtype=dtype) for _ in range(directions)])
        relu = _I32(nonlinearity == "relu")
        if kernels.kind == "per_step":
            _backward_per_step(kernels, grad_output, states, weights, grad_h_ns, grad_preacts, grad_h0s, partials,
                               lengths, relu)
        else:
            second = 1 if directions == 2 else 0
            arrays = (grad_output, states[0], states[second], weights[0], weights[second], grad_h_ns[0],
                      grad_h_ns[second], grad_preacts[0], grad_preacts[second], grad_h0s[0], grad_h0s[second],
                      partials[0], partials[second], lengths)
            kernels.backward(kernels.grid, kernels.block,
                             (*arrays, *_tail(device.id, kernels, directions, steps, relu)),
                             shared_mem=kernels.shared_bytes)
        if grad_bias is not None:
            for direction, partial in enumerate(partials):
                cupy.sum(partial, axis=0, out=grad_bias[direction])
        return grad_preacts


def _bias_rows(kernels: Kernels, batch: int) -> int:
    """Rows of the kernels' bias-gradient sums: one a block group, or a sample on the per-step path."""
    if isinstance(kernels.plan, _launch.RegisterPlan):
        return kernels.plan.groups
    if isinstance(kernels.plan, _launch.PersistentPlan):
        return kernels.plan.batch_groups
    return batch


def _tail(device_id: int, kernels: Kernels, directions: int, steps: int, relu: Any) -> tuple[Any, ...]:
    """The on-chip kernels' arguments after their arrays: the persistent kernels' counters, then the sizes."""
    counters = (_counters(device_id, kernels),) if kernels.kind == "persistent" else ()
    return (*counters, _I32(directions), _I32(steps), *kernels.sizes, relu)


def _backward_per_step(kernels: Kernels, grad_output: Any | None, states: list[Any], weights: list[Any],
                       grad_h_ns: list[Any | None], grad_preacts: list[Any], grad_h0s: list[Any],
                       partials: list[Any | None], lengths: Any | None, relu: Any) -> None:
    """Per step: product = g_t W_hh (raw cuBLAS), then one fused epilogue; the carried gradient lives in grad_h0,
    where it ends."""
    import cupy

    steps, batch, hidden = states[0].shape
    directions = len(states)
    gemm, handle, one, zero = _blas(states[0].dtype)
    plane = batch * hidden * states[0].dtype.itemsize
    product = cupy.empty((batch, hidden), dtype=states[0].dtype)
    tail = (_I32(steps), _I32(batch), _I32(hidden), relu)
    for direction in range(directions):
        weight, gradient = weights[direction].data.ptr, grad_preacts[direction].data.ptr
        common = (grad_output, states[direction])
        rest = (grad_h_ns[direction], grad_h0s[direction], grad_preacts[direction], partials[direction], lengths,
                _I32(direction), _I32(directions))
        kernels.backward(kernels.grid, kernels.block, (*common, None, *rest, _I32(0), *tail))
        for index, t in enumerate(reversed(_visit_order(steps, direction))):  # the forward's steps in reverse
            # Column-major: (H x B) = W_hh^T (W_hh as stored, op N) @ (H x B).
            gemm(handle, _OP_N, _OP_N, hidden, batch, hidden, one, weight, hidden, gradient + t * plane, hidden,
                 zero, product.data.ptr, hidden)
            kernels.backward(kernels.grid, kernels.block, (*common, product, *rest, _I32(index + 1), *tail))


# cuBLAS's operation codes (cublasOperation_t).
_OP_N, _OP_T = 0, 1
# Host scalars for the GEMMs' alpha and beta (pointer mode host), kept alive with their addresses.
_SCALARS = {np.dtype(t): (np.ones((), dtype=t), np.zeros((), dtype=t)) for t in ("float32", "float64")}


def _blas(dtype: Any) -> tuple[Any, int, int, int]:
    """(gemm, handle, address of 1, address of 0) for ``dtype`` on the current device: cuBLAS's [sd]gemm as CuPy
    wraps it (it binds the current stream to the handle each call), CuPy's cached handle in host pointer mode."""
    import cupy
    from cupy_backends.cuda.libs import cublas  # type: ignore[import-not-found, import-untyped, unused-ignore]

    handle = cupy.cuda.device.get_cublas_handle()
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    one, zero = _SCALARS[np.dtype(dtype)]
    gemm = cublas.sgemm if np.dtype(dtype) == np.float32 else cublas.dgemm
    return gemm, handle, one.ctypes.data, zero.ctypes.data


def kernels_for(directions: int, hidden: int, batch: int, dtype: Any, path: str = "auto") -> Kernels:
    """The kernels a layer of these sizes runs on the current device (cached)."""
    import cupy

    return _kernels(int(cupy.cuda.Device().id), directions, hidden, batch, np.dtype(dtype).char, path)


@functools.lru_cache(maxsize=1024)
def _kernels(device_id: int, directions: int, hidden: int, batch: int, dtype_char: str, path: str) -> Kernels:
    dtype = np.dtype(dtype_char)
    if path in ("auto", "registers") and dtype == np.float32:
        plan = _cached_register_plan(device_id, directions, hidden, batch)
        if plan is not None and _builds(_module.REGISTER_KERNELS, str(dtype), plan.template_args):
            forward, backward = _on_chip(_module.REGISTER_KERNELS, dtype, plan, device_id, plan.threads)
            return Kernels("registers", plan, forward, backward, (plan.grid,), (plan.threads,), plan.shared_bytes,
                           (_I32(batch), _I32(hidden), _I32(plan.groups)))
    persistent = None if path == "per_step" else _cached_plan(device_id, directions, hidden, batch, dtype.itemsize,
                                                               path == "persistent")
    if persistent is not None and _builds(_module.PERSISTENT_KERNELS, str(dtype), persistent.template_args):
        forward, backward = _on_chip(_module.PERSISTENT_KERNELS, dtype, persistent, device_id, _launch.THREADS)
        sizes = (_I32(persistent.padded), _I32(persistent.row_blocks), _I32(persistent.batch_groups),
                 _I32(persistent.tiles_per_group))
        return Kernels("persistent", persistent, forward, backward, (persistent.grid,), (_launch.THREADS,),
                       persistent.shared_bytes, (_I32(batch), _I32(hidden), *sizes))
    return Kernels("per_step", None, _module.kernel("rnn_forward_step", dtype),
                   _module.kernel("rnn_backward_step", dtype), _launch.step_grid(batch=batch, hidden=hidden),
                   (_launch.STEP_THREADS,), 0, ())


def _on_chip(names: tuple[str, str], dtype: Any, plan: Any, device_id: int, threads: int) -> tuple[Any, Any]:
    """The forward and backward functions of an on-chip plan, each checked to fit one block on an SM and given the
    plan's dynamic shared memory."""
    functions = []
    for name in names:
        function = _module.kernel(name, dtype, plan.template_args)
        _fits_one_block(name, function, threads)
        _module.ensure_shared_memory(function, _module.name_expression(name, dtype, plan.template_args), device_id,
                                     plan.shared_bytes)
        functions.append(function)
    return functions[0], functions[1]


def _fits_one_block(name: str, function: Any, threads: int) -> None:
    """A block that does not fit an SM's registers fails to launch; the persistent grid (at most one block per SM)
    would also not be co-resident (CuPy clamps a cooperative grid with a warning, and the blocks would wait for
    missing ones). Refuse that here, with the numbers."""
    registers = int(getattr(function, "num_regs", 0))
    if registers * threads > _launch.REGISTERS_PER_SM:
        msg = f"{name}: {registers} registers x {threads} threads do not fit one block on an SM"
        raise RuntimeError(msg)


@functools.cache
def _builds(names: tuple[str, ...], dtype: str, template_args: tuple[int, int]) -> bool:
    """Whether these kernels of this instance compile and load here; if not, one warning, and the next path runs
    instead (CuPy before 14.2 needs a CUDA toolkit's libcudadevrt for the persistent kernels' cooperative module)."""
    try:
        for name in names:
            _module.kernel(name, dtype, template_args)
    except Exception as error:  # CuPy raises CompileException, CUDADriverError, OSError... depending on the cause
        registers = names == _module.REGISTER_KERNELS
        kind, instead = (("register", "the persistent kernels or the per-step path") if registers
                         else ("persistent", "the per-step path (cuBLAS GEMM + fused epilogue)"))
        warnings.warn(
            f"rnn_xp: the {kind} CUDA kernels could not be built ({type(error).__name__}: {error}); using {instead} "
            "instead",
            RuntimeWarning,
            stacklevel=6,
        )
        return False
    return True


def _attributes(device_id: int) -> tuple[int, int]:
    import cupy

    attributes = cupy.cuda.Device(device_id).attributes
    return int(attributes["MultiProcessorCount"]), int(attributes["MaxSharedMemoryPerBlockOptin"])


@functools.lru_cache(maxsize=1024)
def _cached_register_plan(device_id: int, directions: int, hidden: int, batch: int) -> Any:
    sm_count, shared_optin = _attributes(device_id)
    return _launch.register_plan(sm_count=sm_count, shared_optin=shared_optin, directions=directions, hidden=hidden,
                                 batch=batch)


@functools.lru_cache(maxsize=1024)
def _cached_plan(device_id: int, directions: int, hidden: int, batch: int, itemsize: int, forced: bool) -> Any:
    sm_count, shared_optin = _attributes(device_id)
    choose = _launch.persistent_plan if forced else _launch.choose_plan
    return choose(sm_count=sm_count, shared_optin=shared_optin, directions=directions, hidden=hidden, batch=batch,
                  itemsize=itemsize)


_counter_lock = threading.Lock()
_counter_buffers: dict[tuple[int, int], Any] = {}


def _counters(device_id: int, kernels: Kernels) -> Any:
    """The persistent kernels' arrival counters for the current stream of ``device_id``: zeroed once, left at zero by
    every launch (each group's last arrival resets its counter), so launches that follow each other on one stream
    share them. Another stream gets its own (launches on two streams may overlap)."""
    import cupy

    plan = kernels.plan
    assert isinstance(plan, _launch.PersistentPlan)
    needed = 2 * plan.batch_groups  # directions * groups, at most
    key = (device_id, int(cupy.cuda.get_current_stream().ptr))
    buffer = _counter_buffers.get(key)
    if buffer is None or buffer.size < needed:
        with _counter_lock:
            buffer = _counter_buffers.get(key)
            if buffer is None or buffer.size < needed:
                buffer = cupy.zeros(max(needed, 64), dtype=cupy.uint32)
                _counter_buffers[key] = buffer
    return buffer


def clear_caches() -> None:
    """Forget every cached choice, function and counter buffer (tests that swap CuPy for a stand-in)."""
    _kernels.cache_clear()
    _cached_plan.cache_clear()
    _cached_register_plan.cache_clear()
    _builds.cache_clear()
    with _counter_lock:
        _counter_buffers.clear()
