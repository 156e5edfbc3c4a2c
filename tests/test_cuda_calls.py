"""A whole forward and backward through the functional core on the emulated GPU (tests/cuda_emulation): the CUDA
loop's hooks (the kernels fill out, h_n and grad_h0) against the NumPy path, and what one call costs on a GPU, counted
in the stand-in CuPy's ledger: launches, allocations, reads back to the host. Marker ``cuda_emulated``; needs g++."""

from __future__ import annotations

import shutil
import sys
from typing import Any

import numpy as np
import pytest
from cuda_emulation import fake_cupy
from cuda_emulation.harness import Emulated
from helpers import random_params

from rnn_xp._checks import Call, check_length_values, check_lengths
from rnn_xp._layout import CallerLayout
from rnn_xp.cuda import recurrence
from rnn_xp.functional import _core, rnn_backward, rnn_forward, run_forward
from rnn_xp.loops.cuda import CudaLoop
from rnn_xp.params import layout_from_params

pytestmark = [
    pytest.mark.cuda_emulated,
    pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulation needs g++"),
]


@pytest.fixture
def tight(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A 4-SM device with 16 KiB of shared memory: small layers split over several blocks and groups."""
    yield Emulated(monkeypatch, "tight")
    recurrence.clear_caches()


@pytest.fixture
def h100(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An H100's numbers: small layers fit one block."""
    yield Emulated(monkeypatch, "h100")
    recurrence.clear_caches()


def _problem(steps: int, batch: int, hidden: int, *, layers: int = 1, bidirectional: bool = False,
             bias: bool = True, h0: bool = False, lengths: list[int] | None = None, grad_h_n: bool = False,
             dtype: str = "float64", seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    params = random_params(rng, input_size=3, hidden_size=hidden, num_layers=layers, bidirectional=bidirectional,
                           bias=bias, dtype=dtype)
    stacked = layers * (2 if bidirectional else 1)
    return dict(
        params=params,
        x=rng.standard_normal((steps, batch, 3)).astype(dtype),
        h0=rng.standard_normal((stacked, batch, hidden)).astype(dtype) if h0 else None,
        lengths=None if lengths is None else np.asarray(lengths, dtype=np.int32),
        grad_out=rng.standard_normal((steps, batch, (2 if bidirectional else 1) * hidden)).astype(dtype),
        grad_h_n=rng.standard_normal((stacked, batch, hidden)).astype(dtype) if grad_h_n else None,
    )


def _on_gpu(emulated: Emulated, problem: dict[str, Any]) -> dict[str, Any]:
    on = emulated.on_device
    moved = {name: None if value is None else on(value) for name, value in problem.items() if name != "params"}
    moved["params"] = {name: on(value) for name, value in problem["params"].items()}
    return moved


def _core_forward(xp: Any, loop: Any, data: dict[str, Any], nonlinearity: str = "tanh") -> tuple[Any, Any, Any]:
    layout = layout_from_params(data["params"])
    return _core.forward(xp, loop, data["x"], data["params"], layout, data["h0"], data["lengths"], nonlinearity, [],
                         CallerLayout())


def _reference(problem: dict[str, Any], nonlinearity: str = "tanh") -> list[np.ndarray]:
    out, h_n, cache = rnn_forward(problem["x"], problem["params"], problem["h0"], lengths=problem["lengths"],
                                  nonlinearity=nonlinearity, loop="numpy")
    grad_x, grad_h0, grads = rnn_backward(cache, problem["grad_out"], problem["grad_h_n"])
    return [out, h_n, grad_x, grad_h0, *grads.values()]


def _emulated(emulated: Emulated, problem: dict[str, Any], path: str, nonlinearity: str = "tanh") -> list[Any]:
    xp = fake_cupy.make_namespace(emulated.cupy)
    data = _on_gpu(emulated, problem)
    loop = CudaLoop(path)
    out, h_n, cache = _core_forward(xp, loop, data, nonlinearity)
    grad_x, grad_h0, grads = _core.backward(cache, loop, data["grad_out"], data["grad_h_n"], None)
    return [np.asarray(a) for a in (out, h_n, grad_x, grad_h0, *grads.values())]


CASES = {
    "2 layers, bidirectional, lengths, h0, grad_h_n": dict(steps=5, batch=3, hidden=13, layers=2, bidirectional=True,
                                                            h0=True, lengths=[5, 2, 4], grad_h_n=True),
    "relu, no bias, no h0": dict(steps=4, batch=2, hidden=9, bias=False),
    "one step, h0, lengths": dict(steps=1, batch=4, hidden=33, h0=True, lengths=[1, 1, 1, 1], grad_h_n=True),
    "reverse only differs: bidirectional, no lengths": dict(steps=6, batch=5, hidden=20, bidirectional=True),
}


KERNELS = {"registers": "rnn_forward_registers", "persistent": "rnn_forward_persistent",
           "per_step": "rnn_forward_step"}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("path", ["auto", "persistent", "per_step"])
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("device", ["tight", "h100"])
def test_the_hooks_match_the_numpy_path(name: str, path: str, dtype: str, device: str, request: Any) -> None:
    """out, h_n and grad_h0 written by the kernels, W_hh's gradient from the states before each step: all as the
    NumPy path computes them, on each kernel (float32 "auto": the register kernels)."""
    emulated = request.getfixturevalue(device)
    nonlinearity = "relu" if "relu" in name else "tanh"
    problem = _problem(**CASES[name], dtype=dtype, seed=len(name))
    got = _emulated(emulated, problem, path, nonlinearity)
    tolerance = dict(rtol=1e-11, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    for index, (a, b) in enumerate(zip(got, _reference(problem, nonlinearity), strict=True)):
        assert a.shape == b.shape, index
        assert np.all(np.isfinite(a)), f"result {index} has unwritten (NaN) elements"
        np.testing.assert_allclose(a, b, **tolerance, err_msg=f"result {index}")
    case = CASES[name]
    kind = recurrence.kernels_for(2 if case.get("bidirectional") else 1, case["hidden"], case["batch"], dtype,
                                  path).kind
    assert kind == "registers" if (dtype, path) == ("float32", "auto") else kind != "registers"
    assert emulated.launched[KERNELS[kind]] > 0


def _count(emulated: Emulated, call: Any) -> tuple[int, int, int, int, Any]:
    emulated.ledger.reset()
    result = call()
    ledger = emulated.ledger
    return ledger.launches, ledger.allocations, ledger.syncs, ledger.devices, result


@pytest.mark.parametrize(("dtype", "kind"), [("float32", "registers"), ("float64", "persistent")])
@pytest.mark.parametrize("h0", [False, True])
def test_a_forward_and_a_backward_cost_few_launches_and_no_sync(h0: bool, dtype: str, kind: str,
                                                                h100: Emulated) -> None:
    """One layer on the persistent kernel: the forward is the copy of x, the projection GEMM and the kernel (the
    issue's bound: 4; before: 9 launches and 8 allocations); the backward is the kernel, three GEMMs, the bias
    gradient and its copy for the second bias (bound 6; before: 10 launches, 11 allocations). Nothing is read back,
    and each call makes one cupy.cuda.Device (before: 11 in this count)."""
    xp = fake_cupy.make_namespace(h100.cupy)
    data = _on_gpu(h100, _problem(8, 4, 16, h0=h0, grad_h_n=h0, dtype=dtype))
    loop = CudaLoop()
    _core_forward(xp, loop, data)  # first call: compiles, plans
    launches, allocations, syncs, devices, (_out, _h_n, cache) = _count(h100, lambda: _core_forward(xp, loop, data))
    assert h100.ledger.operations == {"copy": 1, "matmul": 1, f"kernel rnn_forward_{kind}": 1}
    assert (launches, allocations, syncs, devices) == (3, 5, 0, 1)  # allocations: x, projection, states, out, h_n
    launches, allocations, syncs, devices, _ = _count(
        h100, lambda: _core.backward(cache, loop, data["grad_out"], data["grad_h_n"], None))
    assert h100.ledger.operations == {f"kernel rnn_backward_{kind}": 1, "matmul": 3, "sum": 1, "copy": 1}
    assert (launches, allocations, syncs, devices) == (6, 7, 0, 1)


def test_counts_with_two_directions_and_lengths(h100: Emulated) -> None:
    """What more directions and lengths add: a projection GEMM per direction; the mask of x (the comparison that
    makes it, zeros and a select, instead of the copy); per direction, three weight GEMMs, a bias sum and copy."""
    xp = fake_cupy.make_namespace(h100.cupy)
    data = _on_gpu(h100, _problem(8, 4, 16, bidirectional=True, lengths=[8, 3, 5, 1], dtype="float32"))
    loop = CudaLoop()
    _core_forward(xp, loop, data)
    launches, _allocations, syncs, _, (_, _, cache) = _count(h100, lambda: _core_forward(xp, loop, data))
    assert h100.ledger.operations == {"arange": 1, "less": 1, "memset": 1, "where": 1, "matmul": 2,
                                      "kernel rnn_forward_registers": 1}
    assert (launches, syncs) == (7, 0)
    launches, _, syncs, _, _ = _count(h100, lambda: _core.backward(cache, loop, data["grad_out"], None, None))
    assert h100.ledger.operations == {"kernel rnn_backward_registers": 1, "matmul": 6, "sum": 2, "copy": 2, "add": 1}
    assert (launches, syncs) == (12, 0)


def test_the_per_step_path_costs_two_launches_a_step(h100: Emulated) -> None:
    xp = fake_cupy.make_namespace(h100.cupy)
    data = _on_gpu(h100, _problem(5, 3, 16, h0=True, dtype="float32"))
    loop = CudaLoop("per_step")
    _core_forward(xp, loop, data)
    launches, _, syncs, _, (_, _, _cache) = _count(h100, lambda: _core_forward(xp, loop, data))
    assert h100.ledger.operations["kernel rnn_forward_step"] == 5 and h100.ledger.operations["gemm"] == 5
    assert (launches, syncs) == (2 + 2 * 5, 0)


def test_the_counters_are_left_at_zero_and_reused(tight: Emulated) -> None:
    """Several blocks a group wait for each other through counters that the kernels reset as they finish: the
    buffer is made (zeroed) once per stream, and a second call on it gives the same bits."""
    xp = fake_cupy.make_namespace(tight.cupy)
    problem = _problem(6, 6, 20, bidirectional=True, h0=True, lengths=[6, 1, 3, 6, 2, 5], grad_h_n=True)
    data = _on_gpu(tight, problem)
    plan = recurrence.kernels_for(2, 20, 6, "float64", "persistent").plan
    assert plan is not None and plan.row_blocks > 1  # the blocks of a group wait for each other
    loop = CudaLoop("persistent")
    runs, buffers = [], []
    for _ in range(2):
        out, h_n, cache = _core_forward(xp, loop, data)
        grads = _core.backward(cache, loop, data["grad_out"], data["grad_h_n"], None)
        runs.append([np.array(a) for a in (out, h_n, grads[0], grads[1], *grads[2].values())])
        (counters,) = recurrence._counter_buffers.values()
        assert not np.any(np.asarray(counters)), np.asarray(counters)
        buffers.append(counters)
    assert buffers[0] is buffers[1]  # zeroed once, on the first launch
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(runs[0][0], _reference(problem)[0], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize(("path", "dtype"), [("auto", "float32"), ("auto", "float64"), ("per_step", "float64")])
def test_a_length_outside_the_steps_makes_its_sample_nan(path: str, dtype: str, tight: Emulated) -> None:
    """A CuPy lengths array is not read back; the kernels (register, persistent, per-step) make a sample whose length
    is outside [1, T] NaN (output, h_n, every gradient of it), and leave the others as they would be."""
    problem = _problem(4, 4, 13, bidirectional=True, lengths=[4, 0, 2, 5], grad_h_n=True, dtype=dtype)
    out, h_n, grad_x, grad_h0, *_ = _emulated(tight, problem, path)
    bad, good = [1, 3], [0, 2]
    for array, batch_axis in ((out, 1), (h_n, 1), (grad_x, 1), (grad_h0, 1)):
        assert np.all(np.isnan(np.take(array, bad, axis=batch_axis)))
        assert np.all(np.isfinite(np.take(array, good, axis=batch_axis)))
    clean = {**problem, "x": problem["x"][:, good], "lengths": problem["lengths"][good],
             "grad_out": problem["grad_out"][:, good], "grad_h_n": problem["grad_h_n"][:, good]}
    expected = _reference(clean)
    tolerance = dict(rtol=1e-11, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(out[:, good], expected[0], **tolerance)
    np.testing.assert_allclose(grad_h0[:, good], expected[3], **tolerance)


def test_cupy_lengths_are_checked_without_a_read_back(h100: Emulated) -> None:
    xp = fake_cupy.make_namespace(h100.cupy)
    on = h100.on_device
    lengths = [on(np.array(values, dtype=dtype)) for values, dtype in
               (([3, 1, 2], np.int32), ([3, 9, 2], np.int64), ([1, 1, 1], np.float32), ([1, 1], np.int32))]
    h100.ledger.reset()
    checked = check_lengths(xp, lengths[0], 3, 3, False, device="cpu")
    assert checked is lengths[0] and h100.ledger.launches == 0
    widened = check_lengths(xp, lengths[1], 3, 3, False, device="cpu")
    assert widened.dtype == np.int32 and h100.ledger.operations == {"astype": 1}
    with pytest.raises(TypeError, match=r"lengths must hold integers; got dtype float32"):
        check_lengths(xp, lengths[2], 3, 3, False, device="cpu")
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\) \(batch,\); got \(2,\)"):
        check_lengths(xp, lengths[3], 3, 3, False, device="cpu")
    assert h100.ledger.syncs == 0
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=3\]; got values from 2 to 9"):
        check_length_values(widened, 3)
    assert h100.ledger.syncs > 0


def test_a_loop_that_cannot_take_unchecked_lengths_has_them_checked(h100: Emulated) -> None:
    """A CuPy lengths array on a loop other than the CUDA kernels' (here the generic one) is read back and checked
    before anything runs."""
    xp = fake_cupy.make_namespace(h100.cupy)
    problem = _on_gpu(h100, _problem(3, 2, 4, dtype="float32"))
    layout = layout_from_params(problem["params"])
    call = Call(problem["x"], None, h100.on_device(np.array([3, 4], dtype=np.int32)), CallerLayout(), 3, 2,
                lengths_checked=False)
    h100.ledger.reset()
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=3\]; got values from 3 to 4"):
        run_forward(xp, call, problem["params"], layout, "tanh", 0.0, None, loop="generic")
    assert h100.ledger.syncs > 0 and "kernel" not in " ".join(h100.ledger.operations)
    assert CudaLoop.CHECKS_LENGTHS


@pytest.mark.parametrize(("path", "dtype"), [("auto", "float32"), ("auto", "float64"), ("persistent", "float64"),
                                             ("per_step", "float64")])
@pytest.mark.parametrize("device", ["tight", "h100"])
def test_split_k_with_the_kernels_bias_sums(path: str, dtype: str, device: str, request: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With SPLIT_K_ROWS set, the kernels (register, persistent, per-step) sum their pre-activation gradients per
    block group into the bias gradient, and the weight gradients are split over chunks of rows: every gradient as
    the NumPy path computes it without the split."""
    emulated = request.getfixturevalue(device)
    problem = _problem(7, 5, 20, layers=2, bidirectional=True, h0=True, lengths=[7, 2, 5, 7, 1], grad_h_n=True,
                       dtype=dtype, seed=3)
    expected = _reference(problem)
    monkeypatch.setattr(_core, "SPLIT_K_ROWS", 4)
    got = _emulated(emulated, problem, path)
    tolerance = dict(rtol=1e-11, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(a, b, **tolerance, err_msg=f"result {index}")
    assert emulated.ledger.operations["sum"] >= 2 * 2 * 2  # per layer and direction: the split's and the bias sums


def test_the_bias_sums_replace_the_reduction_over_all_rows(h100: Emulated, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the flag costs in launches: per direction, each weight gradient a batched GEMM and a sum (two launches
    instead of one), and the bias gradient a sum over the kernel's per-block rows instead of over all T*B rows."""
    xp = fake_cupy.make_namespace(h100.cupy)
    data = _on_gpu(h100, _problem(64, 4, 16, dtype="float32"))
    loop = CudaLoop()
    monkeypatch.setattr(_core, "SPLIT_K_ROWS", 32)
    _, _, cache = _core_forward(xp, loop, data)
    launches, _, syncs, _, _ = _count(h100, lambda: _core.backward(cache, loop, data["grad_out"], None, None))
    assert h100.ledger.operations == {"kernel rnn_backward_registers": 1, "matmul": 3, "sum": 3, "copy": 1}
    assert (launches, syncs) == (8, 0)


def test_the_per_step_loop_allocates_nothing_a_step(h100: Emulated) -> None:
    """Per step and direction one GEMM (raw cuBLAS, into the projection) and one epilogue launch, and nothing
    allocated or read back: the forward's and the backward's allocations do not grow with T."""
    xp = fake_cupy.make_namespace(h100.cupy)
    loop = CudaLoop("per_step")

    def allocations(steps: int) -> tuple[int, int]:
        data = _on_gpu(h100, _problem(steps, 2, 16, bidirectional=True, h0=True, dtype="float32"))
        _core_forward(xp, loop, data)
        _, forward, syncs, devices, (_, _, cache) = _count(h100, lambda: _core_forward(xp, loop, data))
        operations = h100.ledger.operations
        assert (syncs, devices, operations["gemm"], operations["kernel rnn_forward_step"]) == (0, 1, 2 * steps,
                                                                                                2 * steps)
        _, backward, syncs, _, _ = _count(h100, lambda: _core.backward(cache, loop, data["grad_out"], None, None))
        operations = h100.ledger.operations
        assert (syncs, operations["gemm"], operations["kernel rnn_backward_step"]) == (0, 2 * steps, 2 * (steps + 1))
        return forward, backward

    assert allocations(3) == allocations(9)


def test_tuning_times_each_path_that_runs_kernels_of_its_own(h100: Emulated, monkeypatch: pytest.MonkeyPatch) -> None:
    """rnn_xp.tuning.measure_cuda: per size only the paths whose kernels differ there (float32 H=16: register,
    persistent, per-step; float32 H=300 and float64: persistent and per-step), the fastest recorded, and the plan then
    routes a call to it."""
    from rnn_xp import tuning

    timed: list[tuple[str, ...]] = []
    fastest = {"registers": 1.0, "persistent": 2.0, "per_step": 3.0}

    def medians(calls: dict[str, Any], budget: float, synchronize: Any = None) -> dict[str, float]:
        for call in calls.values():
            call()  # each candidate really runs (on the emulated kernels)
        timed.append(tuple(calls))
        return {path: fastest[path] for path in calls}

    monkeypatch.setattr(tuning, "_alternating_medians", medians)
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", fake_cupy.make_namespace(h100.cupy))
    choices = tuning.measure_cuda(("float32", "float64"), (1,), hidden_sizes=(16, 300), batches=(2,), steps=3,
                                  budget=0.0)
    assert timed == [("registers", "persistent", "per_step")] + [("persistent", "per_step")] * 3
    assert [(c.dtype, c.hidden, c.path) for c in choices] == [
        ("float32", 16, "registers"), ("float32", 300, "persistent"), ("float64", 16, "persistent"),
        ("float64", 300, "persistent")]
    assert {c.device for c in choices} == {"Emulated GPU"}
    plan = tuning.Plan(machine=tuning.this_machine(), cuda=choices)
    assert plan.cuda_path("float32", 4, 300, 1) == "persistent" and plan.cuda_path("float32", 1, 20, 1) == "registers"
    assert plan.cuda_path("float32", 1, 20, 2) == "auto"  # no measurement for two directions
