"""rnn_xp.loops.jax_scan: the lax.scan loop JAX arrays get, against torch.nn.RNN and rnn_xp on NumPy (both float64),
under jax.jit, jax.grad and jax.vmap, with traced lengths."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    GRID,
    PARITY_RTOL,
    assert_close,
    assert_matches,
    case_id,
    make_case,
    random_params,
    run_rnn_xp,
    to_numpy,
    torch_reference,
)

from rnn_xp._plan import choose_loop
from rnn_xp.functional import rnn_backward, rnn_forward

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def jax() -> Any:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)  # the parity tests are float64
    return jax


@pytest.fixture(scope="module")
def jnp(jax: Any) -> Any:
    return importlib.import_module("jax.numpy")


def _to_jax(jnp: Any, tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: jnp.asarray(v) for k, v in tree.items()}
    return None if tree is None else jnp.asarray(tree)


def _numpy_results(case: dict[str, Any], data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """rnn_xp on NumPy (checked against torch over the whole grid in test_functional.py)."""
    out, h_n, cache = rnn_forward(data["x"], data["params"], data["h0"], lengths=data["lengths"],
                                  nonlinearity=case["nonlinearity"], batch_first=case["batch_first"], **kwargs)
    grad_x, grad_h0, grads = rnn_backward(cache, data["grad_out"], data["grad_h_n"])
    return dict(out=out, h_n=h_n, grad_x=grad_x, grad_h0=grad_h0, grads=grads)


def test_the_plan_runs_jax_arrays_on_the_scan_loop_and_generic_still_forces_the_generic_loop(jnp: Any) -> None:
    from rnn_xp.loops import generic, jax_scan

    assert choose_loop(jnp) is jax_scan
    assert choose_loop(jnp, loop="generic") is generic
    assert jax_scan.TRUNCATES is False
    with pytest.raises(ValueError, match=r"loop='numpy' runs on NumPy arrays only; got arrays of jax.numpy"):
        choose_loop(jnp, loop="numpy")


def test_import_rnn_xp_does_not_import_jax() -> None:
    code = ("import sys, rnn_xp, rnn_xp.functional, rnn_xp._plan, rnn_xp._checks, rnn_xp.loops\n"
            "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if m.startswith('jax'))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


JAX_GRID = [c for c in GRID if c["num_layers"] <= 2]  # three layers add no path two do not take


@pytest.mark.parametrize("case", JAX_GRID, ids=[case_id(c) for c in JAX_GRID])
def test_rnn_forward_and_rnn_backward_match_torch_over_the_grid(jnp: Any, case: dict[str, Any]) -> None:
    """The loop's forward scan and its reverse-scan BPTT (rnn_backward), eagerly, against torch."""
    pytest.importorskip("torch")
    data = make_case(case)
    assert_matches(run_rnn_xp(jnp, case, data), torch_reference(case, data), xp=jnp, rtol=PARITY_RTOL)


def test_the_scan_loop_equals_the_generic_loop(jnp: Any) -> None:
    case = dict(num_layers=2, bidirectional=True, nonlinearity="relu", bias=True, batch_first=False, with_h0=True,
                with_lengths=True, unbatched=False)
    data = make_case(case, seed=2)
    scan, generic = run_rnn_xp(jnp, case, data), run_rnn_xp(jnp, case, data, loop="generic")
    assert_matches(scan, generic, xp=jnp, rtol=1e-13)


# Cases for the transforms: several layers, both directions, relu, no bias, batch-first, h0, lengths.
TRANSFORM_CASES = [
    dict(num_layers=2, bidirectional=True, nonlinearity="tanh", bias=True, batch_first=True, with_h0=True,
         with_lengths=True, unbatched=False),
    dict(num_layers=3, bidirectional=False, nonlinearity="relu", bias=True, batch_first=False, with_h0=False,
         with_lengths=True, unbatched=False),
    dict(num_layers=1, bidirectional=True, nonlinearity="relu", bias=False, batch_first=False, with_h0=True,
         with_lengths=False, unbatched=False),
    dict(num_layers=2, bidirectional=True, nonlinearity="tanh", bias=True, batch_first=False, with_h0=True,
         with_lengths=False, unbatched=True),
]


