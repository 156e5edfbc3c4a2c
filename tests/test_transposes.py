"""The compiled loop's kept W_hh^T (rnn_xp.loops._transposes): equal to W_hh.T, reused while W_hh's bits are
unchanged, remade after any in-place edit, bounded in memory and dropped with its weight."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import rnn_xp
from rnn_xp.functional import rnn_forward
from rnn_xp.loops import _aligned, _transposes

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def _empty() -> None:
    _transposes.clear()


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (16, 16), (37, 130), (130, 37), (512, 512)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_transpose_is_exact(shape: tuple[int, int], dtype: str) -> None:
    weight = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    result = _transposes.transpose(weight)
    assert result.flags.c_contiguous and result.dtype == weight.dtype
    assert _aligned.is_aligned(result)  # rows of W^T start on cache lines (the kernels' vector loads)
    np.testing.assert_array_equal(result, weight.T)


def test_kept_while_unchanged() -> None:
    weight = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    first = _transposes.transposed(weight)
    assert _transposes.transposed(weight) is first
    np.testing.assert_array_equal(first, weight.T)


@pytest.mark.parametrize("where", [(0, 0), (63, 63), (40, 17)])
def test_in_place_edit_is_seen(where: tuple[int, int]) -> None:
    weight = np.random.default_rng(0).standard_normal((64, 64))
    kept = _transposes.transposed(weight)
    weight[where] += 1e-12  # one element, one bit pattern changed
    again = _transposes.transposed(weight)
    assert again is not kept
    np.testing.assert_array_equal(again, weight.T)


def test_negative_zero_and_nan_payloads_are_compared_by_bits() -> None:
    weight = np.zeros((8, 8), dtype=np.float32)
    kept = _transposes.transposed(weight)
    weight[3, 4] = -0.0  # == 0.0, but not the same bits: a new transpose
    assert _transposes.transposed(weight) is not kept
    weight[1, 2] = np.nan
    with_nan = _transposes.transposed(weight)
    assert _transposes.transposed(weight) is with_nan  # NaN != NaN, yet the bits are the same: kept
    np.testing.assert_array_equal(with_nan, weight.T)


def test_same_values_in_a_new_array_share_nothing() -> None:
    weight = np.random.default_rng(0).standard_normal((16, 16))
    _transposes.transposed(weight)
    other = weight * 2
    np.testing.assert_array_equal(_transposes.transposed(other), other.T)


def test_views_are_transposed_every_call() -> None:
    base = np.random.default_rng(0).standard_normal((16, 32))
    view = base[:, ::2]
    np.testing.assert_array_equal(_transposes.transposed(view), view.T)
    assert len(_transposes._kept) == 0


def test_dropped_with_its_weight() -> None:
    weight = np.ones((32, 32))
    _transposes.transposed(weight)
    assert len(_transposes._kept) == 1
    del weight
    gc.collect()
    assert len(_transposes._kept) == 0


def test_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_transposes, "MAX_BYTES", 3 * 2 * 32 * 32 * 8)
    weights = [np.full((32, 32), float(i)) for i in range(5)]
    for weight in weights:
        _transposes.transposed(weight)
    assert len(_transposes._kept) == 3
    assert set(_transposes._kept) == {id(w) for w in weights[2:]}  # the oldest went first
    big = np.ones((64, 64))
    np.testing.assert_array_equal(_transposes.transposed(big), big.T)  # too big to keep: transposed, not kept
    assert id(big) not in _transposes._kept


def test_compiled_forward_sees_an_in_place_weight_update() -> None:
    rng = np.random.default_rng(0)
    params = rnn_xp.RNN(4, 32, seed=0, dtype="float64").state_dict()
    x = rng.standard_normal((6, 2, 4))
    rnn_forward(x, params, loop="compiled")
    params["weight_hh_l0"] *= 0.5  # as an optimizer's step does: same array, new values
    ours = rnn_forward(x, params, loop="compiled")[0]
    reference = rnn_forward(x, params, loop="numpy")[0]
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-14)


def test_a_weight_dying_while_the_lock_is_held_is_dropped_later_without_a_hang() -> None:
    """The finalizer of a weight can run (garbage collection) while this thread holds the lock: it must not wait."""
    weight = np.ones((4, 4), dtype=np.float32)
    _transposes.transposed(weight)
    key = id(weight)
    with _transposes._lock:
        del weight  # its finalizer runs here, the lock held
        assert key in _transposes._forgotten and key in _transposes._kept
    _transposes.transposed(np.zeros((3, 3), dtype=np.float32))
    assert key not in _transposes._kept and not _transposes._forgotten


def test_the_numpy_loop_takes_the_kept_transpose_only_while_the_weight_stays_unchanged() -> None:
    from rnn_xp.loops.numpy_inplace import KEEP_FROM_ROWS, _recurrent_right_operand

    weight = np.random.default_rng(3).standard_normal((40, 40))
    short = KEEP_FROM_ROWS - 1
    assert _recurrent_right_operand(weight, True, short).base is weight  # short call, nothing kept: the view
    assert not _transposes.is_kept(weight)
    first = _recurrent_right_operand(weight, True, KEEP_FROM_ROWS)  # long enough to make one
    assert first.flags.c_contiguous and _aligned.is_aligned(first)
    np.testing.assert_array_equal(first, weight.T)
    assert _recurrent_right_operand(weight, True, short) is first  # kept now: short calls take it too
    weight *= 0.5  # an optimizer's step
    changed = _recurrent_right_operand(weight, True, KEEP_FROM_ROWS)  # found changed: a new one, weight marked
    np.testing.assert_array_equal(changed, weight.T)
    view = _recurrent_right_operand(weight, True, KEEP_FROM_ROWS)  # expected to change again: the view
    assert view.base is weight and not view.flags.c_contiguous
    assert _recurrent_right_operand(weight, False, KEEP_FROM_ROWS).base is weight  # without numba: the view


def test_a_new_view_each_short_call_makes_no_transpose() -> None:
    from rnn_xp.loops import numpy_inplace

    rng = np.random.default_rng(4)
    weight = rng.standard_normal((40, 40))
    projection, h0 = rng.standard_normal((4, 8, 40)), np.zeros((8, 40))
    for _ in range(3):
        view = weight[:, :]  # a new array object each call, as tensor.numpy() gives
        numpy_inplace.forward_layer(np, [projection.copy()], [None], [view], [h0], None, "tanh")
        assert not _transposes.is_kept(view)
