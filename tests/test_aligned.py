"""64-byte aligned arrays for the compiled loop's weights (rnn_xp.loops._aligned)."""

from __future__ import annotations

import numpy as np
import pytest

from rnn_xp.loops import _aligned


@pytest.mark.parametrize("shape", [(0,), (1,), (3, 5), (128, 128), (2, 3, 7)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_empty_is_aligned_contiguous_and_writable(shape: tuple[int, ...], dtype: str) -> None:
    for _ in range(8):  # NumPy's own allocations land on varied 16-byte offsets
        array = _aligned.empty(shape, dtype)
        assert array.shape == shape and array.dtype == np.dtype(dtype)
        assert array.flags.c_contiguous and array.flags.writeable
        assert array.size == 0 or array.ctypes.data % _aligned.ALIGNMENT == 0
        assert _aligned.is_aligned(array)
        array[...] = 7
        assert np.all(array == 7)


def test_contiguous_returns_an_aligned_array_unchanged() -> None:
    array = _aligned.empty((4, 6), np.float32)
    assert _aligned.contiguous(array) is array


@pytest.mark.parametrize("offset", [1, 3, 4, 8])
def test_contiguous_copies_a_misaligned_array(offset: int) -> None:
    base = _aligned.empty((65,), np.float32)
    base[...] = np.arange(65)
    view = base[offset:offset + 48].reshape(6, 8)
    assert not _aligned.is_aligned(view)
    copy = _aligned.contiguous(view)
    assert copy is not view and _aligned.is_aligned(copy) and copy.flags.c_contiguous
    np.testing.assert_array_equal(copy, view)


def test_contiguous_copies_a_transposed_view() -> None:
    array = np.arange(12.0).reshape(3, 4)
    copy = _aligned.contiguous(array.T)
    assert copy.flags.c_contiguous and _aligned.is_aligned(copy)
    np.testing.assert_array_equal(copy, array.T)
