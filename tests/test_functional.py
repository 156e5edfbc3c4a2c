"""rnn_xp.functional against torch.nn.RNN, a plain NumPy loop and finite differences, on every namespace."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from conftest import assert_close, from_numpy, random_params, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st
from references import loop_rnn, torch_rnn

from rnn_xp.functional import rnn_backward, rnn_forward

PARITY_RTOL = 1e-10

GRID = [
    dict(
        num_layers=layers,
        bidirectional=bidirectional,
        nonlinearity=nonlinearity,
        bias=bias,
        batch_first=batch_first,
        with_h0=with_h0,
        with_lengths=with_lengths,
        unbatched=unbatched,
    )
    for layers, bidirectional, nonlinearity, bias, batch_first, with_h0, with_lengths, unbatched in itertools.product(
        (1, 2, 3), (False, True), ("tanh", "relu"), (True, False), (False, True), (False, True), (False, True),
        (False, True),
    )
    if not (unbatched and (with_lengths or batch_first))
]


def _case_id(case: dict[str, Any]) -> str:
    parts = [f"L{case['num_layers']}", "bi" if case["bidirectional"] else "uni", case["nonlinearity"]]
    parts += [name for name in ("bias", "batch_first", "with_h0", "with_lengths", "unbatched") if case[name]]
    return "-".join(parts)


def make_case(case: dict[str, Any], seed: int = 0, *, steps: int = 6, batch: int = 4) -> dict[str, Any]:
    """Random float64 inputs for one grid case, in torch's layout for that case."""
    rng = np.random.default_rng(seed)
    input_size, hidden = 5, 7
    directions = 2 if case["bidirectional"] else 1
    params = random_params(
        rng, input_size=input_size, hidden_size=hidden, num_layers=case["num_layers"],
        bidirectional=case["bidirectional"], bias=case["bias"],
    )
    stacked = case["num_layers"] * directions
    if case["unbatched"]:
        x = rng.standard_normal((steps, input_size))
        h0 = rng.standard_normal((stacked, hidden)) if case["with_h0"] else None
        grad_out = rng.standard_normal((steps, directions * hidden))
        grad_h_n = rng.standard_normal((stacked, hidden))
    else:
        x = rng.standard_normal((batch, steps, input_size) if case["batch_first"] else (steps, batch, input_size))
        h0 = rng.standard_normal((stacked, batch, hidden)) if case["with_h0"] else None
        out_shape = (batch, steps, directions * hidden) if case["batch_first"] else (steps, batch, directions * hidden)
        grad_out = rng.standard_normal(out_shape)
        grad_h_n = rng.standard_normal((stacked, batch, hidden))
    lengths = np.array([steps, 1, 3, steps - 1][:batch]) if case["with_lengths"] else None
    return dict(params=params, x=x, h0=h0, lengths=lengths, grad_out=grad_out, grad_h_n=grad_h_n)


