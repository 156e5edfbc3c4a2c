"""Dropout between layers: training only, seeded, and applied to every layer's output but the last."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import assert_close, random_params

from rnn_xp.functional import rnn_backward, rnn_forward
from rnn_xp.functional._dropout import dropout_masks


def _setup(num_layers: int = 3, bidirectional: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    params = random_params(rng, input_size=4, hidden_size=6, num_layers=num_layers, bidirectional=bidirectional)
    return params, rng.standard_normal((7, 5, 4))


def test_eval_mode_ignores_dropout() -> None:
    params, x = _setup()
    plain, _, _ = rnn_forward(x, params)
    evaluated, _, _ = rnn_forward(x, params, dropout=0.5, training=False, seed=1)
    np.testing.assert_array_equal(evaluated, plain)


def test_training_mode_changes_the_output() -> None:
    params, x = _setup()
    plain, _, _ = rnn_forward(x, params)
    trained, _, _ = rnn_forward(x, params, dropout=0.5, training=True, seed=1)
    assert np.max(np.abs(trained - plain)) > 1e-3


def test_same_seed_same_result_and_other_seed_differs() -> None:
    params, x = _setup()
    first, _, _ = rnn_forward(x, params, dropout=0.5, training=True, seed=11)
    again, _, _ = rnn_forward(x, params, dropout=0.5, training=True, seed=11)
    other, _, _ = rnn_forward(x, params, dropout=0.5, training=True, seed=12)
    np.testing.assert_array_equal(first, again)
    assert np.max(np.abs(first - other)) > 1e-3


def test_single_layer_has_nothing_to_drop() -> None:
    params, x = _setup(num_layers=1)
    plain, _, _ = rnn_forward(x, params)
    trained, _, _ = rnn_forward(x, params, dropout=0.9, training=True, seed=3)
    np.testing.assert_array_equal(trained, plain)


@pytest.mark.backends("numpy")
def test_mask_is_applied_between_layers_only(xp: Any) -> None:
    """A 2-layer training forward equals layer 0, times the seeded mask, fed to layer 1 (no mask after it)."""
    params, x = _setup(num_layers=2)
    out, h_n, _ = rnn_forward(x, params, dropout=0.4, training=True, seed=5)
    layer0 = {k: v for k, v in params.items() if "_l0" in k}
    layer1 = {k.replace("_l1", "_l0"): v for k, v in params.items() if "_l1" in k}
    (mask,) = dropout_masks(xp, 0.4, 5, num_masks=1, shape=(7, 5, 12), dtype=np.float64, device="cpu")
    middle, h_n0, _ = rnn_forward(x, layer0)
    expected, h_n1, _ = rnn_forward(middle * mask, layer1)
    assert_close(out, expected, rtol=1e-14)
    assert_close(h_n, np.concatenate([h_n0, h_n1]), rtol=1e-14)
    assert set(np.unique(mask)) == {0.0, 1 / 0.6}
    assert abs(float(np.mean(mask == 0)) - 0.4) < 0.1


def test_dropout_gradients_match_finite_differences() -> None:
    params, x = _setup(num_layers=2)
    options = dict(dropout=0.3, training=True, seed=9)
    out, _h_n, cache = rnn_forward(x, params, **options)
    rng = np.random.default_rng(1)
    grad_out = rng.standard_normal(out.shape)
    grad_x, _, grads = rnn_backward(cache, grad_out)
    eps = 1e-6
    for name, analytic in [("x", grad_x), ("weight_ih_l0", grads["weight_ih_l0"])]:
        direction = rng.standard_normal(analytic.shape)
        losses = []
        for sign in (1, -1):
            shifted_x = x + sign * eps * direction if name == "x" else x
            shifted = {**params}
            if name != "x":
                shifted[name] = params[name] + sign * eps * direction
            o, _, _ = rnn_forward(shifted_x, shifted, **options)
            losses.append(float(np.sum(o * grad_out)))
        expected = (losses[0] - losses[1]) / (2 * eps)
        assert abs(float(np.sum(analytic * direction)) - expected) <= 1e-6 * max(1.0, abs(expected))


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_generic_namespace_gets_the_same_dropout(xp: object, dropout: float) -> None:
    """Masks come from the seed, not the backend: every namespace drops the same units."""
    from helpers import from_numpy

    params, x = _setup(num_layers=2)
    expected, _, _ = rnn_forward(x, params, dropout=dropout, training=True, seed=21)
    out, _, _ = rnn_forward(
        from_numpy(xp, x), {k: from_numpy(xp, v) for k, v in params.items()}, dropout=dropout, training=True,
        seed=21,
    )
    assert_close(out, expected, xp=xp, rtol=1e-12)