def _loss(jnp: Any, case: dict[str, Any], data: dict[str, Any], **kwargs: Any) -> Any:
    """loss(params, x, h0, lengths) = <grad_out, out> + <grad_h_n, h_n>, lengths an argument (traced under jit)."""
    grad_out, grad_h_n = jnp.asarray(data["grad_out"]), jnp.asarray(data["grad_h_n"])

    def loss(params: dict[str, Any], x: Any, h0: Any | None, lengths: Any | None) -> Any:
        out, h_n, _ = rnn_forward(x, params, h0, lengths=lengths, nonlinearity=case["nonlinearity"],
                                  batch_first=case["batch_first"], **kwargs)
        return jnp.sum(out * grad_out) + jnp.sum(h_n * grad_h_n)

    return loss


@pytest.mark.parametrize("transform", ["jit(grad)", "grad(jit)", "grad"])
@pytest.mark.parametrize("case", TRANSFORM_CASES, ids=[case_id(c) for c in TRANSFORM_CASES])
def test_jax_grad_with_traced_lengths_equals_rnn_backward_and_torch(jax: Any, jnp: Any, case: dict[str, Any],
                                                                    transform: str) -> None:
    """JAX differentiates through the forward scans; under jit the lengths are a traced argument."""
    data = make_case(case, seed=21)
    loss = _loss(jnp, case, data)
    argnums = (0, 1, 2) if case["with_h0"] else (0, 1)
    gradient = {
        "jit(grad)": jax.jit(jax.grad(loss, argnums=argnums)),
        "grad(jit)": jax.grad(jax.jit(loss), argnums=argnums),
        "grad": jax.grad(loss, argnums=argnums),
    }[transform]
    lengths = data["lengths"] if transform == "grad" or data["lengths"] is None else jnp.asarray(data["lengths"])
    got = gradient(_to_jax(jnp, data["params"]), jnp.asarray(data["x"]), _to_jax(jnp, data["h0"]), lengths)
    references = [_numpy_results(case, data)]
    if importlib.util.find_spec("torch") is not None:
        references.append(torch_reference(case, data))
    for reference in references:
        assert sorted(got[0]) == sorted(reference["grads"])
        for name, value in reference["grads"].items():
            assert_close(got[0][name], value, xp=jnp, rtol=PARITY_RTOL)
        assert_close(got[1], reference["grad_x"], xp=jnp, rtol=PARITY_RTOL)
        if case["with_h0"]:
            assert_close(got[2], reference["grad_h0"], xp=jnp, rtol=PARITY_RTOL)


def test_jit_with_traced_lengths_equals_concrete_lengths_and_does_not_recompile(jax: Any, jnp: Any) -> None:
    case = TRANSFORM_CASES[0]
    data = make_case(case, seed=22)
    params, x, h0 = _to_jax(jnp, data["params"]), jnp.asarray(data["x"]), jnp.asarray(data["h0"])
    traces = []

    def forward(params: dict[str, Any], x: Any, h0: Any, lengths: Any) -> tuple[Any, Any]:
        traces.append(1)
        return rnn_forward(x, params, h0, lengths=lengths, batch_first=True)[:2]

    compiled = jax.jit(forward)
    for lengths in ([6, 1, 3, 5], [2, 6, 6, 1], [1, 1, 1, 1]):
        out, h_n = compiled(params, x, h0, jnp.asarray(lengths, dtype=jnp.int32))
        want = _numpy_results(case, {**data, "lengths": np.asarray(lengths)})
        assert_close(out, want["out"], xp=jnp, rtol=PARITY_RTOL)
        assert_close(h_n, want["h_n"], xp=jnp, rtol=PARITY_RTOL)
    assert len(traces) == 1