def torch_reference(case: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return torch_rnn(
        data["params"], data["x"], data["h0"], data["lengths"], data["grad_out"], data["grad_h_n"],
        num_layers=case["num_layers"], bidirectional=case["bidirectional"], nonlinearity=case["nonlinearity"],
        bias=case["bias"], batch_first=case["batch_first"] and not case["unbatched"],
    )


def run_rnn_xp(xp: Any, case: dict[str, Any], data: dict[str, Any], *, loop: str = "auto") -> dict[str, Any]:
    params = {k: from_numpy(xp, v) for k, v in data["params"].items()}
    h0 = None if data["h0"] is None else from_numpy(xp, data["h0"])
    out, h_n, cache = rnn_forward(
        from_numpy(xp, data["x"]), params, h0, lengths=data["lengths"], nonlinearity=case["nonlinearity"],
        batch_first=case["batch_first"], loop=loop,
    )
    grad_x, grad_h0, grads = rnn_backward(cache, from_numpy(xp, data["grad_out"]), from_numpy(xp, data["grad_h_n"]))
    return dict(out=out, h_n=h_n, grad_x=grad_x, grad_h0=grad_h0, grads=grads)


def assert_matches(ours: dict[str, Any], reference: dict[str, Any], *, xp: Any, rtol: float) -> None:
    for name in ("out", "h_n", "grad_x"):
        assert_close(ours[name], reference[name], xp=xp, rtol=rtol)
    if reference["grad_h0"] is not None:
        assert_close(ours["grad_h0"], reference["grad_h0"], xp=xp, rtol=rtol)
    assert list(ours["grads"]) == list(reference["grads"])
    for name, grad in reference["grads"].items():
        assert_close(ours["grads"][name], grad, xp=xp, rtol=rtol)


@pytest.mark.parametrize("case", GRID, ids=[_case_id(c) for c in GRID])
def test_numpy_matches_torch_over_the_grid(case: dict[str, Any]) -> None:
    pytest.importorskip("torch")
    import array_api_compat.numpy as xp

    data = make_case(case)
    assert_matches(run_rnn_xp(xp, case, data), torch_reference(case, data), xp=xp, rtol=PARITY_RTOL)


XP_CASES = [
    dict(num_layers=2, bidirectional=True, nonlinearity="tanh", bias=True, batch_first=True, with_h0=True,
         with_lengths=True, unbatched=False),
    dict(num_layers=3, bidirectional=False, nonlinearity="relu", bias=False, batch_first=False, with_h0=False,
         with_lengths=False, unbatched=False),
    dict(num_layers=1, bidirectional=True, nonlinearity="tanh", bias=True, batch_first=False, with_h0=True,
         with_lengths=False, unbatched=True),
]


@pytest.mark.parametrize("case", XP_CASES, ids=[_case_id(c) for c in XP_CASES])
def test_every_namespace_matches_torch(xp: Any, case: dict[str, Any]) -> None:
    pytest.importorskip("torch")
    data = make_case(case, seed=3)
    assert_matches(run_rnn_xp(xp, case, data), torch_reference(case, data), xp=xp, rtol=PARITY_RTOL)


@pytest.mark.parametrize("case", XP_CASES, ids=[_case_id(c) for c in XP_CASES])
def test_every_namespace_matches_the_loop_reference(xp: Any, case: dict[str, Any]) -> None:
    data = make_case(case, seed=4)
    x, h0 = data["x"], data["h0"]
    if case["unbatched"]:
        x, h0 = x[:, None, :], None if h0 is None else h0[:, None, :]
    elif case["batch_first"]:
        x = np.swapaxes(x, 0, 1)
    expected_out, expected_h_n = loop_rnn(
        data["params"], x, h0, data["lengths"], num_layers=case["num_layers"],
        bidirectional=case["bidirectional"], nonlinearity=case["nonlinearity"],
    )
    ours = run_rnn_xp(xp, case, data)
    out, h_n = to_numpy(ours["out"]), to_numpy(ours["h_n"])
    if case["unbatched"]:
        out, h_n = out[:, None, :], h_n[:, None, :]
    elif case["batch_first"]:
        out = np.swapaxes(out, 0, 1)
    assert_close(out, expected_out, rtol=PARITY_RTOL)
    assert_close(h_n, expected_h_n, rtol=PARITY_RTOL)


def test_float32_matches_torch_to_1e_5() -> None:
    pytest.importorskip("torch")
    import array_api_compat.numpy as xp

    case = XP_CASES[0]
    data = make_case(case, seed=5)
    reference = torch_reference(case, data)
    data32 = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) and k != "lengths" else v) for k, v in data.items()}
    data32["params"] = {k: v.astype(np.float32) for k, v in data["params"].items()}
    ours = run_rnn_xp(xp, case, data32)
    assert ours["out"].dtype == np.float32
    assert_matches(ours, reference, xp=xp, rtol=1e-5)


def _loss(params: dict[str, np.ndarray], x: np.ndarray, h0: np.ndarray, grad_out: np.ndarray,
          grad_h_n: np.ndarray, **options: Any) -> float:
    out, h_n, _ = rnn_forward(x, params, h0, **options)
    return float(np.sum(out * grad_out) + np.sum(h_n * grad_h_n))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_gradients_match_finite_differences(nonlinearity: str, with_lengths: bool) -> None:
    rng = np.random.default_rng(7)
    params = random_params(rng, input_size=3, hidden_size=5, num_layers=2, bidirectional=True)
    x = rng.standard_normal((6, 3, 3))
    h0 = rng.standard_normal((4, 3, 5))
    options = dict(nonlinearity=nonlinearity, lengths=[6, 2, 4] if with_lengths else None)
    out, h_n, cache = rnn_forward(x, params, h0, **options)
    grad_out, grad_h_n = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    grad_x, grad_h0, grads = rnn_backward(cache, grad_out, grad_h_n)
    eps = 1e-6

    def directional(shift: dict[str, Any]) -> float:
        plus = _loss({k: v + eps * shift.get(k, 0) for k, v in params.items()}, x + eps * shift.get("x", 0),
                     h0 + eps * shift.get("h0", 0), grad_out, grad_h_n, **options)
        minus = _loss({k: v - eps * shift.get(k, 0) for k, v in params.items()}, x - eps * shift.get("x", 0),
                      h0 - eps * shift.get("h0", 0), grad_out, grad_h_n, **options)
        return (plus - minus) / (2 * eps)

    analytic = {"x": grad_x, "h0": grad_h0, **grads}
    for name, grad in analytic.items():
        direction = rng.standard_normal(grad.shape)
        expected = directional({name: direction})
        assert abs(float(np.sum(grad * direction)) - expected) <= 1e-6 * max(1.0, abs(expected)), name


