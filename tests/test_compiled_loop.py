"""The compiled CPU loop (numba) against torch over the parity grid, its padding/NaN semantics, the float32 tanh, and
the explicit loop switch."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from helpers import GRID, PARITY_RTOL, assert_close, case_id, make_case, random_params, run_rnn_xp, torch_reference

import rnn_xp
from rnn_xp import _plan
from rnn_xp._plan import choose_loop
from rnn_xp.functional import rnn_backward, rnn_forward
from rnn_xp.loops import LayerForward, compiled, numpy_inplace, numpy_transposed

pytest.importorskip("numba")
pytest.importorskip("torch")


def _as(data: dict[str, Any], dtype: str) -> dict[str, Any]:
    cast = {k: v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v for k, v in data.items()}
    cast["params"] = {k: v.astype(dtype) for k, v in data["params"].items()}
    return cast


def _check(ours: dict[str, Any], reference: dict[str, Any], rtol: float) -> None:
    for name in ("out", "h_n", "grad_x"):
        assert_close(ours[name], reference[name], rtol=rtol)
    if reference["grad_h0"] is not None:
        assert_close(ours["grad_h0"], reference["grad_h0"], rtol=rtol)
    assert list(ours["grads"]) == list(reference["grads"])
    for name, grad in reference["grads"].items():
        assert_close(ours["grads"][name], grad, rtol=rtol)


@pytest.mark.parametrize("case", GRID, ids=[case_id(c) for c in GRID])
def test_compiled_loop_matches_torch_in_float64_over_the_grid(case: dict[str, Any]) -> None:
    data = make_case(case, seed=3)
    ours = run_rnn_xp(np, case, data, loop="compiled")
    assert ours["out"].dtype == np.float64
    _check(ours, torch_reference(case, data), PARITY_RTOL)


@pytest.mark.parametrize("case", GRID[::3], ids=[case_id(c) for c in GRID[::3]])
def test_compiled_loop_matches_torch_in_float32(case: dict[str, Any]) -> None:
    """float32 (rational tanh) against torch's float64 result: within 1e-5 of the largest value."""
    data = make_case(case, seed=4, steps=12)
    ours = run_rnn_xp(np, case, _as(data, "float32"), loop="compiled")
    assert ours["out"].dtype == np.float32
    _check(ours, torch_reference(case, data), 1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_compiled_loop_matches_torch_on_wider_layers_and_long_sequences(dtype: str, bidirectional: bool) -> None:
    """Sizes past the kernels' 4-row blocks (H = 37, 130), and 300 steps, so errors would accumulate."""
    case = dict(num_layers=2, bidirectional=bidirectional, nonlinearity="tanh", bias=True, batch_first=False,
                with_h0=True, with_lengths=True, unbatched=False)
    rng = np.random.default_rng(5)
    for steps, hidden in ((300, 37), (20, 130)):
        data = make_case(case, seed=int(rng.integers(100)), steps=steps)
        data["params"] = random_params(rng, input_size=5, hidden_size=hidden, num_layers=2,
                                       bidirectional=bidirectional)
        directions = 2 if bidirectional else 1
        data["h0"] = rng.standard_normal((2 * directions, 4, hidden))
        data["grad_out"] = rng.standard_normal((steps, 4, directions * hidden))
        data["grad_h_n"] = rng.standard_normal((2 * directions, 4, hidden))
        data["lengths"] = np.array([steps, 1, steps // 2, steps - 1])
        ours = run_rnn_xp(np, case, _as(data, dtype), loop="compiled")
        _check(ours, torch_reference(case, data), PARITY_RTOL if dtype == "float64" else 1e-5)


@pytest.mark.parametrize("case", GRID[1::4], ids=[case_id(c) for c in GRID[1::4]])
def test_the_transposed_numpy_loop_matches_torch(case: dict[str, Any]) -> None:
    """Each step's product written W_hh h^T, (H, B), and added back transposed."""
    data = make_case(case, seed=7)
    _check(run_rnn_xp(np, case, data, loop="numpy_transposed"), torch_reference(case, data), PARITY_RTOL)
    _check(run_rnn_xp(np, case, _as(data, "float32"), loop="numpy_transposed"), torch_reference(case, data), 1e-5)


@pytest.mark.parametrize("case", GRID[::5], ids=[case_id(c) for c in GRID[::5]])
def test_forced_numpy_loop_matches_torch(case: dict[str, Any]) -> None:
    data = make_case(case, seed=6)
    _check(run_rnn_xp(np, case, data, loop="numpy"), torch_reference(case, data), PARITY_RTOL)
    _check(run_rnn_xp(np, case, _as(data, "float32"), loop="numpy"), torch_reference(case, data), 1e-5)


def test_float32_tanh_is_within_four_ulp_of_one() -> None:
    from rnn_xp.loops.numba_kernels import tanh_rational

    x = np.concatenate([np.linspace(-12, 12, 200_001), np.geomspace(1e-30, 1e-2, 1000), [0.0, -0.0, 1e30, -1e30]])
    x = x.astype(np.float32)
    approx = np.array([tanh_rational(v) for v in x[::7]] + [tanh_rational(v) for v in x[-1004:]], dtype=np.float32)
    exact = np.tanh(np.concatenate([x[::7], x[-1004:]]).astype(np.float64))
    assert np.max(np.abs(approx - exact)) <= 4 * float(np.finfo(np.float32).eps)
    small = np.abs(exact) < 1e-2
    assert np.max(np.abs(approx[small] - exact[small]) / np.maximum(np.abs(exact[small]), 1e-300)) <= 1e-6
    assert np.all(np.abs(approx) <= 1)
    assert tanh_rational(np.float32(np.inf)) == 1 and tanh_rational(np.float32(-np.inf)) == -1
    assert np.isnan(tanh_rational(np.float32(np.nan)))


def test_relu_keeps_nan_and_padding_is_selected_in_the_compiled_loop() -> None:
    rng = np.random.default_rng(7)
    params = random_params(rng, input_size=3, hidden_size=4)
    x = rng.standard_normal((5, 2, 3))
    grad_out = rng.standard_normal((5, 2, 4))
    for nonlinearity in ("tanh", "relu"):
        def run(x: np.ndarray, grad_out: np.ndarray, nonlinearity: str = nonlinearity) -> list[np.ndarray]:
            out, _, cache = rnn_forward(x, params, lengths=[5, 2], nonlinearity=nonlinearity, loop="compiled")
            grad_x, grad_h0, grads = rnn_backward(cache, grad_out)
            return [out, grad_x, grad_h0, *grads.values()]

        clean = run(x, grad_out)
        poisoned_x, poisoned_grad = x.copy(), grad_out.copy()
        poisoned_x[2:, 1] = np.nan
        poisoned_x[3, 1, 0] = np.inf
        poisoned_grad[2:, 1] = np.nan
        for a, b in zip(run(poisoned_x, poisoned_grad), clean, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    x_nan = x.copy()
    x_nan[1, 0, :] = np.nan
    out, _, _ = rnn_forward(x_nan, params, nonlinearity="relu", loop="compiled")
    assert np.all(np.isnan(out[1:, 0, :])) and np.all(np.isfinite(out[:, 1, :]))


def test_an_infinite_gradient_into_a_dead_relu_unit_gives_zero_in_the_compiled_loop() -> None:
    rng = np.random.default_rng(8)
    params = random_params(rng, input_size=2, hidden_size=3)
    params["weight_hh_l0"][:] = 0.0
    params["bias_ih_l0"][:] = [-5.0, 0.1, 0.2]
    params["weight_ih_l0"][0] = 0.0
    out, _, cache = rnn_forward(rng.uniform(0, 1, (3, 1, 2)), params, nonlinearity="relu", loop="compiled")
    assert np.all(out[:, 0, 0] == 0)
    grad_out = np.zeros((3, 1, 3))
    grad_out[:, 0, 0] = np.inf
    grad_x, _, grads = rnn_backward(cache, grad_out)
    assert np.all(grad_x == 0) and all(np.all(g == 0) for g in grads.values())


def test_the_loop_switch_forces_any_cpu_loop() -> None:
    assert choose_loop(np, loop="compiled") is compiled
    assert choose_loop(np, loop="numpy", batch=1, hidden=32) is numpy_inplace
    assert choose_loop(np, loop="numpy_transposed", batch=1, hidden=32) is numpy_transposed
    rnn = rnn_xp.RNN(3, 4, loop="compiled", seed=0)
    rnn(np.zeros((5, 1, 3), dtype=np.float32))
    assert rnn._cache is not None and rnn._cache.loop is compiled


def test_the_plan_picks_compiled_at_small_batch_and_numpy_at_large() -> None:
    assert choose_loop(np, dtype="float32", batch=1, hidden=32) is compiled
    assert choose_loop(np, dtype="float32", batch=512, hidden=1024) is numpy_inplace
    _, _, cache = rnn_forward(np.zeros((200, 1, 3)), random_params(np.random.default_rng(0), input_size=3,
                                                                     hidden_size=16))
    assert cache.loop is compiled


def test_compiled_loop_on_other_arrays_or_without_numba_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    params = {k: torch.tensor(v) for k, v in random_params(np.random.default_rng(0), input_size=2,
                                                           hidden_size=3).items()}
    with pytest.raises(ValueError, match=r"loop='compiled' runs on NumPy arrays only; got arrays of .*torch"):
        rnn_forward(torch.zeros((4, 1, 2), dtype=torch.float64), params, loop="compiled")
    with pytest.raises(ValueError, match=r"loop='numpy_transposed' runs on NumPy arrays only"):
        rnn_forward(torch.zeros((4, 1, 2), dtype=torch.float64), params, loop="numpy_transposed")
    monkeypatch.setattr(_plan, "numba_available", lambda: False)
    with pytest.raises(ValueError, match=r"loop='compiled' needs numba"):
        choose_loop(np, loop="compiled")
    assert choose_loop(np, loop="numpy_transposed") is numpy_transposed  # NumPy calls only
    assert choose_loop(np, dtype="float32", batch=1, hidden=32) is numpy_inplace  # auto falls back


def test_import_rnn_xp_does_not_import_numba() -> None:
    code = "import sys, rnn_xp, rnn_xp.functional; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_info_reports_the_compiled_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from rnn_xp.benchmark import machine

    assert machine.paths()["cpu (compiled loop, numba)"] == "available"
    monkeypatch.setattr(machine, "_found", lambda module: module != "numba")
    assert machine.paths()["cpu (compiled loop, numba)"] == "unavailable: numba not installed"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_sample_forward_agrees_with_the_numpy_loop(dtype: str) -> None:
    """B=1, H=261 (past the four-row blocks): dot products with the rows of W_hh, against the NumPy loop; a NaN in
    one unit's projection stays in that unit."""
    rng = np.random.default_rng(21)
    steps, hidden = 7, 261
    weight = (rng.standard_normal((hidden, hidden)) / 16).astype(dtype)
    projection = rng.standard_normal((steps, 1, hidden)).astype(dtype)
    projection[3, 0, 5] = np.nan
    bias, h0 = rng.standard_normal(hidden).astype(dtype), rng.standard_normal((1, hidden)).astype(dtype)

    def run(loop: Any) -> np.ndarray:
        layer = LayerForward([projection.copy()], [bias], [weight], [h0], None, "tanh")
        result: np.ndarray = loop.forward_layer(np, layer)[0]
        return result

    ours, plain = run(compiled), run(numpy_inplace)
    assert ours.dtype == np.dtype(dtype)
    assert np.isnan(ours[3, 0, 5]) and np.isfinite(ours[:3]).all() and np.isfinite(np.delete(ours[3, 0], 5)).all()
    finite = np.isfinite(plain)
    np.testing.assert_array_equal(finite, np.isfinite(ours))
    np.testing.assert_allclose(ours[finite], plain[finite], rtol=0, atol=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 3, 6])
def test_the_compiled_loop_gives_the_same_bits_whatever_the_memory_alignment(dtype: str, batch: int) -> None:
    """The one-sample dot products reorder their sums for the vector width: the order must not follow where the
    arrays start in memory (a weight from state_dict(), pickle or deepcopy lands anywhere)."""
    from rnn_xp._arrays import aligned_empty

    rng = np.random.default_rng(22)
    hidden, steps = 67, 5
    itemsize = np.dtype(dtype).itemsize
    weight = (rng.standard_normal((hidden, hidden)) / 8).astype(dtype)
    projection = rng.standard_normal((steps, batch, hidden)).astype(dtype)
    results = []
    for offset in range(0, 64, itemsize):
        storage = aligned_empty((hidden * hidden + 64 // itemsize,), dtype)
        placed = storage[offset // itemsize:offset // itemsize + hidden * hidden].reshape(hidden, hidden)
        placed[...] = weight
        layer = LayerForward([projection.copy()], [None], [placed], [np.zeros((batch, hidden), dtype)], None, "tanh")
        results.append(compiled.forward_layer(np, layer)[0])
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])
