"""rnn_xp.functional inside other frameworks' automatic differentiation: torch autograd, and JAX's grad, jit and vmap
(and their compositions), against rnn_backward and torch.nn.RNN in float64."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from helpers import PARITY_RTOL, assert_close, make_case, torch_reference

from rnn_xp.functional import rnn_backward, rnn_forward

# Two layers, both directions, h0, lengths and batch_first: every path through the checks and the core.
CASE = dict(num_layers=2, bidirectional=True, nonlinearity="tanh", bias=True, batch_first=True, with_h0=True,
            with_lengths=True, unbatched=False)
KWARGS = dict(nonlinearity="tanh", batch_first=True)


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return make_case(CASE, seed=11)


@pytest.fixture(scope="module")
def expected(data: dict[str, Any]) -> dict[str, Any]:
    """rnn_backward on NumPy for loss = <grad_out, out> + <grad_h_n, h_n> (itself checked against torch elsewhere)."""
    out, h_n, cache = rnn_forward(data["x"], data["params"], data["h0"], lengths=data["lengths"], **KWARGS)
    grad_x, grad_h0, grads = rnn_backward(cache, data["grad_out"], data["grad_h_n"])
    return dict(out=out, h_n=h_n, grad_x=grad_x, grad_h0=grad_h0, grads=grads)


@pytest.fixture(scope="module")
def jax() -> Any:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


def _jax_loss(jax: Any, data: dict[str, Any], lengths: Any) -> Any:
    jnp = jax.numpy
    grad_out, grad_h_n = jnp.asarray(data["grad_out"]), jnp.asarray(data["grad_h_n"])

    def loss(params: dict[str, Any], x: Any, h0: Any) -> Any:
        out, h_n, _ = rnn_forward(x, params, h0, lengths=lengths, **KWARGS)
        return jnp.sum(out * grad_out) + jnp.sum(h_n * grad_h_n)

    return loss


def _jax_inputs(jax: Any, data: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    jnp = jax.numpy
    return {k: jnp.asarray(v) for k, v in data["params"].items()}, jnp.asarray(data["x"]), jnp.asarray(data["h0"])


def _assert_grads(got: tuple[dict[str, Any], Any, Any], expected: dict[str, Any]) -> None:
    grads, grad_x, grad_h0 = got
    assert sorted(grads) == sorted(expected["grads"])
    for name, value in expected["grads"].items():
        assert_close(grads[name], value, rtol=PARITY_RTOL)
    assert_close(grad_x, expected["grad_x"], rtol=PARITY_RTOL)
    assert_close(grad_h0, expected["grad_h0"], rtol=PARITY_RTOL)


@pytest.mark.parametrize("wrt", ["params", "x", "all"])
@pytest.mark.parametrize("transform", ["grad", "jit(grad)", "grad(jit)"])
def test_jax_grad_equals_rnn_backward_and_torch(jax: Any, data: dict[str, Any], expected: dict[str, Any],
                                                 transform: str, wrt: str) -> None:
    """Differentiating with respect to the parameters only (x a concrete array, the usual training case), x only, or
    everything: traced and concrete arrays meet in the checks in every combination."""
    loss = _jax_loss(jax, data, data["lengths"].tolist())
    argnums = {"params": (0,), "x": (1,), "all": (0, 1, 2)}[wrt]
    gradient = {
        "grad": jax.grad(loss, argnums=argnums),
        "jit(grad)": jax.jit(jax.grad(loss, argnums=argnums)),
        "grad(jit)": jax.grad(jax.jit(loss), argnums=argnums),
    }[transform]
    got = dict(zip(argnums, gradient(*_jax_inputs(jax, data)), strict=True))
    references = [expected]
    if importlib.util.find_spec("torch") is not None:
        references.append(torch_reference(CASE, data))
    for reference in references:
        if 0 in got:
            assert sorted(got[0]) == sorted(reference["grads"])
            for name, value in reference["grads"].items():
                assert_close(got[0][name], value, rtol=PARITY_RTOL)
        if 1 in got:
            assert_close(got[1], reference["grad_x"], rtol=PARITY_RTOL)
        if 2 in got:
            assert_close(got[2], reference["grad_h0"], rtol=PARITY_RTOL)


def test_jax_jit_forward_equals_numpy(jax: Any, data: dict[str, Any], expected: dict[str, Any]) -> None:
    params, x, h0 = _jax_inputs(jax, data)
    forward = jax.jit(lambda p, x, h0: rnn_forward(x, p, h0, lengths=data["lengths"], **KWARGS)[:2])
    out, h_n = forward(params, x, h0)
    assert_close(out, expected["out"], rtol=PARITY_RTOL)
    assert_close(h_n, expected["h_n"], rtol=PARITY_RTOL)


def _per_example(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The case split into its examples: each its own batch of one (x (1, T, I), h0 (L*D, 1, H), ...)."""
    return [dict(x=data["x"][b : b + 1], h0=data["h0"][:, b : b + 1], grad_out=data["grad_out"][b : b + 1],
                 grad_h_n=data["grad_h_n"][:, b : b + 1]) for b in range(data["x"].shape[0])]