def test_rnn_backward_inside_jit_with_traced_lengths_equals_numpy(jax: Any, jnp: Any) -> None:
    """The explicit BPTT (the loop's reverse scans) traced and compiled as one function, lengths traced."""
    case = TRANSFORM_CASES[0]
    data = make_case(case, seed=23)

    def forward_backward(params: dict[str, Any], x: Any, h0: Any, lengths: Any) -> tuple[Any, Any, dict[str, Any]]:
        _, _, cache = rnn_forward(x, params, h0, lengths=lengths, batch_first=True)
        return rnn_backward(cache, jnp.asarray(data["grad_out"]), jnp.asarray(data["grad_h_n"]))

    grad_x, grad_h0, grads = jax.jit(forward_backward)(_to_jax(jnp, data["params"]), jnp.asarray(data["x"]),
                                                       jnp.asarray(data["h0"]), jnp.asarray(data["lengths"]))
    want = _numpy_results(case, data)
    assert_close(grad_x, want["grad_x"], xp=jnp, rtol=PARITY_RTOL)
    assert_close(grad_h0, want["grad_h0"], xp=jnp, rtol=PARITY_RTOL)
    for name, value in want["grads"].items():
        assert_close(grads[name], value, xp=jnp, rtol=PARITY_RTOL)


def test_dropout_under_jit_grad_equals_rnn_backward_on_numpy(jax: Any, jnp: Any) -> None:
    """The same seed draws the same masks on NumPy and JAX (as constants of the traced function)."""
    case = dict(num_layers=3, bidirectional=True, nonlinearity="tanh", bias=True, batch_first=False, with_h0=True,
                with_lengths=True, unbatched=False)
    data = make_case(case, seed=24)
    dropout = dict(dropout=0.4, training=True, seed=9)
    loss = _loss(jnp, case, data, **dropout)
    grads, grad_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(_to_jax(jnp, data["params"]), jnp.asarray(data["x"]),
                                                             jnp.asarray(data["h0"]), jnp.asarray(data["lengths"]))
    want = _numpy_results(case, data, **dropout)
    without = _numpy_results(case, data)
    assert not np.allclose(want["grad_x"], without["grad_x"])  # the masks matter
    assert_close(grad_x, want["grad_x"], xp=jnp, rtol=PARITY_RTOL)
    for name, value in want["grads"].items():
        assert_close(grads[name], value, xp=jnp, rtol=PARITY_RTOL)


def test_vmap_over_unbatched_sequences_equals_one_batched_call(jax: Any, jnp: Any) -> None:
    """vmap over sequences (T, I) each with its own h0 gives the batched call on (T, N, I)."""
    rng = np.random.default_rng(25)
    params = random_params(rng, input_size=3, hidden_size=5, num_layers=2, bidirectional=True)
    xs, h0s = rng.standard_normal((4, 7, 3)), rng.standard_normal((4, 4, 5))  # (N, T, I), (N, L*D, H)
    out, h_n = jax.vmap(lambda x, h0: rnn_forward(x, _to_jax(jnp, params), h0)[:2])(jnp.asarray(xs),
                                                                                     jnp.asarray(h0s))
    want_out, want_h_n, _ = rnn_forward(np.swapaxes(xs, 0, 1), params, np.swapaxes(h0s, 0, 1))
    assert_close(out, np.swapaxes(want_out, 0, 1), xp=jnp, rtol=PARITY_RTOL)
    assert_close(h_n, np.swapaxes(want_h_n, 0, 1), xp=jnp, rtol=PARITY_RTOL)


