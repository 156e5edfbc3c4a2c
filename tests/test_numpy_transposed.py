"""The float32 NumPy loop with its GEMM written (H, B) (rnn_xp.loops.numpy_transposed): against torch over the
parity grid, its padding/NaN semantics, and the measured choice between it and the plain NumPy loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import GRID, PARITY_RTOL, assert_close, case_id, make_case, random_params, run_rnn_xp, torch_reference

from rnn_xp import _cost, _selection
from rnn_xp.functional import rnn_backward, rnn_forward
from rnn_xp.loops import numpy_inplace, numpy_transposed

pytest.importorskip("numba")


@pytest.fixture
def transposed_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    """Selection picks the transposed NumPy loop for every call (the compiled loop is never measured faster)."""
    monkeypatch.setattr(_selection, "_compiled_is_faster", lambda *args: False)
    monkeypatch.setattr(_cost, "prefers_transposed", lambda *args: True)
    assert _selection.select_loop(np, size=(5, 3, 4), dtype="float32") is numpy_transposed


def _check(ours: dict[str, Any], reference: dict[str, Any], rtol: float) -> None:
    for name in ("out", "h_n", "grad_x"):
        assert_close(ours[name], reference[name], rtol=rtol)
    if reference["grad_h0"] is not None:
        assert_close(ours["grad_h0"], reference["grad_h0"], rtol=rtol)
    for name, grad in reference["grads"].items():
        assert_close(ours["grads"][name], grad, rtol=rtol)


def _float32(data: dict[str, Any]) -> dict[str, Any]:
    cast = {k: v.astype("float32") if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
            for k, v in data.items()}
    cast["params"] = {k: v.astype("float32") for k, v in data["params"].items()}
    return cast


@pytest.mark.parametrize("case", GRID[::2], ids=[case_id(c) for c in GRID[::2]])
def test_transposed_loop_matches_torch_in_float32(case: dict[str, Any], transposed_selected: None) -> None:
    pytest.importorskip("torch")
    data = make_case(case, seed=11, steps=12)
    ours = run_rnn_xp(np, case, _float32(data))
    assert ours["out"].dtype == np.float32
    _check(ours, torch_reference(case, data), 1e-5)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_transposed_forward_equals_the_plain_loop_in_float64(nonlinearity: str, with_lengths: bool) -> None:
    """Called directly (selection only sends float32): odd sizes past the 16-unit tiles, both directions."""
    rng = np.random.default_rng(12)
    steps, batch, hidden = 9, 5, 37
    lengths = np.array([9, 1, 4, 8, 9], dtype=np.int32) if with_lengths else None
    projections = [rng.standard_normal((steps, batch, hidden)) for _ in range(2)]
    biases = [rng.standard_normal(hidden), None]
    weights = [rng.standard_normal((hidden, hidden)) / 6 for _ in range(2)]
    h0s = [rng.standard_normal((batch, hidden)) for _ in range(2)]
    plain = numpy_inplace.forward_layer(np, [p.copy() for p in projections], biases, weights, h0s, lengths,
                                        nonlinearity)
    ours = numpy_transposed.forward_layer(np, [p.copy() for p in projections], biases, weights, h0s, lengths,
                                          nonlinearity)
    for a, b in zip(ours, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=PARITY_RTOL, atol=1e-13)


def test_transposed_loop_keeps_nan_in_relu_and_selects_padding(transposed_selected: None) -> None:
    rng = np.random.default_rng(13)
    params = {k: v.astype("float32") for k, v in random_params(rng, input_size=3, hidden_size=20).items()}
    x = rng.standard_normal((5, 2, 3)).astype("float32")
    grad_out = rng.standard_normal((5, 2, 20)).astype("float32")

    def run(x: np.ndarray) -> list[np.ndarray]:
        out, _, cache = rnn_forward(x, params, lengths=[5, 2], nonlinearity="relu")
        assert cache.loop is numpy_transposed
        grad_x, grad_h0, grads = rnn_backward(cache, grad_out)
        return [out, grad_x, grad_h0, *grads.values()]

    clean = run(x)
    poisoned = x.copy()
    poisoned[2:, 1] = np.nan  # padding of sample 1: never reaches anything
    for a, b in zip(run(poisoned), clean, strict=True):
        np.testing.assert_array_equal(a, b)
    x_nan = x.copy()
    x_nan[1, 0, :] = np.nan
    out, _, _ = rnn_forward(x_nan, params, nonlinearity="relu")
    assert np.all(np.isnan(out[1:, 0, :])) and np.all(np.isfinite(out[:, 1, :]))


def test_the_cost_model_picks_the_faster_numpy_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    shape = _cost.ShapeCost(numpy=_cost.LoopCost(per_call=5e-6, per_step=3e-6),
                            compiled=_cost.LoopCost(per_call=5e-6, per_step=2.5e-6), transpose=0.0,
                            transposed=_cost.LoopCost(per_call=25e-6, per_step=2e-6))
    assert not shape.prefers_transposed(10)  # 45 vs 35 us
    assert shape.prefers_transposed(30)  # 85 vs 95 us
    assert shape.numpy_seconds(30) == pytest.approx(85e-6)
    assert shape.prefers_compiled(10) and not shape.prefers_compiled(100)  # 30 vs 35; 255 vs 225 us
    plain = _cost.ShapeCost(numpy=shape.numpy, compiled=shape.compiled, transpose=0.0)  # float64: not measured
    assert not plain.prefers_transposed(1000) and plain.numpy_seconds(30) == pytest.approx(95e-6)
    monkeypatch.setattr(_cost, "_measured", {("float32", 3, 40): shape})
    monkeypatch.setattr(_cost, "_decided", {})
    assert _cost.prefers_transposed("float32", 30, 3, 40)
    assert not _cost.prefers_transposed("float64", 30, 3, 40)  # never for float64
    assert not _cost.prefers_transposed("float32", 30, 64, 1 << 13)  # beyond the measured sizes: unmeasured
    monkeypatch.setattr(_selection, "_compiled_is_faster", lambda *args: False)
    assert _selection.select_loop(np, size=(30, 3, 40), dtype="float32") is numpy_transposed
    assert _selection.select_loop(np, size=(10, 3, 40), dtype="float32") is numpy_inplace
    assert _selection.select_loop(np, size=(30, 3, 40), dtype="float32", loop="numpy") is numpy_inplace


def test_a_real_measurement_times_the_transposed_loop_for_float32_only() -> None:
    assert _cost.measure("float32", 2, 24).transposed is not None
    assert _cost.measure("float64", 2, 24).transposed is None
