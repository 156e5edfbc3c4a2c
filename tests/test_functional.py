"""rnn_xp.functional against torch.nn.RNN, a plain NumPy loop and finite differences, on every namespace."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import (
    GRID,
    PARITY_RTOL,
    assert_close,
    assert_matches,
    case_id,
    from_numpy,
    lengths_of_kind,
    make_case,
    random_params,
    run_rnn_xp,
    to_numpy,
    torch_reference,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from references import loop_rnn

from rnn_xp.functional import rnn_backward, rnn_forward


@pytest.mark.backends("numpy", "cupy")
@pytest.mark.parametrize("case", GRID, ids=[case_id(c) for c in GRID])
def test_matches_torch_over_the_grid(case: dict[str, Any], xp: Any) -> None:
    """NumPy's loop and, on a GPU, the CUDA kernels, against torch in float64 over the whole grid."""
    pytest.importorskip("torch")
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


@pytest.mark.parametrize("case", XP_CASES, ids=[case_id(c) for c in XP_CASES])
def test_every_namespace_matches_torch(xp: Any, case: dict[str, Any]) -> None:
    pytest.importorskip("torch")
    data = make_case(case, seed=3)
    assert_matches(run_rnn_xp(xp, case, data), torch_reference(case, data), xp=xp, rtol=PARITY_RTOL)


@pytest.mark.parametrize("case", XP_CASES, ids=[case_id(c) for c in XP_CASES])
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


@pytest.mark.backends("numpy")
def test_float32_matches_torch_to_1e_5(xp: Any) -> None:
    pytest.importorskip("torch")

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


@pytest.mark.backends("numpy")
def test_generic_loop_equals_numpy_inplace_loop(xp: Any) -> None:
    """The NumPy buffer-reusing loop and the generic Array-API loop give the same numbers on NumPy arrays."""
    case = XP_CASES[0]
    data = make_case(case, seed=10)

    inplace = run_rnn_xp(xp, case, data, loop="numpy")
    generic = run_rnn_xp(xp, case, data, loop="generic")
    assert_matches(inplace, {**generic, "grads": generic["grads"]}, xp=xp, rtol=1e-13)


@pytest.mark.parametrize("loop", ["auto", "generic"])
@pytest.mark.backends("numpy", "array_api_strict", "torch")
def test_relu_keeps_nan_as_torch_does(xp: Any, loop: str) -> None:
    """A NaN pre-activation stays NaN through relu (torch.nn.RNN, NumPy, Keras), on every loop and namespace: a
    diverging run must not look healthy on one backend."""
    rng = np.random.default_rng(0)
    params = random_params(rng, input_size=2, hidden_size=3)
    x = rng.standard_normal((4, 2, 2))
    x[1, 0, :] = np.nan
    out, _, _ = rnn_forward(from_numpy(xp, x), {k: from_numpy(xp, v) for k, v in params.items()},
                            nonlinearity="relu", loop=loop)
    host = to_numpy(out)
    assert np.all(np.isnan(host[1:, 0, :])), host[:, 0, :]
    assert np.all(np.isfinite(host[:, 1, :]))


def _padded_problem(nonlinearity: str) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    params = random_params(rng, input_size=3, hidden_size=4)
    x = rng.standard_normal((5, 2, 3))
    grad_out = rng.standard_normal((5, 2, 4))
    return dict(params=params, x=x, grad_out=grad_out, lengths=[5, 2], nonlinearity=nonlinearity)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("loop", ["auto", "generic"])
@pytest.mark.backends("numpy", "array_api_strict", "torch", "cupy")
def test_nan_and_inf_on_padding_do_not_reach_the_gradients(xp: Any, loop: str, nonlinearity: str) -> None:
    """Padding is selected away, never multiplied by 0: NaN/inf in padded inputs and in grad_out on padded steps
    leave every gradient equal to the clean problem's (torch with packed sequences stays finite too)."""
    data = _padded_problem(nonlinearity)
    params = {k: from_numpy(xp, v) for k, v in data["params"].items()}

    def gradients(x: np.ndarray, grad_out: np.ndarray) -> list[np.ndarray]:
        out, _, cache = rnn_forward(from_numpy(xp, x), params, lengths=data["lengths"],
                                    nonlinearity=nonlinearity, loop=loop)
        grad_x, grad_h0, grads = rnn_backward(cache, from_numpy(xp, grad_out))
        return [to_numpy(out), to_numpy(grad_h0), to_numpy(grad_x), *[to_numpy(g) for g in grads.values()]]

    clean = gradients(data["x"], data["grad_out"])
    x, grad_out = data["x"].copy(), data["grad_out"].copy()
    x[2:, 1] = np.nan
    x[3, 1, 0] = np.inf
    grad_out[2:, 1] = np.nan
    poisoned = gradients(x, grad_out)
    for a, b in zip(poisoned, clean, strict=True):
        assert np.all(np.isfinite(a)), a
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loop", ["auto", "generic"])
@pytest.mark.backends("numpy", "array_api_strict", "torch", "cupy")
def test_an_infinite_gradient_into_a_dead_relu_unit_gives_zero(xp: Any, loop: str) -> None:
    """torch's relu backward selects: a unit that is off passes no gradient, even an infinite one (not inf * 0)."""
    rng = np.random.default_rng(8)
    params = random_params(rng, input_size=2, hidden_size=3)
    params["weight_hh_l0"][:] = 0.0
    params["bias_ih_l0"][:] = [-5.0, 0.1, 0.2]  # unit 0 is off at every step
    params["weight_ih_l0"][0] = 0.0
    x = rng.uniform(0, 1, (3, 1, 2))
    out, _, cache = rnn_forward(from_numpy(xp, x), {k: from_numpy(xp, v) for k, v in params.items()},
                                nonlinearity="relu", loop=loop)
    assert np.all(to_numpy(out)[:, 0, 0] == 0)
    grad_out = np.zeros((3, 1, 3))
    grad_out[:, 0, 0] = np.inf
    grad_x, _, grads = rnn_backward(cache, from_numpy(xp, grad_out))
    assert np.all(to_numpy(grad_x) == 0)
    assert all(np.all(to_numpy(g) == 0) for g in grads.values())