@pytest.mark.parametrize("transform", ["vmap", "jit(vmap)", "vmap(grad)"])
def test_vmap_over_batches_with_their_own_lengths(jax: Any, jnp: Any, transform: str) -> None:
    """Lengths vmapped with x (traced inside): each slice equals its own call with concrete lengths."""
    case = dict(num_layers=2, bidirectional=True, nonlinearity="relu", bias=True, batch_first=False, with_h0=False,
                with_lengths=True, unbatched=False)
    slices = [make_case(case, seed=26 + n) for n in range(3)]
    params = slices[0]["params"]
    for n, lengths in enumerate(([6, 1, 3, 5], [2, 2, 6, 4], [1, 6, 5, 6])):
        slices[n] = {**slices[n], "params": params, "lengths": np.asarray(lengths)}
    stack = {k: jnp.stack([jnp.asarray(s[k]) for s in slices]) for k in ("x", "lengths", "grad_out", "grad_h_n")}
    jparams = _to_jax(jnp, params)
    if transform == "vmap(grad)":
        def loss(p: dict[str, Any], x: Any, lengths: Any, grad_out: Any, grad_h_n: Any) -> Any:
            out, h_n, _ = rnn_forward(x, p, lengths=lengths, nonlinearity="relu")
            return jnp.sum(out * grad_out) + jnp.sum(h_n * grad_h_n)

        grads = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0, 0, 0))(jparams, *stack.values())
        for n, data in enumerate(slices):
            for name, value in _numpy_results(case, data)["grads"].items():
                assert_close(grads[name][n], value, rtol=PARITY_RTOL)
        return
    batched = jax.vmap(lambda x, lengths: rnn_forward(x, jparams, lengths=lengths, nonlinearity="relu")[:2])
    if transform == "jit(vmap)":
        batched = jax.jit(batched)
    out, h_n = batched(stack["x"], stack["lengths"])
    for n, data in enumerate(slices):
        want = _numpy_results(case, data)
        assert_close(out[n], want["out"], rtol=PARITY_RTOL)
        assert_close(h_n[n], want["h_n"], rtol=PARITY_RTOL)


def test_traced_lengths_outside_one_to_t_are_clipped_to_zero_to_t(jax: Any, jnp: Any) -> None:
    """Under jit the values cannot be checked: 0 or less is an empty sequence (out 0, h_n = h0, no gradient into x,
    grad_h0 = grad_h_n), more than T is T; even 2**40 + 3, which int32 would wrap to 3."""
    case = dict(num_layers=2, bidirectional=True, nonlinearity="tanh", bias=True, batch_first=False, with_h0=True,
                with_lengths=True, unbatched=False)
    data = make_case(case, seed=27, batch=5)
    steps = data["x"].shape[0]
    traced = np.asarray([0, steps + 3, -2, 3, 2**40 + 3], dtype=np.int64)
    loss = _loss(jnp, case, data)

    def run(params: dict[str, Any], x: Any, h0: Any, lengths: Any) -> Any:
        out, h_n, _ = rnn_forward(x, params, h0, lengths=lengths)
        return out, h_n, jax.grad(loss, argnums=(0, 1, 2))(params, x, h0, lengths)

    out, h_n, (grads, grad_x, grad_h0) = jax.jit(run)(_to_jax(jnp, data["params"]), jnp.asarray(data["x"]),
                                                      jnp.asarray(data["h0"]), jnp.asarray(traced))
    assert traced.dtype == np.int64 and jnp.asarray(traced).dtype == jnp.int64
    empty, kept = [0, 2], [1, 3, 4]
    for b in empty:
        assert np.all(to_numpy(out)[:, b] == 0)
        assert np.all(to_numpy(h_n)[:, b] == data["h0"][:, b])
        assert np.all(to_numpy(grad_x)[:, b] == 0)
        assert np.all(to_numpy(grad_h0)[:, b] == data["grad_h_n"][:, b])
    # The other samples as a batch of their own with lengths T, 3, T; the empty ones add nothing to the weights.
    sub = {"params": data["params"], "x": data["x"][:, kept], "h0": data["h0"][:, kept],
           "grad_out": data["grad_out"][:, kept], "grad_h_n": data["grad_h_n"][:, kept],
           "lengths": np.asarray([steps, 3, steps])}
    want = _numpy_results(case, sub)
    assert_close(out[:, np.asarray(kept)], want["out"], rtol=PARITY_RTOL)
    assert_close(h_n[:, np.asarray(kept)], want["h_n"], rtol=PARITY_RTOL)
    assert_close(grad_x[:, np.asarray(kept)], want["grad_x"], rtol=PARITY_RTOL)
    assert_close(grad_h0[:, np.asarray(kept)], want["grad_h0"], rtol=PARITY_RTOL)
    for name, value in want["grads"].items():
        assert_close(grads[name], value, rtol=PARITY_RTOL)


