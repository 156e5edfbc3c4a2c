"""Truncated BPTT against a brute-force per-step reference (the classic tutorial's nested loop)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, random_params
from references import truncated_bptt_reference

from rnn_xp.functional import rnn_backward, rnn_forward


def _problem(seed: int, steps: int = 7, batch: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = random_params(rng, input_size=3, hidden_size=5)
    return dict(
        params=params,
        x=rng.standard_normal((steps, batch, 3)),
        h0=rng.standard_normal((1, batch, 5)),
        grad_out=rng.standard_normal((steps, batch, 5)),
        grad_h_n=rng.standard_normal((1, batch, 5)),
    )


def _reference_over_batch(data: dict[str, np.ndarray], truncate: int, lengths: list[int]) -> dict[str, np.ndarray]:
    total: dict[str, np.ndarray] = {}
    grad_x = np.zeros_like(data["x"])
    grad_h0 = np.zeros_like(data["h0"])
    for b, length in enumerate(lengths):
        one = truncated_bptt_reference(
            data["params"], data["x"][:length, b], data["h0"][0, b], data["grad_out"][:length, b],
            data["grad_h_n"][0, b], truncate,
        )
        grad_x[:length, b] = one.pop("grad_x")
        grad_h0[0, b] = one.pop("grad_h0")
        for name, value in one.items():
            total[name] = total.get(name, 0) + value
    total["grad_x"], total["grad_h0"] = grad_x, grad_h0
    return total


@pytest.mark.parametrize("truncate", [0, 1, 2, 4, 6, 7, 50])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_truncated_bptt_matches_brute_force(truncate: int, with_lengths: bool) -> None:
    data = _problem(seed=truncate)
    lengths = [7, 3, 5] if with_lengths else [7, 7, 7]
    _out, _h_n, cache = rnn_forward(data["x"], data["params"], data["h0"], lengths=lengths if with_lengths else None)
    grad_x, grad_h0, grads = rnn_backward(cache, data["grad_out"], data["grad_h_n"], bptt_truncate=truncate)
    expected = _reference_over_batch(data, truncate, lengths)
    assert_close(grad_x, expected["grad_x"], rtol=1e-12)
    assert_close(grad_h0, expected["grad_h0"], rtol=1e-12)
    for name, grad in grads.items():
        assert_close(grad, expected[name], rtol=1e-12)


def test_long_truncation_equals_full_bptt() -> None:
    data = _problem(seed=1)
    _, _, cache = rnn_forward(data["x"], data["params"], data["h0"])
    full = rnn_backward(cache, data["grad_out"], data["grad_h_n"])
    truncated = rnn_backward(cache, data["grad_out"], data["grad_h_n"], bptt_truncate=7)
    for a, b in zip(full[:2], truncated[:2], strict=True):
        assert_close(b, a, rtol=1e-13)
    for name in full[2]:
        assert_close(truncated[2][name], full[2][name], rtol=1e-13)


def test_short_truncation_differs_from_full_bptt() -> None:
    data = _problem(seed=2)
    _, _, cache = rnn_forward(data["x"], data["params"], data["h0"])
    full = rnn_backward(cache, data["grad_out"])[2]["weight_hh_l0"]
    truncated = rnn_backward(cache, data["grad_out"], bptt_truncate=1)[2]["weight_hh_l0"]
    assert np.max(np.abs(full - truncated)) > 1e-3


def test_reverse_direction_truncates_on_the_reversed_sequence() -> None:
    """The reverse direction of a bidirectional layer sees the sequence backwards, truncation included."""
    rng = np.random.default_rng(3)
    params = random_params(rng, input_size=3, hidden_size=4, bidirectional=True)
    x = rng.standard_normal((6, 2, 3))
    grad_out = rng.standard_normal((6, 2, 8))
    _, _, cache = rnn_forward(x, params)
    _, _, grads = rnn_backward(cache, grad_out, bptt_truncate=2)
    reverse = {k.replace("_reverse", ""): v for k, v in params.items() if k.endswith("_reverse")}
    _, _, cache_flipped = rnn_forward(x[::-1].copy(), reverse)
    _, _, expected = rnn_backward(cache_flipped, grad_out[::-1, :, 4:].copy(), bptt_truncate=2)
    for name, grad in expected.items():
        assert_close(grads[name + "_reverse"], grad, rtol=1e-12)


@pytest.mark.parametrize("truncate", [7, 8, 10**7, 10**12])
def test_a_window_of_t_steps_or_more_is_full_bptt(truncate: int) -> None:
    """k >= T is the whole sequence: the same gradients as without truncation, and no (k+1, B, H) buffer (before
    this was capped, k=10**12 asked for 116 TiB)."""
    data = _problem(3)
    cache = rnn_forward(data["x"], data["params"], data["h0"])[2]
    full = rnn_backward(cache, data["grad_out"], data["grad_h_n"])
    capped = rnn_backward(cache, data["grad_out"], data["grad_h_n"], bptt_truncate=truncate)
    assert_close(capped[0], full[0], rtol=1e-13)
    assert_close(capped[1], full[1], rtol=1e-13)
    for name in full[2]:
        assert_close(capped[2][name], full[2][name], rtol=1e-13)


def test_a_window_of_t_minus_one_steps_is_still_truncated() -> None:
    """k = T-1 differs from full BPTT: h0 then receives nothing from the last step."""
    data = _problem(4)
    cache = rnn_forward(data["x"], data["params"], data["h0"])[2]
    full = rnn_backward(cache, data["grad_out"], data["grad_h_n"])
    truncated = rnn_backward(cache, data["grad_out"], data["grad_h_n"], bptt_truncate=6)
    assert not np.allclose(truncated[1], full[1])
