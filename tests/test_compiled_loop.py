"""The compiled CPU loop (numba) against torch over the parity grid, its padding/NaN semantics, the float32 tanh, the
explicit loop switch and the measured cost model that picks it."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from helpers import GRID, PARITY_RTOL, assert_close, case_id, make_case, random_params, run_rnn_xp, torch_reference

import rnn_xp
from rnn_xp import _cost
from rnn_xp._selection import select_loop
from rnn_xp.functional import rnn_backward, rnn_forward
from rnn_xp.loops import compiled, numpy_inplace

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


@pytest.mark.parametrize("cores", [2, 3])
@pytest.mark.parametrize("case", GRID[1::9], ids=[case_id(c) for c in GRID[1::9]])
def test_compiled_loop_split_over_threads_matches_torch(case: dict[str, Any], cores: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Directions and batch slices on threads (forced: no minimum work; 2 or 3 cores, so uneven slices)."""
    monkeypatch.setattr(compiled, "MIN_PARALLEL_WORK", 0)
    monkeypatch.setattr(compiled, "_cores", lambda: cores)
    units = compiled._units(2 if case["bidirectional"] else 1, 6, 4, 7)
    assert len(units) == (2 if case["bidirectional"] else cores)
    data = make_case(case, seed=9)
    _check(run_rnn_xp(np, case, data, loop="compiled"), torch_reference(case, data), PARITY_RTOL)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-steps", "without-numba"])