def test_traced_uint8_lengths_are_taken(jax: Any, jnp: Any) -> None:
    case = TRANSFORM_CASES[1]
    data = make_case(case, seed=28)
    params, x = _to_jax(jnp, data["params"]), jnp.asarray(data["x"])
    out = jax.jit(lambda lengths: rnn_forward(x, params, lengths=lengths, nonlinearity="relu")[0])(
        jnp.asarray(data["lengths"], dtype=jnp.uint8))
    assert_close(out, _numpy_results(case, data)["out"], xp=jnp, rtol=PARITY_RTOL)


@pytest.mark.parametrize(("lengths", "error", "match"), [
    (np.asarray([6.0, 1.0, 3.0, 5.0]), TypeError, r"lengths must hold integers; got dtype float64"),
    (np.asarray([True, True, False, True]), TypeError, r"lengths must hold integers; got dtype bool"),
    (np.asarray([6, 1, 3]), ValueError, r"lengths must have shape \(4,\) \(batch,\); got \(3,\)"),
    (np.ones((4, 1), dtype=np.int32), ValueError, r"lengths must have shape \(4,\) \(batch,\); got \(4, 1\)"),
])
def test_traced_lengths_of_a_wrong_dtype_or_shape_are_refused(jax: Any, jnp: Any, lengths: np.ndarray,
                                                              error: type, match: str) -> None:
    data = make_case(TRANSFORM_CASES[1], seed=29)
    params, x = _to_jax(jnp, data["params"]), jnp.asarray(data["x"])
    with pytest.raises(error, match=match):
        jax.jit(lambda lengths: rnn_forward(x, params, lengths=lengths)[0])(jnp.asarray(lengths))


@pytest.mark.parametrize("where", ["eager", "closed over under jit"])
def test_concrete_jax_lengths_keep_their_value_checks(jax: Any, jnp: Any, where: str) -> None:
    data = make_case(TRANSFORM_CASES[1], seed=30)
    params, x = _to_jax(jnp, data["params"]), jnp.asarray(data["x"])
    bad = jnp.asarray([0, 1, 7, 2])

    def call(x: Any) -> Any:
        return rnn_forward(x, params, lengths=bad)[0]

    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=6\]; got values from 0 to 7"):
        call(x) if where == "eager" else jax.jit(call)(x)


def _padded_problem(rng: np.random.Generator, nonlinearity: str) -> dict[str, Any]:
    params = random_params(rng, input_size=3, hidden_size=4)
    return dict(params=params, x=rng.standard_normal((5, 2, 3)), grad_out=rng.standard_normal((5, 2, 4)),
                lengths=[5, 2], nonlinearity=nonlinearity)