@pytest.mark.parametrize("kind", ["list", "numpy-int32", "torch", "array_api_strict", "jax"])
def test_lengths_of_any_integer_array_kind_on_every_namespace(xp: Any, kind: str) -> None:
    """Issue 12, item 10: lengths need not share x's namespace or device; the result stays in x's namespace."""
    rng = np.random.default_rng(5)
    params = {k: from_numpy(xp, v) for k, v in random_params(rng, input_size=3, hidden_size=4).items()}
    x = from_numpy(xp, rng.standard_normal((6, 3, 3)))
    expected, _, _ = rnn_forward(x, params, lengths=[6, 1, 4])
    got, _, _ = rnn_forward(x, params, lengths=lengths_of_kind(kind, [6, 1, 4]))
    assert_close(got, to_numpy(expected), xp=xp, rtol=0.0)


@pytest.mark.parametrize("edit", ["x", "h0", "out", "x batch_first", "params"])
@pytest.mark.backends("numpy", "array_api_strict", "torch")
def test_in_place_edits_after_the_forward_do_not_change_its_backward(xp: Any, edit: str) -> None:
    """Issue 11 item 4: backward differentiates the forward as it ran. x, h0 and out are the caller's to edit in
    place (the forward keeps copies); params are held by reference, as documented, so editing them is checked to
    *change* the result (the test would pass vacuously otherwise)."""
    rng = np.random.default_rng(4)
    batch_first = edit == "x batch_first"
    params = random_params(rng, input_size=3, hidden_size=4)
    x_host = rng.standard_normal((2, 5, 3) if batch_first else (5, 2, 3))
    h0_host = rng.standard_normal((1, 2, 4))
    grad_host = rng.standard_normal((2, 5, 4) if batch_first else (5, 2, 4))

    def run(mutate: bool) -> tuple[Any, ...]:
        p = {k: from_numpy(xp, v) for k, v in params.items()}
        x, h0 = from_numpy(xp, x_host), from_numpy(xp, h0_host)
        out, _, cache = rnn_forward(x, p, h0, batch_first=batch_first)
        if mutate:
            target = {"x": x, "x batch_first": x, "h0": h0, "out": out, "params": p["weight_hh_l0"]}[edit]
            target[...] = 7.0  # in place, on every namespace here (torch, NumPy, array-api-strict)
        return rnn_backward(cache, from_numpy(xp, grad_host))

    clean, edited = run(False), run(True)
    pairs = [(clean[0], edited[0]), (clean[1], edited[1])] + [(clean[2][k], edited[2][k]) for k in clean[2]]
    same = all(np.array_equal(to_numpy(a), to_numpy(b)) for a, b in pairs)
    assert same == (edit != "params")


def test_torch_autograd_flows_through_the_copies_the_forward_keeps() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    params = {k: torch.from_numpy(v).requires_grad_() for k, v in random_params(rng, input_size=3, hidden_size=4).items()}
    x = torch.from_numpy(rng.standard_normal((5, 2, 3))).requires_grad_()
    out, h_n, cache = rnn_forward(x, params)
    (out.sum() + h_n.sum()).backward()
    grad_x, _, grads = rnn_backward(cache, torch.ones_like(out), torch.ones_like(h_n))
    assert_close(x.grad, grad_x)
    for name, value in params.items():
        assert_close(value.grad, grads[name])


@pytest.mark.backends("numpy", "array_api_strict", "torch")
def test_input_grad_false_skips_grad_x_and_changes_nothing_else(xp: Any) -> None:
    case = dict(num_layers=2, bidirectional=True, nonlinearity="tanh", bias=True, batch_first=True, with_h0=True,
                with_lengths=True, unbatched=False)
    data = make_case(case)
    params = {k: from_numpy(xp, v) for k, v in data["params"].items()}
    _, _, cache = rnn_forward(from_numpy(xp, data["x"]), params, from_numpy(xp, data["h0"]), lengths=data["lengths"],
                              batch_first=True)
    grads_out = (from_numpy(xp, data["grad_out"]), from_numpy(xp, data["grad_h_n"]))
    grad_x, grad_h0, grads = rnn_backward(cache, *grads_out)
    none, grad_h0_skipping, grads_skipping = rnn_backward(cache, *grads_out, input_grad=False)
    assert none is None and grad_x.shape == data["x"].shape
    assert np.array_equal(to_numpy(grad_h0_skipping), to_numpy(grad_h0))
    for name, grad in grads.items():
        assert np.array_equal(to_numpy(grads_skipping[name]), to_numpy(grad)), name
    with pytest.raises(TypeError, match=r"input_grad must be True or False; got int 0"):
        rnn_backward(cache, *grads_out, input_grad=0)