@pytest.mark.parametrize("case", GRID[::5], ids=[case_id(c) for c in GRID[::5]])
def test_forced_numpy_loop_matches_torch(case: dict[str, Any], fused: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The NumPy loop with its numba-fused elementwise steps, and without numba (plain NumPy calls)."""
    if not fused:
        monkeypatch.setattr(compiled, "available", lambda: False)
    data = make_case(case, seed=6)
    _check(run_rnn_xp(np, case, data, loop="numpy"), torch_reference(case, data), PARITY_RTOL)
    _check(run_rnn_xp(np, case, _as(data, "float32"), loop="numpy"), torch_reference(case, data), 1e-5)


def test_float32_tanh_is_within_four_ulp_of_one() -> None:
    from rnn_xp.loops._kernels import tanh_rational

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


def test_the_loop_switch_forces_either_cpu_loop() -> None:
    assert select_loop(np, loop="compiled") is compiled
    assert select_loop(np, loop="numpy", size=(1000, 1, 32), dtype="float32") is numpy_inplace
    rnn = rnn_xp.RNN(3, 4, loop="compiled", seed=0)
    rnn(np.zeros((5, 1, 3), dtype=np.float32))
    assert rnn._cache is not None and rnn._cache.loop is compiled


def test_the_cost_model_picks_compiled_at_small_batch_and_numpy_at_large() -> None:
    assert select_loop(np, size=(1000, 1, 32), dtype="float32") is compiled
    assert select_loop(np, size=(64, 512, 1024), dtype="float32") is numpy_inplace
    _, _, cache = rnn_forward(np.zeros((200, 1, 3)), random_params(np.random.default_rng(0), input_size=3,
                                                                     hidden_size=16))
    assert cache.loop is compiled


def test_compiled_loop_on_other_arrays_or_without_numba_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    params = {k: torch.tensor(v) for k, v in random_params(np.random.default_rng(0), input_size=2,
                                                           hidden_size=3).items()}
    with pytest.raises(ValueError, match=r"loop='compiled' runs on NumPy arrays only; got arrays of .*torch"):
        rnn_forward(torch.zeros((4, 1, 2), dtype=torch.float64), params, loop="compiled")
    monkeypatch.setattr(compiled, "available", lambda: False)
    with pytest.raises(ValueError, match=r"loop='compiled' needs numba"):
        select_loop(np, loop="compiled")
    assert select_loop(np, size=(1000, 1, 32), dtype="float32") is numpy_inplace  # auto falls back


def test_gemm_sized_steps_go_to_blas_unmeasured(monkeypatch: pytest.MonkeyPatch) -> None:
    def measure(*args: object) -> None:
        raise AssertionError("a step beyond MEASURED_PRODUCTS was measured")

    monkeypatch.setattr(_cost, "measure", measure)
    monkeypatch.setattr(_cost, "_decided", {})
    batch, hidden = 64, 1024
    assert batch * hidden * hidden > _cost.MEASURED_PRODUCTS
    assert not _cost.prefers_compiled("float32", 100, batch, hidden)


def test_each_shape_is_measured_once_and_the_choice_depends_on_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled loop here costs more a call (its transpose) and less a step: NumPy for short calls, compiled
    for long ones; and its kept transpose moves the crossover."""
    shape = _cost.ShapeCost(numpy=_cost.LoopCost(per_call=5e-6, per_step=2e-6),
                            compiled=_cost.LoopCost(per_call=20e-6, per_step=0.5e-6), transpose=30e-6)
    calls: list[tuple[str, int, int]] = []

    def measure(dtype: str, batch: int, hidden: int) -> _cost.ShapeCost:
        calls.append((dtype, batch, hidden))
        return shape

    monkeypatch.setattr(_cost, "measure", measure)
    monkeypatch.setattr(_cost, "_measured", {})
    monkeypatch.setattr(_cost, "_decided", {})
    assert not _cost.prefers_compiled("float32", 1, 3, 40)
    assert not _cost.prefers_compiled("float32", 20, 3, 40)  # 45 us + 10 vs 5 + 40: NumPy
    assert _cost.prefers_compiled("float32", 20, 3, 40, transpose_kept=True)  # 30 vs 45: compiled
    assert _cost.prefers_compiled("float32", 100, 3, 40)
    assert calls == [("float32", 3, 40)]
    # two directions: NumPy runs them one after the other (2 x 45 us), compiled at once on two cores (55 us)
    assert shape.prefers_compiled(20, directions=2, cores=2)
    assert not shape.prefers_compiled(20, directions=2, cores=1)
    _cost.prefers_compiled("float64", 100, 3, 40)
    assert calls == [("float32", 3, 40), ("float64", 3, 40)]


def test_loop_cost_is_the_line_through_two_lengths() -> None:
    truth = _cost.LoopCost(per_call=7e-6, per_step=3e-6)
    fitted = _cost.LoopCost.from_times(truth.seconds(_cost.SHORT), truth.seconds(_cost.LONG))
    assert fitted.per_call == pytest.approx(truth.per_call, rel=1e-9)
    assert fitted.per_step == pytest.approx(truth.per_step, rel=1e-9)
    noisy = _cost.LoopCost.from_times(2e-6, 1e-6)  # longer call measured faster: clipped, never negative
    assert noisy.per_step == 0.0 and noisy.per_call == 2e-6


def test_measure_times_both_loops_on_the_shape() -> None:
    cost = _cost.measure("float32", 2, 24)
    for loop in (cost.numpy, cost.compiled):  # a compiled step here is ~0.05 us: its slope may come out 0 (clipped)
        assert loop.per_call >= 0.0 and loop.per_step >= 0.0 and loop.seconds(_cost.LONG) > 0.0
        assert loop.seconds(1000) < 1.0  # seconds, not microseconds
    assert cost.transpose >= 0.0


def test_selection_charges_the_transpose_unless_it_was_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls expect to reuse the kept W_hh^T (not charged) until a call finds a W_hh changed in place (charged on
    the next call), and a call that then reuses it clears that."""
    asked: list[bool] = []

    def prefers_compiled(dtype: str, steps: int, batch: int, hidden: int, *, transpose_kept: bool = False,
                         directions: int = 1) -> bool:
        assert directions == 2
        asked.append(transpose_kept)
        return True

    monkeypatch.setattr(_cost, "prefers_compiled", prefers_compiled)
    rnn = rnn_xp.RNN(3, 8, num_layers=2, bidirectional=True, seed=0, dtype="float32")
    x = np.zeros((5, 2, 3), dtype=np.float32)
    rnn(x)
    rnn(x)
    rnn.parameters()["weight_hh_l1_reverse"][0, 0] += 1.0  # one of the four changed in place
    rnn(x)  # finds it changed
    rnn(x)  # charged; reuses it
    rnn(x)
    assert asked == [True, True, True, False, True]


def test_import_rnn_xp_does_not_import_numba() -> None:
    code = "import sys, rnn_xp, rnn_xp.functional; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_info_reports_the_compiled_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from rnn_xp.benchmark import machine

    assert machine.paths()["cpu (compiled loop, numba)"] == "available"
    monkeypatch.setattr(machine, "_found", lambda module: module != "numba")
    assert machine.paths()["cpu (compiled loop, numba)"] == "unavailable: numba not installed"



@pytest.fixture
def fresh_feedback(monkeypatch: pytest.MonkeyPatch) -> _cost.ShapeCost:
    """One measured shape (float32, B=3, H=40) on one core; compiled predicted 2x faster than NumPy at T=10."""
    shape = _cost.ShapeCost(numpy=_cost.LoopCost(per_call=0.0, per_step=2e-3),
                            compiled=_cost.LoopCost(per_call=0.0, per_step=1e-3), transpose=0.0)
    monkeypatch.setattr(_cost, "_measured", {("float32", 3, 40): shape})
    monkeypatch.setattr(_cost, "_decided", {})
    monkeypatch.setattr(_cost, "_ratios", {})
    monkeypatch.setattr(_cost, "_corrections", {})
    from rnn_xp.loops import _workers

    monkeypatch.setattr(_workers, "count", lambda: 1)
    return shape


def _observe(loop: str, seconds: float) -> None:
    _cost.observe("float32", 10, 3, 40, loop, seconds, transpose_kept=True, directions=1)


def test_a_loop_observed_slower_than_predicted_loses_the_choice(fresh_feedback: _cost.ShapeCost) -> None:
    assert _cost.prefers_compiled("float32", 10, 3, 40)  # 10 vs 20 ms predicted
    _observe("compiled", 99.0)  # the first call of a loop on a shape is not counted
    for _ in range(2):
        _observe("compiled", 30e-3)  # 3x the prediction
    assert _cost.prefers_compiled("float32", 10, 3, 40)  # two ratios: not yet
    _observe("compiled", 30e-3)
    assert _cost._corrections[("float32", 3, 40)] == {"compiled": pytest.approx(3.0)}
    assert not _cost.prefers_compiled("float32", 10, 3, 40)  # 30 vs 20 ms: NumPy
    for _ in range(3):
        _observe("compiled", 12e-3)  # 1.2x: within the noise threshold, no correction
    assert "compiled" not in _cost._corrections[("float32", 3, 40)]
    assert _cost.prefers_compiled("float32", 10, 3, 40)


def test_one_stalled_call_does_not_move_the_choice(fresh_feedback: _cost.ShapeCost) -> None:
    for seconds in (10e-3, 10e-3, 11e-3, 10e-3, 80e-3, 10e-3):  # first, then one stall among five
        _observe("compiled", seconds)
    assert "compiled" not in _cost._corrections.get(("float32", 3, 40), {})
    assert _cost.prefers_compiled("float32", 10, 3, 40)
    for _ in range(4):
        _observe("compiled", 1.0)  # far slower, from now on: held at 4x, and only the last five count
    assert _cost._corrections[("float32", 3, 40)]["compiled"] == pytest.approx(4.0)


def test_observations_of_unmeasured_shapes_and_short_calls_are_ignored(fresh_feedback: _cost.ShapeCost) -> None:
    tiny = _cost.ShapeCost(numpy=_cost.LoopCost(0.0, 1e-6), compiled=_cost.LoopCost(0.0, 1e-6), transpose=0.0)
    _cost._measured[("float32", 5, 8)] = tiny  # T=10: 10 us predicted, under OBSERVED_FROM
    for _ in range(5):
        _cost.observe("float32", 10, 64, 4096, "numpy", 1.0, transpose_kept=True, directions=1)
        _cost.observe("float64", 10, 3, 40, "numpy", 1.0, transpose_kept=True, directions=1)
        _cost.observe("float32", 10, 5, 8, "numpy", 1.0, transpose_kept=True, directions=1)
    assert _cost._corrections == {} and _cost._ratios == {}


def test_layer_calls_feed_their_loop_time_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cost, "OBSERVED_FROM", 0.0)  # this small layer is predicted well under the threshold
    monkeypatch.setattr(_cost, "_ratios", {})
    monkeypatch.setattr(_cost, "_corrections", {})
    rnn = rnn_xp.RNN(3, 24, num_layers=2, seed=0, dtype="float32")
    x = np.zeros((30, 2, 3), dtype=np.float32)
    for _ in range(4):
        rnn(x)
    assert rnn._cache is not None and rnn._cache.loop_seconds > 0.0
    name = {compiled: "compiled", numpy_inplace: "numpy"}.get(rnn._cache.loop, "transposed")
    assert len(_cost._ratios[("float32", 2, 24)][name]) == 3  # four calls, the first not counted
    forced = rnn_xp.RNN(3, 24, seed=0, dtype="float32", loop="numpy")
    forced(x)
    forced(x)
    assert "numpy" not in _cost._ratios[("float32", 2, 24)] or name == "numpy"  # forced loops are not observed


def test_one_sample_reads_w_hh_itself_when_aligned_or_small() -> None:
    from rnn_xp.loops import _aligned

    aligned = _aligned.empty((512, 512), np.float32)
    misaligned = _aligned.empty((512 * 512 + 4,), np.float32)[4:].reshape(512, 512)
    small = _aligned.empty((200 * 200 + 4,), np.float32)[4:].reshape(200, 200)
    assert compiled.uses_row_dots(1, [aligned, aligned])
    assert not compiled.uses_row_dots(1, [aligned, misaligned])  # H=512 misaligned: rows of the kept W^T
    assert compiled.uses_row_dots(1, [small])
    assert not compiled.uses_row_dots(2, [aligned])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("aligned", [True, False])
def test_one_sample_forward_agrees_with_the_numpy_loop_either_way(dtype: str, aligned: bool) -> None:
    """B=1, H=261 (past the four-row blocks): W_hh read by rows (aligned: dot products) or through its kept
    transpose (misaligned), against the NumPy loop; a NaN in one unit's projection stays in that unit."""
    from rnn_xp.loops import _aligned

    rng = np.random.default_rng(21)
    steps, hidden = 7, 261
    storage = _aligned.empty((hidden * hidden + 4,), dtype)
    weight = (storage[:hidden * hidden] if aligned else storage[4:]).reshape(hidden, hidden)
    weight[...] = rng.standard_normal((hidden, hidden)) / 16
    assert compiled.uses_row_dots(1, [weight]) is aligned
    projection = rng.standard_normal((steps, 1, hidden)).astype(dtype)
    projection[3, 0, 5] = np.nan
    bias, h0 = rng.standard_normal(hidden).astype(dtype), rng.standard_normal((1, hidden)).astype(dtype)
    ours = compiled.forward_layer(np, [projection.copy()], [bias], [weight], [h0], None, "tanh")[0]
    plain = numpy_inplace.forward_layer(np, [projection.copy()], [bias], [weight], [h0], None, "tanh")[0]
    assert ours.dtype == np.dtype(dtype)
    assert np.isnan(ours[3, 0, 5]) and np.isfinite(ours[:3]).all() and np.isfinite(np.delete(ours[3, 0], 5)).all()
    finite = np.isfinite(plain)
    np.testing.assert_array_equal(finite, np.isfinite(ours))
    np.testing.assert_allclose(ours[finite], plain[finite], rtol=0, atol=1e-5 if dtype == "float32" else 1e-12)


def test_layer_parameters_are_64_byte_aligned() -> None:
    from rnn_xp.loops import _aligned

    rnn = rnn_xp.RNN(5, 33, num_layers=2, bidirectional=True, seed=0, dtype="float32")
    assert all(_aligned.is_aligned(p) for p in rnn.parameters().values())
    offsets = {k: np.ascontiguousarray(_aligned.empty((v.size + 1,), v.dtype)[1:].reshape(v.shape))
               for k, v in rnn.parameters().items()}  # a misaligned state dict
    rnn.load_state_dict({k: v for k, v in offsets.items()})
    assert all(_aligned.is_aligned(p) and p.flags.c_contiguous for p in rnn.parameters().values())
    rnn.to("cpu")
    assert all(_aligned.is_aligned(p) for p in rnn.parameters().values())


@pytest.fixture
def rows_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """One sample's steps split by rows over the cores for every size (forced), pinned workers assumed."""
    from rnn_xp.loops import _workers

    monkeypatch.setattr(compiled, "ROW_SPLIT_MIN_HIDDEN", 16)
    monkeypatch.setattr(compiled, "MIN_PARALLEL_WORK", 0)
    monkeypatch.setattr(_workers, "pinned", lambda: True)


@pytest.mark.parametrize("cores", [2, 4])
@pytest.mark.parametrize("patience", [0, 10**12], ids=["takes-over-at-once", "waits"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_sample_split_by_rows_equals_one_thread(cores: int, patience: int, nonlinearity: str, dtype: str,
                                                    rows_split: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """H=37 in 2 parts (uneven, bounds on 16s; with 4 cores too, H // 16 caps them), on this machine's workers;
    padding after step 5; with no patience every part makes every part's units (the same values twice), with
    endless patience each makes its own."""
    from rnn_xp.loops import _aligned, _workers

    if _workers.count() < 2:
        pytest.skip("the parts must run at once: this machine has one CPU")  # (the split itself needs two)
    monkeypatch.setattr(compiled, "_cores", lambda: cores)
    monkeypatch.setattr(compiled, "PATIENCE_CYCLES", patience)
    rng = np.random.default_rng(22)
    steps, hidden = 9, 37
    weight = _aligned.empty((hidden, hidden), dtype)
    weight[...] = rng.standard_normal((hidden, hidden)) / 5
    projection = rng.standard_normal((steps, 1, hidden)).astype(dtype)
    bias, h0 = rng.standard_normal(hidden).astype(dtype), rng.standard_normal((1, hidden)).astype(dtype)
    lengths = np.array([5], dtype=np.int32)
    assert compiled._row_parts(1, steps, hidden) == min(cores, hidden // 16)
    split = compiled.forward_layer(np, [projection.copy()], [bias], [weight], [h0], lengths, nonlinearity)[0]
    monkeypatch.setattr(compiled, "PATIENCE_CYCLES", 10**12 - patience)  # the other way of sharing the units
    other = compiled.forward_layer(np, [projection.copy()], [bias], [weight], [h0], lengths, nonlinearity)[0]
    np.testing.assert_array_equal(split, other)  # whoever makes a unit stores the same bits
    monkeypatch.setattr(compiled, "ROW_SPLIT_MIN_HIDDEN", 1 << 30)
    single = compiled.forward_layer(np, [projection.copy()], [bias], [weight], [h0], lengths, nonlinearity)[0]
    np.testing.assert_allclose(split, single, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)
    np.testing.assert_array_equal(split[5:], np.broadcast_to(split[4], split[5:].shape))  # padding holds h_4


@pytest.mark.parametrize("case", [c for c in GRID if c["unbatched"]][::2],
                         ids=[case_id(c) for c in GRID if c["unbatched"]][::2])
def test_one_sample_split_by_rows_matches_torch(case: dict[str, Any], rows_split: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "_cores", lambda: 2)
    data = make_case(case, seed=23)
    _check(run_rnn_xp(np, case, data, loop="compiled"), torch_reference(case, data), PARITY_RTOL)


def test_the_projection_of_a_split_layer_is_made_on_the_calling_thread(rows_split: None,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from rnn_xp.loops import _kernels

    monkeypatch.setattr(compiled, "_cores", lambda: 2)
    calls: list[int] = []
    kernel = _kernels.add_product
    monkeypatch.setattr(_kernels, "add_product", lambda *args: calls.append(1) or kernel(*args))
    rng = np.random.default_rng(24)
    flat_input, weight_ih = rng.standard_normal((11, 6)), rng.standard_normal((40, 6))
    ours = compiled.project(np, flat_input, weight_ih, (11, 1, 40))
    np.testing.assert_allclose(ours, (flat_input @ weight_ih.T).reshape(11, 1, 40), rtol=1e-12, atol=1e-12)
    assert calls == [1]  # the numba kernel, not OpenBLAS
    compiled.project(np, np.vstack([flat_input, flat_input]), weight_ih, (11, 2, 40))  # two samples: OpenBLAS
    assert calls == [1]


def test_an_answer_worked_out_while_a_correction_came_in_is_not_kept(fresh_feedback: _cost.ShapeCost,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread's feedback lands between reading the corrections and keeping the answer: not kept."""
    original = _cost.ShapeCost.prefers_compiled

    def with_feedback_meanwhile(self: _cost.ShapeCost, *args: Any, **kwargs: Any) -> bool:
        answer = original(self, *args, **kwargs)
        for _ in range(4):
            _observe("compiled", 30e-3)  # 3x the prediction: corrects compiled
        return answer

    monkeypatch.setattr(_cost.ShapeCost, "prefers_compiled", with_feedback_meanwhile)
    assert _cost.prefers_compiled("float32", 10, 3, 40)  # worked out before the correction
    monkeypatch.setattr(_cost.ShapeCost, "prefers_compiled", original)
    assert not _cost.prefers_compiled("float32", 10, 3, 40)  # worked out again, with it