@settings(max_examples=40, deadline=None)
@given(
    steps=st.integers(1, 6), batch=st.integers(1, 4), input_size=st.integers(1, 5), hidden=st.integers(1, 6),
    layers=st.integers(1, 3), bidirectional=st.booleans(), nonlinearity=st.sampled_from(["tanh", "relu"]),
    bias=st.booleans(), use_lengths=st.booleans(), seed=st.integers(0, 2**31 - 1),
)
def test_random_shapes_match_the_loop_reference(
    steps: int, batch: int, input_size: int, hidden: int, layers: int, bidirectional: bool, nonlinearity: str,
    bias: bool, use_lengths: bool, seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    params = random_params(rng, input_size=input_size, hidden_size=hidden, num_layers=layers,
                           bidirectional=bidirectional, bias=bias)
    x = rng.standard_normal((steps, batch, input_size))
    h0 = rng.standard_normal((layers * (2 if bidirectional else 1), batch, hidden))
    lengths = rng.integers(1, steps + 1, size=batch) if use_lengths else None
    out, h_n, cache = rnn_forward(x, params, h0, lengths=lengths, nonlinearity=nonlinearity)
    expected_out, expected_h_n = loop_rnn(params, x, h0, lengths, num_layers=layers,
                                          bidirectional=bidirectional, nonlinearity=nonlinearity)
    assert_close(out, expected_out, rtol=PARITY_RTOL)
    assert_close(h_n, expected_h_n, rtol=PARITY_RTOL)
    # The gradient of <g, out> along a random direction of W_hh matches a central difference.
    grad_out = rng.standard_normal(out.shape)
    _, _, grads = rnn_backward(cache, grad_out)
    direction = rng.standard_normal((hidden, hidden))
    eps = 1e-6
    shifted = [
        _loss({**params, "weight_hh_l0": params["weight_hh_l0"] + sign * eps * direction}, x, h0, grad_out,
              np.zeros_like(h_n), lengths=lengths, nonlinearity=nonlinearity)
        for sign in (1, -1)
    ]
    expected = (shifted[0] - shifted[1]) / (2 * eps)
    assert abs(float(np.sum(grads["weight_hh_l0"] * direction)) - expected) <= 1e-6 * max(1.0, abs(expected))


def test_inputs_are_never_mutated() -> None:
    rng = np.random.default_rng(8)
    params = random_params(rng, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x, h0 = rng.standard_normal((5, 2, 3)), rng.standard_normal((4, 2, 4))
    before = {k: v.copy() for k, v in {**params, "x": x, "h0": h0}.items()}
    out, h_n, cache = rnn_forward(x, params, h0, lengths=[5, 3], dropout=0.3, training=True, seed=1)
    grad_out, grad_h_n = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    saved = grad_out.copy(), grad_h_n.copy()
    rnn_backward(cache, grad_out, grad_h_n)
    rnn_backward(cache, grad_out, grad_h_n, bptt_truncate=2)
    for name, value in {**params, "x": x, "h0": h0}.items():
        np.testing.assert_array_equal(value, before[name])
    np.testing.assert_array_equal(grad_out, saved[0])
    np.testing.assert_array_equal(grad_h_n, saved[1])


def test_backward_can_run_twice_with_the_same_result() -> None:
    rng = np.random.default_rng(9)
    params = random_params(rng, input_size=3, hidden_size=4)
    out, _h_n, cache = rnn_forward(rng.standard_normal((4, 2, 3)), params)
    grad_out = rng.standard_normal(out.shape)
    first, second = rnn_backward(cache, grad_out), rnn_backward(cache, grad_out)
    np.testing.assert_array_equal(first[0], second[0])
    for name in first[2]:
        np.testing.assert_array_equal(first[2][name], second[2][name])


def test_generic_loop_equals_numpy_inplace_loop() -> None:
    """The NumPy buffer-reusing loop and the generic Array-API loop give the same numbers on NumPy arrays."""
    case = XP_CASES[0]
    data = make_case(case, seed=10)
    import array_api_compat.numpy as xp

    inplace = run_rnn_xp(xp, case, data)
    generic = run_rnn_xp(xp, case, data, loop="generic")
    assert_matches(inplace, {**generic, "grads": generic["grads"]}, xp=xp, rtol=1e-13)
