"""Weight gradients as split-K (rnn_xp.functional._core.SPLIT_K_ROWS, off by default): the same gradients as one
matmul over all T*B rows, on the CPU loops and (tests/test_cuda_calls.py) on the emulated CUDA kernels, whose
bias gradient then comes from the kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import random_params

from rnn_xp.functional import _core, rnn_backward, rnn_forward


def test_split_k_is_off_by_default() -> None:
    assert _core.SPLIT_K_ROWS is None


@pytest.mark.parametrize(("rows", "split"), [(64, 8), (67, 8), (16, 8), (15, 8), (7, 8), (1000, 3)])
def test_a_split_weight_gradient_equals_one_matmul(rows: int, split: int) -> None:
    """Whole chunks, a remainder past them, exactly two chunks, and fewer rows than two chunks (one matmul)."""
    import array_api_compat.numpy as xp

    rng = np.random.default_rng(rows)
    grad_rows, input_rows = rng.standard_normal((rows, 5)), rng.standard_normal((rows, 3))
    got = _core._weight_gradient(xp, grad_rows, input_rows, split)
    np.testing.assert_allclose(got, grad_rows.T @ input_rows, rtol=1e-12, atol=1e-12)
    if rows < 2 * split:
        np.testing.assert_array_equal(got, grad_rows.T @ input_rows)  # not split at all


@pytest.mark.parametrize("loop", ["numpy", "compiled", "generic"])
def test_split_k_gradients_match_on_the_cpu_loops(loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two bidirectional layers with h0, lengths and grad_h_n: every gradient as without the split."""
    rng = np.random.default_rng(0)
    params = random_params(rng, input_size=3, hidden_size=6, num_layers=2, bidirectional=True)
    x, h0 = rng.standard_normal((9, 5, 3)), rng.standard_normal((4, 5, 6))
    grad_out, grad_h_n = rng.standard_normal((9, 5, 12)), rng.standard_normal((4, 5, 6))

    def run() -> list[Any]:
        _, _, cache = rnn_forward(x, params, h0, lengths=[9, 3, 5, 9, 1], loop=loop)
        grad_x, grad_h0, grads = rnn_backward(cache, grad_out, grad_h_n)
        return [grad_x, grad_h0, *grads.values()]

    expected = run()
    monkeypatch.setattr(_core, "SPLIT_K_ROWS", 4)  # 45 rows: 11 chunks and a remainder; 40 (W_hh without h0): 10
    calls = []
    original = _core._weight_gradient

    def recording(xp: Any, grad_rows: Any, input_rows: Any, split: int | None) -> Any:
        calls.append((grad_rows.shape[0], split))
        return original(xp, grad_rows, input_rows, split)

    monkeypatch.setattr(_core, "_weight_gradient", recording)
    for got, want in zip(run(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert len(calls) == 8 and all(split == 4 and rows >= 8 for rows, split in calls)  # 2 layers x 2 dirs x 2