@pytest.mark.parametrize("differentiate", ["rnn_backward", "jax.grad"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_nan_and_inf_on_padding_do_not_reach_the_gradients(jax: Any, jnp: Any, nonlinearity: str,
                                                           differentiate: str) -> None:
    """Padding is selected away, never multiplied by 0, by the loop's backward scan and by JAX's derivative of the
    forward scan alike: NaN/inf in padded inputs and gradients leave every gradient equal to the clean problem's."""
    data = _padded_problem(np.random.default_rng(7), nonlinearity)
    params = _to_jax(jnp, data["params"])
    lengths = jnp.asarray(data["lengths"])

    def gradients(x: np.ndarray, grad_out: np.ndarray) -> list[np.ndarray]:
        if differentiate == "rnn_backward":
            _, _, cache = rnn_forward(jnp.asarray(x), params, lengths=data["lengths"], nonlinearity=nonlinearity)
            grad_x, grad_h0, grads = rnn_backward(cache, jnp.asarray(grad_out))
        else:
            def loss(p: dict[str, Any], x: Any, h0: Any, lengths: Any) -> Any:
                return jnp.sum(rnn_forward(x, p, h0, lengths=lengths, nonlinearity=nonlinearity)[0] * grad_out)

            grads, grad_x, grad_h0 = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(
                params, jnp.asarray(x), jnp.zeros((1, 2, 4)), lengths)
        return [to_numpy(grad_h0), to_numpy(grad_x), *[to_numpy(g) for g in grads.values()]]

    clean = gradients(data["x"], data["grad_out"])
    x, grad_out = data["x"].copy(), data["grad_out"].copy()
    x[2:, 1] = np.nan
    x[3, 1, 0] = np.inf
    grad_out[2:, 1] = np.nan
    poisoned = gradients(x, grad_out)
    for a, b in zip(poisoned, clean, strict=True):
        assert np.all(np.isfinite(a)), a
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("differentiate", ["rnn_backward", "jax.grad"])
def test_an_infinite_gradient_into_a_dead_relu_unit_gives_zero(jax: Any, jnp: Any, differentiate: str) -> None:
    rng = np.random.default_rng(8)
    params = random_params(rng, input_size=2, hidden_size=3)
    params["weight_hh_l0"][:] = 0.0
    params["bias_ih_l0"][:] = [-5.0, 0.1, 0.2]  # unit 0 is off at every step
    params["weight_ih_l0"][0] = 0.0
    x = jnp.asarray(rng.uniform(0, 1, (3, 1, 2)))
    grad_out = np.zeros((3, 1, 3))
    grad_out[:, 0, 0] = np.inf
    if differentiate == "rnn_backward":
        out, _, cache = rnn_forward(x, _to_jax(jnp, params), nonlinearity="relu")
        assert np.all(to_numpy(out)[:, 0, 0] == 0)
        grad_x, _, grads = rnn_backward(cache, jnp.asarray(grad_out))
    else:
        def loss(p: dict[str, Any], x: Any) -> Any:
            return jnp.sum(rnn_forward(x, p, nonlinearity="relu")[0] * grad_out)

        grads, grad_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(_to_jax(jnp, params), x)
    assert np.all(to_numpy(grad_x) == 0)
    assert all(np.all(to_numpy(g) == 0) for g in grads.values())


@pytest.mark.parametrize("transform", ["eager", "jit"])
def test_relu_keeps_nan(jax: Any, jnp: Any, transform: str) -> None:
    rng = np.random.default_rng(0)
    params = _to_jax(jnp, random_params(rng, input_size=2, hidden_size=3))
    x = rng.standard_normal((4, 2, 2))
    x[1, 0, :] = np.nan

    def forward(x: Any) -> Any:
        return rnn_forward(x, params, nonlinearity="relu")[0]

    host = to_numpy((jax.jit(forward) if transform == "jit" else forward)(jnp.asarray(x)))
    assert np.all(np.isnan(host[1:, 0, :])), host[:, 0, :]
    assert np.all(np.isfinite(host[:, 1, :]))


def test_truncated_bptt_on_jax_arrays_runs_the_generic_loop_and_equals_numpy(jnp: Any) -> None:
    case = TRANSFORM_CASES[0]
    data = make_case(case, seed=31)
    _, _, cache = rnn_forward(jnp.asarray(data["x"]), _to_jax(jnp, data["params"]), jnp.asarray(data["h0"]),
                              lengths=data["lengths"], batch_first=True)
    _, _, numpy_cache = rnn_forward(data["x"], data["params"], data["h0"], lengths=data["lengths"], batch_first=True)
    got = rnn_backward(cache, jnp.asarray(data["grad_out"]), bptt_truncate=2)
    want = rnn_backward(numpy_cache, data["grad_out"], bptt_truncate=2)
    full = rnn_backward(numpy_cache, data["grad_out"])
    assert not np.allclose(want[0], full[0])
    assert_close(got[0], want[0], xp=jnp, rtol=PARITY_RTOL)
    assert_close(got[1], want[1], xp=jnp, rtol=PARITY_RTOL)
    for name, value in want[2].items():
        assert_close(got[2][name], value, xp=jnp, rtol=PARITY_RTOL)


def test_the_traced_program_does_not_grow_with_t(jax: Any, jnp: Any) -> None:
    """One scan per direction: the jaxpr of jit(grad) has the same number of equations at T = 5 and T = 500 (the
    generic loop's grows with T)."""
    rng = np.random.default_rng(32)
    params = _to_jax(jnp, random_params(rng, input_size=3, hidden_size=4, num_layers=2, bidirectional=True))

    def size(num_steps: int, loop: str) -> int:
        def loss(p: dict[str, Any], x: Any, lengths: Any) -> Any:
            return jnp.sum(rnn_forward(x, p, lengths=lengths, loop=loop)[0] ** 2)

        x, lengths = jnp.zeros((num_steps, 2, 3)), jnp.asarray([num_steps, 1])
        return len(jax.make_jaxpr(jax.grad(loss))(params, x, lengths).eqns)

    assert size(5, "auto") == size(500, "auto")
    assert size(50, "generic") > size(5, "generic")


def test_eager_calls_reuse_the_compiled_scans(jnp: Any) -> None:
    """Outside jit each direction runs a jitted function, compiled once per shape: a second call compiles nothing."""
    from rnn_xp.loops import jax_scan

    rng = np.random.default_rng(33)
    params = _to_jax(jnp, random_params(rng, input_size=3, hidden_size=4, bidirectional=True))
    x = jnp.asarray(rng.standard_normal((5, 2, 3)))

    def call() -> None:
        _, _, cache = rnn_forward(x, params, lengths=[5, 2])
        rnn_backward(cache, jnp.ones((5, 2, 8)))

    call()
    compiled = (jax_scan._forward_direction._cache_size(), jax_scan._backward_direction._cache_size())
    call()
    assert (jax_scan._forward_direction._cache_size(), jax_scan._backward_direction._cache_size()) == compiled


def test_the_benchmark_script_times_both_implementations_and_writes_its_table(jax: Any, monkeypatch: Any) -> None:
    """bench/jax_scan.py at a tiny T, its processes run in this one: every row has both implementations' times and
    the paired ratios, and the table names the targets."""
    spec = importlib.util.spec_from_file_location("bench_jax_scan", ROOT / "bench" / "jax_scan.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    jax.config.update("jax_enable_x64", False)  # as in the benchmark's processes (float32)
    try:
        monkeypatch.setattr(bench, "run_child", bench.child)
        monkeypatch.setattr(bench, "LATER_CALLS", 5)
        rows = bench.measure([4], repeats=2, generic_up_to=3)  # no generic loop at T = 4 > 3
    finally:
        jax.config.update("jax_enable_x64", True)
    assert [(r["steps"], r["function"], r["lengths"]) for r in rows] == [
        (4, f, with_lengths) for f in ("forward", "jit(grad)") for with_lengths in (False, True)]
    for row in rows:
        assert sorted(row["runs"]) == ["lax.scan", "rnn_xp"]
        for name in ("rnn_xp", "lax.scan"):
            assert len(row["runs"][name]) == 2 and all(r["first_s"] > 0 and r["later_s"] > 0 for r in row["runs"][name])
        ratio = row["rnn_xp/lax.scan later"]
        assert ratio["min"] <= ratio["median"] <= ratio["max"]
    table = bench.markdown({"jax": jax.__version__, "machine": {"cpu": {"model": "cpu", "logical_cores": 2}},
                            "repeats": 2, "rows": [{**r, "steps": 1000} for r in rows]})
    assert table.count("| 1000 |") == 8 and "Targets (issue 25)" in table and "lengths traced: first" in table
