"""The test helpers catch what they promise to (a helper that cannot fail would let every test pass)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import assert_close


@pytest.mark.backends("numpy")
def test_assert_close_checks_values_shape_namespace_and_dtype(xp: Any) -> None:

    assert_close(np.ones(3), np.ones(3), xp=xp, dtype=np.float64)
    with pytest.raises(AssertionError, match="max abs error"):
        assert_close(np.ones(3), np.ones(3) + 1e-6)
    with pytest.raises(AssertionError):
        assert_close(np.ones(3), np.ones(4))
    with pytest.raises(AssertionError):
        assert_close(np.ones(3, np.float32), np.ones(3), dtype=np.float64)
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(AssertionError):
        assert_close(np.ones(3), np.ones(3), xp=strict)