def test_jax_vmap_over_a_batch_of_batches_equals_separate_calls(jax: Any, data: dict[str, Any]) -> None:
    """vmap over a leading axis of x and h0 (parameters shared) gives the per-slice forwards."""
    jnp = jax.numpy
    params, _, _ = _jax_inputs(jax, data)
    examples = _per_example(data)
    xs = jnp.stack([jnp.asarray(e["x"]) for e in examples])
    h0s = jnp.stack([jnp.asarray(e["h0"]) for e in examples])
    out, h_n = jax.vmap(lambda x, h0: rnn_forward(x, params, h0, **KWARGS)[:2])(xs, h0s)
    for b, e in enumerate(examples):
        want_out, want_h_n, _ = rnn_forward(e["x"], data["params"], e["h0"], **KWARGS)
        assert_close(out[b], want_out, rtol=PARITY_RTOL)
        assert_close(h_n[b], want_h_n, rtol=PARITY_RTOL)


@pytest.mark.parametrize("transform", ["vmap(grad)", "jit(vmap(grad))", "grad(vmap)"])
def test_jax_vmap_and_grad_compose(jax: Any, data: dict[str, Any], transform: str) -> None:
    """Per-example gradients (vmap of grad) equal rnn_backward on each example; the gradient of a vmapped loss
    (grad of vmap) equals rnn_backward on the whole batch, which is the sum over examples."""
    jnp = jax.numpy
    params, _, _ = _jax_inputs(jax, data)
    examples = _per_example(data)
    xs, h0s = (jnp.stack([jnp.asarray(e[k]) for e in examples]) for k in ("x", "h0"))
    grad_outs, grad_h_ns = (jnp.stack([jnp.asarray(e[k]) for e in examples]) for k in ("grad_out", "grad_h_n"))

    def loss(p: dict[str, Any], x: Any, h0: Any, grad_out: Any, grad_h_n: Any) -> Any:
        out, h_n, _ = rnn_forward(x, p, h0, **KWARGS)
        return jnp.sum(out * grad_out) + jnp.sum(h_n * grad_h_n)

    references = []
    for e in examples:
        _, _, cache = rnn_forward(e["x"], data["params"], e["h0"], **KWARGS)
        references.append(rnn_backward(cache, e["grad_out"], e["grad_h_n"])[2])
    if transform == "grad(vmap)":
        batched = jax.vmap(loss, in_axes=(None, 0, 0, 0, 0))
        grads = jax.grad(lambda p: jnp.sum(batched(p, xs, h0s, grad_outs, grad_h_ns)))(params)
        for name in references[0]:
            assert_close(grads[name], sum(r[name] for r in references), rtol=PARITY_RTOL)
        return
    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0, 0, 0))
    if transform == "jit(vmap(grad))":
        per_example = jax.jit(per_example)
    grads = per_example(params, xs, h0s, grad_outs, grad_h_ns)
    for b, reference in enumerate(references):
        for name, value in reference.items():
            assert_close(grads[name][b], value, rtol=PARITY_RTOL)


def test_rnn_backward_inside_jax_jit_equals_it_outside(jax: Any, data: dict[str, Any], expected: dict[str, Any]) -> None:
    """The explicit BPTT (rnn_forward then rnn_backward) traced and compiled as one function."""
    jnp = jax.numpy

    def forward_backward(params: dict[str, Any], x: Any, h0: Any) -> tuple[Any, Any, dict[str, Any]]:
        _, _, cache = rnn_forward(x, params, h0, lengths=data["lengths"], **KWARGS)
        return rnn_backward(cache, jnp.asarray(data["grad_out"]), jnp.asarray(data["grad_h_n"]))

    grad_x, grad_h0, grads = jax.jit(forward_backward)(*_jax_inputs(jax, data))
    _assert_grads((grads, grad_x, grad_h0), expected)


def test_jax_traced_lengths_with_numpy_arrays_are_refused_with_a_way_out(jax: Any, data: dict[str, Any]) -> None:
    """Traced lengths are taken with JAX arrays (tests/test_jax_scan.py); NumPy's loops need their values."""
    traced = jax.jit(lambda lengths: rnn_forward(data["x"], data["params"], data["h0"], lengths=lengths, **KWARGS)[0])
    with pytest.raises(TypeError, match=r"lengths must hold concrete values.*with JAX arrays x, h0 and params only.*"
                                        r"pass lengths as a list or NumPy array"):
        traced(jax.numpy.asarray(data["lengths"]))


def test_torch_autograd_through_functional_equals_rnn_backward_and_torch(
    data: dict[str, Any], expected: dict[str, Any]
) -> None:
    torch = pytest.importorskip("torch")
    params = {k: torch.tensor(v, requires_grad=True) for k, v in data["params"].items()}
    x, h0 = (torch.tensor(data[k], requires_grad=True) for k in ("x", "h0"))
    out, h_n, _ = rnn_forward(x, params, h0, lengths=torch.tensor(data["lengths"]), **KWARGS)
    loss = (out * torch.tensor(data["grad_out"])).sum() + (h_n * torch.tensor(data["grad_h_n"])).sum()
    loss.backward()
    got = ({k: v.grad for k, v in params.items()}, x.grad, h0.grad)
    _assert_grads(got, expected)
    _assert_grads(got, torch_reference(CASE, data))
