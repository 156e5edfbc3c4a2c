"""rnn_xp.training.SimpleRNN against a real keras.layers.SimpleRNN (Keras 3 on its torch backend, no TensorFlow):
weights in both directions, masking against lengths, and Keras's initialisers."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

import numpy as np
import pytest
from helpers import assert_close

from rnn_xp.training import SimpleRNN

I, H, B, T = 3, 5, 4, 7  # noqa: E741 (torch's names for the sizes)
# Keras's float64 SimpleRNN on the torch backend is not float64 throughout: it differs from a plain float64 NumPy loop
# over its own weights by ~1e-7 (5e-8 measured), so ours (equal to that loop to ~1e-15) is compared to Keras at 1e-6.
# A wrong mapping (a transpose, a lost bias) gives errors of order 1.
KERAS_RTOL = 1e-6
# Keras 3.15's torch backend calls np.array(tensor) in a way NumPy 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


@pytest.fixture(scope="module")
def keras() -> Any:
    """Keras on the torch backend; skips (with the reason) where Keras or torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("Keras's torch backend needs torch, which is not installed")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"  # read once, when keras is first imported
    keras = pytest.importorskip("keras", reason="keras is not installed (pip install keras: no TensorFlow needed)")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was imported earlier with the {keras.backend.backend()} backend")
    return keras


def _keras_layer(keras: Any, *, return_sequences: bool = False, activation: str = "tanh", seed: int = 0) -> Any:
    keras.utils.set_random_seed(seed)
    layer = keras.layers.SimpleRNN(H, activation=activation, return_sequences=return_sequences, dtype="float64",
                                   bias_initializer="random_normal")  # a non-zero bias, so its mapping is tested
    layer.build((None, T, I))
    return layer


def _run_keras(keras: Any, layer: Any, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(layer(x, mask=mask)))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_loads_keras_weights_and_gives_keras_outputs(keras: Any, activation: str, return_sequences: bool) -> None:
    theirs = _keras_layer(keras, return_sequences=return_sequences, activation=activation)
    ours = SimpleRNN(I, H, activation=activation, return_sequences=return_sequences, dtype="float64")
    weights = theirs.get_weights()
    assert [w.shape for w in weights] == [(I, H), (H, H), (H,)]
    ours.load_keras_weights(weights)
    x = np.random.default_rng(1).standard_normal((B, T, I))
    assert_close(ours(x), _run_keras(keras, theirs, x), rtol=KERAS_RTOL)


def test_lengths_give_what_keras_masking_gives(keras: Any) -> None:
    """Right-padded sequences: Keras's mask and rnn_xp's lengths both end each sequence at its own last step."""
    theirs = _keras_layer(keras, seed=2)
    ours = SimpleRNN(I, H, dtype="float64")
    ours.load_keras_weights(theirs.get_weights())
    x = np.random.default_rng(3).standard_normal((B, T, I))
    lengths = np.array([T, 1, 4, T - 1])
    mask = np.arange(T)[None, :] < lengths[:, None]
    expected = _run_keras(keras, theirs, x, mask)
    assert_close(ours(x, lengths=lengths), expected, rtol=KERAS_RTOL)
    assert not np.allclose(ours(x), expected)  # without lengths the padded steps count


def test_exported_weights_make_keras_compute_ours(keras: Any) -> None:
    ours = SimpleRNN(I, H, return_sequences=True, dtype="float64", seed=4)  # torch's init: two non-zero biases
    theirs = _keras_layer(keras, return_sequences=True, seed=5)
    theirs.set_weights(ours.keras_weights())
    x = np.random.default_rng(6).standard_normal((B, T, I))
    assert_close(_run_keras(keras, theirs, x), ours(x), rtol=KERAS_RTOL)
    again = SimpleRNN(I, H, return_sequences=True, dtype="float64")
    again.load_keras_weights(theirs.get_weights())
    assert_close(again(x), ours(x), rtol=1e-12)


def test_keras_init_has_the_distributions_of_keras_initialisers(keras: Any) -> None:
    input_dim, units = 40, 60
    layer = SimpleRNN(input_dim, units, init="keras", dtype="float64", seed=7)
    kernel, recurrent, bias = layer.keras_weights()
    limit = np.sqrt(6 / (input_dim + units))
    reference = keras.ops.convert_to_numpy(keras.initializers.GlorotUniform(seed=1)((input_dim, units)))
    assert np.max(np.abs(kernel)) <= limit and np.max(np.abs(reference)) <= limit
    assert abs(np.std(kernel) - np.std(reference)) < 0.05 * np.std(reference)
    assert_close(recurrent @ recurrent.T, np.eye(units), rtol=1e-12)
    recurrent_reference = keras.ops.convert_to_numpy(keras.initializers.Orthogonal(seed=1)((units, units)))
    assert_close(recurrent_reference @ recurrent_reference.T, np.eye(units), rtol=1e-5)  # the same kind of matrix
    assert np.array_equal(bias, np.zeros(units))
    assert all(np.array_equal(a, b) for a, b in zip(
        layer.keras_weights(), SimpleRNN(input_dim, units, init="keras", dtype="float64", seed=7).keras_weights(),
        strict=True))


def test_torch_init_stays_the_default() -> None:
    kernel, recurrent, bias = SimpleRNN(I, H, seed=0).keras_weights()
    assert np.all(np.abs(kernel) <= 1 / np.sqrt(H)) and np.any(bias != 0)
    assert not np.allclose(recurrent @ recurrent.T, np.eye(H), atol=1e-3)


BAD_WEIGHTS = [
    ("not-a-list", lambda: np.zeros((I, H)), TypeError, r"weights must be a list \[kernel, recurrent_kernel, bias\]"),
    ("two-arrays", lambda: [np.zeros((I, H)), np.zeros((H, H))], ValueError, r"weights must hold 3 arrays .*got 2 \(for use_bias=False, append np.zeros\(5\)\)"),
    ("kernel-transposed", lambda: [np.zeros((H, I)), np.zeros((H, H)), np.zeros(H)], ValueError, r"weights\[0\] \(kernel\) must have shape \(3, 5\); got \(5, 3\)"),
    ("bias-shape", lambda: [np.zeros((I, H)), np.zeros((H, H)), np.zeros(H + 1)], ValueError, r"weights\[2\] \(bias\) must have shape \(5,\); got \(6,\)"),
    ("float32-into-float64", lambda: [np.zeros((I, H), np.float32), np.zeros((H, H)), np.zeros(H)], TypeError, r"weights\[0\] \(kernel\) must have dtype float64"),
    ("not-an-array", lambda: [np.zeros((I, H)), [[0.0] * H] * H, np.zeros(H)], TypeError, r"weights\[1\] \(recurrent_kernel\) must be an array; got list"),
]


@pytest.mark.parametrize(("make", "error", "pattern"), [c[1:] for c in BAD_WEIGHTS], ids=[c[0] for c in BAD_WEIGHTS])
def test_bad_keras_weights_are_refused_and_nothing_is_loaded(make: Any, error: type[Exception], pattern: str) -> None:
    layer = SimpleRNN(I, H, dtype="float64", seed=0)
    before = layer.keras_weights()
    with pytest.raises(error, match=pattern):
        layer.load_keras_weights(make())
    assert all(np.array_equal(a, b) for a, b in zip(layer.keras_weights(), before, strict=True))


def test_unknown_init_is_refused() -> None:
    with pytest.raises(ValueError, match=r"init must be one of \('torch', 'keras'\); got 'glorot'"):
        SimpleRNN(I, H, init="glorot")
