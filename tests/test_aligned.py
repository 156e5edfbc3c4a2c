"""64-byte aligned arrays for the layer's parameters (rnn_xp._arrays.aligned_empty)."""

from __future__ import annotations

import numpy as np
import pytest

import rnn_xp
from rnn_xp._arrays import ALIGNMENT, aligned_empty


def _aligned(array: np.ndarray) -> bool:
    return array.size == 0 or array.ctypes.data % ALIGNMENT == 0


@pytest.mark.parametrize("shape", [(0,), (1,), (3, 5), (128, 128), (2, 3, 7)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_aligned_empty_is_aligned_contiguous_and_writable(shape: tuple[int, ...], dtype: str) -> None:
    for _ in range(8):  # NumPy's own allocations land on varied 16-byte offsets
        array = aligned_empty(shape, dtype)
        assert array.shape == shape and array.dtype == np.dtype(dtype)
        assert array.flags.c_contiguous and array.flags.writeable
        assert _aligned(array)
        array[...] = 7
        assert np.all(array == 7)


def test_layer_parameters_are_64_byte_aligned_however_they_arrive() -> None:
    rnn = rnn_xp.RNN(5, 33, num_layers=2, bidirectional=True, seed=0, dtype="float32")
    assert all(_aligned(p) for p in rnn.parameters().values())
    misaligned = {}
    for name, value in rnn.parameters().items():
        storage = aligned_empty((value.size + 1,), value.dtype)
        misaligned[name] = storage[1:].reshape(value.shape)
        misaligned[name][...] = value
        assert not _aligned(misaligned[name])
    rnn.load_state_dict(misaligned)
    assert all(_aligned(p) and p.flags.c_contiguous for p in rnn.parameters().values())
    rnn.to("cpu")
    assert all(_aligned(p) for p in rnn.parameters().values())
